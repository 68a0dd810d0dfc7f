//! Echo-protocol baseline written the ordinary tokio way, without repod.
//!
//! `tokio_echo HOST PORT [--single-thread]`
//!
//! * one task per connection, `Framed<TcpStream, LengthDelimitedCodec>` with the
//!   codec's defaults (4-byte big-endian length prefix, 8 MiB max frame);
//! * every frame is decoded into an `rmpv::Value`, the `"action"` is rewritten and
//!   the value re-encoded;
//! * `echo` is answered to the sender as `echo_reply`; `broadcast` is encoded once
//!   as `broadcast_reply` and fanned out through a `tokio::sync::broadcast`
//!   channel that every connection task `select!`s on;
//! * the multi-thread runtime is the default, `--single-thread` uses the
//!   current-thread runtime.

use std::io::{self, Write};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rmpv::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Capacity of the broadcast channel; a connection that falls further behind
/// than this skips the messages it missed (`RecvError::Lagged`).
const BROADCAST_CAPACITY: usize = 4096;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let single = args.iter().any(|a| a == "--single-thread");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if pos.len() != 2 {
        eprintln!("usage: tokio_echo HOST PORT [--single-thread]");
        std::process::exit(2);
    }
    let host = pos[0].clone();
    let port: u16 = pos[1].parse().expect("PORT must be a number");

    let rt = if single {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    rt.block_on(serve(host, port))
}

async fn serve(host: String, port: u16) -> io::Result<()> {
    let listener = TcpListener::bind((host.as_str(), port)).await?;
    println!("listening on {host}:{port}");
    std::io::stdout().flush()?;

    let (tx, _) = broadcast::channel::<Bytes>(BROADCAST_CAPACITY);
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: keep serving the connections we have.
                eprintln!("accept error: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(socket, tx).await {
                if e.kind() != io::ErrorKind::ConnectionReset {
                    eprintln!("connection error: {e}");
                }
            }
        });
    }
}

fn encode(value: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(64);
    rmpv::encode::write_value(&mut buf, value).expect("writing to a Vec cannot fail");
    Bytes::from(buf)
}

/// Replace the value of the `"action"` key; returns the previous action.
fn swap_action(value: &mut Value, new_action: &str) -> Option<String> {
    let Value::Map(entries) = value else {
        return None;
    };
    for (k, v) in entries.iter_mut() {
        if k.as_str() == Some("action") {
            let old = v.as_str().map(str::to_owned);
            *v = Value::from(new_action);
            return old;
        }
    }
    None
}

fn action(value: &Value) -> Option<&str> {
    value
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some("action"))
        .and_then(|(_, v)| v.as_str())
}

async fn handle(socket: TcpStream, tx: broadcast::Sender<Bytes>) -> io::Result<()> {
    socket.set_nodelay(true)?;
    let mut rx = tx.subscribe();
    let mut framed = Framed::new(socket, LengthDelimitedCodec::new());

    let greeting = Value::Map(vec![(Value::from("action"), Value::from("connected"))]);
    framed.send(encode(&greeting)).await?;

    loop {
        tokio::select! {
            frame = framed.next() => {
                let Some(frame) = frame else { return Ok(()) };
                let frame = frame?;
                let mut value = match rmpv::decode::read_value(&mut &frame[..]) {
                    Ok(v) => v,
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                };
                match action(&value) {
                    Some("echo") => {
                        swap_action(&mut value, "echo_reply");
                        framed.send(encode(&value)).await?;
                    }
                    Some("broadcast") => {
                        swap_action(&mut value, "broadcast_reply");
                        // Err only when there are no receivers, impossible here.
                        let _ = tx.send(encode(&value));
                    }
                    _ => {}
                }
            }
            msg = rx.recv() => {
                match msg {
                    Ok(bytes) => framed.send(bytes).await?,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("connection lagged, skipped {n} broadcasts");
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
    }
}
