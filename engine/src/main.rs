//! `engine`: the main job (`engine --config FILE`) and the offline tools. The command
//! line is parsed and dispatched in `engine::cli`.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    engine::cli::main()
}
