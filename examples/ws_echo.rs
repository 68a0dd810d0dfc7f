//! A raw WebSocket echo server for conformance suites (Autobahn|Testsuite): every text or
//! binary message is sent back unchanged, pings are answered, closes are echoed.
//!
//! ```text
//! cargo run --release --example ws_echo -- 127.0.0.1 9001
//! ```
//!
//! Prints `ws_echo on HOST:PORT` once bound. It runs repod's sans-IO WebSocket layer
//! (`repod::ws`) over blocking sockets, one thread per connection: a conformance suite opens
//! one connection at a time, and the point is the codec, not the reactor (which serves
//! WebSocket players in `echo_server --ws`).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::time::Duration;

use repod::ws::codec::encode_close;
use repod::ws::handshake::{self, parse_request, write_accept, write_reject};
use repod::ws::{encode_frame, Opcode, Role, WsDecoder, WsEvent};
use repod::WsOptions;

/// Autobahn's case 9 sends messages of up to 16 MiB.
const MAX_MESSAGE: usize = 64 << 20;

fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let opts = WsOptions::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut out = Vec::new();
    // The opening handshake.
    let rest = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if !handshake::worth_parsing(&head, n) && head.len() <= repod::ws::DEFAULT_MAX_HANDSHAKE_LEN
        {
            continue;
        }
        match parse_request(&head, &opts) {
            Ok(Some(req)) => {
                write_accept(&mut out, &req.accept);
                stream.write_all(&out)?;
                out.clear();
                break head.split_off(req.len);
            }
            Ok(None) => continue,
            Err(e) => {
                write_reject(&mut out, &e);
                stream.write_all(&out)?;
                return Ok(());
            }
        }
    };
    let mut decoder = WsDecoder::new(Role::Server, MAX_MESSAGE);
    let mut input = rest;
    loop {
        let mut closing = false;
        let result = decoder.decode(&mut input, |event| {
            match event {
                WsEvent::Binary(b) => encode_frame(&mut out, Opcode::Binary, true, b, None),
                WsEvent::Text(t) => encode_frame(&mut out, Opcode::Text, true, t.as_bytes(), None),
                WsEvent::Ping(p) => encode_frame(&mut out, Opcode::Pong, true, p, None),
                WsEvent::Pong(_) => {}
                WsEvent::Close { code, .. } => {
                    encode_close(&mut out, code.unwrap_or(1000), "", None);
                    closing = true;
                }
            }
            ControlFlow::Continue(())
        });
        if let Err(e) = result {
            encode_close(&mut out, e.close_code(), &e.to_string(), None);
            closing = true;
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        if closing {
            // The server closes the TCP connection first (RFC 6455 §7.1.1).
            let _ = stream.shutdown(std::net::Shutdown::Write);
            // Read until the client closes, so our close frame is not lost to a reset.
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            return Ok(());
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        input.clear();
        input.extend_from_slice(&buf[..n]);
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = args
        .next()
        .map_or(Ok(9001), |p| p.parse())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad port: {e}")))?;
    let listener = TcpListener::bind((host.as_str(), port))?;
    println!("ws_echo on {host}:{}", listener.local_addr()?.port());
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        std::thread::spawn(move || {
            if let Err(e) = serve(stream) {
                eprintln!("connection: {e}");
            }
        });
    }
    Ok(())
}
