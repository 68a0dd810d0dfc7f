//! A real HAProxy in front of repod servers, for the fleet tests: the configuration written to
//! a temporary directory, HAProxy run in the foreground (`-f cfg -db`) as a [`Proc`], killed on
//! drop.
//!
//! HAProxy is `REPOD_HAPROXY`, else `/usr/sbin/haproxy` (Debian's package `haproxy`) or
//! `haproxy` on `PATH`. Without it the tests print a loud notice and pass, skipped; with `CI`
//! set they fail.
//!
//! Include with `#[path = "support/haproxy.rs"] mod haproxy;` next to `support/proc.rs` (as
//! `proc`).
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::proc::Proc;

/// The HAProxy binary, or `None` (after a loud notice) when there is none and `CI` is not set.
pub fn haproxy() -> Option<PathBuf> {
    crate::proc::real_tool(
        "HAProxy",
        "REPOD_HAPROXY",
        &["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"],
        "haproxy",
        "-v",
        "apt-get install haproxy",
    )
}

/// A port that was free a moment ago on 127.0.0.1 (bound to port 0, then closed).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// A fresh directory under `CARGO_TARGET_TMPDIR`.
pub fn tempdir(what: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{what}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir); // left by an earlier run with the same pid
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The configuration: a `mode tcp` frontend on `frontend`, balancing round robin over
/// `backends` (named `g1`, `g2`...), each sent a PROXY v2 header and health-checked every
/// 200 ms; the stats socket at `stats`. HAProxy's own warnings (a server going DOWN) go to its
/// stderr in the foreground; traffic is not logged.
pub fn config(frontend: SocketAddr, backends: &[SocketAddr], stats: &Path) -> String {
    config_bind(frontend, "", backends, stats)
}

/// As [`config`], with `bind_extra` after the frontend's address (` ssl crt FILE` makes HAProxy
/// terminate TLS).
pub fn config_bind(
    frontend: SocketAddr,
    bind_extra: &str,
    backends: &[SocketAddr],
    stats: &Path,
) -> String {
    let stats = stats.display();
    let mut cfg = format!(
        "\
# Written by the repod fleet tests; run as `haproxy -f haproxy.cfg -db`.
global
    maxconn 4096
    # For `show stat`: the tests read each server's check status (UP, DOWN) here.
    stats socket {stats} mode 600 level admin

defaults
    mode tcp
    # A connection refused by a backend that stopped listening (draining) before the checks
    # marked it down is retried, and its last retry goes to another server.
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 60s
    timeout server 60s

frontend game
    bind {frontend}{bind_extra}
    default_backend game

backend game
    balance roundrobin
    # send-proxy-v2: each connection starts with a v2 header naming the client.
    # check inter 200ms fall 2 rise 1: a TCP connect check every 200 ms; down after 2 failures,
    # up after 1 success. A draining repod server has closed its listening socket, so its
    # checks are refused and it is marked down within about half a second.
    # check-send-proxy: the checks carry a header too. HAProxy 2.6 already sends one on checks
    # when the server line has send-proxy(-v2) and no `port`/`addr` for the check; the option
    # keeps it so if a check port is added. A check's header is a v2 LOCAL one (no client): repod
    # serves it with the socket's own address, as a channel that lives until HAProxy, its check
    # passed on connect, resets the connection. (A check without a header sends no byte at all:
    # repod drops the connection, never a channel, when HAProxy resets it; the connect-only
    # check passes all the same.)
"
    );
    for (i, b) in backends.iter().enumerate() {
        cfg += &format!(
            "    server g{} {b} send-proxy-v2 check check-send-proxy inter 200ms fall 2 rise 1\n",
            i + 1
        );
    }
    cfg
}

/// HAProxy running in the foreground. Killed on drop.
pub struct Haproxy {
    pub proc: Proc,
    /// The frontend.
    pub addr: SocketAddr,
    /// Where the configuration is.
    pub dir: PathBuf,
    pub config: String,
    /// The stats socket.
    pub stats: PathBuf,
}

impl Haproxy {
    /// Starts HAProxy in front of `backends`, on a free port, and waits until its frontend
    /// accepts connections.
    pub fn start(bin: &Path, backends: &[SocketAddr]) -> Haproxy {
        Self::start_bind(bin, "", backends)
    }

    /// As [`start`](Self::start), with `bind_extra` after the frontend's address (see
    /// [`config_bind`]).
    pub fn start_bind(bin: &Path, bind_extra: &str, backends: &[SocketAddr]) -> Haproxy {
        // A port picked free may be taken again before HAProxy binds it: try a few.
        let mut last = String::new();
        for _ in 0..3 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let dir = tempdir("haproxy");
            let mut stats = dir.join("stats.sock");
            if stats.as_os_str().len() > 100 {
                // A Unix socket's path is at most 107 bytes.
                stats = std::env::temp_dir().join(dir.file_name().unwrap());
            }
            let config = config_bind(addr, bind_extra, backends, &stats);
            let path = dir.join("haproxy.cfg");
            std::fs::write(&path, &config).expect("writing haproxy.cfg");
            let mut cmd = Command::new(bin);
            cmd.arg("-f").arg(&path).arg("-db");
            let mut proc = Proc::spawn("haproxy", cmd);
            let deadline = Instant::now() + Duration::from_secs(20);
            while proc.is_running() && Instant::now() < deadline {
                if TcpStream::connect(addr).is_ok() {
                    return Haproxy {
                        proc,
                        addr,
                        dir,
                        config,
                        stats,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last = proc.context();
        }
        panic!("HAProxy did not start\n{last}");
    }

    /// The check status HAProxy has for server `name` of backend `game` (`UP`, `DOWN`,
    /// `UP 1/2` while going down...), from `show stat` on the stats socket.
    pub fn server_status(&self, name: &str) -> String {
        use std::io::Read;
        use std::os::unix::net::UnixStream;
        let mut s = UnixStream::connect(&self.stats)
            .unwrap_or_else(|e| panic!("stats socket: {e}\n{}", self.context()));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        s.read_to_string(&mut csv).expect("show stat");
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .unwrap_or_else(|| panic!("show stat: {csv:?}"))
            .split(',')
            .collect();
        let col = |n: &str| header.iter().position(|h| *h == n).expect(n);
        let (px, sv, status) = (col("pxname"), col("svname"), col("status"));
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.get(px) == Some(&"game") && f.get(sv) == Some(&name))
            .and_then(|f| f.get(status).map(|s| s.to_string()))
            .unwrap_or_else(|| panic!("no server game/{name} in {csv}"))
    }

    /// The configuration and what HAProxy printed, for failure messages.
    pub fn context(&self) -> String {
        format!(
            "--- haproxy.cfg ---\n{}\n{}",
            self.config,
            self.proc.context()
        )
    }
}
