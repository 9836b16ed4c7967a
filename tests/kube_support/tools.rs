//! Where the Kubernetes binaries and the `ip` tool are. Missing tools fail the test with the
//! command that installs them; they never make it skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root: the controller crate's parent.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the controller crate sits inside the repository")
        .to_path_buf()
}

/// The `portcullis` binary under test.
pub fn portcullis() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// The directory holding kube-apiserver, etcd and kubectl, as `hack/k8s-tools.sh` reports
/// it; panics (never skips) when the binaries have not been built.
pub fn k8s_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = repo_root().join("hack/k8s-tools.sh");
        let output = Command::new(&script)
            .arg("--print-bin-dir")
            .current_dir(repo_root())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} --print-bin-dir failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        for binary in ["kube-apiserver", "etcd"] {
            assert!(
                dir.join(binary).is_file(),
                "{binary} is missing from {}: run hack/k8s-tools.sh (from the repository root) \
                 to build the pinned Kubernetes binaries, then run the tests again",
                dir.display()
            );
        }
        dir
    })
}

pub fn kube_apiserver() -> PathBuf {
    k8s_bin_dir().join("kube-apiserver")
}

pub fn etcd() -> PathBuf {
    k8s_bin_dir().join("etcd")
}

/// The `ip` command (iproute2), checked once.
pub fn ip() -> &'static str {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let works = Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            works,
            "the `ip` command is missing: run `apt-get install iproute2` (the tests put their \
             backends in a network namespace)"
        );
    });
    "ip"
}

/// `setpriv` (util-linux) lets the kernel kill our children if the test binary dies before
/// its guards run; without it, the guards alone clean up.
pub fn setpriv() -> Option<&'static str> {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        Command::new("setpriv")
            .arg("--help")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--pdeathsig"))
    });
    found.then_some("setpriv")
}

/// Runs a command to completion and returns its stdout, or a message with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
