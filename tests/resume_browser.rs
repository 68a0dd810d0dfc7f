//! Session resume in a real browser: headless Chromium runs `web/resume.html` (and so
//! `web/repod.js`) against `echo_server --ws --resume-secs 30`, through the cutting proxy of
//! `support/cut.rs`, which resets both sides of the page's link several times while the page
//! has echo messages in flight both ways.
//!
//! What it proves: the browser client notices each drop (a WebSocket closed without a close
//! frame), reconnects through the same address, resumes its session, and replays what the
//! server missed while the server replays what the page missed, so that the page's log shows
//! every one of its `N` numbered replies exactly once and in order; that every cut that
//! landed was resumed (one `resumed` event per `back` line of the server), and that nothing
//! fell back to a new session (`resume_failed`).
//!
//! The page paces its sends by its own clock, which Chromium's `--virtual-time-budget` would
//! run ahead while the page waits for the network: the page holds the clock (as `test.html`
//! does), so it runs no faster than real time (measured: about 0.55x on an idle 2-core machine,
//! slower under load) and the sends spread over 10 s or more of real time. The test cuts by
//! real time, all five within about 5 s: the first once the server has read some of the page's
//! echoes (so it has read the page's opt-in to the session, which goes out before the first
//! echo: a link cut before that cannot be resumed), then each next one 300 to 500 ms after the
//! server printed `back` for the previous one (so every cut hits a session that is up again,
//! not one mid-resume). Chromium is found as in `tests/browser.rs`; without it the
//! test prints a loud notice and passes, skipped (with `CI` set, it fails).

#[path = "support/cut.rs"]
mod cut;
#[path = "support/examples.rs"]
mod examples;
#[path = "support/proc.rs"]
mod proc;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cut::CutProxy;
use proc::Proc;

/// Bound on any wait for a child process; generous, for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(90);
/// The echo messages the page sends.
const N: usize = 300;
/// The cuts the test makes while the page runs.
const CUTS: usize = 5;
/// The server must have read this many of the page's messages before the first cut.
const MSGS_BEFORE_FIRST_CUT: u64 = 20;

/// Starts `web_chat` on free ports for its HTTP server, which serves `web/`. Returns it and
/// the base URL (`http://HOST:PORT`).
fn web_files() -> (Proc, String) {
    let mut server = Proc::example("web_chat", &["127.0.0.1", "0", "0", "0"]);
    let page = server.expect_within("chat page on", WAIT);
    let base = page
        .split("/chat.html")
        .next()
        .expect("a page URL")
        .to_owned();
    (server, base)
}

/// Cuts the page's link while Chromium runs, one step per call (from `finish_chromium`'s
/// `meanwhile`), watching `echo_server`'s stdout: `stats:` lines (for how many messages it
/// has read), `away ID: ...` and `back ID from ...` (one each per cut session link).
struct Cutter<'a> {
    proxy: &'a CutProxy,
    echo: &'a mut Proc,
    /// Lines of `echo.seen` already looked at.
    read: usize,
    /// The server's `msgs_in`, from its latest `stats:` line.
    msgs_in: u64,
    aways: usize,
    backs: usize,
    /// Calls of `cut` that found a link to cut.
    landed: usize,
    /// The sum of what `cut` returned.
    links_cut: usize,
    /// When the next cut may come; `None` until traffic flows, and after a cut until its `back`.
    next: Option<Instant>,
    rng: u32,
    started: Instant,
    /// What happened when, for failure messages.
    history: Vec<String>,
}

impl<'a> Cutter<'a> {
    fn new(proxy: &'a CutProxy, echo: &'a mut Proc) -> Self {
        let read = echo.seen.len();
        Cutter {
            proxy,
            echo,
            read,
            msgs_in: 0,
            aways: 0,
            backs: 0,
            landed: 0,
            links_cut: 0,
            next: None,
            rng: 0x2545_f491,
            started: Instant::now(),
            history: Vec::new(),
        }
    }

    /// 300 to 500 ms: the pause after a resume before the next cut.
    fn gap(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        Duration::from_millis(300 + u64::from(self.rng % 201))
    }

    fn note(&mut self, what: String) {
        let at = self.started.elapsed().as_millis();
        self.history.push(format!("{at} ms: {what}"));
    }

    /// Reads what the server printed so far, without waiting.
    fn drain(&mut self) {
        while self.echo.read_line(Instant::now()) {}
        let fresh: Vec<String> = self.echo.seen[self.read..].to_vec();
        self.read = self.echo.seen.len();
        for line in fresh {
            if let Some(stats) = line.strip_prefix("stats: ") {
                let value = stats
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("msgs_in="))
                    .and_then(|v| v.parse().ok());
                if let Some(v) = value {
                    self.msgs_in = v;
                }
            } else if line.starts_with("away ") {
                self.aways += 1;
                self.note(line);
            } else if line.starts_with("back ") {
                self.backs += 1;
                self.note(line);
            } else if line.starts_with("gone ") {
                self.note(line);
            }
        }
    }

    fn step(&mut self) {
        self.drain();
        if self.landed >= CUTS {
            return;
        }
        let now = Instant::now();
        match self.next {
            None => {
                let flowing = self.msgs_in >= MSGS_BEFORE_FIRST_CUT;
                if flowing && self.backs >= self.landed {
                    self.next = Some(now + self.gap());
                }
            }
            Some(at) if now >= at => {
                let n = self.proxy.cut();
                self.links_cut += n;
                let msgs_in = self.msgs_in;
                self.note(format!(
                    "cut {n} link(s); server had read {msgs_in} messages"
                ));
                if n > 0 {
                    self.landed += 1;
                    self.next = None;
                } else {
                    // Nothing open this instant: try again shortly.
                    self.next = Some(now + Duration::from_millis(20));
                }
            }
            Some(_) => {}
        }
    }
}

/// The number after `key=` in `text`.
fn field(text: &str, key: &str) -> Option<usize> {
    let prefix = format!("{key}=");
    text.split(|c: char| c.is_whitespace() || c == ';')
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_browser_page_resumes_through_cuts_and_sees_every_reply_once() {
    let Some(browser) = proc::chromium() else {
        return;
    };
    // Stats every 50 ms: the test learns when the page's traffic flows.
    let mut echo = Proc::example(
        "echo_server",
        &[
            "127.0.0.1",
            "0",
            "--ws",
            "0",
            "--resume-secs",
            "30",
            "--stats-secs",
            "0.05",
        ],
    );
    let ws: SocketAddr = echo
        .expect_within("websocket on", WAIT)
        .parse()
        .expect("websocket address");
    let proxy = CutProxy::start(ws).expect("cut proxy");
    let (_files, base) = web_files();
    let url = format!("{base}/resume.html?ws=ws://{}/&n={N}", proxy.addr());

    let started = Instant::now();
    let child = proc::start_chromium(&browser, &url, &[]);
    let mut cutter = Cutter::new(&proxy, &mut echo);
    let dom = proc::finish_chromium(child, || cutter.step());
    let took = started.elapsed();
    // The last `back` may be printed just after the page ended: a last look.
    std::thread::sleep(Duration::from_millis(100));
    cutter.drain();
    let (landed, links_cut, aways, backs) =
        (cutter.landed, cutter.links_cut, cutter.aways, cutter.backs);
    let history = cutter.history.join("\n");
    drop(cutter);
    let context = || {
        format!(
            "test's cuts and server's lines:\n{history}\n{}\n--- page ---\n{dom}",
            echo.context()
        )
    };

    let result = proc::text_of(&dom, "result");
    eprintln!("{history}");
    eprintln!(
        "chromium ran {took:.1?}; {landed} cuts landed ({links_cut} links), server: {aways} \
         away, {backs} back; page: {result}"
    );
    assert!(
        result.starts_with("PASS"),
        "resume.html reported {result:?}\n{}",
        context()
    );
    let log: Vec<usize> = proc::text_of(&dom, "log")
        .split_whitespace()
        .map(|n| n.parse().expect("a reply number in the log"))
        .collect();
    assert_eq!(
        log,
        (0..N).collect::<Vec<_>>(),
        "the log is not 0..{N}, each once, in order\n{}",
        context()
    );
    assert!(
        links_cut >= 1 && landed >= 1,
        "the proxy cut nothing\n{}",
        context()
    );
    let resumed = field(&result, "resumed").expect("resumed= in the result");
    let failed = field(&result, "resume_failed").expect("resume_failed= in the result");
    assert_eq!(failed, 0, "{}", context());
    assert!(resumed >= 1, "the page never resumed\n{}", context());
    assert_eq!(
        resumed,
        backs,
        "the page's resumes and the server's differ\n{}",
        context()
    );
    assert!(
        backs + 1 >= landed,
        "{landed} cuts landed but the server saw only {backs} resumes\n{}",
        context()
    );
}
