//! Timers: accept back-off, idle and heartbeat checks, lingering closes and late handshakes.

use super::*;

impl Reactor {
    pub(super) fn run_timers(&mut self, driver: &mut impl Driver) {
        let now = self.now;
        if self.accept_pending {
            self.accept_all(driver);
        }
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
            self.accept_all(driver);
        }
        driver.timers(self, now);
        if self.gate_retry_at.is_some_and(|t| now >= t) {
            self.retry_gated();
        }
        self.session_timers();
        self.announce_late(driver);
        if let (Some(at), Some(idle)) = (self.idle_check_at, self.cfg.idle_timeout) {
            if now >= at {
                let mut expired = Vec::new();
                for (i, l) in &self.links {
                    if l.state == State::Open && now.duration_since(l.last_rx) >= idle {
                        expired.push(i);
                    }
                }
                for i in expired {
                    let id = self.id_of(i);
                    log::info!("repod: closing {id:?}: idle for {idle:?}");
                    self.close(id, DisconnectReason::Error(Error::IdleTimeout(idle)));
                }
                self.idle_check_at = Some(now + idle / 4);
            }
        }
        if self.beat_at.is_some_and(|t| now >= t) {
            self.heartbeat_round(now);
        }
        if self.linger_check_at.is_some_and(|t| now >= t) {
            self.linger_check_at = None;
            let mut expired = Vec::new();
            let mut upgrades_late = Vec::new();
            let mut connects_late = Vec::new();
            for (i, l) in &self.links {
                let connecting = matches!(l.state, State::Connecting | State::Upgrading);
                match l.close_deadline {
                    Some(d) if l.state == State::Accepting && now >= d => upgrades_late.push(i),
                    Some(d) if connecting && now >= d => connects_late.push(i),
                    Some(d) if connecting => {
                        self.linger_check_at =
                            Some(self.linger_check_at.map_or(d, |t: Instant| t.min(d)));
                    }
                    Some(d) if !l.is_live() && now >= d => expired.push(i),
                    Some(d) if !l.is_live() => {
                        self.linger_check_at =
                            Some(self.linger_check_at.map_or(d, |t: Instant| t.min(d)));
                    }
                    _ => {}
                }
            }
            for i in expired {
                log::debug!("repod: dropping {:?}: linger time is up", self.id_of(i));
                self.remove(i);
            }
            for i in connects_late {
                let link = &self.links[i];
                let err = match link.state {
                    _ if link.tls_handshaking() => tls::timeout(),
                    State::Upgrading => Error::Handshake(handshake::HandshakeError::Timeout),
                    _ => Error::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connecting timed out (Config::connect_timeout)",
                    )),
                };
                let id = self.id_of(i);
                log::warn!("repod: {id:?}: {err}");
                self.close(id, DisconnectReason::Error(err));
            }
            for i in upgrades_late {
                let link = &self.links[i];
                let err = match link.codec {
                    Codec::Proxy(_) => Error::Proxy(ProxyError::Timeout),
                    _ if link.tls_handshaking() => tls::timeout(),
                    _ => Error::Handshake(handshake::HandshakeError::Timeout),
                };
                self.refuse(i, err);
            }
        }
    }

    /// Closes the connections that stayed silent past the heartbeat timeout, and pings the
    /// others.
    pub(super) fn heartbeat_round(&mut self, now: Instant) {
        let (Some(interval), Some(timeout)) =
            (self.cfg.heartbeat, self.cfg.get_heartbeat_timeout())
        else {
            self.beat_at = None;
            return;
        };
        self.beat_at = Some(now + interval);
        let mut links = std::mem::take(&mut self.beat_links);
        links.clear();
        links.extend(
            self.links
                .iter()
                .filter(|(_, l)| l.state == State::Open)
                .map(|(i, _)| i),
        );
        let stamp = now.saturating_duration_since(self.epoch).as_micros() as u64;
        for &i in &links {
            let id = self.id_of(i);
            let silent = now.saturating_duration_since(self.links[i].last_rx);
            if silent >= timeout {
                log::info!("repod: closing {id:?}: nothing received for {silent:?}");
                self.close(id, DisconnectReason::HeartbeatTimeout(silent));
            } else {
                self.send_uncounted(id, &msg! { "action": heartbeat::PING, "t": stamp });
            }
        }
        self.beat_links = links;
    }
}
