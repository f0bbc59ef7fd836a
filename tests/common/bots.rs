//! The `tickcast-bots` binary, for tests that run the real load tool.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `tickcast-bots` binary, built by cargo for this test (it belongs to the client
/// crate, so cargo does not build it for the root package's tests on its own).
pub fn bots_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "tickcast-client",
            "--bin",
            "tickcast-bots",
        ])
        .status()
        .expect("running cargo build");
    assert!(status.success(), "cargo build of tickcast-bots: {status}");
    // This test runs from <target>/<profile>/deps/; the binary is in <target>/<profile>/.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    profile_dir.join(format!("tickcast-bots{}", std::env::consts::EXE_SUFFIX))
}
