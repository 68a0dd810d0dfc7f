//! The benchmark target, and the target of the fleet checks: answers `echo` to its sender as
//! `echo_reply`, sends `broadcast` to every client as `broadcast_reply`, answers `whoami` with
//! the client's address and the process id; ignores every other action.
//!
//! ```text
//! cargo run --release --example echo_server -- 127.0.0.1 5071 [--ws 5072] [--proxy-protocol]
//!                                               [--reuse-port] [--drain-secs 30]
//!                                               [--keepalive-secs N] [--heartbeat-ms N]
//!                                               [--stats-secs N] [--busy-poll-us N]
//!                                               [--tls-cert FILE --tls-key FILE]
//!                                               [--tls-handshake-ms N]
//!                                               [--resume-secs N [--resume-buffer BYTES]]
//! ```
//!
//! Prints `listening on HOST:PORT` once bound and, with `--ws WSPORT`, `websocket on
//! HOST:WSPORT` once the WebSocket port is bound too (port 0 picks a free port; the real one is
//! printed). TCP and WebSocket clients share one world: a broadcast reaches both.
//!
//! - `--proxy-protocol`: every connection (TCP and WebSocket) must start with a PROXY protocol
//!   header, v1 or v2, as HAProxy's `send-proxy`/`send-proxy-v2` send; `whoami` then reports the
//!   address from the header.
//! - `--reuse-port`: `SO_REUSEPORT`, so several processes share the port.
//! - SIGTERM drains: the listening sockets close at once, connected clients are served until
//!   they leave or `--drain-secs` (default 30) pass, then the process exits with status 0.
//!   Ctrl-C (SIGINT) stops at once.
//! - `--keepalive-secs N`: TCP keepalive, first probe after N idle seconds, then every
//!   max(N/3, 1) s, three probes ([`repod::Keepalive::after`]): a vanished client is dropped
//!   within about 2N seconds, with no help from the client.
//! - `--heartbeat-ms N`: a heartbeat ping every N ms; a client silent for three intervals is
//!   closed (repod clients answer by themselves; see `repod::heartbeat`).
//! - `--stats-secs N`: every N seconds, one line
//!   `stats: conns=A accepted=B closed=C msgs_in=D msgs_out=E bytes_in=F bytes_out=G`
//!   (cumulative; messages are frames, the greeting and heartbeats included; bytes are wire
//!   bytes, length prefixes included).
//! - `--busy-poll-us N`: spin up to N µs before sleeping (`Config::busy_poll`): lower latency,
//!   more CPU.
//! - `--notsent-lowat BYTES`: `Config::notsent_lowat` (`TCP_NOTSENT_LOWAT`; default 1 byte, 0
//!   leaves the system's setting).
//! - `--tls-cert FILE --tls-key FILE`: both listeners speak TLS (repod over TLS on PORT, `wss`
//!   on WSPORT), with this certificate chain and key (PEM, as `fullchain.pem` and
//!   `privkey.pem`). SIGHUP re-reads both files and prints `tls reloaded`, or `tls reload
//!   failed: WHY` (the old certificate stays). `--tls-handshake-ms N` bounds a TLS handshake
//!   (default 10000; on the WebSocket port it bounds the TLS handshake and the upgrade).
//! - `--resume-secs N`: sessions on (`Config::resume_window`, see `repod::session`): a client
//!   whose link drops may resume within N seconds, and nothing either side sent is lost or
//!   doubled. Prints `away ID: REASON`, `back ID from ADDR` and `gone ID: REASON` for each
//!   channel whose link dropped. `--resume-buffer BYTES` bounds what a session keeps for
//!   replay (`Config::resume_buffer`, default 1 MiB).

use std::net::SocketAddr;
use std::time::Duration;

use repod::tls::TlsAcceptor;
use repod::{
    msg, ChannelCtx, ChannelHandler, ChannelId, Config, DisconnectReason, Error, Keepalive, Listen,
    Routes, Server, ServerCtx, ServerHandler, WsOptions,
};

struct Echo {
    addr: SocketAddr,
}

/// Says on stdout how a SIGHUP reload went (the tests wait for these lines).
struct Reloads;

impl ServerHandler<Echo> for Reloads {
    fn on_away(&mut self, _: &mut ServerCtx<'_, Echo>, id: ChannelId, reason: &DisconnectReason) {
        println!("away {id}: {reason}");
    }

    fn on_back(&mut self, _: &mut ServerCtx<'_, Echo>, id: ChannelId, addr: SocketAddr) {
        println!("back {id} from {addr}");
    }

    fn on_disconnect(
        &mut self,
        ctx: &mut ServerCtx<'_, Echo>,
        id: ChannelId,
        _: Echo,
        reason: &DisconnectReason,
    ) {
        if ctx.server_stats().went_away > 0 {
            println!("gone {id}: {reason}");
        }
    }

    fn on_tls_reload(&mut self, _: &mut ServerCtx<'_, Echo>, result: Result<(), &Error>) {
        match result {
            Ok(()) => println!("tls reloaded"),
            Err(e) => println!("tls reload failed: {e}"),
        }
    }
}

impl ChannelHandler for Echo {
    type Server = Reloads;

    fn routes(r: &mut Routes<Self>) {
        // The reply copies every other field as raw bytes: no decoding, no allocation.
        r.on("echo", |_, ctx, m| {
            ctx.send(&m.with_action("echo_reply"));
            Ok(())
        });
        r.on("broadcast", |_, ctx, m| {
            ctx.send_to_all(&m.with_action("broadcast_reply"));
            Ok(())
        });
        r.on("whoami", |me, ctx: &mut ChannelCtx<'_, Self>, _| {
            let addr = me.addr.to_string();
            ctx.send(&msg! { "action": "whoami_reply", "addr": addr.as_str(), "pid": std::process::id() });
            Ok(())
        });
    }
}

fn usage(why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "{why}\nusage: echo_server [HOST [PORT]] [--ws WSPORT] [--proxy-protocol] \
             [--reuse-port] [--drain-secs N] [--keepalive-secs N] [--heartbeat-ms N] \
             [--stats-secs N] [--busy-poll-us N] [--notsent-lowat BYTES] \
             [--tls-cert FILE --tls-key FILE] \
             [--tls-handshake-ms N]"
        ),
    )
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> std::io::Result<T>
where
    T::Err: std::fmt::Display,
{
    let value = value.ok_or_else(|| usage(&format!("{flag} needs a value")))?;
    value
        .parse()
        .map_err(|e| usage(&format!("bad {flag} {value:?}: {e}")))
}

fn main() -> std::io::Result<()> {
    let mut positional = Vec::new();
    let (mut ws_port, mut proxy, mut reuse_port, mut drain_secs) = (None, false, false, 30u64);
    let (mut keepalive, mut heartbeat, mut stats_every) = (None, None, None);
    let mut busy_poll = None;
    let (mut tls_cert, mut tls_key, mut tls_handshake_ms) = (None, None, 10_000u64);
    let mut notsent_lowat = Some(repod::config::DEFAULT_NOTSENT_LOWAT);
    let (mut resume_secs, mut resume_buffer) = (None, repod::config::DEFAULT_RESUME_BUFFER);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ws" => ws_port = Some(number::<u16>("--ws", args.next())?),
            "--proxy-protocol" => proxy = true,
            "--reuse-port" => reuse_port = true,
            "--drain-secs" => drain_secs = number("--drain-secs", args.next())?,
            "--keepalive-secs" => keepalive = Some(number::<u64>(&arg, args.next())?),
            "--heartbeat-ms" => heartbeat = Some(number::<u64>(&arg, args.next())?),
            "--stats-secs" => stats_every = Some(number::<f64>(&arg, args.next())?),
            "--busy-poll-us" => busy_poll = Some(number::<u64>(&arg, args.next())?),
            "--tls-cert" => tls_cert = Some(number::<String>(&arg, args.next())?),
            "--tls-key" => tls_key = Some(number::<String>(&arg, args.next())?),
            "--tls-handshake-ms" => tls_handshake_ms = number(&arg, args.next())?,
            "--resume-secs" => resume_secs = Some(number::<f64>(&arg, args.next())?),
            "--resume-buffer" => resume_buffer = number(&arg, args.next())?,
            "--notsent-lowat" => {
                notsent_lowat = Some(number::<u32>(&arg, args.next())?).filter(|&b| b > 0)
            }
            flag if flag.starts_with("--") => return Err(usage(&format!("unknown flag {flag}"))),
            _ => positional.push(arg),
        }
    }
    let host = positional
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = match positional.get(1) {
        Some(p) => p.parse().map_err(|e| usage(&format!("bad port: {e}")))?,
        None => 5071,
    };
    let handshake = Duration::from_millis(tls_handshake_ms);
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some(
            TlsAcceptor::from_pem_files(cert, key)
                .map_err(|e| usage(&e.to_string()))?
                .handshake_timeout(handshake),
        ),
        (None, None) => None,
        _ => return Err(usage("--tls-cert and --tls-key go together")),
    };
    let listen = |port: u16| {
        let l = Listen::on((host.as_str(), port))
            .proxy_protocol(proxy)
            .reuse_port(reuse_port);
        match &tls {
            Some(tls) => l.tls(tls.clone()),
            None => l,
        }
    };
    // The address `on_connect` saw (the PROXY header's, with --proxy-protocol), for `whoami`.
    let mut server = Server::<Echo>::bind_with(listen(port), Reloads, |_, _, addr| Echo { addr })?
        .drain_on_sigterm(Duration::from_secs(drain_secs))
        .config(
            Config::default()
                .keepalive(keepalive.map(|s| Keepalive::after(Duration::from_secs(s))))
                .heartbeat(heartbeat.map(Duration::from_millis))
                .busy_poll(busy_poll.map(Duration::from_micros))
                .notsent_lowat(notsent_lowat)
                .resume_window(resume_secs.map(Duration::from_secs_f64))
                .resume_buffer(resume_buffer),
        );
    println!("listening on {host}:{}", server.local_addr().port());
    if let Some(ws_port) = ws_port {
        let opts = WsOptions::default().handshake_timeout(handshake.max(Duration::from_secs(10)));
        let opts = if tls.is_some() {
            WsOptions::default().handshake_timeout(handshake)
        } else {
            opts
        };
        let bound = server.listen_ws_with(listen(ws_port), opts)?;
        println!("websocket on {host}:{}", bound.port());
    }
    if let Some(secs) = stats_every {
        let handle = server.handle();
        let every = Duration::from_secs_f64(secs.max(0.01));
        std::thread::spawn(move || loop {
            std::thread::sleep(every);
            println!("stats: {}", handle.stats());
        });
    }
    server.launch()
}
