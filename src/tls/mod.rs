//! TLS: repod over TLS and WebSocket over TLS (`wss`), on the same single-threaded reactor.
//!
//! Browsers refuse a `ws://` connection from an `https://` page, so a browser game on the
//! internet needs `wss://`; native players' traffic deserves the same. A TLS listener is a
//! [`Listen`](crate::Listen) with [`tls`](crate::Listen::tls):
//!
//! ```no_run
//! use repod::tls::TlsAcceptor;
//! use repod::{Listen, Server};
//! # #[derive(Default)] struct Player;
//! # impl repod::ChannelHandler for Player { type Server = (); fn routes(_: &mut repod::Routes<Self>) {} }
//! // The files a certificate authority hands out (Let's Encrypt: fullchain.pem, privkey.pem).
//! let tls = TlsAcceptor::from_pem_files("fullchain.pem", "privkey.pem")?;
//! let mut server = Server::<Player>::bind(Listen::on("0.0.0.0:5071").tls(tls.clone()), ())?;
//! server.listen_ws(Listen::on("0.0.0.0:443").tls(tls))?; // new WebSocket("wss://host/")
//! server.launch()?; // SIGHUP re-reads both files
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Clients connect to `tls://host:port` or `wss://host:port/path`; the server's name is
//! checked against Mozilla's root certificates (webpki-roots), or against a private CA given
//! with [`TlsConnector`] in [`Config::tls`](crate::Config::tls).
//!
//! # Choices
//!
//! - **rustls**, never hand-written cryptography, through its *unbuffered* API: the reactor
//!   reads every connection into its one shared buffer and records are decrypted there, so an
//!   idle TLS connection owns no buffers, only rustls's state (figures in BENCHMARKS.md).
//! - **aws-lc-rs** as the crypto provider, rustls's own default: it offers the post-quantum
//!   hybrid key exchange X25519MLKEM768 that current browsers use first (rustls 0.23.48
//!   deprecates its ring provider for lacking it), has a FIPS mode, and is fast at AES-GCM.
//!   It builds with a C compiler alone on Linux (about 20 s more, once).
//! - **TLS 1.2 and 1.3 only**; rustls implements nothing older.
//! - **Feature `tls`, on by default**: a server whose players are on the internet needs it, and
//!   ring is a modest build. `default-features = false` leaves it out of LAN-only builds.
//! - **Reload without a restart**: [`TlsAcceptor::reload`] (and
//!   [`ServerHandle::reload_tls`](crate::ServerHandle::reload_tls), and SIGHUP under
//!   [`Server::launch`](crate::Server::launch)) re-reads the files; new handshakes use the new
//!   certificate, open connections carry on, and a reload that fails keeps the old one.
//!
//! The handshake is bounded by [`TlsAcceptor::handshake_timeout`] (on a `wss` listener, the TLS
//! handshake and the WebSocket upgrade together by the listener's
//! [`WsOptions::handshake_timeout`](crate::ws::WsOptions::handshake_timeout)). A graceful close
//! writes everything queued, then `close_notify`, then FIN.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub(crate) mod session;

/// What went wrong with TLS: a handshake, a record, or loading certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsError {
    /// The peer's certificate was refused: an unknown issuer, another name, expired... (a
    /// client checking a server; the text says which).
    Certificate(String),
    /// The TLS protocol failed: a peer that does not speak TLS (plaintext on a TLS port), an
    /// alert, a corrupt or truncated record, a version below 1.2.
    Protocol(String),
    /// The certificate chain or key could not be loaded: a missing file, bad PEM, a key that
    /// does not match the certificate.
    Config(String),
    /// The handshake did not finish within the listener's time limit.
    Timeout,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Certificate(e) => write!(f, "TLS certificate refused: {e}"),
            TlsError::Protocol(e) => write!(f, "TLS failed: {e}"),
            TlsError::Config(e) => write!(f, "TLS configuration: {e}"),
            TlsError::Timeout => f.write_str("TLS handshake timed out"),
        }
    }
}

impl std::error::Error for TlsError {}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        match e {
            rustls::Error::InvalidCertificate(_) => TlsError::Certificate(e.to_string()),
            _ => TlsError::Protocol(e.to_string()),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The server side of TLS: a certificate chain and its key, shared by every listener it is
/// given to, and reloadable. Cloning shares it: a reload through any clone serves every
/// listener.
#[derive(Clone)]
pub struct TlsAcceptor {
    inner: Arc<AcceptorInner>,
}

struct AcceptorInner {
    files: Option<(PathBuf, PathBuf)>,
    current: Mutex<Arc<ServerConfig>>,
    handshake_timeout: Duration,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("files", &self.inner.files)
            .field("handshake_timeout", &self.inner.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads a certificate chain (leaf first, as in `fullchain.pem`) and its private key
    /// (PKCS#8, PKCS#1 or SEC1, as in `privkey.pem`) from PEM files. They are read again by
    /// [`reload`](Self::reload).
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`]: a file is missing or unreadable, holds no certificate or no key,
    /// or the key does not match the certificate.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsAcceptor, TlsError> {
        let files = (cert_chain.as_ref().to_owned(), key.as_ref().to_owned());
        let config = load_server_config(&files.0, &files.1)?;
        Ok(TlsAcceptor {
            inner: Arc::new(AcceptorInner {
                files: Some(files),
                current: Mutex::new(config),
                handshake_timeout: Duration::from_secs(10),
            }),
        })
    }

    /// Uses a rustls configuration built elsewhere (client certificates, ALPN, another
    /// certificate resolver...). [`reload`](Self::reload) then has no files to read; replace
    /// the configuration with [`replace`](Self::replace) instead.
    pub fn from_config(config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor {
            inner: Arc::new(AcceptorInner {
                files: None,
                current: Mutex::new(config),
                handshake_timeout: Duration::from_secs(10),
            }),
        }
    }

    /// Most time from accepting a connection to a finished TLS handshake on a repod-over-TLS
    /// listener (default 10 s); a peer that takes longer is closed. On a `wss` listener the
    /// WebSocket's [`handshake_timeout`](crate::ws::WsOptions::handshake_timeout) bounds the
    /// TLS handshake and the upgrade together. Set it before giving the acceptor to listeners.
    pub fn handshake_timeout(self, timeout: Duration) -> TlsAcceptor {
        let current = self.config();
        TlsAcceptor {
            inner: Arc::new(AcceptorInner {
                files: self.inner.files.clone(),
                current: Mutex::new(current),
                handshake_timeout: timeout,
            }),
        }
    }

    /// The handshake time limit.
    pub fn get_handshake_timeout(&self) -> Duration {
        self.inner.handshake_timeout
    }

    /// Reads the certificate chain and key files again; new handshakes use them, connections
    /// already open carry on with theirs.
    ///
    /// # Errors
    ///
    /// As [`from_pem_files`](Self::from_pem_files); the certificate in use stays. An acceptor
    /// made by [`from_config`](Self::from_config) has no files: [`TlsError::Config`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some((cert, key)) = &self.inner.files else {
            return Err(TlsError::Config(
                "this acceptor was built from a rustls configuration, not files".into(),
            ));
        };
        let config = load_server_config(cert, key)?;
        self.replace(config);
        Ok(())
    }

    /// Replaces the configuration for new handshakes.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        *self.inner.current.lock().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// The configuration new handshakes use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether two acceptors are the same one (clones of each other).
    pub(crate) fn same(&self, other: &TlsAcceptor) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Config(format!("{}: {e}", key.display())))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("{}: {e}", cert.display())))?;
    Ok(Arc::new(config))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Config(format!("{}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(TlsError::Config(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(chain)
}

/// The client side of TLS: which certificate authorities a client trusts. The default trusts
/// Mozilla's root certificates (webpki-roots), as a browser would; a private fleet or a test
/// adds its own CA.
///
/// ```no_run
/// use repod::tls::TlsConnector;
/// use repod::{Config, Connection, Mode};
/// let tls = TlsConnector::with_ca_file("ca.pem")?;
/// let _conn = Connection::connect_with("tls://game.example:5071", Mode::Stepped, Config::default().tls(tls))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

impl Default for TlsConnector {
    fn default() -> Self {
        Self::webpki_roots()
    }
}

impl TlsConnector {
    /// Trusts Mozilla's root certificates (the webpki-roots crate).
    pub fn webpki_roots() -> TlsConnector {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Self::with_roots(roots)
    }

    /// Trusts the certificate authorities in a PEM file (and only them).
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`]: the file is missing or holds no usable certificate.
    pub fn with_ca_file(path: impl AsRef<Path>) -> Result<TlsConnector, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in load_certs(path.as_ref())? {
            roots
                .add(cert)
                .map_err(|e| TlsError::Config(format!("{}: {e}", path.as_ref().display())))?;
        }
        Ok(Self::with_roots(roots))
    }

    fn with_roots(roots: RootCertStore) -> TlsConnector {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector {
            config: Arc::new(config),
        }
    }

    /// Uses a rustls configuration built elsewhere (client certificates, a custom verifier...).
    pub fn from_config(config: Arc<ClientConfig>) -> TlsConnector {
        TlsConnector { config }
    }

    pub(crate) fn session(
        &self,
        host: &str,
        out: &mut Vec<u8>,
    ) -> Result<session::Session, TlsError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| TlsError::Config(format!("server name {host:?}: {e}")))?;
        session::Session::client(self.config.clone(), name, out)
    }
}
