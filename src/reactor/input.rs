//! A link's input: bytes from the socket through its layers (PROXY header, TLS, then
//! WebSocket or length-prefix framing) to whole messages for the driver.

use super::*;

impl Reactor {
    pub(super) fn read(&mut self, index: usize, driver: &mut impl Driver, hangup: bool) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut budget = self.cfg.read_budget;
        while let Some(link) = self.links.get_mut(index) {
            let id = ChannelId {
                index: index as u32,
                gen: link.gen,
            };
            let state = link.state;
            if state == State::Flushing || state == State::Connecting {
                break; // reading resumes in Draining, after our output is out
            }
            match link.stream.read(&mut scratch) {
                Ok(0) => {
                    // No channel exists for a connection that never upgraded: just drop it.
                    if matches!(state, State::Draining | State::Accepting) {
                        self.remove(index);
                    } else if let Some(e) = link.tls.as_ref().and_then(|t| t.truncated()) {
                        // A record cut short is no clean close: the tail of what the peer
                        // sent is lost, and the handlers hear so.
                        log::debug!("repod: {id:?}: {e}");
                        self.close(id, DisconnectReason::Error(e));
                    } else {
                        log::debug!("repod: {id:?} closed by peer");
                        self.close(id, DisconnectReason::PeerClosed);
                    }
                    break;
                }
                Ok(n) => {
                    link.bytes_in += n as u64;
                    self.counters.bytes_in += n as u64;
                    if state == State::Draining {
                        // Discarded input still costs reads: charge the budget so a peer that
                        // streams after being closed cannot monopolise the reactor.
                        budget = budget.saturating_sub(n);
                        if budget == 0 {
                            self.backlog.push(index);
                            break;
                        }
                        continue;
                    }
                    link.last_rx = self.now;
                    if !self.receive(index, id, &mut scratch[..n], driver) {
                        break;
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.backlog.push(index);
                        break;
                    }
                    // A short read emptied the socket: skip the read that would only say
                    // WouldBlock. Linux's epoll reports new data with a new edge regardless;
                    // but a FIN that came with this data has had its edge, so read on to it.
                    if cfg!(target_os = "linux") && n < scratch.len() && !hangup {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if matches!(state, State::Draining | State::Accepting) {
                        self.remove(index);
                    } else {
                        log::debug!("repod: {id:?} read error: {e}");
                        self.close(id, DisconnectReason::Error(Error::Io(e)));
                    }
                    break;
                }
            }
        }
        self.scratch = scratch;
        // Answer this connection now rather than after every other ready connection was read:
        // all the replies to what this read brought still leave in one write, and the peer gets
        // them a whole turn earlier. Output for other connections waits for the end of the turn.
        if let Some(link) = self.links.get(index) {
            if link.state == State::Open && link.queued() > 0 {
                self.flush(index);
            }
        }
    }

    /// Bytes read from link `index`, up through its layers: a PROXY header first (the codec
    /// gathers it, then hands what follows back here), then TLS, then the framing.
    /// Returns whether the link still reads input for the application.
    pub(super) fn receive(
        &mut self,
        index: usize,
        id: ChannelId,
        bytes: &mut [u8],
        driver: &mut impl Driver,
    ) -> bool {
        let link = &self.links[index];
        if link.tls.is_some() && !matches!(link.codec, Codec::Proxy(_)) {
            return self.tls_input(index, id, bytes, driver);
        }
        self.input(index, id, bytes, driver)
    }

    /// Ciphertext for link `index`'s TLS layer: what it decrypts goes on to the framing (in
    /// the reactor's shared plaintext buffer), what it answers (handshake flights) goes out at
    /// the end of the turn.
    fn tls_input(
        &mut self,
        index: usize,
        id: ChannelId,
        bytes: &mut [u8],
        driver: &mut impl Driver,
    ) -> bool {
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        let layer = self.links[index].tls.as_deref_mut().expect("a TLS link");
        let was_handshaking = layer.is_handshaking();
        let result = layer.receive(bytes, &mut plain);
        let established = was_handshaking && !layer.is_handshaking();
        let answer = layer.pending() > 0;
        let open = match result {
            Err(e) => {
                self.tls_failed(index, e);
                false
            }
            Ok(received) => {
                if answer {
                    self.mark_dirty(index);
                }
                let mut open = !established || self.tls_established(index, id, driver);
                if open && !plain.is_empty() {
                    open = self.input(index, id, &mut plain, driver);
                }
                if received.peer_closed && self.link(id).is_some() {
                    // close_notify: the peer sends nothing more, as with a FIN.
                    if self.links[index].state == State::Accepting {
                        self.remove(index);
                    } else {
                        log::debug!("repod: {id:?} closed by peer (close_notify)");
                        self.close(id, DisconnectReason::PeerClosed);
                    }
                    open = false;
                }
                open
            }
        };
        plain.clear();
        self.plain = plain;
        open
    }

    /// Link `index` finished its TLS handshake. A server's repod-over-TLS connection becomes a
    /// channel now (a `wss` one waits for its upgrade request); a client goes on to its
    /// upgrade, or is connected. Returns whether the link is still open for input.
    fn tls_established(&mut self, index: usize, id: ChannelId, driver: &mut impl Driver) -> bool {
        let link = &mut self.links[index];
        log::debug!("repod: {id:?} TLS handshake done");
        match link.state {
            State::Accepting if matches!(link.codec, Codec::Frames(_)) => {
                link.state = State::Open;
                link.close_deadline = None;
                link.last_rx = self.now;
                self.accepting -= 1;
                self.live += 1;
                self.counters.accepted += 1;
                self.channel_ready(index, id, driver);
            }
            State::Upgrading => self.transport_ready(index, driver),
            _ => {}
        }
        self.link(id)
            .is_some_and(|l| l.is_live() || l.state == State::Accepting)
    }

    /// Hands bytes read from link `index` to its codec, and what they complete to the driver.
    /// Returns whether the link still reads input for the application.
    pub(super) fn input(
        &mut self,
        index: usize,
        id: ChannelId,
        bytes: &mut [u8],
        driver: &mut impl Driver,
    ) -> bool {
        let mut codec = std::mem::take(&mut self.links[index].codec);
        // Frames are counted once per read, not with a lookup of the link per frame.
        let mut frames = 0u64;
        let result = match &mut codec {
            Codec::Frames(decoder) => decoder.decode(bytes, |payload| {
                frames += 1;
                self.deliver(id, payload, driver);
                if self.is_open(id) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            }),
            Codec::Ws(decoder) => self.ws_input(id, decoder, bytes, &mut frames, driver),
            Codec::Upgrade(_) => {
                let Codec::Upgrade(up) = codec else {
                    unreachable!("matched above")
                };
                return self.upgrade_input(index, id, up, bytes, driver);
            }
            Codec::Proxy(_) => {
                let Codec::Proxy(head) = codec else {
                    unreachable!("matched above")
                };
                return self.proxy_input(index, id, head, bytes, driver);
            }
        };
        self.counters.msgs_in += frames;
        let link = self.links.get_mut(index).filter(|l| l.gen == id.gen);
        if let Some(link) = link {
            link.msgs_in += frames;
            if link.state == State::Open {
                link.codec = codec;
            } else {
                return false;
            }
        } else {
            return false;
        }
        if self.sessions_resuming() {
            // This link now carries an older channel: its input goes on there, next read.
            self.finish_resume(driver);
            return false;
        }
        if let Err(e) = result {
            log::warn!("repod: closing {id:?}: {e}");
            self.close(id, DisconnectReason::Error(e));
            return false;
        }
        true
    }

    /// One received frame: a heartbeat is answered or measured here, anything else goes to the
    /// driver.
    pub(super) fn deliver(&mut self, id: ChannelId, payload: &[u8], driver: &mut impl Driver) {
        // Most messages are told ordinary by one look at their action, for heartbeats and
        // sessions at once.
        if crate::session::is_ordinary(payload) {
            let direct = match self.links[id.index()].session.as_deref_mut() {
                None => true,
                Some(s) => s.count_steady(),
            };
            return if direct {
                driver.frame(self, id, payload)
            } else {
                self.session_frame(id, payload, false, driver)
            };
        }
        match heartbeat::classify(payload) {
            None if self.links[id.index()].session.is_some() => {
                self.session_frame(id, payload, true, driver)
            }
            None => driver.frame(self, id, payload),
            Some(Beat::Ping(stamp)) => match stamp {
                Some(t) => self.send_uncounted(id, &msg! { "action": heartbeat::PONG, "t": t }),
                None => self.send_uncounted(id, &msg! { "action": heartbeat::PONG }),
            },
            Some(Beat::Pong(stamp)) => {
                // Only our own stamps make sense; anything else (from the future, or garbage)
                // is not a measurement.
                let sent = stamp.and_then(|t| self.epoch.checked_add(Duration::from_micros(t)));
                let rtt = sent.and_then(|s| self.now.checked_duration_since(s));
                if let (Some(rtt), Some(link)) = (rtt, self.link_mut(id)) {
                    link.rtt = Some(rtt);
                }
            }
        }
    }

    pub(super) fn ws_input(
        &mut self,
        id: ChannelId,
        decoder: &mut WsDecoder,
        bytes: &mut [u8],
        frames: &mut u64,
        driver: &mut impl Driver,
    ) -> Result<(), Error> {
        let mut refused = None;
        let result = decoder.decode(bytes, |event| match event {
            WsEvent::Binary(payload) => {
                *frames += 1;
                self.deliver(id, payload, driver);
                if self.is_open(id) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            }
            WsEvent::Text(_) => {
                refused = Some(WsError::TextMessage);
                ControlFlow::Break(())
            }
            WsEvent::Ping(payload) => {
                self.send_control(id, Opcode::Pong, payload);
                ControlFlow::Continue(())
            }
            WsEvent::Pong(_) => ControlFlow::Continue(()),
            WsEvent::Close { code, reason } => {
                log::debug!("repod: {id:?} sent close {code:?} {reason:?}");
                // Answer with the same status (none for none), then close for the application.
                let status = code.map(u16::to_be_bytes);
                let payload = status.as_ref().map_or(&[][..], |s| &s[..]);
                self.send_control(id, Opcode::Close, payload);
                if let Some(link) = self.link_mut(id) {
                    link.close_sent = true;
                }
                self.close(id, DisconnectReason::PeerClosed);
                ControlFlow::Break(())
            }
        });
        match refused {
            Some(e) => Err(Error::WebSocket(e)),
            None => result.map_err(Error::WebSocket),
        }
    }

    /// Queues a control frame (a pong, a close answer) under the usual output cap.
    pub(super) fn send_control(&mut self, id: ChannelId, opcode: Opcode, payload: &[u8]) {
        // A control frame is not a message.
        let _ = self.queue(id, 0, |out, transport| {
            wscodec::encode_frame(out, opcode, true, payload, transport.mask());
            Ok(())
        });
    }

    /// Bytes of a PROXY protocol header. Once it is complete the connection is from the client
    /// it names, and goes on to its WebSocket upgrade or becomes a channel.
    pub(super) fn proxy_input(
        &mut self,
        index: usize,
        id: ChannelId,
        mut head: Vec<u8>,
        bytes: &mut [u8],
        driver: &mut impl Driver,
    ) -> bool {
        let slot = self.links[index].listener;
        let max_len = self.listeners[slot]
            .as_ref()
            .and_then(|l| l.proxy)
            .map_or(crate::proxy::DEFAULT_MAX_HEADER_LEN, |p| p.max_len);
        // Most headers arrive whole in one read: parse them where they lie.
        let parsed = if head.is_empty() {
            crate::proxy::parse(bytes, max_len)
        } else {
            head.extend_from_slice(bytes);
            crate::proxy::parse(&head, max_len)
        };
        let header = match parsed {
            Ok(Some(h)) => h,
            Ok(None) => {
                if head.is_empty() {
                    head.extend_from_slice(bytes);
                }
                self.links[index].codec = Codec::Proxy(head);
                return true;
            }
            Err(e) => {
                self.refuse(index, Error::Proxy(e));
                return false;
            }
        };
        let link = &mut self.links[index];
        if let Some(source) = header.source {
            log::debug!(
                "repod: {id:?} is {source} (PROXY header from {:?})",
                link.addr
            );
            link.addr = Some(source);
        }
        let rest = if head.is_empty() {
            &mut bytes[header.len..]
        } else {
            &mut head[header.len..]
        };
        if link.is_ws() || link.tls.is_some() {
            // A handshake follows (TLS, an upgrade, or both), on a time limit of its own.
            let is_ws = link.is_ws();
            let deadline = self.now + self.handshake_timeout(slot);
            let codec = self.server_codec(slot, is_ws);
            let link = &mut self.links[index];
            link.codec = codec;
            link.close_deadline = Some(deadline);
            self.linger_check_at = Some(self.linger_check_at.map_or(deadline, |t| t.min(deadline)));
            return rest.is_empty() || self.receive(index, id, rest, driver);
        }
        link.codec = Codec::Frames(FrameDecoder::new(self.cfg.max_frame_len));
        link.state = State::Open;
        link.close_deadline = None;
        link.last_rx = self.now;
        self.accepting -= 1;
        self.live += 1;
        self.counters.accepted += 1;
        self.channel_ready(index, id, driver);
        rest.is_empty() || !self.is_open(id) || self.input(index, id, rest, driver)
    }

    /// Bytes of a WebSocket upgrade: the request on a server, the answer on a client.
    pub(super) fn upgrade_input(
        &mut self,
        index: usize,
        id: ChannelId,
        mut up: Box<Upgrade>,
        bytes: &[u8],
        driver: &mut impl Driver,
    ) -> bool {
        up.head.extend_from_slice(bytes);
        let max_frame_len = self.cfg.max_frame_len;
        if self.links[index].state == State::Accepting {
            let opts = self.listeners.get(up.listener).and_then(|l| l.as_ref());
            let Some(opts) = opts.and_then(|l| l.ws.as_ref()) else {
                // The listener was closed (the server is stopping): no new players.
                self.refuse(
                    index,
                    Error::Handshake(handshake::HandshakeError::Unavailable),
                );
                return false;
            };
            let complete = handshake::worth_parsing(&up.head, bytes.len());
            if !complete && up.head.len() <= opts.max_handshake_len {
                self.links[index].codec = Codec::Upgrade(up);
                return true;
            }
            let request = match handshake::parse_request(&up.head, opts) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.links[index].codec = Codec::Upgrade(up);
                    return true;
                }
                Err(e) => {
                    self.refuse(index, Error::Handshake(e));
                    return false;
                }
            };
            let peer = self.links[index]
                .addr
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            let head = &up.head[..request.len];
            let verdict =
                crate::ws::upgrade::with_request(head, peer, |req| driver.upgrade(self, req));
            let link = &mut self.links[index];
            match verdict {
                Ok(login) => link.login = login.map(Box::new),
                Err(status) => {
                    let e = handshake::HandshakeError::Denied(status);
                    self.refuse(index, Error::Handshake(e));
                    return false;
                }
            }
            handshake::write_accept(&mut link.out, &request.accept);
            link.codec = Codec::Ws(WsDecoder::new(Role::Server, max_frame_len));
            link.state = State::Open;
            link.close_deadline = None;
            link.last_rx = self.now;
            if !link.dirty {
                link.dirty = true;
                self.dirty.push(index);
            }
            self.accepting -= 1;
            self.live += 1;
            self.counters.accepted += 1;
            log::debug!("repod: {id:?} upgraded to WebSocket");
            self.channel_ready(index, id, driver);
            // Frames the client sent right behind its request.
            let rest = &mut up.head[request.len..];
            rest.is_empty() || !self.is_open(id) || self.input(index, id, rest, driver)
        } else {
            match handshake::parse_response(&up.head, &up.key, handshake_max()) {
                Ok(Some(len)) => {
                    let link = &mut self.links[index];
                    link.codec = Codec::Ws(WsDecoder::new(Role::Client, max_frame_len));
                    link.state = State::Open;
                    link.close_deadline = None;
                    link.out_hold = usize::MAX;
                    if link.queued() > 0 && !link.dirty {
                        link.dirty = true;
                        self.dirty.push(index);
                    }
                    driver.connected(self, id);
                    // The server's first frames (its greeting) often share the answer's segment.
                    let rest = &mut up.head[len..];
                    rest.is_empty() || !self.is_open(id) || self.input(index, id, rest, driver)
                }
                Ok(None) => {
                    self.links[index].codec = Codec::Upgrade(up);
                    true
                }
                Err(e) => {
                    log::warn!("repod: {id:?}: WebSocket upgrade failed: {e}");
                    self.close(id, DisconnectReason::Error(Error::Handshake(e)));
                    false
                }
            }
        }
    }

    pub(super) fn run_backlog(&mut self, driver: &mut impl Driver) {
        if self.backlog.is_empty() {
            return;
        }
        let backlog = std::mem::take(&mut self.backlog);
        for &index in &backlog {
            self.read(index, driver, true);
            self.deliver_closed(driver);
        }
        // Keep the allocation; `read` may have queued new work meanwhile.
        let mut backlog = backlog;
        backlog.clear();
        backlog.append(&mut self.backlog);
        self.backlog = backlog;
        if self.accept_pending {
            self.accept_all(driver);
        }
    }
}

/// Bound on a server's upgrade answer, read by a client.
pub(super) fn handshake_max() -> usize {
    crate::ws::DEFAULT_MAX_HANDSHAKE_LEN
}
