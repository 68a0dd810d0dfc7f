//! Listening, accepting and connecting: how a socket becomes a link.

use super::*;

impl Reactor {
    /// Listens on `addr`: for length-prefixed TCP, or for WebSocket upgrades when `ws` is set;
    /// with `SO_REUSEPORT` if asked; requiring a PROXY header first if `proxy` is set; TLS
    /// (after the PROXY header, before the framing) if `tls` is set.
    pub(crate) fn listen(
        &mut self,
        addr: SocketAddr,
        ws: Option<WsOptions>,
        reuse_port: bool,
        proxy: Option<ProxyOptions>,
        tls: Option<TlsAcceptor>,
    ) -> io::Result<SocketAddr> {
        let slot = self.listeners.iter().position(Option::is_none);
        let slot = slot.unwrap_or(self.listeners.len());
        if slot >= MAX_LISTENERS {
            return Err(io::Error::other("too many listening sockets"));
        }
        let mut socket = if reuse_port {
            bind_reuse_port(addr)?
        } else {
            TcpListener::bind(addr)?
        };
        self.poll.registry().register(
            &mut socket,
            Token(FIRST_LISTENER - slot),
            Interest::READABLE,
        )?;
        let local = socket.local_addr()?;
        if slot == self.listeners.len() {
            self.listeners.push(None);
        }
        self.listeners[slot] = Some(Listening {
            socket,
            ws,
            proxy,
            tls,
        });
        Ok(local)
    }

    /// Stops accepting and closes every listening socket; upgrades still in progress are
    /// refused (503), since their players would arrive in a server that is going away.
    pub(crate) fn stop_listening(&mut self) {
        for l in self.listeners.iter_mut() {
            if let Some(mut l) = l.take() {
                let _ = self.poll.registry().deregister(&mut l.socket);
            }
        }
        if self.accepting > 0 {
            let upgrading: Vec<usize> = self
                .links
                .iter()
                .filter(|(_, l)| l.state == State::Accepting)
                .map(|(i, _)| i)
                .collect();
            for i in upgrading {
                let err = match self.links[i].codec {
                    Codec::Proxy(_) => Error::Proxy(ProxyError::Unavailable),
                    _ => Error::Handshake(handshake::HandshakeError::Unavailable),
                };
                self.refuse(i, err);
            }
        }
    }

    /// Delivers SIGINT and SIGTERM to the driver, and SIGHUP too if `hangup` (a server with
    /// certificates to reload; otherwise SIGHUP keeps its default action).
    pub(crate) fn watch_signals(&mut self, hangup: bool) -> io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = if hangup {
            signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM, SIGHUP])?
        } else {
            signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM])?
        };
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Starts a non-blocking connect. Completion or failure is reported through the driver.
    pub(crate) fn connect(&mut self, addr: SocketAddr) -> io::Result<ChannelId> {
        let stream = TcpStream::connect(addr)?;
        let codec = Codec::Frames(FrameDecoder::new(self.cfg.max_frame_len));
        let id = self.insert(stream, None, State::Connecting, Transport::Tcp, codec)?;
        self.connect_deadline(id);
        Ok(id)
    }

    /// Bounds the time until a new outgoing connection is established
    /// ([`Config::connect_timeout`]).
    fn connect_deadline(&mut self, id: ChannelId) {
        if let Some(limit) = self.cfg.connect_timeout {
            let deadline = Instant::now() + limit;
            self.links[id.index()].close_deadline = Some(deadline);
            self.linger_check_at = Some(self.linger_check_at.map_or(deadline, |t| t.min(deadline)));
        }
    }

    /// Starts a non-blocking connect to a WebSocket server at `addr`; the upgrade to `url`
    /// follows once TCP is up, and the driver hears `connected` only when it succeeded.
    pub(crate) fn connect_ws(&mut self, addr: SocketAddr, url: &WsUrl) -> io::Result<ChannelId> {
        let stream = TcpStream::connect(addr)?;
        let key = handshake::client_key();
        let mut request = Vec::new();
        handshake::write_request(&mut request, url, &key);
        let upgrade = Upgrade {
            head: Vec::new(),
            listener: 0,
            request,
            key,
        };
        let transport = Transport::WsClient(MaskKeys::from_os());
        let codec = Codec::Upgrade(Box::new(upgrade));
        let id = self.insert(stream, None, State::Connecting, transport, codec)?;
        self.connect_deadline(id);
        Ok(id)
    }

    /// Starts a non-blocking connect that speaks TLS to `host` (the name its certificate must
    /// carry) once TCP is up, then WebSocket if `url` is set. The driver hears `connected`
    /// once the TLS handshake (and the upgrade) succeeded.
    #[cfg(feature = "tls")]
    pub(crate) fn connect_tls(
        &mut self,
        addr: SocketAddr,
        host: &str,
        connector: &crate::tls::TlsConnector,
        url: Option<&WsUrl>,
    ) -> io::Result<ChannelId> {
        let mut hello = Vec::new();
        let session = connector
            .session(host, &mut hello)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let id = match url {
            Some(url) => self.connect_ws(addr, url)?,
            None => self.connect(addr)?,
        };
        let mut layer = TlsLayer::new(session);
        layer.out = hello;
        self.links[id.index()].tls = Some(Box::new(layer));
        Ok(id)
    }

    pub(super) fn insert(
        &mut self,
        mut stream: TcpStream,
        addr: Option<SocketAddr>,
        state: State,
        transport: Transport,
        codec: Codec,
    ) -> io::Result<ChannelId> {
        let entry = self.links.vacant_entry();
        let index = entry.key();
        set_socket_options(&self.cfg, &stream);
        if index >= MAX_LINK_INDEX || index > u32::MAX as usize {
            return Err(io::Error::other("too many connections"));
        }
        // Edge-triggered, both directions, once: no re-registration syscalls later.
        self.poll.registry().register(
            &mut stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        entry.insert(Link {
            stream,
            addr,
            gen,
            state,
            transport,
            codec,
            tls: None,
            login: None,
            session: None,
            out: Vec::new(),
            out_pos: 0,
            out_base: 0,
            latest: Vec::new(),
            replaced: 0,
            congested: false,
            gated_until: None,
            out_hold: usize::MAX,
            dirty: false,
            close_sent: false,
            fresh: true,
            listener: 0,
            last_rx: self.now,
            close_deadline: None,
            bytes_in: 0,
            bytes_out: 0,
            msgs_in: 0,
            msgs_out: 0,
            since: self.now,
            rtt: None,
        });
        if state == State::Accepting {
            self.accepting += 1;
        } else {
            self.live += 1;
        }
        if self.idle_check_at.is_none() {
            if let Some(idle) = self.cfg.idle_timeout {
                self.idle_check_at = Some(self.now + idle / 4);
            }
        }
        if self.beat_at.is_none() {
            if let Some(interval) = self.cfg.heartbeat {
                self.beat_at = Some(self.now + interval);
            }
        }
        Ok(ChannelId {
            index: index as u32,
            gen,
        })
    }

    /// The framing a server's connection on listener `slot` starts with, once its PROXY
    /// header (if any) is through.
    pub(super) fn server_codec(&self, slot: usize, is_ws: bool) -> Codec {
        if is_ws {
            Codec::Upgrade(Box::new(Upgrade::server(slot)))
        } else {
            Codec::Frames(FrameDecoder::new(self.cfg.max_frame_len))
        }
    }

    /// The time limit of listener `slot`'s handshakes, counted from the end of the PROXY
    /// header: the WebSocket upgrade's (which covers TLS too on a `wss` listener), else the
    /// TLS handshake's.
    pub(super) fn handshake_timeout(&self, slot: usize) -> Duration {
        let listener = self.listeners.get(slot).and_then(Option::as_ref);
        #[cfg(feature = "tls")]
        if let Some(l) = listener.filter(|l| l.ws.is_none()) {
            if let Some(tls) = &l.tls {
                return tls.get_handshake_timeout();
            }
        }
        listener
            .and_then(|l| l.ws.as_ref())
            .map_or(Duration::from_secs(10), |o| o.handshake_timeout)
    }

    pub(super) fn finish_connect(&mut self, index: usize, driver: &mut impl Driver) {
        let id = self.id_of(index);
        let link = &mut self.links[index];
        let result = match link.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => link.stream.peer_addr(),
        };
        match result {
            Ok(addr) => {
                link.addr = Some(addr);
                link.last_rx = self.now;
                if self.cfg.nodelay {
                    let _ = link.stream.set_nodelay(true);
                }
                if link.tls.is_some() {
                    // The ClientHello goes out; the rest waits for the handshake.
                    link.state = State::Upgrading;
                    self.mark_dirty(index);
                    return;
                }
                self.transport_ready(index, driver);
            }
            // A spurious wakeup: still connecting.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => self.close(id, DisconnectReason::Error(Error::Io(e))),
        }
    }

    /// A client's byte stream is ready (TCP connected, and TLS done if any): a WebSocket
    /// upgrade request goes out, or the connection is open.
    pub(super) fn transport_ready(&mut self, index: usize, driver: &mut impl Driver) {
        let id = self.id_of(index);
        let link = &mut self.links[index];
        link.state = State::Open;
        if let Codec::Upgrade(up) = &mut link.codec {
            // The request goes first; messages sent meanwhile wait for the answer.
            let request = std::mem::take(&mut up.request);
            link.out_hold = request.len();
            // Latest-wins entries queued meanwhile move back by the request's length.
            for k in &mut link.latest {
                k.at += request.len() as u64;
            }
            link.out.splice(0..0, request);
            link.state = State::Upgrading;
        }
        if link.queued() > 0 {
            self.mark_dirty(index);
        }
        if self.links[index].state == State::Open {
            self.links[index].close_deadline = None;
            driver.connected(self, id);
        }
    }

    pub(super) fn accept_all(&mut self, driver: &mut impl Driver) {
        self.accept_pending = false;
        if self.accept_paused_until.is_some() {
            return;
        }
        let mut budget = ACCEPT_BUDGET;
        for slot in 0..self.listeners.len() {
            loop {
                if budget == 0 {
                    self.accept_pending = true;
                    return;
                }
                let Some(listener) = self.listeners[slot].as_ref() else {
                    break;
                };
                match listener.socket.accept() {
                    Ok((stream, addr)) => {
                        budget -= 1;
                        self.accept_one(stream, addr, slot, driver);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if is_resource_exhausted(&e) => {
                        // Out of descriptors or memory: the pending connection stays in the
                        // backlog. Retrying at once would spin; retry after a pause instead.
                        log::error!(
                            "repod: accept failed ({e}); pausing accepts for {ACCEPT_BACKOFF:?}"
                        );
                        self.accept_paused_until = Some(self.now + ACCEPT_BACKOFF);
                        return;
                    }
                    // The peer gave up before we accepted (ECONNABORTED and the like).
                    Err(e) => log::debug!("repod: accept: {e}"),
                }
            }
        }
    }

    pub(super) fn accept_one(
        &mut self,
        stream: TcpStream,
        addr: SocketAddr,
        slot: usize,
        driver: &mut impl Driver,
    ) {
        let Some(listener) = self.listeners[slot].as_ref() else {
            return;
        };
        let (is_ws, proxy, tls) = (listener.ws.is_some(), listener.proxy, listener.tls.as_ref());
        let count = self.live + self.accepting;
        if self.cfg.max_connections.is_some_and(|max| count >= max) {
            log::warn!("repod: refusing {addr}: connection limit reached");
            return;
        }
        if self.cfg.nodelay {
            let _ = stream.set_nodelay(true);
        }
        if is_ws || proxy.is_some() || tls.is_some() {
            // Not a channel yet: a PROXY header, a TLS handshake, a WebSocket upgrade, or
            // several of them, in this order, come first.
            let layer = match tls.map(tls::server_layer).transpose() {
                Ok(layer) => layer,
                Err(e) => {
                    log::error!("repod: cannot start TLS for {addr}: {e}");
                    return;
                }
            };
            let transport = if is_ws {
                Transport::WsServer
            } else {
                Transport::Tcp
            };
            let (codec, timeout) = match proxy {
                Some(p) => (Codec::Proxy(Vec::new()), p.timeout),
                None => (self.server_codec(slot, is_ws), self.handshake_timeout(slot)),
            };
            match self.insert(stream, Some(addr), State::Accepting, transport, codec) {
                Ok(id) => {
                    log::debug!("repod: accepted {addr} as {id:?}, awaiting its preamble");
                    let link = &mut self.links[id.index()];
                    link.listener = slot;
                    link.tls = layer;
                    let deadline = self.now + timeout;
                    link.close_deadline = Some(deadline);
                    self.linger_check_at =
                        Some(self.linger_check_at.map_or(deadline, |t| t.min(deadline)));
                }
                Err(e) => log::error!("repod: cannot register {addr}: {e}"),
            }
            return;
        }
        let codec = Codec::Frames(FrameDecoder::new(self.cfg.max_frame_len));
        match self.insert(stream, Some(addr), State::Open, Transport::Tcp, codec) {
            Ok(id) => {
                log::debug!("repod: accepted {addr} as {id:?}");
                self.counters.accepted += 1;
                self.channel_ready(id.index(), id, driver);
                self.deliver_closed(driver);
            }
            Err(e) => log::error!("repod: cannot register {addr}: {e}"),
        }
    }
}

/// A listening socket with `SO_REUSEPORT` (and `SO_REUSEADDR`, as `TcpListener::bind` sets).
pub(super) fn bind_reuse_port(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    #[cfg(not(all(unix, not(any(target_os = "solaris", target_os = "illumos")))))]
    return Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT is not available on this platform",
    ));
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Keepalive and `TCP_USER_TIMEOUT`, as configured. A failure is logged, not fatal: the
/// connection works, only without the early detection of a dead peer.
pub(super) fn set_socket_options(cfg: &Config, stream: &TcpStream) {
    let socket = socket2::SockRef::from(stream);
    if let Some(k) = cfg.keepalive {
        let params = socket2::TcpKeepalive::new()
            .with_time(k.idle)
            .with_interval(k.interval)
            .with_retries(k.count);
        if let Err(e) = socket.set_tcp_keepalive(&params) {
            log::warn!("repod: cannot set TCP keepalive: {e}");
        }
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(bytes) = cfg.notsent_lowat {
        if let Err(e) = socket.set_tcp_notsent_lowat(bytes) {
            log::warn!("repod: cannot set TCP_NOTSENT_LOWAT: {e}");
        }
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(t) = cfg.user_timeout {
        if let Err(e) = socket.set_tcp_user_timeout(Some(t)) {
            log::warn!("repod: cannot set TCP_USER_TIMEOUT: {e}");
        }
    }
}

pub(super) fn is_resource_exhausted(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}
