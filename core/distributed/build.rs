// Generates the gRPC code from proto/rask.proto with the pure-Rust protox
// compiler (no protoc binary needed).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/rask.proto");
    let fds = protox::compile(["proto/rask.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
