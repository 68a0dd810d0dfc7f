//! Child processes for tests that talk to real programs (Python peers, this crate's examples):
//! stdout read line by line on a thread, stderr kept for failure messages, stdin for commands;
//! killed on drop, so nothing outlives a failing test. Every wait is bounded.
//!
//! Include with `#[path = "support/proc.rs"] mod proc;` next to `support/examples.rs` (as
//! `examples`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on any single wait: generous, for a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// The Python scripts of the tests.
pub fn tests_python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// A child process whose stdout is read line by line on a thread. Killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
    /// Lines before this index were consumed by `expect`.
    pub cursor: usize,
    /// The end of stdout was reached.
    eof: bool,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']).to_owned();
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().expect("piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = err_pipe.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Proc {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            cursor: 0,
            eof: false,
            stderr,
        }
    }

    /// Runs `script` (in `tests/python/`) with the venv's interpreter.
    pub fn python(py: &Path, script: &str, args: &[&str]) -> Proc {
        let mut cmd = Command::new(py);
        cmd.arg("-u")
            .arg(script)
            .args(args)
            .current_dir(tests_python_dir())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONUTF8", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("REPOD_EXIT_ON_STDIN_EOF", "1");
        Proc::spawn(&format!("python {script}"), cmd)
    }

    /// Runs one of this crate's examples (built on first use).
    pub fn example(name: &str, args: &[&str]) -> Proc {
        let mut cmd = Command::new(crate::examples::path(name));
        cmd.args(args);
        Proc::spawn(name, cmd)
    }

    /// What the process printed so far, for failure messages.
    pub fn context(&self) -> String {
        let stderr = self.stderr.lock().unwrap();
        let stderr = String::from_utf8_lossy(&stderr);
        let tail: String = {
            let chars: Vec<char> = stderr.chars().collect();
            chars[chars.len().saturating_sub(4000)..].iter().collect()
        };
        let mut shown: Vec<&str> = self.seen.iter().map(|l| short(l)).collect();
        if shown.len() > 60 {
            shown.drain(..shown.len() - 60);
        }
        format!(
            "--- {} stdout (last lines) ---\n{}\n--- {} stderr (tail) ---\n{}",
            self.name,
            shown.join("\n"),
            self.name,
            tail
        )
    }

    /// Reads one more line into `seen`, waiting until `deadline`. False at EOF or timeout.
    pub fn read_line(&mut self, deadline: Instant) -> bool {
        if self.eof {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line);
                true
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
        }
    }

    /// Waits for the next line (after those already consumed) that satisfies `pred`, skipping
    /// others, and returns it.
    pub fn expect_by(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.expect_by_within(what, pred, WAIT)
    }

    /// As [`expect_by`](Self::expect_by), waiting up to `limit`.
    pub fn expect_by_within(
        &mut self,
        what: &str,
        pred: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.seen[self.cursor..].iter().position(|l| pred(l)) {
                let i = self.cursor + i;
                self.cursor = i + 1;
                return self.seen[i].clone();
            }
            if !self.read_line(deadline) {
                let why = if self.eof {
                    "its output ended"
                } else {
                    "timed out"
                };
                panic!(
                    "{}: waiting for {what}: {why}\n{}",
                    self.name,
                    self.context()
                );
            }
        }
    }

    /// Waits for a line equal to `line`.
    pub fn expect(&mut self, line: &str) -> String {
        self.expect_by(&format!("{line:?}"), |l| l == line)
    }

    /// Waits up to `limit` for the next line that is `word` or starts with `word `, and returns
    /// the rest of it. A `fail ...` line (the Python scripts' way to report) ends the wait at
    /// once.
    pub fn expect_within(&mut self, word: &str, limit: Duration) -> String {
        let line = self.expect_by_within(
            &format!("{word:?}"),
            |l| l == word || l.starts_with(&format!("{word} ")) || l.starts_with("fail "),
            limit,
        );
        if line.starts_with("fail ") && !word.starts_with("fail") {
            panic!(
                "{}: failed while waiting for {word:?}: {}\n{}",
                self.name,
                short(&line),
                self.context()
            );
        }
        line.strip_prefix(word)
            .unwrap_or("")
            .trim_start()
            .to_owned()
    }

    /// [`expect_within`](Self::expect_within) with the usual bound.
    pub fn expect_word(&mut self, word: &str) -> String {
        self.expect_within(word, WAIT)
    }

    pub fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: writing to stdin: {e}\n{}", self.name, self.context()));
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to exit and for the end of its output; returns its status.
    pub fn finish(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => panic!("{}: did not exit in time\n{}", self.name, self.context()),
                Err(e) => panic!("{}: waiting: {e}", self.name),
            }
        };
        while self.read_line(deadline) {}
        status
    }

    /// Waits for a successful exit.
    pub fn finish_ok(&mut self) {
        let status = self.finish();
        assert!(
            status.success(),
            "{}: exited with {status}\n{}",
            self.name,
            self.context()
        );
    }

    /// The stdout lines starting with `word `, without it.
    pub fn reports(&self, word: &str) -> Vec<String> {
        let prefix = format!("{word} ");
        self.seen
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn short(s: &str) -> &str {
    match s.char_indices().nth(300) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The port at the end of `HOST:PORT`.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// Headless Chromium, for the pages' tests (`tests/browser.rs`, `tests/arena.rs`).
pub fn chromium() -> Option<PathBuf> {
    real_tool(
        "Chromium",
        "REPOD_CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        "chromium",
        "--version",
        "apt-get install chromium",
    )
}

/// A real program the tests run (Chromium, HAProxy): `$env_var` if set, else the first of
/// `paths` that exists, else `name` if it runs from `PATH` with `version_flag`. Without it:
/// `None` after a loud notice, so the tests skip; a panic when `CI` is set, so CI cannot pass
/// without having run them.
pub fn real_tool(
    what: &str,
    env_var: &str,
    paths: &[&str],
    name: &str,
    version_flag: &str,
    install: &str,
) -> Option<PathBuf> {
    let candidates = std::env::var_os(env_var)
        .map(PathBuf::from)
        .into_iter()
        .chain(paths.iter().map(PathBuf::from));
    for c in candidates {
        if c.exists() {
            return Some(c);
        }
    }
    let on_path = Command::new(name).arg(version_flag).output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return Some(PathBuf::from(name));
    }
    let msg = format!(
        "no {what} found (looked at ${env_var}, {}, {name} on PATH)",
        paths.join(", ")
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "{msg}: the {what} tests cannot run, and CI is set"
    );
    let line = "=".repeat(78);
    let _ = writeln!(
        std::io::stderr(),
        "\n{line}\nSKIPPING the {what} tests: {msg}. `{install}`.\n{line}"
    );
    None
}

/// Runs `cmd` to completion with `input` on stdin and its output captured, killing it after
/// `limit`.
pub fn run_bounded(
    mut cmd: Command,
    input: &[u8],
    limit: Duration,
) -> std::io::Result<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let in_t = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        // Dropped here: the child sees the end of its input.
    });
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("still running after {limit:?}; killed"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = in_t.join();
    Ok(std::process::Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}

/// Starts headless Chromium on `url` with a fresh profile, dumping the DOM once the page is
/// done, with `extra` flags (`--ignore-certificate-errors-spki-list=...`, say). The flags keep
/// it off the network this machine does not have, and its virtual clock lets a page that
/// waits for the network run to its end.
pub fn start_chromium(browser: &Path, url: &str, extra: &[String]) -> Child {
    let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "chromium-profile-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    std::fs::create_dir_all(&profile).expect("chromium profile dir");
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=60000",
        ])
        .args(extra)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium")
}

/// Waits for Chromium (killing it after 90 s) while running `meanwhile`; returns the DOM.
pub fn finish_chromium(mut child: Child, mut meanwhile: impl FnMut()) -> String {
    let limit = Duration::from_secs(90);
    let until = Instant::now() + limit;
    loop {
        meanwhile();
        if child.try_wait().expect("chromium status").is_some() {
            break;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("chromium output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with `id` in a dumped DOM (up to its first child tag).
pub fn text_of(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let start = at + dom[at..].find('>').expect("tag end") + 1;
    let end = start + dom[start..].find('<').unwrap_or(dom.len() - start);
    dom[start..end].trim().to_owned()
}
