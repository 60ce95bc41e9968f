//! Compiles `mindory.proto` with protox, so no system `protoc` is needed,
//! and writes its encoded descriptor set for the daemon's reflection service.

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file_descriptors = protox::compile(["mindory.proto"], ["."])?;
    // The same descriptors the code is generated from, so what reflection
    // tells grpcurl or a Python client can never drift from the wire types.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("mindory_descriptor.bin"), file_descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(file_descriptors)?;
    println!("cargo:rerun-if-changed=mindory.proto");
    Ok(())
}
