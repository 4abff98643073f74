//! JsSIP for the browser tests: installed from npm into
//! `target/test-tools/jssip` on first use (pinned, never committed) and
//! bundled for a page with esbuild.

use std::path::PathBuf;
use std::process::Command;

const JSSIP: &str = "jssip@3.13.8";
const ESBUILD: &str = "esbuild@0.24.2";

/// The bundled library (a script defining `JsSIP`).
pub fn bundle() -> PathBuf {
    super::require("npm", "npm");
    // The tests of one binary run at once: one installs, the others wait
    // for it (two `npm install`s in one directory fail each other).
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = super::root().join("target/test-tools/jssip");
    let out = dir.join("jssip.js");
    if out.exists() {
        return out;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let npm = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            JSSIP,
            ESBUILD,
        ])
        .current_dir(&dir)
        .status()
        .expect("npm");
    assert!(npm.success(), "npm install {JSSIP} {ESBUILD} failed");
    let tmp = dir.join("jssip.js.part");
    let esbuild = Command::new(dir.join("node_modules/.bin/esbuild"))
        .args([
            "node_modules/jssip/lib/JsSIP.js",
            "--bundle",
            "--global-name=JsSIP",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", tmp.display()))
        .current_dir(&dir)
        .status()
        .expect("esbuild");
    assert!(esbuild.success(), "bundling JsSIP failed");
    std::fs::rename(&tmp, &out).unwrap();
    out
}
