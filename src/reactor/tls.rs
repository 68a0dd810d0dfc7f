//! A link's TLS layer as the reactor holds it: the sans-IO session (`crate::tls::session`)
//! and the records it encrypted that the socket has not taken yet. Without the `tls` feature
//! the layer is an empty type, so the reactor's code paths stay the same and are never taken.

#[cfg(feature = "tls")]
pub(crate) use crate::tls::TlsAcceptor;

#[cfg(feature = "tls")]
mod on {
    use crate::tls::session::{Received, Session};
    use crate::tls::TlsError;
    use crate::Error;

    /// See the [module documentation](super).
    #[derive(Debug)]
    pub(crate) struct TlsLayer {
        pub(crate) session: Session,
        /// Records (handshake flights, encrypted messages, alerts) not yet written.
        pub(crate) out: Vec<u8>,
        pub(crate) out_pos: usize,
        /// `close_notify` is in `out` (or written).
        pub(crate) close_sent: bool,
    }

    impl TlsLayer {
        pub(crate) fn new(session: Session) -> TlsLayer {
            TlsLayer {
                session,
                out: Vec::new(),
                out_pos: 0,
                close_sent: false,
            }
        }

        pub(crate) fn pending(&self) -> usize {
            self.out.len() - self.out_pos
        }

        pub(crate) fn is_handshaking(&self) -> bool {
            self.session.is_handshaking()
        }

        /// Records waiting for the socket.
        pub(crate) fn unwritten(&self) -> &[u8] {
            &self.out[self.out_pos..]
        }

        /// The socket took `n` more bytes of them; once all are out, the buffer is reset, and
        /// released when `release` (or when it grew past `keep` bytes).
        pub(crate) fn wrote(&mut self, n: usize, release: bool, keep: usize) {
            self.out_pos += n;
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
                if release || self.out.capacity() > keep {
                    self.out = Vec::new();
                }
            }
        }

        /// Ciphertext in, plaintext appended to `plain`; what the session must send goes to
        /// `self.out`.
        pub(crate) fn receive(
            &mut self,
            bytes: &mut [u8],
            plain: &mut Vec<u8>,
        ) -> Result<Received, Error> {
            self.session
                .receive(bytes, plain, &mut self.out)
                .map_err(Error::Tls)
        }

        /// Encrypts `data` into `self.out`; `false` while handshaking.
        pub(crate) fn encrypt(&mut self, data: &[u8]) -> Result<bool, Error> {
            self.session
                .encrypt(data, &mut self.out)
                .map_err(Error::Tls)
        }

        /// The peer's end of the stream fell inside a record (a truncated record), or not.
        pub(crate) fn truncated(&self) -> Option<Error> {
            self.session.in_record().then(|| {
                Error::Tls(TlsError::Protocol(
                    "the connection ended in the middle of a record".into(),
                ))
            })
        }

        /// Whether `close_notify` was queued already.
        pub(crate) fn close_sent(&self) -> bool {
            self.close_sent
        }

        pub(crate) fn close_notify(&mut self) {
            if !self.close_sent {
                self.close_sent = true;
                if let Err(e) = self.session.close_notify(&mut self.out) {
                    log::debug!("repod: no close_notify: {e}");
                }
            }
        }
    }

    /// A server's TLS layer for a new connection, with the acceptor's current certificate.
    pub(crate) fn server_layer(acceptor: &crate::tls::TlsAcceptor) -> Result<Box<TlsLayer>, Error> {
        Session::server(acceptor.config())
            .map(|s| Box::new(TlsLayer::new(s)))
            .map_err(Error::Tls)
    }

    /// The error a TLS handshake that ran out of time ends with.
    pub(crate) fn timeout() -> Error {
        Error::Tls(TlsError::Timeout)
    }
}

#[cfg(feature = "tls")]
pub(crate) use on::{server_layer, timeout, TlsLayer};

#[cfg(not(feature = "tls"))]
mod off {
    use crate::Error;

    /// No TLS in this build: no value of this type exists.
    #[derive(Debug, Clone)]
    pub(crate) enum TlsAcceptor {}

    /// No TLS in this build: no value of this type exists.
    #[derive(Debug)]
    pub(crate) enum TlsLayer {}

    /// What a TLS read found (never made without TLS).
    pub(crate) struct Received {
        pub(crate) peer_closed: bool,
    }

    impl TlsLayer {
        pub(crate) fn pending(&self) -> usize {
            match *self {}
        }
        pub(crate) fn is_handshaking(&self) -> bool {
            match *self {}
        }
        pub(crate) fn unwritten(&self) -> &[u8] {
            match *self {}
        }
        pub(crate) fn wrote(&mut self, _: usize, _: bool, _: usize) {
            match *self {}
        }
        pub(crate) fn receive(&mut self, _: &mut [u8], _: &mut Vec<u8>) -> Result<Received, Error> {
            match *self {}
        }
        pub(crate) fn encrypt(&mut self, _: &[u8]) -> Result<bool, Error> {
            match *self {}
        }
        pub(crate) fn close_notify(&mut self) {
            match *self {}
        }
        pub(crate) fn close_sent(&self) -> bool {
            match *self {}
        }
        pub(crate) fn truncated(&self) -> Option<Error> {
            match *self {}
        }
    }

    pub(crate) fn timeout() -> Error {
        Error::Closed
    }

    pub(crate) fn server_layer(acceptor: &TlsAcceptor) -> Result<Box<TlsLayer>, Error> {
        match *acceptor {}
    }
}

#[cfg(not(feature = "tls"))]
pub(crate) use off::{server_layer, timeout, TlsAcceptor, TlsLayer};
