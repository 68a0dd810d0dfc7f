//! Echo-protocol baseline over TLS, written the ordinary tokio way, without repod.
//!
//! `tokio_rustls_echo HOST PORT --tls-cert FILE --tls-key FILE [--single-thread]`
//!
//! `tokio_echo` behind `tokio_rustls::TlsAcceptor`, as a Rust developer writes it with the
//! usual crates:
//!
//! * rustls 0.23 with the crypto provider of the crate features: `ring` (the default) or
//!   `aws-lc-rs` (`--no-default-features --features aws-lc-rs`); build it with the one repod
//!   uses. TLS 1.2 and 1.3, no client authentication, everything else at rustls's and the
//!   provider's defaults (TLS 1.3 session tickets and the stateful session cache included);
//! * the certificate chain (leaf first) and the private key (PKCS#8, SEC1 or PKCS#1) come
//!   from PEM files;
//! * one task per connection: TCP_NODELAY, the TLS handshake (`TlsAcceptor::accept`) inside
//!   the task, so a slow handshake never blocks the accept loop, then
//!   `Framed<TlsStream<TcpStream>, LengthDelimitedCodec>` with the codec's defaults (4-byte
//!   big-endian length prefix, 8 MiB max frame), greeting `{"action":"connected"}` first;
//! * every frame is decoded into an `rmpv::Value`, the `"action"` is rewritten and the value
//!   re-encoded: `echo` is answered to the sender as `echo_reply`; `broadcast` is encoded once
//!   as `broadcast_reply` and fanned out through a `tokio::sync::broadcast` channel that every
//!   connection task `select!`s on;
//! * the multi-thread runtime is the default, `--single-thread` uses the current-thread
//!   runtime.
//!
//! Prints `listening on HOST:PORT` once bound.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rmpv::Value;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Capacity of the broadcast channel; a connection that falls further behind
/// than this skips the messages it missed (`RecvError::Lagged`).
const BROADCAST_CAPACITY: usize = 4096;

const USAGE: &str =
    "usage: tokio_rustls_echo HOST PORT --tls-cert FILE --tls-key FILE [--single-thread]";

fn usage(why: &str) -> ! {
    eprintln!("tokio_rustls_echo: {why}\n{USAGE}");
    std::process::exit(2);
}

fn main() -> io::Result<()> {
    let mut single = false;
    let mut cert = None;
    let mut key = None;
    let mut pos = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--single-thread" => single = true,
            "--tls-cert" => cert = Some(args.next().unwrap_or_else(|| usage("--tls-cert FILE"))),
            "--tls-key" => key = Some(args.next().unwrap_or_else(|| usage("--tls-key FILE"))),
            s if s.starts_with("--") => usage(&format!("unknown option {s}")),
            _ => pos.push(a),
        }
    }
    if pos.len() != 2 {
        usage("HOST and PORT expected");
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        usage("--tls-cert and --tls-key are required");
    };
    let host = pos[0].clone();
    let port: u16 = pos[1]
        .parse()
        .unwrap_or_else(|_| usage("PORT must be a number"));
    let acceptor = TlsAcceptor::from(Arc::new(server_config(&cert, &key)?));

    let rt = if single {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    rt.block_on(serve(host, port, acceptor))
}

/// The crypto provider of the crate features, with every default: ring (`--features ring`,
/// the default) or aws-lc-rs (`--no-default-features --features aws-lc-rs`).
#[cfg(feature = "aws-lc-rs")]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

#[cfg(not(feature = "aws-lc-rs"))]
fn provider() -> rustls::crypto::CryptoProvider {
    // Deprecated since rustls 0.23.48 only because ring has no post-quantum key exchange; it
    // is still the ring provider with every default.
    #[allow(deprecated)]
    rustls::crypto::ring::default_provider()
}

#[cfg(feature = "aws-lc-rs")]
const PROVIDER: &str = "aws-lc-rs";
#[cfg(not(feature = "aws-lc-rs"))]
const PROVIDER: &str = "ring";

/// rustls's server configuration: the provider, TLS 1.2 + 1.3, the chain and key from PEM files.
fn server_config(cert: &str, key: &str) -> io::Result<rustls::ServerConfig> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(cert, &e))?;
    if chain.is_empty() {
        return Err(invalid(cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, &e))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| invalid("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid("certificate and key", &e))
}

async fn serve(host: String, port: u16, acceptor: TlsAcceptor) -> io::Result<()> {
    let listener = TcpListener::bind((host.as_str(), port)).await?;
    println!("listening on {host}:{port}");
    std::io::stdout().flush()?;
    eprintln!("tokio_rustls_echo: rustls with the {PROVIDER} crypto provider");

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
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(socket, acceptor, tx).await {
                // A client that closes without close_notify, or resets: not worth a line.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::BrokenPipe
                ) {
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

async fn handle(
    socket: TcpStream,
    acceptor: TlsAcceptor,
    tx: broadcast::Sender<Bytes>,
) -> io::Result<()> {
    socket.set_nodelay(true)?;
    let tls = acceptor.accept(socket).await?;
    let mut rx = tx.subscribe();
    let mut framed = Framed::new(tls, LengthDelimitedCodec::new());

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
