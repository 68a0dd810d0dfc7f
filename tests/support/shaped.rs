//! A slow link for tests: two network namespaces joined by a veth pair, with the direction
//! from the server to the far side shaped to a given rate, behind a small byte-limited queue,
//! as a thin home uplink or a congested mobile link is.
//!
//! - the server side, namespace `repod-shaped-PID-K-srv`, holds `10.214.N.1` on its veth end;
//! - the far side, namespace `repod-shaped-PID-K-far`, holds `10.214.N.2`;
//! - on the server's veth end: `tc qdisc add ... root handle 1: htb default 10`, one class
//!   `1:10 htb rate RATE ceil RATE`, and a `bfifo limit QUEUE` leaf qdisc under it. Only what
//!   the server sends is shaped; what the far side sends (ACKs, inputs) goes at veth speed.
//!
//! `htb` and `bfifo` are used because they are what this kernel has (no `netem`, no `tbf`).
//! A process run inside the server namespace and connecting to `10.214.N.1` goes over its
//! loopback, unshaped: that is the "fast" side of a comparison.
//!
//! [`ShapedLink::create`] sets it up and [`Drop`] deletes both namespaces (the veth pair goes
//! with them) after killing any process still in them, also while a failing test unwinds.
//! Namespaces left by a test process that was killed outright (and the programs it left running
//! in them) are removed by the next [`ShapedLink::create`]: their names carry the PID.
//!
//! Needs root and `ip`/`tc`; [`ShapedLink::create_or_skip`] returns `None` after a loud notice
//! without them, and panics when `CI` is set (as `tests/netns.rs` does).
//!
//! Include with `#[path = "support/proc.rs"] mod proc;` and
//! `#[path = "support/shaped.rs"] mod shaped;` (this uses `crate::proc::Proc`).
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::proc::Proc;

/// The prefix of every namespace this module makes.
const PREFIX: &str = "repod-shaped-";

/// Runs `program args`, returning its failure (with its stderr) as text.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `program args` inside namespace `ns`.
fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Two namespaces, the veth pair between them and the shaping; deleted on drop.
#[derive(Debug)]
pub struct ShapedLink {
    /// The server's namespace.
    pub server_ns: String,
    /// The far (client's) namespace.
    pub far_ns: String,
    /// The server's veth end, where the shaping is.
    pub server_link: String,
    /// The far veth end.
    pub far_link: String,
    /// `10.214.N.1`.
    pub server_ip: String,
    /// `10.214.N.2`.
    pub far_ip: String,
    /// The shaped rate, as `tc` reads it (`32kbit`).
    pub rate: String,
    /// The bfifo's limit, in bytes.
    pub queue_bytes: u32,
}

impl ShapedLink {
    /// Makes the namespaces and the link, shaping the server-to-far direction to `rate` (a `tc`
    /// rate: `32kbit`, `1mbit`) behind a `queue_bytes` bfifo.
    ///
    /// # Errors
    ///
    /// Any `ip` or `tc` step failed (not root, no `ip`...); what was made is deleted.
    pub fn create(rate: &str, queue_bytes: u32) -> Result<ShapedLink, String> {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        remove_stale();
        let (pid, k) = (std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed));
        let n = (pid as usize * 7 + k) % 250 + 1;
        let link = ShapedLink {
            server_ns: format!("{PREFIX}{pid}-{k}-srv"),
            far_ns: format!("{PREFIX}{pid}-{k}-far"),
            server_link: format!("shs{n}"),
            far_link: format!("shf{n}"),
            server_ip: format!("10.214.{n}.1"),
            far_ip: format!("10.214.{n}.2"),
            rate: rate.to_owned(),
            queue_bytes,
        };
        // From here on, a failure drops `link`, which deletes whatever was made.
        link.setup()?;
        Ok(link)
    }

    /// [`create`](Self::create), or `None` after a loud notice when it cannot be done here.
    ///
    /// # Panics
    ///
    /// The link cannot be made and `CI` is set: CI must not pass without running the test.
    pub fn create_or_skip(what: &str, rate: &str, queue_bytes: u32) -> Option<ShapedLink> {
        match ShapedLink::create(rate, queue_bytes) {
            Ok(link) => Some(link),
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "network namespaces and tc (root, ip, tc) are needed in CI: {e}"
                );
                let line = "=".repeat(78);
                let _ = writeln!(
                    std::io::stderr(),
                    "\n{line}\nSKIPPED {what}: no shaped link (needs root, `ip` and `tc` with \
                     htb and bfifo): {e}\n{line}"
                );
                None
            }
        }
    }

    fn setup(&self) -> Result<(), String> {
        run("ip", &["netns", "add", &self.server_ns])?;
        run("ip", &["netns", "add", &self.far_ns])?;
        run(
            "ip",
            &[
                "link",
                "add",
                &self.server_link,
                "netns",
                &self.server_ns,
                "type",
                "veth",
                "peer",
                "name",
                &self.far_link,
                "netns",
                &self.far_ns,
            ],
        )?;
        for (ns, dev, addr) in [
            (&self.server_ns, &self.server_link, &self.server_ip),
            (&self.far_ns, &self.far_link, &self.far_ip),
        ] {
            run_in(
                ns,
                "ip",
                &["addr", "add", &format!("{addr}/30"), "dev", dev],
            )?;
            run_in(ns, "ip", &["link", "set", "lo", "up"])?;
            run_in(ns, "ip", &["link", "set", dev, "up"])?;
        }
        let (ns, dev) = (&self.server_ns, &self.server_link);
        run_in(
            ns,
            "tc",
            &[
                "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10",
            ],
        )?;
        run_in(
            ns,
            "tc",
            &[
                "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate",
                &self.rate, "ceil", &self.rate,
            ],
        )?;
        run_in(
            ns,
            "tc",
            &[
                "qdisc",
                "add",
                "dev",
                dev,
                "parent",
                "1:10",
                "handle",
                "10:",
                "bfifo",
                "limit",
                &self.queue_bytes.to_string(),
            ],
        )
    }

    /// A command that runs `program args` inside namespace `ns` (`ip netns exec NS ...`).
    pub fn command<S: AsRef<OsStr>>(ns: &str, program: &Path, args: &[S]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program).args(args);
        cmd
    }

    /// Spawns `program args` inside namespace `ns` as a [`Proc`] named `name`. `ip netns exec`
    /// execs the program in place, so killing the `Proc` kills the program.
    pub fn spawn<S: AsRef<OsStr>>(ns: &str, name: &str, program: &Path, args: &[S]) -> Proc {
        Proc::spawn(name, Self::command(ns, program, args))
    }

    /// [`spawn`](Self::spawn) in the server's namespace.
    pub fn spawn_server_side<S: AsRef<OsStr>>(
        &self,
        name: &str,
        program: &Path,
        args: &[S],
    ) -> Proc {
        Self::spawn(&self.server_ns, name, program, args)
    }

    /// [`spawn`](Self::spawn) in the far namespace.
    pub fn spawn_far_side<S: AsRef<OsStr>>(&self, name: &str, program: &Path, args: &[S]) -> Proc {
        Self::spawn(&self.far_ns, name, program, args)
    }

    /// `tc -s qdisc show` of the shaped end (sent, dropped, backlog), for reports.
    pub fn qdisc_stats(&self) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server_ns,
                "tc",
                "-s",
                "qdisc",
                "show",
            ])
            .args(["dev", &self.server_link])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            Err(e) => format!("tc -s qdisc show: {e}"),
        }
    }
}

impl Drop for ShapedLink {
    fn drop(&mut self) {
        // A process still in a namespace would outlive it (deleting a namespace only unlinks
        // its name); the test's `Proc`s are normally gone already. Deleting the namespaces
        // deletes the veth pair and its qdiscs with them.
        for ns in [&self.far_ns, &self.server_ns] {
            kill_all_in(ns);
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

/// Kills every process in namespace `ns` (one of this module's: they are the tests').
fn kill_all_in(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<&str> = text.split_whitespace().collect();
    if !pids.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
    }
}

/// Deletes the namespaces of this module whose process is gone (a test killed outright).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "repod-shaped-1234-0-srv (id: 3)"
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_in(name);
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}
