//! Generates the gRPC code from `proto/sluice/v1/*.proto`.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate unless `PROTOC` is set,
//! so a fresh machine builds without installing `protobuf-compiler`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY-free: build scripts are single-threaded; set_var is only unsafe with threads.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("PROTOC", protoc);
        }
    }
    let protos = [
        "proto/sluice/v1/sluice.proto",
        "proto/sluice/v1/admin.proto",
        "proto/sluice/v1/broker.proto",
        "proto/sluice/v1/groups.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
