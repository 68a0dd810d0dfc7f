//! Echo-protocol baseline over WebSocket, written the ordinary tokio way, without repod.
//!
//! `tungstenite_echo HOST PORT [--multi-thread]`
//!
//! The WebSocket counterpart of `tokio_echo`, as a Rust developer writes it with the usual
//! crates:
//!
//! * tokio's **current-thread** runtime by default (`--multi-thread` for the multi-thread one);
//! * one task per connection, `tokio_tungstenite::accept_async` with its default
//!   `WebSocketConfig` (it answers pings and the closing handshake by itself);
//! * one WebSocket binary message per msgpack map (no length prefix: WebSocket delimits
//!   messages), greeting `{"action":"connected"}` once the upgrade is done;
//! * every message is decoded into an `rmpv::Value`, the `"action"` is rewritten and the value
//!   re-encoded: `echo` is answered to the sender as `echo_reply`; `broadcast` is encoded once as
//!   `broadcast_reply` and fanned out through a `tokio::sync::broadcast` channel that every
//!   connection task `select!`s on; other actions and text messages are ignored;
//! * `SinkExt::send` per reply (a write and a flush per message), TCP_NODELAY, as `tokio_echo`.
//!
//! Prints `listening on HOST:PORT` once bound.

use std::io::{self, Write};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rmpv::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Capacity of the broadcast channel; a connection that falls further behind
/// than this skips the messages it missed (`RecvError::Lagged`).
const BROADCAST_CAPACITY: usize = 4096;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let multi = args.iter().any(|a| a == "--multi-thread");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if pos.len() != 2 {
        eprintln!("usage: tungstenite_echo HOST PORT [--multi-thread]");
        std::process::exit(2);
    }
    let host = pos[0].clone();
    let port: u16 = pos[1].parse().expect("PORT must be a number");

    let rt = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
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
            match handle(socket, tx).await {
                Ok(())
                | Err(WsError::ConnectionClosed)
                | Err(WsError::AlreadyClosed)
                | Err(WsError::Protocol(_)) => {}
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => eprintln!("connection error: {e}"),
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

async fn handle(socket: TcpStream, tx: broadcast::Sender<Bytes>) -> Result<(), WsError> {
    socket.set_nodelay(true)?;
    let mut ws = tokio_tungstenite::accept_async(socket).await?;
    let mut rx = tx.subscribe();

    let greeting = Value::Map(vec![(Value::from("action"), Value::from("connected"))]);
    ws.send(Message::Binary(encode(&greeting))).await?;

    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(msg) = msg else { return Ok(()) };
                let data = match msg? {
                    Message::Binary(data) => data,
                    Message::Close(_) => return Ok(()),
                    // Pings are answered by tungstenite; text is not part of the protocol.
                    _ => continue,
                };
                let mut value = match rmpv::decode::read_value(&mut &data[..]) {
                    Ok(v) => v,
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e).into()),
                };
                match action(&value) {
                    Some("echo") => {
                        swap_action(&mut value, "echo_reply");
                        ws.send(Message::Binary(encode(&value))).await?;
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
                    Ok(bytes) => ws.send(Message::Binary(bytes)).await?,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("connection lagged, skipped {n} broadcasts");
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
    }
}
