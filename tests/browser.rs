//! A real browser: headless Chromium runs `web/repod.js` against our servers.
//!
//! - `web/test.html`, the JavaScript client's self-checking page, against `echo_server --ws`:
//!   events, every msgpack type, sends before open and after close, broadcasts.
//! - `web/chat.html`, served by the `web_chat` example, chats with a Rust client connected over
//!   TCP: each sees the other's line.
//!
//! The outcome is read from the page's DOM (`--dump-dom`); the pages hold Chromium's virtual
//! clock while they wait for the network (see their comments), so the dump shows the end state.
//! Chromium is `REPOD_CHROMIUM`, else `/usr/bin/chromium` or `chromium` on `PATH` (Debian's
//! package; `.ci/run` installs it). Without it the tests print a loud notice and pass, skipped;
//! with `CI` set they fail.

#[path = "support/examples.rs"]
mod examples;
#[path = "support/proc.rs"]
mod proc;

use std::time::{Duration, Instant};

use proc::Proc;
use repod::{msg, Client, ClientRoutes, Listener};

/// Bound on any wait for a child process; generous, for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(90);

/// Starts `web_chat` on free ports: it serves `web/` over HTTP. Returns it, the page's base
/// URL (`http://HOST:PORT`) and the page URL it printed.
fn web_chat() -> (Proc, String, String) {
    let mut server = Proc::example("web_chat", &["127.0.0.1", "0", "0", "0"]);
    let page = server.expect_within("chat page on", WAIT);
    let base = page
        .split("/chat.html")
        .next()
        .expect("a page URL")
        .to_owned();
    (server, base, page)
}

#[test]
fn repod_js_test_page_passes_against_echo_server() {
    let Some(browser) = proc::chromium() else {
        return;
    };
    // Heartbeats on: the page's clients must answer the server's pings by themselves.
    let mut echo = Proc::example(
        "echo_server",
        &["127.0.0.1", "0", "--ws", "0", "--heartbeat-ms", "100"],
    );
    let ws = echo.expect_within("websocket on", WAIT);
    let (_files, base, _) = web_chat();
    let url = format!("{base}/test.html?ws=ws://{ws}/");
    let dom = proc::finish_chromium(proc::start_chromium(&browser, &url, &[]), || {});
    let result = proc::text_of(&dom, "result");
    assert_eq!(result, "PASS", "test.html reported:\n{dom}");
    assert!(
        dom.matches("class=\"pass\"").count() >= 5,
        "too few checks ran:\n{dom}"
    );
}

/// A Rust chat player over TCP: answers the browser's line once it sees it.
#[derive(Default)]
struct Rusty {
    greeted: bool,
    lines: Vec<String>,
    answered: bool,
}

impl Listener for Rusty {
    fn routes(r: &mut ClientRoutes<Self>) {
        r.on("connected", |me, net, _| {
            me.greeted = true;
            net.send(&msg! { "action": "nickname", "nickname": "Rusty" });
            Ok(())
        });
        r.on("message", |me, net, m| {
            let line = format!("{}: {}", m.str("nickname")?, m.str("text")?);
            if line == "Alice: hello from the browser" && !me.answered {
                net.send(&msg! { "action": "message", "text": "hi Alice" });
                me.answered = true;
            }
            me.lines.push(line);
            Ok(())
        });
    }
}

#[test]
fn web_chat_page_and_a_rust_client_chat_together() {
    let Some(browser) = proc::chromium() else {
        return;
    };
    let (mut server, _, page) = web_chat();
    let tcp = server.expect_within("listening on", WAIT);
    let mut rusty = Client::connect(tcp.as_str(), Rusty::default()).expect("client");
    // In the room before the browser speaks: the server's greeting means our channel exists.
    let until = Instant::now() + WAIT;
    while !rusty.listener().greeted {
        assert!(Instant::now() < until, "the Rust client was not greeted");
        rusty.pump_timeout(Duration::from_millis(10));
    }
    let url =
        format!("{page}&nick=Alice&say=hello%20from%20the%20browser&wait=Rusty:%20hi%20Alice");
    let dom = proc::finish_chromium(proc::start_chromium(&browser, &url, &[]), || {
        rusty.pump();
    });
    let log = text_of_all(&dom, "log");
    assert!(
        log.contains("Alice: hello from the browser"),
        "browser log:\n{dom}"
    );
    assert!(
        log.contains("Rusty: hi Alice"),
        "the browser did not see the Rust player:\n{dom}"
    );
    assert!(
        rusty
            .listener()
            .lines
            .iter()
            .any(|l| l == "Alice: hello from the browser"),
        "the Rust client saw {:?}",
        rusty.listener().lines
    );
}

/// Everything inside the element with `id`, tags included.
fn text_of_all(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    dom[at..].to_owned()
}
