//! Compiles `proto/kevent.proto` (the export API) with protox, a protobuf compiler in
//! Rust: building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/kevent.proto");
    let fds = protox::compile(["kevent.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
