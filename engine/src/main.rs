//! `engine`: until the segment pipeline lands, a live tail of kernel events.

use std::collections::BTreeSet;
use std::io::{self, BufWriter};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bpf::{CaptureConfig, Category, SyscallSet};
use clap::Parser;

/// Live tail of kernel events from the collector's BPF programs.
#[derive(Debug, Parser)]
#[command(name = "engine", version)]
struct Cli {
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Categories to capture, comma separated
    /// (process,file,net,security,container,memory,syscall).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "process,file,net,security,container,memory"
    )]
    categories: Vec<String>,
    /// Syscall ids for the syscall category: `all` or comma-separated numbers.
    #[arg(long, default_value = "all")]
    syscalls: String,
    /// Bytes per CPU ring (a power of two).
    #[arg(long, default_value_t = bpf::DEFAULT_RING_BYTES)]
    ring_bytes: u32,
    /// Print only the per-kind accounting at the end, not each event.
    #[arg(long)]
    quiet: bool,
}

fn config(cli: &Cli) -> anyhow::Result<CaptureConfig> {
    let mut categories = BTreeSet::new();
    for name in &cli.categories {
        let Some(c) = Category::from_name(name.trim()) else {
            bail!(
                "--categories: unknown category {name:?} (expected one of process, file, net, security, container, memory, syscall)"
            );
        };
        categories.insert(c);
    }
    let syscalls = if cli.syscalls == "all" {
        SyscallSet::All
    } else {
        let ids = cli
            .syscalls
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<u32>()
                    .with_context(|| format!("--syscalls: {s:?} is not a syscall number"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        SyscallSet::Ids(ids)
    };
    if let Some(d) = cli.duration
        && !(d.is_finite() && d > 0.0)
    {
        bail!("--duration: {d} is not a positive number of seconds");
    }
    let config = CaptureConfig {
        categories,
        syscalls,
        ring_bytes: cli.ring_bytes,
        ..CaptureConfig::default()
    };
    let problems = config.problems();
    if !problems.is_empty() {
        bail!("invalid options: {}", problems.join("; "));
    }
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let config = config(cli)?;
    engine::tail::install_stop_handlers();
    let duration = cli.duration.map(Duration::from_secs_f64);
    let (collector, stats) = if cli.quiet {
        engine::tail::run(&config, duration, &mut io::sink())?
    } else {
        let stdout = io::stdout();
        let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
        engine::tail::run(&config, duration, &mut out)?
    };
    engine::tail::write_summary(&mut io::stderr(), &collector, &stats)
}
