//! What the tests that drive headless Chromium share: where the browser is, and whether
//! everything they need is installed.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Debian's Chromium, which the tests drive through puppeteer-core (never a download).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long a browser scenario may run in all; node closes the browser and exits past it.
pub const SCENARIO_DEADLINE: Duration = Duration::from_secs(60);

/// The repository root (where `web/` is).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether Chromium, node and puppeteer-core are installed. Under `CI=true` a missing
/// one fails `test`, naming what to install; elsewhere the test prints a `SKIPPED:` line
/// saying that `subject` (what it checks) was not tested, and returns false.
pub fn browser_available(test: &str, subject: &str) -> bool {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (apt-get install -y chromium)"));
    }
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node {
        missing.push("node (apt-get install -y nodejs)".to_owned());
    }
    if !repo()
        .join("web/node_modules/puppeteer-core/package.json")
        .exists()
    {
        missing.push("web/node_modules/puppeteer-core (npm ci --prefix web)".to_owned());
    }
    if missing.is_empty() {
        return true;
    }
    let what = format!(
        "{subject} was not tested in a browser: missing {}",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {what}");
    }
    // Written to the stderr handle itself, which the test harness does not capture
    // (it captures `eprintln!`), so that the skip shows in a passing run.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {what}");
    false
}
