//! Child processes and temporary directories owned by one test.
//!
//! A [`Process`] writes its output to a log file, is stopped by its own process id when
//! dropped, and shows the end of its log when the test failed. Where `setpriv` exists the
//! child also gets a parent-death signal, so the kernel kills it if the test binary itself
//! is killed before the guards run; spawn from the test's own thread for that to hold.
//!
//! A [`TempDir`] is removed when dropped. Directories and network namespaces left by a
//! test binary that was killed are swept by [`sweep_leftovers`] on the next run.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::tools;

/// A child process, stopped by id when dropped.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Starts `program args...` with stdout and stderr appended to `log`.
    pub fn spawn<I, S>(name: &str, program: impl AsRef<OsStr>, args: I, log: &Path) -> Process
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::spawn_with_env(name, program, args, log, &[])
    }

    pub fn spawn_with_env<I, S>(
        name: &str,
        program: impl AsRef<OsStr>,
        args: I,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Process
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let stderr = file.try_clone().expect("log file handle");
        let mut command = match tools::setpriv() {
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command
                    .args(["--pdeathsig", "KILL", "--"])
                    .arg(program.as_ref());
                command
            }
            None => Command::new(program.as_ref()),
        };
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {name} ({}): {e}",
                Path::new(program.as_ref()).display()
            )
        });
        Process {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
            exited: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the process still runs (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log (reads at most the last 64 KiB).
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(mut file) = File::open(&self.log) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; SIGKILL after that.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if !self.is_running() {
            return self.exited;
        }
        let pid = self.pid().to_string();
        eprintln!("sending SIGTERM to {} (pid {pid})", self.name);
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} (pid {pid}) ignored SIGTERM for {timeout:?}; killing",
            self.name
        );
        self.kill();
        self.exited
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Panics with the end of the log unless the process still runs.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exit_status() {
            panic!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ({}):\n{}",
                self.name,
                self.log.display(),
                self.log_tail(25)
            );
        }
    }
}

/// The prefix of everything this harness leaves on the machine while it runs.
pub const PREFIX: &str = "portcullis-e2e";

/// A directory under the system temp dir, removed when dropped; kept when
/// `PORTCULLIS_E2E_KEEP` is set, for looking at logs afterwards.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        sweep_leftovers();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "{PREFIX}-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            super::random_suffix()
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("PORTCULLIS_E2E_KEEP").is_some() {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Whether the test binary with this process id is gone (so what it left is stale). A
/// process with that id that is not a copy of this test binary counts as gone too.
pub fn owner_is_gone(pid: u32) -> bool {
    let comm = |p: &str| std::fs::read_to_string(format!("/proc/{p}/comm")).ok();
    match (comm(&pid.to_string()), comm("self")) {
        (Some(theirs), Some(ours)) => theirs != ours,
        _ => true,
    }
}

/// Removes temp dirs and network namespaces (with the echo processes inside) left by test
/// binaries that were killed before their guards ran. Runs once per test binary.
pub fn sweep_leftovers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let owner = |name: &str, prefix: &str| {
            name.strip_prefix(prefix)?
                .split('-')
                .next()?
                .parse::<u32>()
                .ok()
        };
        let dir_prefix = format!("{PREFIX}-");
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if owner(&name, &dir_prefix).is_some_and(owner_is_gone) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        super::netns::sweep_stale_namespaces();
    });
}
