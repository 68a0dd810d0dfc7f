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

    /// [`send`](Self::send) for a message the peer does not count in a session (a heartbeat,
    /// an acknowledgement, a resume's answer): no replay mark for it.
    pub(super) fn send_uncounted<E: Encode + ?Sized>(&mut self, id: ChannelId, msg: &E) {
        self.uncounted = true;
        let _ = self.send(id, msg);
        self.uncounted = false;
    }

    /// Encodes `msg` as one frame into `id`'s output, latest-wins: it replaces the message of
    /// the same action and `key` that is still waiting there, unwritten (see
    /// [`queue_latest`](Self::queue_latest)). Returns the bytes queued.
    pub(crate) fn send_latest<E: Encode + ?Sized>(
        &mut self,
        id: ChannelId,
        key: u64,
        msg: &E,
    ) -> Result<usize, Error> {
        // Framed first in the shared buffer: the action is read from the encoded message, and
        // a WebSocket frame is made from the same bytes.
        let mut framed = std::mem::take(&mut self.shared_frame);
        framed.clear();
        let r = frame::encode_frame_with(&mut framed, self.cfg.max_frame_len, |b| msg.encode(b))
            .and_then(|_| self.send_framed_latest(id, key, &framed));
        self.shared_frame = framed;
        r
    }

    /// [`send_latest`](Self::send_latest) for one already length-prefixed frame.
    pub(crate) fn send_framed_latest(
        &mut self,
        id: ChannelId,
        key: u64,
        framed: &[u8],
    ) -> Result<usize, Error> {
        let payload = &framed[frame::HEADER_LEN..];
        let ident = latest_ident(payload, key);
        self.queue_latest(id, ident, |out, transport| {
            match transport {
                Transport::Tcp => out.extend_from_slice(framed),
                ws => wscodec::encode_frame(out, Opcode::Binary, true, payload, ws.mask()),
            }
            Ok(())
        })
    }

    /// Sends one message latest-wins to every open connection that `to` accepts, encoding it
    /// once. Returns how many connections it was queued for.
    pub(crate) fn broadcast_latest<E: Encode + ?Sized>(
        &mut self,
        key: u64,
        msg: &E,
        mut to: impl FnMut(ChannelId) -> bool,
    ) -> Result<usize, Error> {
        let mut framed = std::mem::take(&mut self.shared_frame);
        framed.clear();
        let r = frame::encode_frame_with(&mut framed, self.cfg.max_frame_len, |b| msg.encode(b));
        let count = r.map(|_| self.framed_to_all_latest(key, &framed, &mut to));
        self.shared_frame = framed;
        count
    }

    /// Queues one length-prefixed frame latest-wins for every open connection `to` accepts
    /// (framed at most once more, for every WebSocket player at once).
    pub(crate) fn framed_to_all_latest(
        &mut self,
        key: u64,
        framed: &[u8],
        to: &mut impl FnMut(ChannelId) -> bool,
    ) -> usize {
        let payload = &framed[frame::HEADER_LEN..];
        let ident = latest_ident(payload, key);
        let mut ws_framed = std::mem::take(&mut self.shared_ws_frame);
        ws_framed.clear();
        let mut count = 0;
        for index in 0..self.links.capacity() {
            if self.links.get(index).is_none_or(|l| !l.takes_broadcasts()) {
                continue;
            }
            let id = self.id_of(index);
            if !to(id) {
                continue;
            }
            if matches!(self.links[index].transport, Transport::WsServer) && ws_framed.is_empty() {
                wscodec::encode_frame(&mut ws_framed, Opcode::Binary, true, payload, None);
            }
            let sent = self.queue_latest(id, ident, |out, transport| {
                match transport {
                    Transport::Tcp => out.extend_from_slice(framed),
                    Transport::WsServer => out.extend_from_slice(&ws_framed),
                    ws => wscodec::encode_frame(out, Opcode::Binary, true, payload, ws.mask()),
                }
                Ok(())
            });
            if sent.is_ok() {
                count += 1;
            }
        }
        self.shared_ws_frame = ws_framed;
        count
    }

    /// Appends one message as [`queue`](Self::queue) does, then takes out of the queue the
    /// message of the same identity (action and key) if it is still waiting, unwritten: the
    /// newest stands last, after every message queued before it.
    ///
    /// Why last: a client then never sees messages out of the order they were sent in. A
    /// score sent after the old snapshot and before the new one arrives before the new one,
    /// as it was sent; had the new snapshot taken the old one's place, it would arrive before
    /// a message sent earlier than itself. Ordinary messages are never dropped or reordered: a
    /// replacement only removes the older message of its own identity. A message the socket
    /// has started to take is not replaced (half of it is gone): the new one follows it.
    fn queue_latest(
        &mut self,
        id: ChannelId,
        ident: u64,
        write: impl FnOnce(&mut Vec<u8>, &mut Transport) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let link = self
            .link_mut(id)
            .filter(|l| l.is_live())
            .ok_or(Error::Closed)?;
        compact(link);
        let before = link.out.len();
        write(&mut link.out, &mut link.transport)?;
        let n = link.out.len() - before;
        // The cap applies before the old message goes: a refused message leaves it in place.
        let queued = self.admit(id, before, n, 1)?;
        let link = &mut self.links[id.index()];
        let mut start = before;
        if let Some(old) = link.take_latest(ident) {
            link.out.drain(old.clone());
            start -= old.len();
            // The messages behind it moved forward.
            let old_at = link.out_base + old.start as u64;
            for k in &mut link.latest {
                if k.at > old_at {
                    k.at -= old.len() as u64;
                }
            }
            if let Some(s) = link.session.as_deref_mut() {
                s.unmark(old_at, old.len() as u64);
            }
            link.msgs_out -= 1;
            self.counters.msgs_out -= 1;
            link.replaced += 1;
        }
        let at = link.out_base + start as u64;
        link.latest.push(Keyed {
            ident,
            at,
            len: n as u32,
        });
        Ok(queued)
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
            if self.links.get(index).is_none_or(|l| !l.takes_broadcasts()) {
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
        let max = self.cfg.max_queued_output;
        let link = &mut self.links[id.index()];
        let queued = link.queued();
        // One message is always accepted into an empty queue, so the cap cannot make a
        // message of up to max_frame_len unsendable.
        if queued > max && before > link.out_pos {
            return Err(self.refuse_output(id, before, queued));
        }
        link.msgs_out += msgs;
        self.counters.msgs_out += msgs;
        if let Some(s) = link.session.as_deref_mut() {
            if self.uncounted {
                // Ours, not counted: nothing to mark.
            } else if msgs == 1 && matches!(link.transport, Transport::Tcp) {
                // One frame: its payload follows its 4-byte length.
                debug_assert_eq!(
                    n,
                    4 + u32::from_be_bytes(link.out[before..before + 4].try_into().unwrap())
                        as usize
                );
                let end = link.out_base + (before + n) as u64;
                s.mark_one(end, &link.out[before + 4..before + n]);
            } else {
                s.mark(
                    link.out_base,
                    &link.out[before..before + n],
                    before,
                    &link.transport,
                );
            }
            // What is kept grows here only while away (nothing is written): a link that is up
            // is checked where it writes (`Reactor::replay_bounded`).
            if link.state == State::Away {
                let max = self.cfg.resume_buffer;
                if let Some(kept) = s.kept_over(max, &link.out, link.out_pos, link.state) {
                    self.replay_overflow(id, kept, max);
                    return Ok(n);
                }
            }
        }
        if !link.dirty && link.state != State::Connecting {
            link.dirty = true;
            self.dirty.push(id.index());
        }
        Ok(n)
    }

    /// Over the output cap: what was just appended at `before` goes, and the slow-reader policy
    /// applies. Out of line: the send path stays small.
    #[cold]
    #[inline(never)]
    fn refuse_output(&mut self, id: ChannelId, before: usize, queued: usize) -> Error {
        let max = self.cfg.max_queued_output;
        let link = &mut self.links[id.index()];
        link.out.truncate(before);
        let err = Error::OutputFull { queued, max };
        if self.cfg.slow_reader == SlowReaderPolicy::Disconnect {
            log::warn!(
                "repod: closing {:?} ({id:?}): {err}",
                link.addr.map(|a| a.to_string()).unwrap_or_default()
            );
            self.close(
                id,
                DisconnectReason::Error(Error::OutputFull { queued, max }),
            );
        }
        err
    }

    /// Whether link `index`'s session, if any, keeps no more than `Config::resume_buffer` for
    /// replay after a write; if it keeps more, it ends, and false is returned.
    #[inline]
    fn replay_bounded(&mut self, index: usize) -> bool {
        let link = &self.links[index];
        let Some(s) = link.session.as_deref() else {
            return true;
        };
        let max = self.cfg.resume_buffer;
        match s.kept_over(max, &link.out, link.out_pos, link.state) {
            None => true,
            Some(kept) => {
                self.replay_overflow(self.id_of(index), kept, max);
                false
            }
        }
    }

    /// A session keeps more than `Config::resume_buffer` for replay: it ends.
    #[cold]
    #[inline(never)]
    fn replay_overflow(&mut self, id: ChannelId, kept: usize, max: usize) {
        log::warn!("repod: closing {id:?}: its session keeps {kept} bytes (max {max})");
        self.close(id, DisconnectReason::ReplayOverflow { kept, max });
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
                if !link.takes_broadcasts() {
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
        if matches!(
            link.state,
            State::Connecting | State::Draining | State::Away
        ) {
            return;
        }
        if !self.may_write(index) {
            return;
        }
        let link = &mut self.links[index];
        if link.tls.is_some() {
            return self.flush_tls(index);
        }
        let end = link.out.len().min(link.out_hold);
        while link.out_pos < end {
            match write_some(&mut link.stream, &link.out[link.out_pos..end]) {
                Written::Bytes(n) => {
                    link.out_pos += n;
                    link.bytes_out += n as u64;
                    self.counters.bytes_out += n as u64;
                }
                Written::Blocked => {
                    link.refused(self.now);
                    self.replay_bounded(index);
                    return;
                }
                Written::Failed(e) => return self.write_failed(index, e),
            }
        }
        if !self.replay_bounded(index) {
            return;
        }
        let link = &mut self.links[index];
        if link.out_pos < link.out.len() {
            return; // held back until the upgrade completes
        }
        link.congested = false;
        link.written_all();
        if link.out.is_empty()
            && (link.out.capacity() > KEEP_OUTPUT || (link.fresh && link.state == State::Open))
        {
            link.out = Vec::new();
            link.fresh = false;
        }
        if link.session.is_some() {
            self.probation(index);
        }
        let link = &mut self.links[index];
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
                match write_some(&mut link.stream, layer.unwritten()) {
                    Written::Bytes(n) => {
                        layer.wrote(n, release, KEEP_OUTPUT);
                        link.bytes_out += n as u64;
                        self.counters.bytes_out += n as u64;
                    }
                    Written::Blocked => {
                        link.congested = true;
                        link.gated_until = Some(self.now + GATE_HOLD);
                        return;
                    }
                    Written::Failed(e) => return self.write_failed(index, e),
                }
            }
            let end = link.out.len().min(link.out_hold);
            if link.out_pos < end {
                // Records made cannot be taken back: while the link is congested, encrypt
                // little at a time, so what waits stays plaintext in the queue, where a
                // latest-wins message can still be replaced.
                let chunk = if link.congested {
                    TLS_CHUNK_CONGESTED
                } else {
                    TLS_CHUNK
                };
                let stop = end.min(link.out_pos + chunk);
                match layer.encrypt(&link.out[link.out_pos..stop]) {
                    Ok(true) => {
                        // Encrypted is as good as written: it cannot be taken back.
                        link.out_pos = stop;
                        if !self.replay_bounded(index) {
                            return;
                        }
                        continue;
                    }
                    Ok(false) => return, // the handshake is not done: the plaintext waits
                    Err(e) => return self.tls_failed(index, e),
                }
            }
            if link.out_pos < link.out.len() {
                return; // held back until the upgrade completes
            }
            link.congested = false;
            // As `Link::written_all`, field by field: `layer` borrows the link's TLS layer.
            link.latest.clear();
            match link.session.as_deref_mut() {
                Some(s) if s.keep < link.out.len() => {} // kept until the peer acknowledges
                s => {
                    if let Some(s) = s {
                        s.keep = 0;
                    }
                    link.out_base += link.out.len() as u64;
                    link.out.clear();
                    link.out_pos = 0;
                    if link.out_hold != usize::MAX {
                        link.out_hold = 0;
                    }
                }
            }
            if link.out.is_empty()
                && (link.out.capacity() > KEEP_OUTPUT || (link.fresh && link.state == State::Open))
            {
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

    /// Whether link `index` may write now. A link the kernel refused lately (it is gated)
    /// writes only when the kernel has sent everything it took: `TCP_NOTSENT_LOWAT` stops
    /// the kernel from taking a new buffer of data, but it still appends a write to its last
    /// unsent segment, so writing whenever there is output would let stale data pile up there,
    /// out of reach of latest-wins. A gated link that may not write tries again on its next
    /// writable event, its next message, or after `GATE_RETRY`.
    pub(super) fn may_write(&mut self, index: usize) -> bool {
        let now = self.now;
        let link = &mut self.links[index];
        match link.gated_until {
            None => return true,
            Some(t) if now >= t => {
                link.gated_until = None;
                return true;
            }
            Some(_) => {}
        }
        if link.nothing_to_write() || kernel_sent_all(&link.stream) {
            return true;
        }
        link.refused(now);
        if !self.gated.contains(&index) {
            self.gated.push(index);
        }
        let retry = now + GATE_RETRY;
        self.gate_retry_at = Some(self.gate_retry_at.map_or(retry, |t| t.min(retry)));
        false
    }

    /// Gated links try their writes again (see [`may_write`](Self::may_write)).
    pub(super) fn retry_gated(&mut self) {
        self.gate_retry_at = None;
        let mut gated = std::mem::take(&mut self.gated);
        for &index in &gated {
            if self.links.get(index).is_some_and(|l| !l.nothing_to_write()) {
                self.flush(index);
            }
        }
        gated.clear();
        // Keep the allocation; the flushes may have gated some links again.
        gated.append(&mut self.gated);
        self.gated = gated;
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
        if link.session.is_none() || link.state != State::Open {
            // Nothing queued can be written any more; a session keeps it for replay.
            link.out = Vec::new();
            link.out_pos = 0;
        }
        if link.is_live() {
            log::debug!("repod: {id:?} write error: {e}");
            self.close(id, DisconnectReason::Error(Error::Io(e)));
        } else {
            self.remove(index);
        }
    }
}

/// What one `write` did.
enum Written {
    /// The socket took this many bytes (at least one).
    Bytes(usize),
    /// It took none: its buffer (or unsent queue, to `TCP_NOTSENT_LOWAT`) is full.
    Blocked,
    Failed(io::Error),
}

/// Writes `buf` to `stream` once (again if a signal interrupted it).
fn write_some(stream: &mut TcpStream, buf: &[u8]) -> Written {
    loop {
        return match stream.write(buf) {
            Ok(0) => Written::Failed(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => Written::Bytes(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Written::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Written::Failed(e),
        };
    }
}

/// Whether the kernel has sent everything written to `stream` (with `TCP_NOTSENT_LOWAT` set,
/// the socket polls writable exactly then). A `poll` with no wait: only gated links ask.
#[cfg(target_os = "linux")]
fn kernel_sent_all(stream: &TcpStream) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(stream, PollFlags::OUT)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0].revents().contains(PollFlags::OUT),
        Err(_) => true,
    }
}

#[cfg(not(target_os = "linux"))]
fn kernel_sent_all(_stream: &TcpStream) -> bool {
    true
}

/// The identity of a latest-wins message: its action and the caller's key (an entity, say),
/// hashed. A payload whose action cannot be read is keyed by `key` alone.
fn latest_ident(payload: &[u8], key: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    if let Ok(m) = crate::message::Message::parse(payload) {
        m.action_bytes().hash(&mut h);
    }
    key.hash(&mut h);
    h.finish()
}

/// Drops already-written bytes from the front of a large output buffer.
pub(super) fn compact(link: &mut Link) {
    // Bytes before this are written and not kept for replay.
    let done = link
        .session
        .as_deref()
        .map_or(link.out_pos, |s| s.keep.min(link.out_pos));
    if link.session.is_some() && done < link.out.len() && link.out.capacity() < REPLAY_FLOOR {
        // A session's buffer holds what the peer has not acknowledged, whose size moves with the
        // timing of acknowledgements: sized once for a usual window, it does not grow again at
        // each new high-water mark. (A link with nothing kept or queued is not touched: an idle
        // player costs no buffer.)
        link.out.reserve(REPLAY_FLOOR - link.out.len());
    }
    if done == link.out.len() {
        link.written_all();
    } else if done >= compact_at(link) && done * 2 >= link.out.len() {
        link.out.drain(..done);
        link.out_base += done as u64;
        if link.out_hold != usize::MAX {
            link.out_hold -= done;
        }
        link.out_pos -= done;
        if let Some(s) = link.session.as_deref_mut() {
            s.keep -= done;
        }
    }
}

/// How much written output a link's buffer holds before it is moved out of the way. A session
/// keeps its buffer between writes (what is not acknowledged yet stays), so it compacts at
/// each acknowledgement that releases at least half of it (what moves is no more than what was
/// released): its writes keep landing in the same few cache lines, the fewer the better, as
/// the other channels' state shares the caches with them.
fn compact_at(link: &Link) -> usize {
    if link.session.is_some() {
        1
    } else {
        KEEP_OUTPUT
    }
}

/// The capacity a session's output buffer gets once it keeps something for replay: a few times
/// what [`ACK_EVERY`](crate::session::ACK_EVERY) ordinary messages take.
const REPLAY_FLOOR: usize = 16 * 1024;

/// Latest-wins replacement, on a real connection whose output is inspected before any of it is
/// written (the reactor writes at the end of a turn; these tests never turn it after the
/// accept).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    struct Accepting(Option<ChannelId>);

    impl Driver for Accepting {
        fn accepted(&mut self, _: &mut Reactor, id: ChannelId) {
            self.0 = Some(id);
        }
        fn frame(&mut self, _: &mut Reactor, _: ChannelId, _: &[u8]) {}
        fn closed(&mut self, _: &mut Reactor, _: ChannelId, _: DisconnectReason) {}
    }

    /// A reactor with one accepted TCP connection, and the peer's socket.
    fn connected() -> (Reactor, ChannelId, std::net::TcpStream) {
        let mut r = Reactor::new(Config::default()).unwrap();
        let addr = r
            .listen("127.0.0.1:0".parse().unwrap(), None, false, None, None)
            .unwrap();
        let peer = std::net::TcpStream::connect(addr).unwrap();
        let mut d = Accepting(None);
        let until = Instant::now() + Duration::from_secs(10);
        while d.0.is_none() && Instant::now() < until {
            r.turn(Some(Duration::from_millis(10)), &mut d).unwrap();
        }
        (r, d.0.expect("accepted"), peer)
    }

    /// The queued messages not yet written, as (action, n).
    fn queued(r: &Reactor, id: ChannelId) -> Vec<(String, u64)> {
        let link = r.link(id).unwrap();
        frame::payloads(&link.out[link.out_pos..])
            .map(|p| {
                let m = Message::parse(p).unwrap();
                (m.action().to_owned(), m.u64("n").unwrap_or(0))
            })
            .collect()
    }

    fn names(q: &[(String, u64)]) -> Vec<String> {
        q.iter().map(|(a, n)| format!("{a}{n}")).collect()
    }

    #[test]
    fn the_newest_replaces_the_waiting_one_and_goes_last() {
        let (mut r, id, _peer) = connected();
        r.flush(id.index()); // the greeting-less accept wrote nothing; start from empty
        r.send_latest(id, 0, &msg! { "action": "snap", "n": 1 })
            .unwrap();
        r.send(id, &msg! { "action": "score", "n": 1 }).unwrap();
        r.send_latest(id, 0, &msg! { "action": "pos", "n": 1 })
            .unwrap();
        r.send_latest(id, 0, &msg! { "action": "snap", "n": 2 })
            .unwrap();
        r.send(id, &msg! { "action": "score", "n": 2 }).unwrap();
        r.send_latest(id, 0, &msg! { "action": "snap", "n": 3 })
            .unwrap();
        // Ordinary messages all there, in order; one snap, the newest, after everything sent
        // before it; the other action's latest message untouched.
        assert_eq!(
            names(&queued(&r, id)),
            ["score1", "pos1", "score2", "snap3"]
        );
        let stats = r.conn_stats(id).unwrap();
        assert_eq!(stats.replaced, 2);
        assert_eq!(
            stats.msgs_out, 4,
            "replaced messages are not counted as sent"
        );
    }

    #[test]
    fn keys_separate_entities_of_one_action() {
        let (mut r, id, _peer) = connected();
        r.send_latest(id, 7, &msg! { "action": "unit", "n": 1 })
            .unwrap();
        r.send_latest(id, 8, &msg! { "action": "unit", "n": 2 })
            .unwrap();
        r.send_latest(id, 7, &msg! { "action": "unit", "n": 3 })
            .unwrap();
        r.send_latest(id, 0, &msg! { "action": "other", "n": 7 })
            .unwrap();
        assert_eq!(names(&queued(&r, id)), ["unit2", "unit3", "other7"]);
    }

    #[test]
    fn replacing_one_keeps_the_others_findable() {
        let (mut r, id, _peer) = connected();
        r.send_latest(id, 0, &msg! { "action": "a", "n": 1 })
            .unwrap();
        r.send_latest(id, 0, &msg! { "action": "b", "n": 1 })
            .unwrap();
        r.send(id, &msg! { "action": "score", "n": 1 }).unwrap();
        // Removing a1 moves b1 and the score forward; b2 must still find b1.
        r.send_latest(id, 0, &msg! { "action": "a", "n": 2 })
            .unwrap();
        r.send_latest(id, 0, &msg! { "action": "b", "n": 2 })
            .unwrap();
        r.send_latest(id, 0, &msg! { "action": "a", "n": 3 })
            .unwrap();
        assert_eq!(names(&queued(&r, id)), ["score1", "b2", "a3"]);
        assert_eq!(r.conn_stats(id).unwrap().replaced, 3);
    }

    #[test]
    fn a_message_the_socket_has_started_is_not_replaced() {
        let (mut r, id, _peer) = connected();
        r.send_latest(id, 0, &msg! { "action": "snap", "n": 1 })
            .unwrap();
        // As if the kernel had taken the first 3 bytes of it.
        r.link_mut(id).unwrap().out_pos = 3;
        r.send_latest(id, 0, &msg! { "action": "snap", "n": 2 })
            .unwrap();
        let link = r.link(id).unwrap();
        // The first snap is still whole in the buffer, the second follows it.
        let all: Vec<u64> = frame::payloads(&link.out)
            .map(|p| Message::parse(p).unwrap().u64("n").unwrap())
            .collect();
        assert_eq!(all, [1, 2]);
        // And a third replaces the second, which had not started.
        r.send_latest(id, 0, &msg! { "action": "snap", "n": 3 })
            .unwrap();
        let link = r.link(id).unwrap();
        let all: Vec<u64> = frame::payloads(&link.out)
            .map(|p| Message::parse(p).unwrap().u64("n").unwrap())
            .collect();
        assert_eq!(all, [1, 3]);
    }

    #[test]
    fn written_messages_leave_no_entry_behind() {
        let (mut r, id, _peer) = connected();
        r.send_latest(id, 0, &msg! { "action": "snap", "n": 1 })
            .unwrap();
        r.flush(id.index()); // the kernel takes it
        assert!(queued(&r, id).is_empty());
        r.send(id, &msg! { "action": "score", "n": 1 }).unwrap();
        r.send_latest(id, 0, &msg! { "action": "snap", "n": 2 })
            .unwrap();
        // Nothing to replace: the first snap is gone to the socket; the new one is queued.
        assert_eq!(names(&queued(&r, id)), ["score1", "snap2"]);
        assert_eq!(r.conn_stats(id).unwrap().replaced, 0);
    }

    #[test]
    fn a_refused_replacement_keeps_the_old_message() {
        let mut cfg = Config::default().max_queued_output(64);
        cfg = cfg.slow_reader(SlowReaderPolicy::DropMessage);
        let (mut r, id, _peer) = connected();
        r.set_config(cfg);
        r.send_latest(id, 0, &msg! { "action": "snap", "n": 1 })
            .unwrap();
        let big = "x".repeat(100);
        r.send(id, &msg! { "action": "score", "n": 1, "pad": big.as_str() })
            .unwrap_err();
        r.send(id, &msg! { "action": "pad", "pad": big.as_str() })
            .ok();
        let over = r.send_latest(
            id,
            0,
            &msg! { "action": "snap", "n": 2, "pad": big.as_str() },
        );
        assert!(over.is_err());
        assert_eq!(names(&queued(&r, id))[0], "snap1");
    }
}
