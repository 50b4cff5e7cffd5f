//! Compiles crigate's own protobuf packages (`proto/`) and records the git commit the
//! binary is built from, for `crigate --version`.

use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(
            &[
                "proto/crigate/audit/v1/audit.proto",
                "proto/crigate/audit/v1/ingest.proto",
            ],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto");

    let sha = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown commit".to_owned());
    println!("cargo:rustc-env=CRIGATE_GIT_SHA={sha}");
    // Rebuild when HEAD moves; these paths may be absent outside a git checkout.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    Ok(())
}
