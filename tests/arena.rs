//! The arena as people run it: `arena_server` with bots, and real clients.
//!
//! - a Rust spectator gets every snapshot at the tick rate with no gap, sees the bots move, and
//!   sees a player who joins;
//! - the terminal client, `arena_client`, in a real terminal (tmux): it draws the field and
//!   its player moves on arrow keys (seen by the spectator, through the server);
//! - the browser page, `web/arena.html`, in headless Chromium: it connects and draws, and a
//!   screenshot is written for the README: to `target/tmp/arena-browser.png` (and the
//!   terminal's text to `target/tmp/arena-terminal.txt`), and to `docs/` with
//!   `REPOD_WRITE_DOCS=1`, so that a plain `cargo test` leaves the tracked files alone.
//!
//! tmux and Chromium are real tools: without them the test says so loudly and skips; with `CI`
//! set it fails.

#[path = "support/cut.rs"]
mod cut;
#[path = "support/examples.rs"]
mod examples;
#[path = "support/proc.rs"]
mod proc;

#[path = "../examples/arena/proto.rs"]
mod proto;
#[path = "../examples/arena/sim.rs"]
mod sim;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use proc::Proc;
use proto::{Line, Snapshot};
use repod::{msg, Connection};

/// A running `arena_server`, and where to reach it.
struct Arena {
    _proc: Proc,
    tcp: String,
    browser: String,
}

fn start(bots: usize) -> Arena {
    let mut p = Proc::example(
        "arena_server",
        &["--bind", "127.0.0.1:0", "--bots", &bots.to_string()],
    );
    let tcp = p.expect_word("terminal:");
    let tcp = tcp.rsplit(' ').next().unwrap().to_owned();
    let browser = p.expect_word("browser:").trim().to_owned();
    Arena {
        _proc: p,
        tcp,
        browser,
    }
}

/// A spectator: a plain connection that never joins, keeping what it saw.
struct Spectator {
    conn: Connection,
    snaps: Vec<(Instant, Snapshot)>,
    board: Vec<Line>,
}

impl Spectator {
    fn connect(addr: &str) -> Spectator {
        Spectator {
            conn: Connection::connect(addr).unwrap(),
            snaps: Vec::new(),
            board: Vec::new(),
        }
    }

    /// Pumps for `d`, like a 100 fps frame loop.
    fn watch(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            let (snaps, board) = (&mut self.snaps, &mut self.board);
            self.conn.poll(Duration::from_millis(10), |_, m| {
                if let Some(s) = Snapshot::read(m) {
                    snaps.push((Instant::now(), s));
                } else if let Some(b) = proto::read_board(m) {
                    *board = b;
                }
            });
        }
    }

    /// Watches until `cond` holds (at most 20 s).
    fn watch_until(&mut self, what: &str, cond: impl Fn(&Spectator) -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        while !cond(self) {
            assert!(Instant::now() < until, "spectator: waiting for {what}");
            self.watch(Duration::from_millis(50));
        }
    }

    fn id_of(&self, name: &str) -> Option<u8> {
        self.board.iter().find(|l| l.1 == name).map(|l| l.0)
    }

    fn last(&self) -> &Snapshot {
        &self.snaps.last().expect("a snapshot").1
    }
}

#[test]
fn a_spectator_sees_every_tick_bots_moving_and_a_player_joining() {
    let arena = start(6);
    let mut eye = Spectator::connect(&arena.tcp);
    eye.watch_until("the first snapshot", |s| !s.snaps.is_empty());
    let first = eye.snaps.len();
    eye.watch(Duration::from_secs(2));
    let window: Vec<&(Instant, Snapshot)> = eye.snaps[first..].iter().collect();
    // No gap: every tick's snapshot, in order.
    for pair in window.windows(2) {
        assert_eq!(
            pair[1].1.tick,
            pair[0].1.tick + 1,
            "snapshots skipped a tick"
        );
    }
    // At the tick rate (generously bounded: the machine is shared).
    let secs = window
        .last()
        .unwrap()
        .0
        .duration_since(window[0].0)
        .as_secs_f64();
    let rate = (window.len() - 1) as f64 / secs;
    assert!((20.0..40.0).contains(&rate), "{rate:.1} snapshots a second");
    // Six bots, all moving.
    let (a, b) = (&window[0].1, &window.last().unwrap().1);
    assert_eq!(b.players.len(), 6);
    let moved = b
        .players
        .iter()
        .filter(|d| a.dot(d.id).is_some_and(|o| (o.x, o.y) != (d.x, d.y)))
        .count();
    assert!(moved >= 5, "only {moved} of 6 bots moved in 2 s");
    assert_eq!(eye.board.len(), 6);

    // A player joins, steers right, and the spectator sees it arrive and move.
    // On its own thread: nobody pumps it while the spectator watches.
    let mut player = Connection::connect_background(arena.tcp.as_str()).unwrap();
    player.send(&msg! { "action": "join", "name": "joiner" });
    eye.watch_until("the joiner on the board", |s| s.id_of("joiner").is_some());
    let id = eye.id_of("joiner").unwrap();
    eye.watch_until("the joiner in a snapshot", |s| s.last().dot(id).is_some());
    let start_x = eye.last().dot(id).unwrap().x;
    player.send(&msg! { "action": "input", "dx": 1, "dy": 0 });
    eye.watch_until("the joiner moving right", |s| {
        s.last()
            .dot(id)
            .is_some_and(|d| d.x > start_x + 2.0 || d.x >= sim::WIDTH - 1.0)
    });
    let welcome = (0..50).find_map(|_| {
        player
            .recv_timeout(Duration::from_millis(100))
            .filter(|m| m.action() == "welcome")
    });
    assert_eq!(welcome.unwrap().message().u64("id").unwrap(), u64::from(id));
    // Leaving frees the place.
    player.close();
    eye.watch_until("the joiner gone", |s| s.id_of("joiner").is_none());
    assert!(eye.last().dot(id).is_none() || eye.snaps.len() > 1);
}

/// A player whose link drops (reset on both sides, by a proxy in between) keeps its dot and
/// its score: the server holds its channel while it is away, its client reconnects by itself
/// and resumes, and it carries on steering without joining again.
#[test]
fn a_player_whose_link_drops_keeps_its_dot_and_carries_on() {
    let arena = start(0);
    let proxy = cut::CutProxy::start(arena.tcp.parse().unwrap()).unwrap();
    let mut eye = Spectator::connect(&arena.tcp);
    let mut player = Connection::connect_background(proxy.addr()).unwrap();
    player.send(&msg! { "action": "join", "name": "dropper" });
    eye.watch_until("the dropper on the board", |s| s.id_of("dropper").is_some());
    let id = eye.id_of("dropper").unwrap();
    let score = |s: &Spectator| s.board.iter().find(|l| l.0 == id).map(|l| l.2);
    let before = score(&eye).unwrap();
    assert_eq!(proxy.cut(), 1);
    // Away, then back: the board never loses the player.
    let mut events = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while !events.iter().any(|e| e == "resumed") {
        assert!(Instant::now() < until, "no resume; events {events:?}");
        if let Some(m) = player.recv_timeout(Duration::from_millis(20)) {
            if ["reconnecting", "resumed", "resume_failed", "disconnected"].contains(&m.action()) {
                events.push(m.action().to_owned());
            }
        }
        eye.watch(Duration::from_millis(10));
        assert_eq!(eye.id_of("dropper"), Some(id), "the dot left the board");
    }
    assert_eq!(
        events.first().map(String::as_str),
        Some("reconnecting"),
        "{events:?}"
    );
    assert!(score(&eye).unwrap() >= before);
    eye.watch_until("the dropper in a snapshot", |s| s.last().dot(id).is_some());
    let start_x = eye.last().dot(id).unwrap().x;
    let dx = if start_x < sim::WIDTH / 2.0 { 1 } else { -1 };
    player.send(&msg! { "action": "input", "dx": dx, "dy": 0 });
    eye.watch_until("the dropper moving again", |s| {
        s.last()
            .dot(id)
            .is_some_and(|d| (d.x - start_x).abs() > 2.0)
    });
}

/// Where the README's pictures go: `docs/` with `REPOD_WRITE_DOCS=1`, else `target/tmp`.
fn pictures_dir() -> std::path::PathBuf {
    let dir = if std::env::var_os("REPOD_WRITE_DOCS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
    } else {
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Kills a tmux session when dropped.
struct Kill<'a>(&'a Path, String);

impl Drop for Kill<'_> {
    fn drop(&mut self) {
        // Gone already when the client quit; then tmux has nothing to kill.
        let _ = Command::new(self.0)
            .args(["kill-session", "-t", &self.1])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Starts `arena_client` as player `name` in a 100 x 40 tmux session.
fn terminal_player<'a>(tmux: &'a Path, session: &str, addr: &str, name: &str) -> Kill<'a> {
    let client = examples::path("arena_client");
    let command = format!("{} {addr} --name {name}", client.display());
    let ok = Command::new(tmux)
        .args([
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "100",
            "-y",
            "40",
            &command,
        ])
        .status()
        .expect("tmux new-session");
    assert!(ok.success());
    Kill(tmux, session.to_owned())
}

fn tmux() -> Option<std::path::PathBuf> {
    proc::real_tool(
        "tmux",
        "REPOD_TMUX",
        &["/usr/bin/tmux"],
        "tmux",
        "-V",
        "apt-get install tmux",
    )
}

fn capture(tmux: &Path, session: &str) -> String {
    let out = Command::new(tmux)
        .args(["capture-pane", "-p", "-t", session])
        .output()
        .expect("tmux capture-pane");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_terminal_client_draws_the_arena_and_moves_on_keys() {
    let Some(tmux) = tmux() else { return };
    let arena = start(3);
    let mut eye = Spectator::connect(&arena.tcp);
    let session = format!("repod-arena-{}", std::process::id());
    let _kill = terminal_player(&tmux, &session, &arena.tcp, "tmuxer");

    // It draws: the field's border, the score board with our name, our player.
    let until = Instant::now() + Duration::from_secs(20);
    let screen = loop {
        let screen = capture(&tmux, &session);
        if screen.contains("tmuxer") && screen.contains('@') && screen.contains("+---") {
            break screen;
        }
        assert!(Instant::now() < until, "the client never drew:\n{screen}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        screen.contains("SCORE") && screen.contains("bot1"),
        "{screen}"
    );
    let docs = pictures_dir();
    std::fs::write(docs.join("arena-terminal.txt"), screen.trim_end()).unwrap();

    // Keys move it: the server (through the spectator) sees it go right, then left.
    eye.watch_until("tmuxer on the board", |s| s.id_of("tmuxer").is_some());
    let id = eye.id_of("tmuxer").unwrap();
    eye.watch_until("tmuxer in a snapshot", |s| s.last().dot(id).is_some());
    for (key, sign) in [("Right", 1.0f32), ("Left", -1.0)] {
        let from = eye.last().dot(id).unwrap().x;
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            // Terminals repeat a held key; a few presses stand for holding it.
            Command::new(&tmux)
                .args(["send-keys", "-t", &session, key, key, key])
                .status()
                .unwrap();
            eye.watch(Duration::from_millis(150));
            let x = eye.last().dot(id).unwrap().x;
            if (x - from) * sign > 1.5 {
                break;
            }
            assert!(
                Instant::now() < until,
                "{key} did not move the player ({from} -> {x})"
            );
        }
    }
    Command::new(&tmux)
        .args(["send-keys", "-t", &session, "q"])
        .status()
        .unwrap();
    eye.watch_until("tmuxer gone after q", |s| s.id_of("tmuxer").is_none());
}

/// Runs headless Chromium on `url` with `extra` arguments; returns its stdout.
fn run_chromium(browser: &Path, url: &str, extra: &[&str]) -> String {
    // A profile of its own per run: two Chromiums on one profile, and the second just exits.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile =
        std::env::temp_dir().join(format!("repod-arena-chromium-{}-{run}", std::process::id()));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-background-networking",
            "--window-size=1040,420",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting chromium");
    // A hang guard, not a timing check: one run takes about 15 s on an idle machine here (the
    // 5 s virtual-time budget advances slowly while the page's socket is busy), and went past
    // 60 s once while other builds and tests shared the two CPUs.
    let wait = proc::WAIT * 3;
    let until = Instant::now() + wait;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            panic!("chromium did not finish within {wait:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_browser_page_connects_draws_and_plays() {
    let Some(browser) = proc::chromium() else {
        return;
    };
    let arena = start(6);
    let mut eye = Spectator::connect(&arena.tcp);
    let url = format!("{}&name=webby", arena.browser);

    // The page joins and draws frames with every player.
    let dom = run_chromium(&browser, &url, &["--dump-dom"]);
    let title = dom
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or("");
    assert!(
        title.starts_with("arena: drew") && title.ends_with("7 players"),
        "title {title:?}\n{dom}"
    );
    assert!(dom.contains("webby"), "the page's board shows its player");

    // The server saw the browser player join. (When headless Chromium exits, its socket is
    // reset, with snapshots unread, and no WebSocket close frame: to the server that is a
    // dropped link, so the player stays, away, for the resume window; `tests/resume*.rs` and
    // web/test/resume.test.mjs cover leaving and coming back.)
    eye.watch_until("webby joined", |s| {
        s.snaps.iter().any(|(_, snap)| snap.players.len() == 7)
    });

    // The screenshot for the README.
    let shot = pictures_dir().join("arena-browser.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &browser,
        &url,
        &[&format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn a_terminal_player_and_a_browser_player_share_a_match() {
    let (Some(tmux), Some(browser)) = (tmux(), proc::chromium()) else {
        return;
    };
    let arena = start(2);
    let mut eye = Spectator::connect(&arena.tcp);
    let session = format!("repod-arena-both-{}", std::process::id());
    let _kill = terminal_player(&tmux, &session, &arena.tcp, "termy");
    eye.watch_until("the terminal player", |s| s.id_of("termy").is_some());
    // The browser player joins the same match and sees the terminal player on its board.
    let dom = run_chromium(
        &browser,
        &format!("{}&name=webby", arena.browser),
        &["--dump-dom"],
    );
    assert!(
        dom.contains("termy"),
        "the page's board lists the terminal player:\n{dom}"
    );
    assert!(
        dom.contains("arena: drew") && dom.contains("4 players"),
        "{dom}"
    );
    // And the server had both at once: two bots, the terminal player and the browser player.
    eye.watch_until("both humans in one snapshot", |s| {
        s.snaps.iter().any(|(_, snap)| snap.players.len() == 4)
    });
    // The terminal shows the browser player on its own board too, while it was there.
    assert!(eye.id_of("termy").is_some());
}
