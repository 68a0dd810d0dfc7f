//! Sessions in the reactor: counting, acknowledging, keeping output for replay, links that go
//! away, and moving a session onto a new link. The wire is `crate::session`.
//!
//! What is kept for replay is the link's own output queue: bytes written to the socket stay in
//! `Link::out`, from `Session::keep` on, until the peer acknowledges them. So a message is
//! encoded once, as always, and a session costs no copy per message; an acknowledgement walks
//! the frames it releases. Latest-wins still
//! replaces only what was not written, so a replaced message is never kept, never replayed.
//!
//! A server offers the session with its greeting and waits for the client's first message
//! before it tells the game of the channel: a `resume` makes the link carry an old channel
//! instead, and the game never sees a channel that lived for one round trip. A client that
//! says nothing is announced after `ANNOUNCE_GRACE`.

use super::*;
use crate::session::{self as wire, Control, Token, ACK_DELAY, ACK_EVERY};
use std::collections::HashMap;

/// How long a server waits for a new link's first message before it tells the game of the
/// channel anyway (a client that speaks sessions sends its first ack one round trip after the
/// greeting; a silent Python client gets its channel this late).
const ANNOUNCE_GRACE: Duration = Duration::from_secs(1);
/// A peer that has not acknowledged anything this long after the greeting does not speak
/// sessions: the server stops keeping its output.
const PROBATION: Duration = Duration::from_secs(10);
/// ... nor more than this many bytes of it meanwhile.
const PROBATION_BYTES: usize = 64 * 1024;

/// One link's session.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) token: Token,
    /// The token this session was last resumed with. It stays valid until the client says
    /// anything on the resumed link, which proves it got the new one: a `resumed` lost to a
    /// second drop must not leave the client with a spent token.
    prev_token: Option<Token>,
    pub(super) server: bool,
    /// The peer's session messages received so far.
    pub(super) received: u64,
    /// `received` as of the last acknowledgement sent.
    ack_sent: u64,
    /// Our session messages the peer acknowledged: those before `keep` in `Link::out`.
    acked: u64,
    /// Where each of our messages after `keep` ends, as a stream offset (`Link::out_base`
    /// plus its position), in order: an acknowledgement or a resume finds the n-th message
    /// here, without reading the queue.
    marks: Marks,
    /// Where in `Link::out` the first message the peer has not acknowledged starts.
    pub(super) keep: usize,
    /// The peer speaks sessions: it acknowledged at least once (a client: the server offered).
    confirmed: bool,
    /// Server: the game was told of this channel.
    pub(super) announced: bool,
    /// When the session was offered, or when its link dropped.
    since: Instant,
    /// An acknowledgement is due by the next ack round.
    ack_due: bool,
    /// The link is in `Sessions::watched` (so adding it is no search of the list).
    watched: bool,
}

/// Where each of our messages after `Session::keep` ends, in order: pushed at the back as
/// messages are queued (in line: one store, most of the time), taken from the front as the
/// peer acknowledges them. The taken ones are moved out of the way only once they are at least
/// half of the buffer, so each mark is moved at most once on average.
#[derive(Debug, Default)]
struct Marks {
    ends: Vec<u64>,
    /// `ends[..first]` were taken.
    first: usize,
}

impl Marks {
    #[inline(always)]
    fn push(&mut self, end: u64) {
        self.ends.push(end);
    }

    fn live(&self) -> &[u64] {
        &self.ends[self.first..]
    }

    fn live_mut(&mut self) -> &mut [u64] {
        &mut self.ends[self.first..]
    }

    fn get(&self, i: usize) -> Option<u64> {
        self.live().get(i).copied()
    }

    fn remove(&mut self, i: usize) {
        self.ends.remove(self.first + i);
    }

    /// Takes the first `k` (all, if there are fewer).
    fn drop_front(&mut self, k: usize) {
        self.first += k.min(self.ends.len() - self.first);
        if self.first == self.ends.len() {
            self.ends.clear();
            self.first = 0;
        } else if self.first * 2 >= self.ends.len() {
            self.ends.drain(..self.first);
            self.first = 0;
        }
    }
}

/// What the reactor keeps for all sessions.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    /// Server: each live session's link, by token.
    by_token: HashMap<Token, usize>,
    /// Links waiting for their first message (server), away, or owing an acknowledgement.
    watched: Vec<usize>,
    /// The next time `watched` needs a look.
    check_at: Option<Instant>,
    /// A resume accepted during this read: (the new link, the old one, the messages the client
    /// received), done once the new link's decoder is back in place.
    resuming: Option<(ChannelId, ChannelId, u64, Token)>,
    /// Frames that followed a `resume` in the same read, for the resumed channel.
    after_resume: Vec<u8>,
    /// Away and back, for the driver.
    pub(super) events: VecDeque<(ChannelId, Option<DisconnectReason>)>,
    /// Links that drop close instead of going away (the server drains).
    closing: bool,
    /// Links whose grace ran out, announced once the driver is at hand.
    pending_announce: Vec<usize>,
}

impl Session {
    /// Marks one message just queued over TCP, whose frame ends at stream offset `end`, if the
    /// peer counts it (`payload` is the frame's, after its length): the usual case, told by one
    /// look at its action, in line in the send path.
    #[inline(always)]
    pub(super) fn mark_one(&mut self, end: u64, payload: &[u8]) {
        if wire::is_counted(payload) {
            self.marks.push(end);
        }
    }

    /// Marks the messages just queued, `appended`, which start at `before` in a queue whose
    /// first byte is stream offset `base` (the peer's own count decides: control messages and
    /// heartbeats are not marked).
    #[inline(never)]
    pub(super) fn mark(
        &mut self,
        base: u64,
        appended: &[u8],
        before: usize,
        transport: &Transport,
    ) {
        let mut at = 0;
        while let Some((len, counted)) = frame_at(&appended[at..], transport) {
            at += len;
            if counted {
                self.marks.push(base + (before + at) as u64);
            }
        }
    }

    /// A latest-wins message at stream offset `at`, `len` bytes, left the queue unwritten: its
    /// mark goes, and the marks behind it move forward.
    pub(super) fn unmark(&mut self, at: u64, len: u64) {
        if let Some(i) = self.marks.live().iter().rposition(|&m| m == at + len) {
            self.marks.remove(i);
        }
        for m in self.marks.live_mut().iter_mut().rev() {
            if *m <= at {
                break;
            }
            *m -= len;
        }
    }

    /// Counts one ordinary message from the peer when nothing else is to be done for it (the
    /// steady state: the session is taken and announced, not just resumed, and an
    /// acknowledgement is already due but not yet by count); false leaves it all to
    /// `Reactor::session_frame`.
    #[inline]
    pub(super) fn count_steady(&mut self) -> bool {
        let steady = self.confirmed && self.announced && self.ack_due && self.prev_token.is_none();
        if steady && self.received + 1 - self.ack_sent < ACK_EVERY {
            self.received += 1;
            return true;
        }
        false
    }

    /// The bytes this session keeps for replay, if they are over `max` (`Config::resume_buffer`,
    /// past which the session ends): written and not acknowledged, plus, while away, what was
    /// queued meanwhile. While the link is up, what waits to be written is bounded as on any
    /// link (the output cap and the slow-reader policy). A session whose peer has not taken it
    /// keeps nothing yet.
    #[inline]
    pub(super) fn kept_over(
        &self,
        max: usize,
        out: &[u8],
        out_pos: usize,
        state: State,
    ) -> Option<usize> {
        if !self.confirmed {
            return None;
        }
        let end = if state == State::Away {
            out.len()
        } else {
            out_pos
        };
        let kept = end - self.keep.min(end);
        (kept > max).then_some(kept)
    }

    /// Where, in a queue whose first byte is stream offset `base` and whose first `written`
    /// bytes were written, our messages after the peer's `received`-th begin; `None` if the
    /// peer claims messages it cannot have had.
    fn replay_from(&self, base: u64, written: usize, received: u64) -> Option<usize> {
        let k = received.checked_sub(self.acked)? as usize;
        if k == 0 {
            return Some(self.keep);
        }
        let end = self.marks.get(k - 1)?;
        (end <= base + written as u64).then(|| (end - base) as usize)
    }

    /// The queue was rebuilt: the messages from `from` on (old stream offsets from `old_base`)
    /// now start at `to` in a queue whose first byte is `new_base`; the first `drop` marks are
    /// gone (acknowledged).
    fn rebase(&mut self, drop: usize, old_base: u64, from: usize, new_base: u64, to: usize) {
        self.marks.drop_front(drop);
        let (old, new) = (old_base + from as u64, new_base + to as u64);
        for m in self.marks.live_mut() {
            *m = *m - old + new;
        }
    }

    fn new(token: Token, server: bool, keep: usize, now: Instant) -> Box<Session> {
        Box::new(Session {
            token,
            prev_token: None,
            server,
            received: 0,
            ack_sent: 0,
            acked: 0,
            marks: Marks::default(),
            keep,
            confirmed: !server,
            announced: !server,
            since: now,
            ack_due: false,
            watched: false,
        })
    }
}

impl Reactor {
    /// A server's link `index` is ready to be a channel. With sessions on, it is greeted with
    /// its token now and announced to the driver on its first message; otherwise announced at
    /// once.
    pub(super) fn channel_ready(&mut self, index: usize, id: ChannelId, driver: &mut impl Driver) {
        if self.cfg.resume_window.is_none() {
            return driver.accepted(self, id);
        }
        let token = wire::new_token();
        let text = std::str::from_utf8(&token).expect("hex digits");
        let _ = self.send(id, &msg! { "action": "connected", "session": text });
        let keep = self.links[index].out.len();
        self.links[index].session = Some(Session::new(token, true, keep, self.now));
        self.sessions.by_token.insert(token, index);
        self.watch(index, self.now + ANNOUNCE_GRACE);
    }

    /// Whether the reactor greets its server links itself (sessions on): the greeting carries
    /// the session's token.
    pub(crate) fn greets(&self) -> bool {
        self.cfg.resume_window.is_some()
    }

    fn watch(&mut self, index: usize, at: Instant) {
        if let Some(s) = self.links[index].session.as_deref_mut() {
            if !s.watched {
                s.watched = true;
                self.sessions.watched.push(index);
            }
        }
        self.sessions.check_at = Some(self.sessions.check_at.map_or(at, |t| t.min(at)));
    }

    pub(super) fn sessions_resuming(&self) -> bool {
        self.sessions.resuming.is_some()
    }

    pub(super) fn session_deadline(&self) -> Option<Instant> {
        self.sessions.check_at
    }

    /// Client: keep what this link sends from now on, until the greeting says whether the
    /// server offers a session (messages sent before the greeting belong to the session too).
    pub(crate) fn keep_output(&mut self, id: ChannelId) {
        let now = self.now;
        if let Some(link) = self.link_mut(id) {
            if link.session.is_none() {
                // The buffer holds what is kept for replay from now on: never released as a
                // fresh link's first output is.
                link.fresh = false;
                let keep = link.out_pos;
                let mut s = Session::new([0; 32], false, keep, now);
                s.confirmed = false;
                // Messages queued while connecting count too.
                s.mark(link.out_base, &link.out[keep..], keep, &link.transport);
                link.session = Some(s);
            }
        }
    }

    /// Client: the server's greeting offered session `token` (`Some`), or none. Taking it
    /// sends the first acknowledgement, which asks the server for the session.
    pub(crate) fn greeted(&mut self, id: ChannelId, token: Option<&str>) {
        let token = token.and_then(wire::parse_token);
        let now = self.now;
        let Some(link) = self.link_mut(id) else {
            return;
        };
        match token {
            None => {
                link.session = None;
            }
            Some(t) => {
                if link.session.is_none() {
                    let keep = link.out_pos.min(link.out.len());
                    let mut s = Session::new(t, false, keep, now);
                    s.mark(link.out_base, &link.out[keep..], keep, &link.transport);
                    link.session = Some(s);
                }
                let s = link.session.as_deref_mut().expect("just set");
                s.token = t;
                s.confirmed = true;
                self.send_uncounted(id, &msg! { "action": wire::ACK, "received": 0u64 });
            }
        }
    }

    /// Client: the token of `id`'s session, once the server offered one.
    pub(crate) fn session_token(&self, id: ChannelId) -> Option<Token> {
        self.link(id)
            .and_then(|l| l.session.as_ref())
            .filter(|s| s.confirmed)
            .map(|s| s.token)
    }

    /// The session messages `id` received so far.
    pub(crate) fn session_received(&self, id: ChannelId) -> u64 {
        self.link(id)
            .and_then(|l| l.session.as_ref())
            .map_or(0, |s| s.received)
    }

    /// Whether `id`'s link is away (dropped, its session waiting).
    pub(crate) fn is_away(&self, id: ChannelId) -> bool {
        self.link(id).is_some_and(|l| l.state == State::Away)
    }

    /// One frame on a link with a session (heartbeats already answered): control messages are
    /// handled here, anything else is counted and goes to the driver. `maybe_control`: false
    /// when the frame was already told ordinary (`wire::is_ordinary`).
    pub(super) fn session_frame(
        &mut self,
        id: ChannelId,
        payload: &[u8],
        maybe_control: bool,
        driver: &mut impl Driver,
    ) {
        let index = id.index();
        if self.sessions.resuming.is_some_and(|(new, ..)| new == id) {
            // The client spoke before it was answered: hold it for the resumed channel.
            let _ = frame::encode_frame(&mut self.sessions.after_resume, payload);
            return;
        }
        let s = self.links[index]
            .session
            .as_deref_mut()
            .expect("a session link");
        // Looked at before it is taken: `take` would rewrite the whole option per message.
        if s.prev_token.is_some() {
            // The client speaks on the resumed link: it has the new token.
            if let Some(prev) = s.prev_token.take() {
                self.sessions.by_token.remove(&prev);
            }
        }
        if maybe_control {
            if let Some(control) = wire::classify(payload) {
                return self.session_control(id, control, driver);
            }
        }
        let s = self.links[index]
            .session
            .as_deref_mut()
            .expect("a session link");
        // Before the peer took the session: a client's message that came before its greeting
        // is not counted; a server counts, for a peer that may still take it.
        if s.confirmed || s.server {
            s.received += 1;
        }
        let announced = s.announced;
        if s.confirmed {
            if s.received - s.ack_sent >= ACK_EVERY {
                self.send_ack(index);
            } else if !s.ack_due {
                s.ack_due = true;
                let at = self.now + ACK_DELAY;
                self.watch(index, at);
            }
        }
        if !announced && self.is_open(id) {
            self.announce(index, id, driver);
            if !self.is_open(id) {
                return;
            }
        }
        driver.frame(self, id, payload);
    }

    /// Acknowledges by count. A timer already running (`ack_due`) is left to run: the messages
    /// after this ack are then acknowledged by it, sooner than `ACK_DELAY` after the first of
    /// them, and they stay on the steady path (`Session::count_steady`) meanwhile.
    fn send_ack(&mut self, index: usize) {
        let id = self.id_of(index);
        let s = self.links[index].session.as_deref_mut().expect("a session");
        s.ack_sent = s.received;
        let n = s.received;
        self.send_uncounted(id, &msg! { "action": wire::ACK, "received": n });
    }

    /// Tells the driver of a server's channel that waited for its first message.
    fn announce(&mut self, index: usize, id: ChannelId, driver: &mut impl Driver) {
        if let Some(s) = self.links[index].session.as_deref_mut() {
            s.announced = true;
        }
        driver.accepted(self, id);
    }

    fn session_control(&mut self, id: ChannelId, control: Control<'_>, driver: &mut impl Driver) {
        let index = id.index();
        let server = self.links[index].session.as_ref().is_some_and(|s| s.server);
        match control {
            Control::Ack(n) => {
                if let Err(e) = self.acknowledged(index, n) {
                    log::warn!("repod: closing {id:?}: {e}");
                    self.close(id, DisconnectReason::Error(e));
                    return;
                }
                let s = self.links[index].session.as_deref_mut().expect("a session");
                let owed = !s.confirmed && s.received > s.ack_sent;
                s.confirmed = true;
                let announced = s.announced;
                if owed {
                    // It asked for the session after sending messages: acknowledge those.
                    s.ack_due = true;
                    let at = self.now + ACK_DELAY;
                    self.watch(index, at);
                }
                if !announced {
                    self.announce(index, id, driver);
                }
            }
            Control::Resume { token, received } if server => {
                let announced = self.links[index]
                    .session
                    .as_ref()
                    .is_some_and(|s| s.announced);
                let verdict = if announced {
                    Err("resume must be the first message on a link")
                } else {
                    self.check_resume(id, token, received)
                };
                match verdict {
                    Ok((old, used)) => self.sessions.resuming = Some((id, old, received, used)),
                    Err(reason) => {
                        log::info!("repod: {id:?}: resume refused: {reason}");
                        self.send_uncounted(
                            id,
                            &msg! { "action": wire::RESUME_FAILED, "reason": reason },
                        );
                        if !announced {
                            self.announce(index, id, driver);
                        }
                    }
                }
            }
            Control::Malformed(why) => {
                log::warn!("repod: {id:?}: ignored a session message: {why}");
            }
            // A client's controls on a server link, or the reverse: nothing to do.
            _ => log::debug!("repod: {id:?}: ignored an unexpected {control:?}"),
        }
    }

    /// The peer of link `index` acknowledged `n` of our session messages: what they were is
    /// released.
    fn acknowledged(&mut self, index: usize, n: u64) -> Result<(), Error> {
        let link = &mut self.links[index];
        let Some(s) = link.session.as_deref_mut() else {
            return Ok(());
        };
        if n <= s.acked {
            return Ok(()); // an old one, overtaken
        }
        let Some(pos) = s.replay_from(link.out_base, link.out_pos, n) else {
            return Err(Error::Session(
                format!("the peer acknowledged {n} messages, more than it was sent").into(),
            ));
        };
        s.marks.drop_front((n - s.acked) as usize);
        s.keep = pos;
        s.acked = n;
        if pos == link.out.len() {
            link.written_all();
        } else {
            output::compact(link);
        }
        Ok(())
    }

    /// Whether link `id` may take over the session of `token`, `received` being what its
    /// client got: the old link's index, or why not.
    fn check_resume(
        &self,
        id: ChannelId,
        token: &str,
        received: u64,
    ) -> Result<(ChannelId, Token), &'static str> {
        let token = wire::parse_token(token).ok_or("malformed session token")?;
        let &old = self
            .sessions
            .by_token
            .get(&token)
            .ok_or("unknown or expired session")?;
        let link = self.links.get(old).ok_or("unknown or expired session")?;
        let s = link
            .session
            .as_deref()
            .ok_or("unknown or expired session")?;
        let known = s.token == token || s.prev_token == Some(token);
        if old == id.index() || !known || !matches!(link.state, State::Open | State::Away) {
            return Err("unknown or expired session");
        }
        if !s.announced {
            return Err("unknown or expired session");
        }
        let new = &self.links[id.index()];
        if link.is_ws() != new.is_ws() {
            return Err("the session was on another transport");
        }
        if received < s.acked {
            return Err("the client claims fewer messages than it acknowledged");
        }
        s.replay_from(link.out_base, link.out_pos, received)
            .ok_or("the client claims messages it was never sent")?;
        Ok((self.id_of(old), token))
    }

    /// After the read that carried an accepted `resume`: the new link's socket and layers
    /// move to the old channel, which replays what its client missed; the new link is gone.
    pub(super) fn finish_resume(&mut self, driver: &mut impl Driver) {
        let Some((new, old, received, used)) = self.sessions.resuming.take() else {
            return;
        };
        let (ni, oi) = (new.index(), old.index());
        if self.link(new).is_none_or(|l| l.state != State::Open) || self.link(old).is_none() {
            // The new link failed during the same read: the old session waits on.
            self.sessions.after_resume.clear();
            return;
        }
        let fresh_token = wire::new_token();
        // What the new link has not written yet goes first (the tail of its greeting), then
        // the answer, then the old session's messages after the client's `received`-th.
        let mut out = {
            let n = &self.links[ni];
            n.out[n.out_pos..].to_vec()
        };
        let (answer_received, replay_from, old_token) = {
            let o = &self.links[oi];
            let s = o.session.as_deref().expect("a session");
            let from = s
                .replay_from(o.out_base, o.out_pos, received)
                .expect("checked by check_resume");
            (s.received, from, s.token)
        };
        {
            let text = std::str::from_utf8(&fresh_token).expect("hex digits");
            let answer = msg! {
                "action": wire::RESUMED,
                "received": answer_received,
                "session": text,
            };
            let n = &mut self.links[ni];
            let before = n.out.len();
            match n.transport {
                Transport::Tcp => {
                    let _ = frame::encode_frame_with(&mut n.out, usize::MAX, |b| answer.encode(b));
                }
                _ => {
                    let _ = wscodec::encode_binary_with(&mut n.out, usize::MAX, None, |b| {
                        answer.encode(b)
                    });
                }
            }
            out.extend_from_slice(&n.out[before..]);
        }
        let keep = out.len();
        out.extend_from_slice(&self.links[oi].out[replay_from..]);
        // The new link's token dies with it; the old one is spent.
        let new_token = self.links[ni].session.as_ref().map(|s| s.token);
        if let Some(t) = new_token {
            self.sessions.by_token.remove(&t);
        }
        // The token the client used stays valid until it shows it got the fresh one (see
        // `Session::prev_token`); any other is spent.
        let prev = self.links[oi].session.as_deref().and_then(|s| s.prev_token);
        for spent in [Some(old_token), prev].into_iter().flatten() {
            if spent != used {
                self.sessions.by_token.remove(&spent);
            }
        }
        self.sessions.by_token.insert(used, oi);
        self.sessions.by_token.insert(fresh_token, oi);
        // Swap the wires: the old channel gets the new socket and its layers.
        let (n, o) = self
            .links
            .get2_mut(ni, oi)
            .expect("two distinct live links");
        std::mem::swap(&mut n.stream, &mut o.stream);
        o.tls = n.tls.take();
        o.codec = std::mem::take(&mut n.codec);
        std::mem::swap(&mut o.transport, &mut n.transport);
        o.addr = n.addr;
        o.out = out;
        o.out_pos = 0;
        o.out_hold = usize::MAX;
        let old_base = o.out_base;
        o.out_base += 1 << 32; // nothing of the old queue's offsets is valid any more
        o.latest.clear();
        o.close_sent = false;
        o.congested = false;
        o.gated_until = None;
        o.fresh = false;
        o.close_deadline = None;
        o.last_rx = self.now;
        o.bytes_in += n.bytes_in;
        o.bytes_out += n.bytes_out;
        o.state = State::Open;
        let s = o.session.as_deref_mut().expect("a session");
        let replayed = (received - s.acked) as usize;
        s.rebase(replayed, old_base, replay_from, o.out_base, keep);
        s.token = fresh_token;
        s.prev_token = Some(used);
        s.acked = received;
        s.keep = keep;
        s.confirmed = true;
        s.ack_due = false;
        s.ack_sent = s.received;
        let registry = self.poll.registry();
        let _ = registry.deregister(&mut self.links[ni].stream);
        if let Err(e) = registry.reregister(
            &mut self.links[oi].stream,
            Token(oi),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::error!("repod: {old:?}: cannot register its new link: {e}");
        }
        // The new link held the old socket (already dead, or now replaced): it goes quietly,
        // never having been a channel.
        self.remove(ni);
        self.counters.resumed += 1;
        log::info!("repod: {old:?} resumed from {:?}", self.links[oi].addr);
        self.mark_dirty(oi);
        self.sessions.events.push_back((old, None));
        let held = std::mem::take(&mut self.sessions.after_resume);
        for payload in frame::payloads(&held) {
            if !self.is_open(old) {
                break;
            }
            self.deliver(old, payload, driver);
        }
        self.sessions.after_resume = held;
        self.sessions.after_resume.clear();
    }

    /// Client: a new link `new` got `resumed` for the session of `old`: `new` takes the
    /// session over, with what `old` queued after the server's `received`-th message, and
    /// `old` is gone. False if it cannot be (the server's count is impossible).
    pub(crate) fn adopt(
        &mut self,
        new: ChannelId,
        old: ChannelId,
        received: u64,
        token: &str,
    ) -> bool {
        let (ni, oi) = (new.index(), old.index());
        if self.link(new).is_none() || self.link(old).is_none() || ni == oi {
            return false;
        }
        let Some(token) = wire::parse_token(token) else {
            return false;
        };
        let (from, mut session) = {
            let o = &mut self.links[oi];
            let Some(s) = o.session.take() else {
                return false;
            };
            if received < s.acked {
                o.session = Some(s);
                return false;
            }
            match s.replay_from(o.out_base, o.out_pos, received) {
                Some(from) => (from, s),
                None => {
                    o.session = Some(s);
                    return false;
                }
            }
        };
        let (n, o) = self
            .links
            .get2_mut(ni, oi)
            .expect("two distinct live links");
        let keep = n.out.len();
        n.out.extend_from_slice(&o.out[from..]);
        let replayed = (received - session.acked) as usize;
        session.rebase(replayed, o.out_base, from, n.out_base, keep);
        n.msgs_out += o.msgs_out;
        n.msgs_in += o.msgs_in;
        n.bytes_in += o.bytes_in;
        n.bytes_out += o.bytes_out;
        n.since = o.since;
        session.token = token;
        session.acked = received;
        session.keep = keep;
        session.ack_due = false;
        let received_so_far = session.received;
        session.ack_sent = received_so_far;
        n.session = Some(session);
        n.fresh = false;
        self.remove(oi);
        // At once: it tells the server this client has the new token (the old one is spent
        // from then on), and releases what the server kept of the replay.
        self.send_uncounted(
            new,
            &msg! { "action": wire::ACK, "received": received_so_far },
        );
        self.counters.resumed += 1;
        self.mark_dirty(ni);
        true
    }

    /// Whether closing `id` for `reason` is a drop its session survives: then the link is
    /// away instead, and true is returned.
    pub(super) fn goes_away(&mut self, id: ChannelId, reason: &DisconnectReason) -> bool {
        let Some(link) = self.link(id) else {
            return false;
        };
        let Some(s) = link.session.as_deref() else {
            return false;
        };
        if link.state != State::Open || !s.confirmed || !s.announced || self.sessions.closing {
            return false;
        }
        let drop = match reason {
            DisconnectReason::HeartbeatTimeout(_) => true,
            DisconnectReason::Error(e) => matches!(e, Error::Io(_)),
            _ => false,
        };
        if !drop {
            return false;
        }
        let index = id.index();
        let now = self.now;
        let link = &mut self.links[index];
        let _ = self.poll.registry().deregister(&mut link.stream);
        let _ = link.stream.shutdown(Shutdown::Both);
        link.state = State::Away;
        link.tls = None;
        link.codec = Codec::default();
        link.congested = false;
        link.gated_until = None;
        // What was handed to the socket (or to TLS) but may not have left is replayed from the
        // client's count, like everything after it.
        link.latest.clear();
        let s = link.session.as_deref_mut().expect("a session");
        s.since = now;
        if let Some(window) = self.cfg.resume_window.filter(|_| s.server) {
            self.watch(index, now + window);
        }
        self.counters.went_away += 1;
        log::info!("repod: {id:?} is away: {reason}");
        true
    }

    /// Sessions' timers: channels announced after their grace, acknowledgements due, away
    /// sessions past their window, peers that never took their session.
    pub(super) fn session_timers(&mut self) {
        let now = self.now;
        if self.sessions.check_at.is_none_or(|t| now < t) {
            return;
        }
        self.sessions.check_at = None;
        let watched = std::mem::take(&mut self.sessions.watched);
        let mut next: Option<Instant> = None;
        let mut keep_watching = Vec::new();
        let mut expired = Vec::new();
        let mut announce = Vec::new();
        for &index in &watched {
            let Some(link) = self.links.get_mut(index) else {
                continue;
            };
            let state = link.state;
            let Some(s) = link.session.as_deref_mut() else {
                continue;
            };
            s.watched = false;
            let mut due: Option<Instant> = None;
            if state == State::Away {
                if let Some(window) = self.cfg.resume_window.filter(|_| s.server) {
                    if now >= s.since + window {
                        expired.push((index, now - s.since));
                        continue;
                    }
                    due = Some(s.since + window);
                }
            } else if state == State::Open {
                if !s.announced {
                    let at = s.since + ANNOUNCE_GRACE;
                    if now >= at {
                        announce.push(index);
                    } else {
                        due = Some(at);
                    }
                }
                if s.ack_due {
                    s.ack_due = false;
                    if s.received > s.ack_sent {
                        s.ack_sent = s.received;
                        let n = s.received;
                        let id = ChannelId {
                            index: index as u32,
                            gen: link.gen,
                        };
                        self.send_uncounted(id, &msg! { "action": wire::ACK, "received": n });
                    }
                }
            }
            if let Some(d) = due {
                if let Some(s) = self.links[index].session.as_deref_mut() {
                    s.watched = true;
                }
                keep_watching.push(index);
                next = Some(next.map_or(d, |t| t.min(d)));
            }
        }
        let mut watched = watched;
        watched.clear();
        watched.extend(keep_watching);
        watched.append(&mut self.sessions.watched);
        self.sessions.watched = watched;
        if let Some(d) = next {
            self.sessions.check_at = Some(self.sessions.check_at.map_or(d, |t| t.min(d)));
        }
        for (index, away) in expired {
            let id = self.id_of(index);
            log::info!("repod: {id:?}: session expired after {away:?} away");
            self.close(id, DisconnectReason::SessionExpired(away));
        }
        self.sessions.pending_announce.extend(announce);
    }

    /// Announces the channels whose grace ran out (needs the driver, which the timers pass).
    pub(super) fn announce_late(&mut self, driver: &mut impl Driver) {
        let pending = std::mem::take(&mut self.sessions.pending_announce);
        for &index in &pending {
            let Some(link) = self.links.get(index) else {
                continue;
            };
            if link.state == State::Open && link.session.as_ref().is_some_and(|s| !s.announced) {
                let id = self.id_of(index);
                self.announce(index, id, driver);
            }
        }
        let mut pending = pending;
        pending.clear();
        self.sessions.pending_announce = pending;
    }

    /// A server's peer that never acknowledged: after its probation, keep nothing for it.
    pub(super) fn probation(&mut self, index: usize) {
        let now = self.now;
        let link = &mut self.links[index];
        let Some(s) = link.session.as_deref() else {
            return;
        };
        if s.confirmed || !s.server {
            return;
        }
        let kept = link.out_pos.saturating_sub(s.keep);
        if kept > PROBATION_BYTES || now >= s.since + PROBATION {
            log::debug!(
                "repod: {:?} does not speak sessions; keeping nothing for it",
                link.addr
            );
            let token = s.token;
            link.session = None;
            self.sessions.by_token.remove(&token);
        }
    }

    /// A draining server: links that drop from now on close, and sessions away end now (no
    /// listener is left to come back through).
    pub(crate) fn end_sessions(&mut self) {
        self.sessions.closing = true;
        let away: Vec<usize> = self
            .links
            .iter()
            .filter(|(_, l)| l.state == State::Away)
            .map(|(i, _)| i)
            .collect();
        for index in away {
            let id = self.id_of(index);
            self.close(id, DisconnectReason::ServerStopped);
        }
    }

    /// A session link is being closed for good: its token is forgotten.
    pub(super) fn forget_session(&mut self, index: usize) {
        if let Some(s) = self.links[index].session.as_deref() {
            if !s.server {
                return;
            }
            for token in [Some(s.token), s.prev_token].into_iter().flatten() {
                if self.sessions.by_token.get(&token) == Some(&index) {
                    self.sessions.by_token.remove(&token);
                }
            }
        }
    }
}

/// The position in `out` after `count` more counted messages from `from`, all within `out`
/// (the part already written); `None` if there are fewer. (The reactor keeps `Session::marks`
/// instead; the tests check both agree.)
#[cfg(test)]
fn walk(out: &[u8], mut from: usize, mut count: u64, transport: &Transport) -> Option<usize> {
    while count > 0 {
        let (len, counted) = frame_at(&out[from..], transport)?;
        from += len;
        if counted {
            count -= 1;
        }
    }
    Some(from)
}

/// The length of the whole frame at the start of `out`, and whether the peer counts it.
fn frame_at(out: &[u8], transport: &Transport) -> Option<(usize, bool)> {
    match transport {
        Transport::Tcp => {
            let head: [u8; 4] = out.get(..4)?.try_into().ok()?;
            let len = 4 + u32::from_be_bytes(head) as usize;
            let payload = out.get(4..len)?;
            Some((len, wire::is_counted(payload)))
        }
        _ => {
            let b0 = *out.first()?;
            let b1 = *out.get(1)?;
            let masked = b1 & 0x80 != 0;
            let (len, mut at) = match b1 & 0x7f {
                126 => (
                    u16::from_be_bytes(out.get(2..4)?.try_into().ok()?) as usize,
                    4,
                ),
                127 => (
                    u64::from_be_bytes(out.get(2..10)?.try_into().ok()?) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            let mut key = [0u8; 4];
            if masked {
                key.copy_from_slice(out.get(at..at + 4)?);
                at += 4;
            }
            let total = at + len;
            let payload = out.get(at..total)?;
            let opcode = b0 & 0x0f;
            if opcode >= 8 {
                return Some((total, false)); // close, ping, pong
            }
            // Control messages are short: only a short frame needs unmasking to be told.
            if len > 256 {
                return Some((total, true));
            }
            let mut plain = [0u8; 256];
            let plain = &mut plain[..len];
            plain.copy_from_slice(payload);
            if masked {
                for (i, b) in plain.iter_mut().enumerate() {
                    *b ^= key[i & 3];
                }
            }
            Some((total, wire::is_counted(plain)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(m: &impl Encode) -> Vec<u8> {
        let mut b = Vec::new();
        m.encode(&mut b);
        b
    }

    /// An output queue as each transport frames it: messages `0..n`, with an acknowledgement,
    /// a heartbeat and (on WebSocket) a pong frame between them, none of which the peer counts.
    fn queue(transport: &mut Transport, n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for i in 0..n {
            let mut frames = vec![payload(
                &msg! { "action": "move", "i": i, "pad": "x".repeat(i as usize * 7).as_str() },
            )];
            if i % 3 == 0 {
                frames.push(payload(&msg! { "action": wire::ACK, "received": i }));
            }
            if i % 5 == 0 {
                frames.push(payload(&msg! { "action": "_ping", "t": i }));
            }
            for (k, p) in frames.iter().enumerate() {
                if matches!(transport, Transport::Tcp) {
                    frame::encode_frame(&mut out, p).unwrap();
                } else {
                    let mask = transport.mask();
                    wscodec::encode_frame(&mut out, Opcode::Binary, true, p, mask);
                }
                if k == 0 {
                    ends.push(out.len());
                }
            }
            if i % 4 == 0 && !matches!(transport, Transport::Tcp) {
                let mask = transport.mask();
                wscodec::encode_frame(&mut out, Opcode::Pong, true, b"p", mask);
            }
        }
        (out, ends)
    }

    #[test]
    fn marks_count_only_what_the_peer_counts_on_every_transport() {
        for mut transport in [
            Transport::Tcp,
            Transport::WsServer,
            Transport::WsClient(MaskKeys::from_os()),
        ] {
            let (out, ends) = queue(&mut transport, 60);
            // Marked as the reactor does: each queued piece as it is appended, here in two
            // batches.
            let mut s = Session::new([0; 32], true, 0, Instant::now());
            let half = ends[29];
            s.mark(1000, &out[..half], 0, &transport);
            s.mark(1000, &out[half..], half, &transport);
            assert_eq!(s.marks.live().len(), 60);
            for k in 1..=60u64 {
                let at = s.replay_from(1000, out.len(), k).expect("within the queue");
                assert_eq!(at, ends[k as usize - 1], "{transport:?} k={k}");
                assert_eq!(Some(at), walk(&out, 0, k, &transport));
            }
            assert_eq!(s.replay_from(1000, out.len(), 61), None, "no 61st message");
            // Only what was written can have been received.
            let cut = ends[9] + 3;
            assert_eq!(s.replay_from(1000, cut, 11), None);
            assert_eq!(s.replay_from(1000, cut, 10), Some(ends[9]));
            // A latest-wins message, the 42nd, left the queue: its mark goes, and the ones
            // behind it move forward.
            let at = 1000 + ends[40] as u64;
            let len = (ends[41] - ends[40]) as u64;
            let before = s.marks.live().to_vec();
            s.unmark(at, len);
            assert_eq!(s.marks.live().len(), 59);
            assert_eq!(s.marks.live()[40], before[40]);
            assert_eq!(s.marks.live()[41], before[42] - len);
        }
    }

    #[test]
    fn only_the_steady_state_is_counted_on_the_fast_path() {
        let mut s = Session::new([0; 32], true, 0, Instant::now());
        // Not taken, not announced, no acknowledgement due: all for the full path.
        assert!(!s.count_steady());
        s.confirmed = true;
        s.announced = true;
        assert!(
            !s.count_steady(),
            "the first unacknowledged message schedules an ack"
        );
        s.ack_due = true;
        s.prev_token = Some([1; 32]);
        assert!(
            !s.count_steady(),
            "just resumed: the old token is to be dropped"
        );
        s.prev_token = None;
        for _ in 1..ACK_EVERY {
            assert!(s.count_steady());
        }
        assert_eq!(s.received, ACK_EVERY - 1);
        assert!(
            !s.count_steady(),
            "the ACK_EVERY-th is acknowledged at once"
        );
        assert_eq!(s.received, ACK_EVERY - 1, "the full path counts it");
    }

    #[test]
    fn marks_taken_from_the_front_keep_their_order() {
        let mut m = Marks::default();
        let mut want = std::collections::VecDeque::new();
        let mut next = 0u64;
        // Pushes and takes of every size, as sends and acknowledgements come.
        for round in 0..200usize {
            for _ in 0..(round * 7) % 13 {
                next += 10;
                m.push(next);
                want.push_back(next);
            }
            let k = (round * 5) % 11;
            m.drop_front(k);
            want.drain(..k.min(want.len()));
            assert_eq!(
                m.live(),
                want.iter().copied().collect::<Vec<_>>().as_slice()
            );
            assert!(
                m.ends.len() <= 2 * want.len() + 13,
                "taken ones are moved away"
            );
        }
        m.drop_front(usize::MAX);
        assert!(m.live().is_empty() && m.ends.is_empty());
    }

    #[test]
    fn walking_counts_only_what_the_peer_counts_on_every_transport() {
        for mut transport in [
            Transport::Tcp,
            Transport::WsServer,
            Transport::WsClient(MaskKeys::from_os()),
        ] {
            let (out, ends) = queue(&mut transport, 60);
            // After k counted messages, the walk stands right past the k-th (and the control
            // frames behind it are still ahead).
            for k in 1..=60u64 {
                let at = walk(&out, 0, k, &transport).expect("within the queue");
                assert_eq!(at, ends[k as usize - 1], "{transport:?} k={k}");
                // Walking in two steps lands at the same place.
                let half = walk(&out, 0, k / 2, &transport).unwrap();
                assert_eq!(walk(&out, half, k - k / 2, &transport), Some(at));
            }
            assert_eq!(walk(&out, 0, 61, &transport), None, "no 61st message");
            // A queue cut in the middle of a frame holds only the messages before it.
            let cut = ends[9] + 3;
            assert_eq!(walk(&out[..cut], 0, 11, &transport), None);
            assert_eq!(walk(&out[..cut], 0, 10, &transport), Some(ends[9]));
        }
    }
}
