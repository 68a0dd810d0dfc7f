//! The reactor's alarm: its timers' earliest deadline as a Linux `timerfd`, so the reactor
//! sleeps in `epoll_wait` with no timeout.
//!
//! Why not simply pass the time left to `epoll_wait`, as mio's `poll(timeout)` does? Then the
//! kernel starts and cancels a high-resolution timer on every sleep, that is on every turn of a
//! server that answers one message at a time. Measured with `examples/rtt_pair.rs` (a ping-pong,
//! server and client pinned on one CPU), that costs 1.5–2% of the round trip, about 0.3 µs:
//! more than the whole receive path's msgpack validation. The alarm is set only when the
//! earliest deadline moves earlier than the one it holds, or after it went off; a deadline that
//! moves later (a heartbeat pushed back by traffic) leaves it alone, and the reactor wakes once
//! early, looks, and sets it again. So a busy server sets it now and then (57 times in a
//! 5,000-round-trip ping-pong), not once a message.
//!
//! Elsewhere than Linux there is no alarm, and the reactor passes the time left to `poll` as
//! before.

use std::time::Instant;

#[cfg(target_os = "linux")]
pub(super) use linux::Alarm;

#[cfg(not(target_os = "linux"))]
pub(super) use other::Alarm;

/// Whether an alarm set for `armed` goes off in time for `deadline`: it does if it is set no
/// later. (One set in the past has gone off already, or is about to, and its event wakes the
/// reactor at once; the turn then finds the deadline due or sets the alarm again.)
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn in_time(armed: Option<Instant>, deadline: Instant) -> bool {
    armed.is_some_and(|a| a <= deadline)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::time::{Duration, Instant};

    use mio::unix::SourceFd;
    use mio::{Interest, Registry, Token};
    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };

    use super::in_time;

    /// A `timerfd` registered with the reactor's poll.
    #[derive(Debug)]
    pub(in crate::reactor) struct Alarm {
        /// `None` if the kernel would not make one (out of descriptors): then the reactor
        /// waits with `poll` timeouts, as it does elsewhere than Linux.
        fd: Option<OwnedFd>,
        /// The deadline it is set for; `None` once it went off (or before it was first set).
        armed: Option<Instant>,
    }

    impl Alarm {
        /// Makes the `timerfd` and registers it under `token`. It is made with the reactor,
        /// not on first use, so that a server's descriptors are all taken when it starts.
        pub(in crate::reactor) fn new(registry: &Registry, token: Token) -> Self {
            let made = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )
            .map_err(io::Error::from)
            .and_then(|fd| {
                registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
                Ok(fd)
            });
            let fd = made
                .map_err(|e| log::warn!("repod: no timerfd ({e}): waiting with epoll timeouts"))
                .ok();
            Alarm { fd, armed: None }
        }

        /// Makes sure the reactor wakes by `deadline`. Returns `false` if it cannot (no
        /// `timerfd`, or setting it failed), and the caller passes a timeout to `poll` instead.
        pub(in crate::reactor) fn set(&mut self, deadline: Instant) -> bool {
            if in_time(self.armed, deadline) {
                return true;
            }
            let Some(fd) = &self.fd else {
                return false;
            };
            // A zero `it_value` would disarm it: a deadline that is due goes off in 1 ns.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_nanos(1));
            let spec = Itimerspec {
                it_interval: Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: i64::MAX,
                    tv_nsec: 0,
                }),
            };
            match timerfd_settime(fd, TimerfdTimerFlags::empty(), &spec) {
                Ok(_) => {
                    self.armed = Some(deadline);
                    true
                }
                Err(e) => {
                    log::debug!("repod: timerfd_settime: {e}");
                    false
                }
            }
        }

        /// Its event arrived: it went off. Reads the expiry count so the next one is an edge.
        pub(in crate::reactor) fn rang(&mut self) {
            self.armed = None;
            if let Some(fd) = &self.fd {
                let mut count = [0u8; 8];
                let _ = rustix::io::read(fd, &mut count);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod other {
    use std::time::Instant;

    use mio::{Registry, Token};

    /// No alarm here: the reactor passes the time left to `poll`.
    #[derive(Debug)]
    pub(in crate::reactor) struct Alarm;

    impl Alarm {
        pub(in crate::reactor) fn new(_: &Registry, _: Token) -> Self {
            Alarm
        }

        pub(in crate::reactor) fn set(&mut self, _: Instant) -> bool {
            false
        }

        pub(in crate::reactor) fn rang(&mut self) {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::in_time;

    #[test]
    fn an_alarm_set_no_later_than_the_deadline_is_in_time() {
        let t = Instant::now();
        let later = t + Duration::from_millis(5);
        assert!(!in_time(None, t));
        assert!(in_time(Some(t), t));
        assert!(in_time(Some(t), later));
        assert!(!in_time(Some(later), t));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod linux_tests {
    use std::time::{Duration, Instant};

    use mio::{Events, Poll, Token};

    use super::Alarm;

    const TOKEN: Token = Token(7);
    /// Only a guard against a hang: each wait below must end long before it.
    const GUARD: Duration = Duration::from_secs(10);

    /// Waits for the alarm's event.
    fn wait_for_alarm(poll: &mut Poll, alarm: &mut Alarm) {
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(GUARD)).unwrap();
        assert!(
            events.iter().any(|e| e.token() == TOKEN),
            "the alarm did not go off within {GUARD:?}"
        );
        alarm.rang();
    }

    #[test]
    fn goes_off_at_the_earliest_deadline_it_was_given() {
        let mut poll = Poll::new().unwrap();
        let mut alarm = Alarm::new(poll.registry(), TOKEN);
        // Set far out, then nearer: the nearer deadline wins, not the hour.
        assert!(alarm.set(Instant::now() + Duration::from_secs(3600)));
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(alarm.set(soon));
        wait_for_alarm(&mut poll, &mut alarm);
        assert!(Instant::now() >= soon, "went off early");
        // A later deadline after a nearer one leaves the nearer one set.
        let near = Instant::now() + Duration::from_millis(20);
        assert!(alarm.set(near));
        assert!(alarm.set(near + Duration::from_secs(3600)));
        wait_for_alarm(&mut poll, &mut alarm);
        assert!(Instant::now() >= near);
        // After it went off, it is set again, also for a deadline already past.
        assert!(alarm.set(Instant::now() - Duration::from_millis(1)));
        wait_for_alarm(&mut poll, &mut alarm);
    }
}
