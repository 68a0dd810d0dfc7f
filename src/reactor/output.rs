//! A link's output: messages encoded into its queue, then through its layers (TLS) to the
//! socket, in as few writes as the kernel allows.

use super::*;

impl Reactor {
    /// Encodes `msg` as one frame into `id`'s output buffer. Returns the bytes queued.
    pub(crate) fn send<E: Encode + ?Sized>(
        &mut self,
        id: ChannelId,
        msg: &E,
    ) -> Result<usize, Error> {
        let max = self.cfg.max_frame_len;
        self.queue(id, 1, |out, transport| {
            let encode = |buf: &mut Vec<u8>| msg.encode(buf);
            match transport {
                Transport::Tcp => frame::encode_frame_with(out, max, encode).map(drop),
                ws => wscodec::encode_binary_with(out, max, ws.mask(), encode)
                    .map(drop)
                    .map_err(|len| Error::FrameTooLarge { len, max }),
            }
        })
    }

    /// Queues bytes that are already length-prefixed frames (from another thread's handle, or
    /// a broadcast), re-framed for a WebSocket connection.
    pub(crate) fn send_framed(&mut self, id: ChannelId, framed: &[u8]) -> Result<usize, Error> {
        let msgs = frame::payloads(framed).count() as u64;
        self.queue(id, msgs, |out, transport| {
            match transport {
                Transport::Tcp => out.extend_from_slice(framed),
                ws => {
                    for payload in frame::payloads(framed) {
                        wscodec::encode_frame(out, Opcode::Binary, true, payload, ws.mask());
                    }
                }
            }
            Ok(())
        })
    }

    /// Queues already length-prefixed frames for every open connection (a handle's broadcast),
    /// walking the table in place rather than collecting the ids first. Returns how many
    /// connections took them.
    pub(crate) fn send_framed_to_all(&mut self, framed: &[u8]) -> usize {
        let mut count = 0;
        for index in 0..self.links.capacity() {
            if self.links.get(index).is_none_or(|l| l.state != State::Open) {
                continue;
            }
            let id = self.id_of(index);
            if self.send_framed(id, framed).is_ok() {
                count += 1;
            }
        }
        count
    }

    /// Queues one message already framed for this connection's transport.
    pub(super) fn send_raw(&mut self, id: ChannelId, bytes: &[u8]) -> Result<usize, Error> {
        self.queue(id, 1, |out, _| {
            out.extend_from_slice(bytes);
            Ok(())
        })
    }

    /// Lets `write` append `msgs` messages to the output of `id` (open or still connecting),
    /// then applies the output cap to what it appended. Returns the bytes queued.
    pub(super) fn queue(
        &mut self,
        id: ChannelId,
        msgs: u64,
        write: impl FnOnce(&mut Vec<u8>, &mut Transport) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let link = self
            .link_mut(id)
            .filter(|l| l.is_live())
            .ok_or_else(|| Error::Closed)?;
        compact(link);
        let before = link.out.len();
        write(&mut link.out, &mut link.transport)?;
        let n = link.out.len() - before;
        self.admit(id, before, n, msgs)
    }

    /// Applies the output cap to what was just appended at `before..` (`msgs` messages), and
    /// schedules a write.
    pub(super) fn admit(
        &mut self,
        id: ChannelId,
        before: usize,
        n: usize,
        msgs: u64,
    ) -> Result<usize, Error> {
        let (max, policy) = (self.cfg.max_queued_output, self.cfg.slow_reader);
        let link = &mut self.links[id.index()];
        let queued = link.queued();
        // One message is always accepted into an empty queue, so the cap cannot make a
        // message of up to max_frame_len unsendable.
        if queued > max && before > link.out_pos {
            link.out.truncate(before);
            let err = Error::OutputFull { queued, max };
            if policy == SlowReaderPolicy::Disconnect {
                log::warn!(
                    "repod: closing {:?} ({id:?}): {err}",
                    link.addr.map(|a| a.to_string()).unwrap_or_default()
                );
                self.close(
                    id,
                    DisconnectReason::Error(Error::OutputFull { queued, max }),
                );
            }
            return Err(err);
        }
        link.msgs_out += msgs;
        self.counters.msgs_out += msgs;
        if !link.dirty && link.state != State::Connecting {
            link.dirty = true;
            self.dirty.push(id.index());
        }
        Ok(n)
    }

    /// Writes `id`'s queued output now instead of at the end of the turn.
    pub(crate) fn flush_now(&mut self, id: ChannelId) {
        if let Some(link) = self.link_mut(id) {
            if link.state == State::Open && link.queued() > 0 {
                self.flush(id.index());
            }
        }
    }

    /// Sends one message to every open connection that `to` accepts, encoding it once.
    /// Returns how many connections it was queued for.
    pub(crate) fn broadcast<E: Encode + ?Sized>(
        &mut self,
        msg: &E,
        mut to: impl FnMut(ChannelId) -> bool,
    ) -> Result<usize, Error> {
        let mut framed = std::mem::take(&mut self.shared_frame);
        let mut ws_framed = std::mem::take(&mut self.shared_ws_frame);
        framed.clear();
        ws_framed.clear();
        let r = frame::encode_frame_with(&mut framed, self.cfg.max_frame_len, |b| msg.encode(b));
        let mut count = 0;
        if r.is_ok() {
            for index in 0..self.links.capacity() {
                let Some(link) = self.links.get(index) else {
                    continue;
                };
                if link.state != State::Open {
                    continue;
                }
                let id = self.id_of(index);
                if !to(id) {
                    continue;
                }
                // Encoded once; framed at most once more, for every WebSocket player at once.
                let sent = match link.transport {
                    Transport::Tcp => self.send_raw(id, &framed),
                    Transport::WsServer => {
                        if ws_framed.is_empty() {
                            let payload = &framed[frame::HEADER_LEN..];
                            wscodec::encode_frame(
                                &mut ws_framed,
                                Opcode::Binary,
                                true,
                                payload,
                                None,
                            );
                        }
                        self.send_raw(id, &ws_framed)
                    }
                    Transport::WsClient(_) => self.send_framed(id, &framed),
                };
                if sent.is_ok() {
                    count += 1;
                }
            }
        }
        self.shared_frame = framed;
        self.shared_ws_frame = ws_framed;
        r.map(|_| count)
    }

    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &index in &dirty {
            if let Some(link) = self.links.get_mut(index) {
                link.dirty = false;
                // Often written already, right after the read that caused it.
                if link.state == State::Open && link.nothing_to_write() {
                    continue;
                }
                self.flush(index);
            }
        }
        dirty.clear();
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    /// Writes as much queued output as the socket takes, in as few syscalls as it allows.
    pub(super) fn flush(&mut self, index: usize) {
        let link = &mut self.links[index];
        if matches!(link.state, State::Connecting | State::Draining) {
            return;
        }
        if link.tls.is_some() {
            return self.flush_tls(index);
        }
        let end = link.out.len().min(link.out_hold);
        while link.out_pos < end {
            match link.stream.write(&link.out[link.out_pos..end]) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return self.write_failed(index, e);
                }
                Ok(n) => {
                    link.out_pos += n;
                    link.bytes_out += n as u64;
                    self.counters.bytes_out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.write_failed(index, e),
            }
        }
        if link.out_pos < link.out.len() {
            return; // held back until the upgrade completes
        }
        link.out.clear();
        link.out_pos = 0;
        if link.out.capacity() > KEEP_OUTPUT || (link.fresh && link.state == State::Open) {
            link.out = Vec::new();
            link.fresh = false;
        }
        if link.state == State::Flushing {
            // Everything is out: send FIN, then read until the peer closes as well.
            let _ = link.stream.shutdown(Shutdown::Write);
            link.state = State::Draining;
            self.backlog.push(index);
        }
    }

    /// [`flush`](Self::flush) through the TLS layer: the queued plaintext is encrypted a chunk
    /// at a time, each chunk's records written before the next is encrypted, so what the
    /// socket cannot take yet stays plaintext in the queue (encrypted once, when it can go).
    fn flush_tls(&mut self, index: usize) {
        loop {
            let link = &mut self.links[index];
            let release = link.fresh || link.state != State::Open;
            let Some(layer) = link.tls.as_deref_mut() else {
                return self.flush(index);
            };
            while !layer.unwritten().is_empty() {
                match link.stream.write(layer.unwritten()) {
                    Ok(0) => {
                        let e = io::Error::from(io::ErrorKind::WriteZero);
                        return self.write_failed(index, e);
                    }
                    Ok(n) => {
                        layer.wrote(n, release, KEEP_OUTPUT);
                        link.bytes_out += n as u64;
                        self.counters.bytes_out += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return self.write_failed(index, e),
                }
            }
            let end = link.out.len().min(link.out_hold);
            if link.out_pos < end {
                let stop = end.min(link.out_pos + TLS_CHUNK);
                match layer.encrypt(&link.out[link.out_pos..stop]) {
                    Ok(true) => {
                        link.out_pos = stop;
                        continue;
                    }
                    Ok(false) => return, // the handshake is not done: the plaintext waits
                    Err(e) => return self.tls_failed(index, e),
                }
            }
            if link.out_pos < link.out.len() {
                return; // held back until the upgrade completes
            }
            link.out.clear();
            link.out_pos = 0;
            if link.out.capacity() > KEEP_OUTPUT || (link.fresh && link.state == State::Open) {
                link.out = Vec::new();
                link.fresh = false;
            }
            if link.state != State::Flushing {
                return;
            }
            if !layer.close_sent() && !layer.is_handshaking() {
                // Everything queued is out: close_notify goes last, then FIN.
                layer.close_notify();
                continue;
            }
            let _ = link.stream.shutdown(Shutdown::Write);
            link.state = State::Draining;
            self.backlog.push(index);
            return;
        }
    }

    /// The TLS layer failed: it is dropped (nothing more can be sent through it) and the
    /// connection closes, or is refused if it was not a channel yet.
    pub(super) fn tls_failed(&mut self, index: usize, e: Error) {
        let link = &mut self.links[index];
        // Records already made (a fatal alert telling the peer why) still go out, as they are.
        let records = link.tls.take().map(|t| t.unwritten().to_vec());
        link.out = records.unwrap_or_default();
        link.out_pos = 0;
        link.out_hold = usize::MAX;
        // Nothing more in clear: no WebSocket close frame after the alert.
        link.close_sent = true;
        match link.state {
            State::Accepting => self.refuse(index, e),
            _ if link.is_live() => {
                let id = self.id_of(index);
                log::warn!("repod: closing {id:?}: {e}");
                self.close(id, DisconnectReason::Error(e));
            }
            _ => {
                log::debug!("repod: {:?}: {e}", self.id_of(index));
                self.mark_dirty(index);
            }
        }
    }

    /// Schedules a flush of link `index` at the end of the turn.
    pub(super) fn mark_dirty(&mut self, index: usize) {
        let link = &mut self.links[index];
        if !link.dirty {
            link.dirty = true;
            self.dirty.push(index);
        }
    }

    pub(super) fn write_failed(&mut self, index: usize, e: io::Error) {
        let id = self.id_of(index);
        let link = &mut self.links[index];
        link.out = Vec::new();
        link.out_pos = 0;
        if link.is_live() {
            log::debug!("repod: {id:?} write error: {e}");
            self.close(id, DisconnectReason::Error(Error::Io(e)));
        } else {
            self.remove(index);
        }
    }
}

/// Drops already-written bytes from the front of a large output buffer.
pub(super) fn compact(link: &mut Link) {
    if link.out_pos == link.out.len() {
        link.out.clear();
        link.out_pos = 0;
    } else if link.out_pos >= KEEP_OUTPUT && link.out_pos * 2 >= link.out.len() {
        link.out.drain(..link.out_pos);
        if link.out_hold != usize::MAX {
            link.out_hold -= link.out_pos;
        }
        link.out_pos = 0;
    }
}
