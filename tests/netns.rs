//! A real black hole: a client's network vanishes without a FIN or a reset, and the server
//! notices in bounded time, frees the slot, and serves everyone else as before.
//!
//! The test builds its own little network: two network namespaces joined by a veth pair
//! (10.213.N.1 for the servers, 10.213.N.2 for the far client), made with `ip netns` and
//! `ip link`, and deleted at the end. Two `echo_server` processes run in the first namespace:
//! one with TCP keepalive only (`--keepalive-secs 1`: probes after 1 s, every 1 s, 3 of them),
//! one with heartbeats (`--heartbeat-ms 300`, so a 900 ms timeout). Each has two Python repod
//! clients that answer heartbeats: one across the veth pair, one local to the servers'
//! namespace. Then the far side's link goes down: packets to the far clients are silently
//! dropped, exactly what a dead Wi-Fi or an expired NAT mapping does. Each server must drop its
//! far client (keepalive within about 4 s, heartbeats within about 1 s) and keep its near one.
//!
//! Needs root (`ip netns`) and the Python venv; skips loudly without them, fails when `CI` is
//! set.

#[path = "support/examples.rs"]
mod examples;
#[path = "support/proc.rs"]
mod proc;
#[path = "support/python.rs"]
mod python;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proc::Proc;

/// Runs `ip ARGS`, returning whether it succeeded (output kept for the failure message).
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces and the veth pair between them; deleted on drop.
struct Net {
    near: String,
    far: String,
    far_link: String,
    server_ip: String,
    client_ip: String,
}

impl Net {
    fn create() -> Result<Net, String> {
        // Tests in this file run in parallel: each network of its own names and subnet.
        static NETS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = (std::process::id() + 97 * k) % 250 + 1;
        let net = Net {
            near: format!("repod-near-{}-{k}", std::process::id()),
            far: format!("repod-far-{}-{k}", std::process::id()),
            far_link: format!("rpdf{n}"),
            server_ip: format!("10.213.{n}.1"),
            client_ip: format!("10.213.{n}.2"),
        };
        let near_link = format!("rpdn{n}");
        ip(&["netns", "add", &net.near])?;
        ip(&["netns", "add", &net.far])?;
        ip(&[
            "link",
            "add",
            &near_link,
            "netns",
            &net.near,
            "type",
            "veth",
            "peer",
            "name",
            &net.far_link,
            "netns",
            &net.far,
        ])?;
        let in_ns = |ns: &str, args: &[&str]| {
            let mut all = vec!["netns", "exec", ns, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        in_ns(
            &net.near,
            &[
                "addr",
                "add",
                &format!("{}/30", net.server_ip),
                "dev",
                &near_link,
            ],
        )?;
        in_ns(
            &net.far,
            &[
                "addr",
                "add",
                &format!("{}/30", net.client_ip),
                "dev",
                &net.far_link,
            ],
        )?;
        for ns in [&net.near, &net.far] {
            in_ns(ns, &["link", "set", "lo", "up"])?;
        }
        in_ns(&net.near, &["link", "set", &near_link, "up"])?;
        in_ns(&net.far, &["link", "set", &net.far_link, "up"])?;
        Ok(net)
    }

    /// A command that runs `program` inside namespace `ns`.
    fn exec(ns: &str, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }

    /// The black hole: the far end's link goes down, with nothing sent.
    fn cut(&self) -> Result<(), String> {
        self.far_link_state("down")
    }

    /// The far end's link comes back up.
    fn heal(&self) -> Result<(), String> {
        self.far_link_state("up")
    }

    fn far_link_state(&self, state: &str) -> Result<(), String> {
        let far = [
            self.far.as_str(),
            "ip",
            "link",
            "set",
            self.far_link.as_str(),
        ];
        ip(&[&["netns", "exec"][..], &far[..], &[state][..]].concat())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting the namespaces deletes the veth pair with them.
        let _ = ip(&["netns", "del", &self.far]);
        let _ = ip(&["netns", "del", &self.near]);
    }
}

/// The figures of a `stats:` line, as (conns, closed).
fn figures(line: &str) -> (u64, u64) {
    let get = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    (get("conns="), get("closed="))
}

/// Waits for a stats line of `server` that satisfies `cond`; returns when it came.
fn wait_stats(server: &mut Proc, what: &str, limit: Duration, cond: impl Fn(u64, u64) -> bool) {
    server.expect_by_within(
        what,
        |l| {
            l.strip_prefix("stats: ").is_some_and(|s| {
                let (conns, closed) = figures(s);
                cond(conns, closed)
            })
        },
        limit,
    );
}

/// The two namespaces, or `None` (the test skips, loudly) where they cannot be made; in CI
/// they must be.
fn net_or_skip(test: &str) -> Option<Net> {
    match Net::create() {
        Ok(net) => Some(net),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "network namespaces are needed in CI: {e}"
            );
            python::loud(&format!("SKIPPED {test}: no network namespaces ({e})"));
            None
        }
    }
}

#[test]
fn a_vanished_client_is_found_and_its_slot_freed() {
    let Some(py) = python::venv() else { return };
    let Some(net) = net_or_skip("the black-hole test") else {
        return;
    };
    let echo = examples::path("echo_server");
    let script = proc::tests_python_dir().join("heartbeat_client.py");
    let start_server = |flags: &[&str]| {
        let mut cmd = Net::exec(&net.near, &echo);
        // Every address of the namespace: the veth one for the far client, loopback for the near.
        cmd.args(["0.0.0.0", "0", "--stats-secs", "0.1"])
            .args(flags);
        let mut p = Proc::spawn(&format!("echo_server {}", flags.join(" ")), cmd);
        let line = p.expect_word("listening on");
        (p, proc::port_of(&line).to_string())
    };
    let client = |ns: &str, host: &str, port: &str| {
        let mut cmd = Net::exec(ns, py);
        cmd.arg("-u")
            .arg(&script)
            .args([host, port, "answer"])
            .current_dir(proc::tests_python_dir())
            .env("REPOD_EXIT_ON_STDIN_EOF", "1");
        let mut p = Proc::spawn(&format!("python client in {ns}"), cmd);
        p.expect_within("event connected", Duration::from_secs(20));
        p
    };

    let (mut kernel, kernel_port) = start_server(&["--keepalive-secs", "1"]);
    let (mut beats, beats_port) = start_server(&["--heartbeat-ms", "300", "--keepalive-secs", "1"]);
    let _far_k = client(&net.far, &net.server_ip, &kernel_port);
    let mut near_k = client(&net.near, "127.0.0.1", &kernel_port);
    let _far_b = client(&net.far, &net.server_ip, &beats_port);
    let mut near_b = client(&net.near, "127.0.0.1", &beats_port);
    let limit = Duration::from_secs(20);
    wait_stats(&mut kernel, "2 players", limit, |c, _| c == 2);
    wait_stats(&mut beats, "2 players", limit, |c, _| c == 2);
    near_b.expect_word("ping");

    net.cut().expect("taking the far link down");
    let cut_at = Instant::now();

    wait_stats(&mut beats, "the far client dropped", limit, |c, closed| {
        c == 1 && closed == 1
    });
    let by_heartbeat = cut_at.elapsed();
    wait_stats(&mut kernel, "the far client dropped", limit, |c, closed| {
        c == 1 && closed == 1
    });
    let by_keepalive = cut_at.elapsed();
    eprintln!("found after {by_heartbeat:?} (heartbeats) and {by_keepalive:?} (keepalive)");
    // Timeout 900 ms + one 300 ms interval; keepalive 1 s + 3 x 1 s. Generous slack for a
    // loaded machine, but far below what the kernel does unasked (two hours and more).
    assert!(by_heartbeat < Duration::from_secs(5), "{by_heartbeat:?}");
    assert!(by_keepalive >= Duration::from_secs(2), "{by_keepalive:?}");
    assert!(by_keepalive < Duration::from_secs(15), "{by_keepalive:?}");

    // The near players never noticed: still connected, still pinged and answering.
    for (server, near) in [(&mut kernel, &mut near_k), (&mut beats, &mut near_b)] {
        assert!(near.is_running(), "{}", near.context());
        assert!(near.reports("event").iter().all(|e| e != "disconnected"));
        let settle = Duration::from_secs(1);
        std::thread::sleep(settle);
        wait_stats(server, "one player left", limit, |c, closed| {
            c == 1 && closed == 1
        });
    }
    near_b.expect_word("ping");
}

/// A black hole that heals: with sessions on (`echo_server --resume-secs`), a player across the
/// veth pair (`examples/steady_echo.rs`, 100 numbered echoes a second, heartbeats on) loses its
/// link for 3 s: nothing is sent or refused meanwhile, so both sides find out by heartbeats.
/// When the link is back, the client resumes its session and every reply arrives once, in
/// order; the server's channel was away and came back.
#[test]
fn a_black_hole_that_heals_loses_nothing() {
    let Some(net) = net_or_skip("the healing black-hole test") else {
        return;
    };
    let mut cmd = Net::exec(&net.near, &examples::path("echo_server"));
    cmd.args([
        "0.0.0.0",
        "0",
        "--resume-secs",
        "30",
        "--heartbeat-ms",
        "300",
    ]);
    let mut server = Proc::spawn("echo_server --resume-secs 30", cmd);
    let port = proc::port_of(&server.expect_word("listening on")).to_string();
    let mut cmd = Net::exec(&net.far, &examples::path("steady_echo"));
    cmd.arg(format!("{}:{port}", net.server_ip)).args([
        "--rate",
        "100",
        "--secs",
        "8",
        "--heartbeat-ms",
        "300",
    ]);
    let mut player = Proc::spawn("steady_echo", cmd);
    player.expect_within("progress", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    net.cut().expect("taking the far link down");
    std::thread::sleep(Duration::from_secs(3));
    net.heal().expect("bringing the far link up");
    let done = player.expect_within("done", Duration::from_secs(60));
    assert!(
        done.contains("in_order=true"),
        "{done}\n{}",
        player.context()
    );
    assert!(!done.contains("resumed=0"), "{done}\n{}", player.context());
    player.finish_ok();
    let away = server.expect_within("away", Duration::from_secs(5));
    let back = server.expect_within("back", Duration::from_secs(5));
    assert_eq!(
        away.split(':').next(),
        back.split(' ').next(),
        "{away} / {back}"
    );
}
