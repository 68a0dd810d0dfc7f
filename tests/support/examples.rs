//! This crate's examples as child processes, for tests that talk to them as a real user would.
//!
//! [`path`] finds an example's binary next to the test binary, building every example once on
//! first use (`cargo test` builds examples, `cargo test --test NAME` does not). [`Running`]
//! starts one, reads its stdout lines on a thread, and kills it when dropped, so nothing
//! outlives a failing test.
//!
//! Include with `#[path = "support/examples.rs"] mod examples;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The program to run for example `name`: `$REPOD_EXAMPLE_<NAME>` if set (to check a test
/// against another implementation), else the example's binary, built on first use.
pub fn path(name: &str) -> PathBuf {
    let var = format!("REPOD_EXAMPLE_{}", name.to_uppercase());
    if let Some(p) = std::env::var_os(&var) {
        eprintln!(
            "{var}: testing {} instead of the example",
            p.to_string_lossy()
        );
        return PathBuf::from(p);
    }
    built(name)
}

/// The path of example `name`'s binary, built on first use.
pub fn built(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static BUILD: Mutex<()> = Mutex::new(());
    let dir = DIR.get_or_init(|| {
        let _one_at_a_time = BUILD.lock().unwrap_or_else(|p| p.into_inner());
        // This test runs from <target>/[<triple>/]<profile>/deps/.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<profile>/deps/<test>")
            .to_owned();
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("<target>/tmp")
            .to_owned();
        let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cmd.args(["build", "--quiet", "--examples", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
            None => panic!("unexpected test location {}", exe.display()),
        }
        if let Some(triple_dir) = profile_dir.parent().filter(|p| *p != target_dir) {
            cmd.arg("--target")
                .arg(triple_dir.file_name().expect("triple"));
        }
        let out = cmd.output().expect("running cargo build --examples");
        assert!(
            out.status.success(),
            "cargo build --examples failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir.join("examples")
    });
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// A running example. Killed on drop.
pub struct Running {
    pub name: String,
    pub child: Child,
    lines: Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

impl Running {
    /// Starts example `name` with `args`, its stdout read line by line.
    pub fn start(name: &str, args: &[&str]) -> Running {
        let mut child = Command::new(path(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting example {name}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `limit` for a stdout line starting with `prefix`; returns the rest of it.
    pub fn line(&mut self, prefix: &str, limit: Duration) -> String {
        let until = Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(_) => panic!(
                    "{}: no line starting with {prefix:?} within {limit:?}; it printed {:?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// The `HOST:PORT` of a line `<prefix> HOST:PORT`, as a socket address.
    pub fn addr(&mut self, prefix: &str, limit: Duration) -> std::net::SocketAddr {
        let text = self.line(prefix, limit);
        text.parse()
            .unwrap_or_else(|e| panic!("{}: {text:?} is not an address: {e}", self.name))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
