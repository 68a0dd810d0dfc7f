//! A Python with the real `repodnet` package, for the interoperability tests, and the
//! `websockets` client and `msgpack` codec, for the WebSocket ones (`tests/ws_interop.rs`).
//!
//! [`venv`] finds a Python >= 3.12 (`REPOD_PYTHON` if set, else
//! `~/.pyenv/versions/3.12.1/bin/python`, else `python3.12` on `PATH`), creates a virtual
//! environment under the target directory (`target/tmp/pyvenv`) once, installs the pinned
//! [`PACKAGES`] into it, and returns its interpreter. Later runs reuse it. It is safe to call from
//! many test threads at once (a `OnceLock`) and from several test processes at once (a lock
//! directory; the `ready` marker is written last, so a half-built venv is never used).
//!
//! With no such Python, it prints a loud notice and returns `None`: the test skips, passing.
//! When `CI` is set it panics instead, so CI cannot pass without having run the tests.
//!
//! pip honours its usual environment (`PIP_INDEX_URL`, `PIP_FIND_LINKS`, ...) for offline
//! machines.
//!
//! Include with `#[path = "support/python.rs"] mod python;`.
#![allow(dead_code)]

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The Python packages and versions the tests run against: Python repod, the WebSocket client
/// of `tests/ws_interop.rs`, and msgpack (a dependency of `repodnet` too, pinned here so that
/// both sets of tests run against one known version).
pub const PACKAGES: &[&str] = &["repodnet==0.1.2", "websockets==17.4", "msgpack==1.2.4"];

/// The module each of [`PACKAGES`] is imported as, in the same order.
const MODULES: &[&str] = &["repod", "websockets", "msgpack"];

/// [`PACKAGES`] as one line, for messages and the ready marker.
fn packages() -> String {
    PACKAGES.join(" ")
}

/// Written into the venv once the packages are installed and import; its content is checked
/// (so changing a pin rebuilds the venv).
const READY_MARKER: &str = "repod-interop-ready";

/// How long one venv or pip step may take before it is killed.
const STEP_LIMIT: Duration = Duration::from_secs(600);

/// A lock directory older than this is left over from a killed run and is taken over.
const STALE_LOCK: Duration = Duration::from_secs(900);

/// The venv's interpreter, creating the venv on first use; `None` (after a loud notice) when no
/// Python >= 3.12 is available and `CI` is not set.
///
/// # Panics
///
/// No Python was found and `CI` is set; or creating the venv or installing the package failed.
pub fn venv() -> Option<&'static Path> {
    static VENV: OnceLock<Option<PathBuf>> = OnceLock::new();
    VENV.get_or_init(|| {
        let Some(base) = find_base_python() else {
            let msg = "no Python >= 3.12 found (looked at $REPOD_PYTHON, \
                       ~/.pyenv/versions/3.12.1/bin/python and python3.12 on PATH)";
            assert!(
                std::env::var_os("CI").is_none(),
                "{msg}: the Python interop tests cannot run, and CI is set"
            );
            loud(&format!(
                "SKIPPING the Python interop tests: {msg}. Set REPOD_PYTHON to a Python 3.12+ \
                 interpreter to run them."
            ));
            return None;
        };
        let dir = venv_dir();
        match prepare(&base, &dir) {
            Ok(py) => Some(py),
            Err(e) => panic!(
                "could not set up the Python venv at {} with {} (from {}): {e}",
                dir.display(),
                packages(),
                base.display()
            ),
        }
    })
    .as_deref()
}

/// Writes straight to stderr: test output capture only applies to `eprintln!`, and a skip must
/// be seen.
pub fn loud(text: &str) {
    let line = "=".repeat(78);
    let _ = writeln!(io::stderr(), "\n{line}\n{text}\n{line}");
}

/// Where the venv lives: under Cargo's target directory (which honours `CARGO_TARGET_DIR`).
pub fn venv_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyvenv")
}

fn venv_python(dir: &Path) -> PathBuf {
    if cfg!(windows) {
        dir.join("Scripts").join("python.exe")
    } else {
        dir.join("bin").join("python")
    }
}

fn find_base_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REPOD_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            is_recent_python(&p),
            "REPOD_PYTHON={} is not a runnable Python >= 3.12",
            p.display()
        );
        return Some(p);
    }
    let mut candidates = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".pyenv/versions/3.12.1/bin/python"));
    }
    candidates.push(PathBuf::from("python3.12"));
    candidates.into_iter().find(|p| is_recent_python(p))
}

fn is_recent_python(python: &Path) -> bool {
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)",
    ]);
    matches!(run(cmd, Duration::from_secs(60)), Ok(out) if out.status.success())
}

/// Whether `dir` holds a finished venv: the marker is there and the pinned packages import.
fn is_ready(dir: &Path) -> bool {
    let marker = fs::read_to_string(dir.join(READY_MARKER)).unwrap_or_default();
    marker.trim() == packages() && imports(dir)
}

/// Whether the venv's Python imports every one of [`MODULES`], from the pinned versions.
fn imports(dir: &Path) -> bool {
    let pins: Vec<String> = PACKAGES
        .iter()
        .map(|p| {
            let (name, version) = p.split_once("==").expect("pinned as NAME==VERSION");
            format!("('{name}', '{version}')")
        })
        .collect();
    let mut cmd = Command::new(venv_python(dir));
    cmd.args([
        "-c",
        &format!(
            "import {}, importlib.metadata as m\n\
             for name, version in [{}]:\n    \
             assert m.version(name) == version, (name, m.version(name))",
            MODULES.join(", "),
            pins.join(", ")
        ),
    ]);
    matches!(run(cmd, Duration::from_secs(60)), Ok(out) if out.status.success())
}

fn prepare(base: &Path, dir: &Path) -> Result<PathBuf, String> {
    if is_ready(dir) {
        return Ok(venv_python(dir));
    }
    let parent = dir.parent().ok_or("the venv directory has no parent")?;
    fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let _lock = DirLock::acquire(&dir.with_extension("lock"))?;
    // Another process may have finished it while this one waited for the lock.
    if is_ready(dir) {
        return Ok(venv_python(dir));
    }
    loud(&format!(
        "creating the Python venv for the interop tests at {} (from {}, installing {})",
        dir.display(),
        base.display(),
        packages()
    ));
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing the broken venv: {e}")),
    }
    let mut venv = Command::new(base);
    venv.arg("-m").arg("venv").arg(dir);
    checked(venv, "python -m venv")?;
    let py = venv_python(dir);
    let mut pip = Command::new(&py);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--quiet",
    ])
    .args(PACKAGES);
    checked(pip, "pip install")?;
    if !imports(dir) {
        return Err(format!(
            "{} were installed but `import {}` fails",
            packages(),
            MODULES.join(", ")
        ));
    }
    // The marker is written last, through a rename, so it only exists for a finished venv.
    let tmp = dir.join(format!("{READY_MARKER}.tmp"));
    fs::write(&tmp, packages()).map_err(|e| format!("writing the ready marker: {e}"))?;
    fs::rename(&tmp, dir.join(READY_MARKER))
        .map_err(|e| format!("writing the ready marker: {e}"))?;
    Ok(py)
}

fn checked(cmd: Command, what: &str) -> Result<(), String> {
    let out = run(cmd, STEP_LIMIT).map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `cmd` to completion with its output captured, killing it after `limit`.
pub fn run(cmd: Command, limit: Duration) -> io::Result<Output> {
    crate::proc::run_bounded(cmd, &[], limit)
}

/// A lock held by creating a directory (atomic on every platform), removed on drop.
pub struct DirLock {
    path: PathBuf,
}

impl DirLock {
    /// Waits (boundedly) for the lock at `path`, taking over one left by a killed run.
    pub fn acquire(path: &Path) -> Result<Self, String> {
        let deadline = Instant::now() + STEP_LIMIT * 2;
        loop {
            match fs::create_dir(path) {
                Ok(()) => {
                    return Ok(DirLock {
                        path: path.to_owned(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let age = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    if age.is_some_and(|a| a > STALE_LOCK) {
                        // Left by a run that was killed: take it over.
                        let _ = fs::remove_dir(path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(format!("timed out waiting for the lock {}", path.display()));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(format!("creating the lock {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.path);
    }
}
