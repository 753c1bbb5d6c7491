//! Finding the `kv-server` binary the tests run.
//!
//! 1. `KV_SERVER_BIN`, if set, is used as it is.
//! 2. Otherwise the binary is the one in this test executable's profile
//!    directory: a test runs as `target/<profile>/deps/<test>-<hash>`, so
//!    the server is `target/<profile>/kv-server`. `cargo test --workspace`
//!    builds it (kv-server has integration tests, which need its binary), but
//!    `cargo test -p cluster-tests` does not: cargo builds no binaries of
//!    another package for a test (artifact dependencies are unstable). So
//!    when the binary is missing, or older than any source it is built from
//!    (`Cargo.toml`, `Cargo.lock`, and the manifests and `src/` trees of
//!    kv-server, raft-core and wal), the harness runs
//!    `cargo build -p kv-server --bin kv-server` for that profile and
//!    target directory, once per test process and bounded in time.
//!
//! Judgement call: cargo could simply be run every time (a no-op build is
//! quick), but `cargo build -p kv-server` resolves dependency features for
//! kv-server alone, which differ from the workspace-wide resolution of
//! `cargo test --workspace` (dev-dependencies of other members turn on more
//! features of serde_json, tracing, memchr, ...). On a fresh checkout, as in
//! CI, that would compile a second copy of those crates and of kv-server,
//! for nothing. The modification-time check builds only when the binary
//! may really be stale. If cargo fails but a binary exists, that binary is
//! used with a warning.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// How long building kv-server may take (a cold debug build of the
/// workspace on two cores takes about three minutes).
const BUILD_LIMIT: Duration = Duration::from_secs(600);

/// The path of the `kv-server` binary, built if needed (once per process).
///
/// # Panics
/// If `KV_SERVER_BIN` names no file, or the binary can be neither built nor
/// found.
pub fn kv_server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(locate)
}

fn locate() -> PathBuf {
    if let Some(p) = std::env::var_os("KV_SERVER_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "KV_SERVER_BIN={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<exe>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("kv-server{}", std::env::consts::EXE_SUFFIX));
    if is_fresh(&bin) {
        return bin;
    }
    match build(profile_dir) {
        Ok(()) => {}
        Err(e) if bin.is_file() => {
            eprintln!(
                "warning: could not build kv-server ({e}); using the existing {}",
                bin.display()
            );
        }
        Err(e) => panic!("kv-server binary {} is missing and {e}", bin.display()),
    }
    assert!(
        bin.is_file(),
        "cargo built kv-server but {} is missing",
        bin.display()
    );
    bin
}

/// Whether `bin` exists and is newer than every source it is built from.
fn is_fresh(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = vec![root.join("Cargo.toml"), root.join("Cargo.lock")];
    for krate in ["kv-server", "raft-core", "wal"] {
        stack.push(root.join(krate).join("Cargo.toml"));
        stack.push(root.join(krate).join("src"));
    }
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else if let Ok(m) = meta.modified() {
            newest = newest.max(m);
        }
    }
    newest <= built
}

/// Runs `cargo build -p kv-server --bin kv-server` for the profile whose
/// output directory is `profile_dir`.
fn build(profile_dir: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("cargo"));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let target_dir = profile_dir.parent().ok_or("no target directory")?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("no profile directory name")?;
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .args(["-p", "kv-server", "--bin", "kv-server"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("running {} failed: {e}", cargo.display()))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("cargo build -p kv-server failed: {status}")),
            Ok(None) if started.elapsed() > BUILD_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "cargo build -p kv-server took over {BUILD_LIMIT:?}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for cargo failed: {e}")),
        }
    }
}
