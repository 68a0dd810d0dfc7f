//! The arena in a terminal: a 60 fps frame loop that steps the network with `pump()` (no
//! network thread), reads the keyboard, and draws the field between the last two snapshots.
//!
//! ```text
//! cargo run --example arena_server                 # in one terminal
//! cargo run --example arena_client -- 127.0.0.1:5080 [--name NAME] [--spectate]
//! cargo run --example arena_client -- tls://localhost:5080 --tls-ca ca.pem   # over TLS
//! ```
//!
//! Arrows or WASD move, Q or Esc quits. `--spectate` watches without joining. The field is
//! drawn one tick behind the newest snapshot, interpolated, so motion is smooth at 60 fps from
//! 30 Hz snapshots.
//!
//! `--spectators N --seconds S` is a load tool instead: N spectators, no terminal, stepped in
//! one loop for S seconds, then `spectators: N snapshots=A bytes_per_client_per_s=B gaps=C`
//! (for BENCHMARKS-HISTORY.md).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind};
use crossterm::style::{Color, Print, ResetColor, SetForegroundColor};
use crossterm::{cursor, execute, queue, terminal};
use repod::{Client, ClientCtx, ClientRoutes, Config, Connection, Listener, Message, Mode, Typed};

#[path = "arena/proto.rs"]
mod proto;
#[path = "arena/sim.rs"]
mod sim;

use proto::{Dot, Line, Snapshot, ToServer};

const FRAME: Duration = Duration::from_micros(16_667);
const TICK: Duration = Duration::from_micros(33_333);

/// What the frame loop knows about the match.
#[derive(Default)]
struct View {
    name: String,
    join: bool,
    me: Option<u8>,
    older: Option<(Instant, Snapshot)>,
    newer: Option<(Instant, Snapshot)>,
    board: Vec<Line>,
    status: String,
    running: bool,
}

impl Listener for View {
    fn routes(r: &mut ClientRoutes<Self>) {
        r.on("connected", |me, net, _| {
            me.status = "connected".into();
            if me.join {
                net.send(&Typed(ToServer::Join {
                    name: me.name.clone(),
                }));
            }
            Ok(())
        });
        r.on("welcome", |me, _, m| {
            me.me = Some(m.u64("id")? as u8);
            Ok(())
        });
        r.on("snap", |me, _, m| {
            if let Some(s) = Snapshot::read(m) {
                me.older = me.newer.take();
                me.newer = Some((Instant::now(), s));
            }
            Ok(())
        });
        r.on("board", |me, _, m| {
            if let Some(b) = proto::read_board(m) {
                me.board = b;
            }
            Ok(())
        });
        r.on("scores", |me, _, m| {
            proto::apply_scores(m, &mut me.board);
            Ok(())
        });
        r.on("error", |me, _, m| {
            me.status = format!("error: {}", m.str("error").unwrap_or("?"));
            me.running = false;
            Ok(())
        });
        r.on("disconnected", |me, _, _| {
            me.status = "disconnected".into();
            me.running = false;
            Ok(())
        });
    }

    fn network_received(&mut self, _: &mut ClientCtx<'_>, _: &Message<'_>) -> repod::HandlerResult {
        Ok(())
    }
}

impl View {
    /// Every player where it is drawn now: one tick behind the newest snapshot.
    fn dots(&self, now: Instant) -> Vec<Dot> {
        match (&self.older, &self.newer) {
            (Some((t0, a)), Some((t1, b))) => {
                let span = t1.duration_since(*t0).max(Duration::from_millis(1));
                let render = now.checked_sub(TICK).unwrap_or(now);
                let at = render.saturating_duration_since(*t0).as_secs_f32() / span.as_secs_f32();
                proto::lerp(a, b, at)
            }
            (None, Some((_, b))) => b.players.clone(),
            _ => Vec::new(),
        }
    }
}

/// Draws the field, the players and the score board.
fn draw(out: &mut impl Write, view: &View, now: Instant) -> io::Result<()> {
    let (w, h) = (sim::WIDTH as usize, sim::HEIGHT as usize);
    let mut grid = vec![vec![' '; w]; h];
    if let Some((_, s)) = &view.newer {
        for &(x, y) in &s.gems {
            grid[(y as usize).min(h - 1)][(x as usize).min(w - 1)] = '*';
        }
    }
    let dots = view.dots(now);
    for d in &dots {
        let c = if Some(d.id) == view.me { '@' } else { 'o' };
        grid[(d.y as usize).min(h - 1)][(d.x as usize).min(w - 1)] = c;
    }
    queue!(
        out,
        cursor::MoveTo(0, 0),
        Print(format!("+{}+", "-".repeat(w)))
    )?;
    for (row, line) in grid.iter().enumerate() {
        let text: String = line.iter().collect();
        queue!(out, cursor::MoveTo(0, row as u16 + 1), Print('|'))?;
        for ch in text.chars() {
            match ch {
                '@' => queue!(
                    out,
                    SetForegroundColor(Color::Yellow),
                    Print(ch),
                    ResetColor
                )?,
                '*' => queue!(out, SetForegroundColor(Color::Cyan), Print(ch), ResetColor)?,
                _ => queue!(out, Print(ch))?,
            }
        }
        queue!(out, Print('|'))?;
    }
    queue!(
        out,
        cursor::MoveTo(0, h as u16 + 1),
        Print(format!("+{}+", "-".repeat(w)))
    )?;
    // The score board, right of the field.
    let mut board = view.board.clone();
    board.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    let col = w as u16 + 3;
    queue!(out, cursor::MoveTo(col, 0), Print("SCORE".to_string()))?;
    for (i, (id, name, score, bot)) in board.iter().take(h).enumerate() {
        let mark = if Some(*id) == view.me { '>' } else { ' ' };
        let kind = if *bot { "bot" } else { "" };
        let line = format!("{mark}{score:>4} {name:<16} {kind:<3}");
        queue!(out, cursor::MoveTo(col, i as u16 + 1), Print(line))?;
    }
    let tick = view.newer.as_ref().map_or(0, |(_, s)| s.tick);
    let who = match view.me {
        Some(_) => "arrows/WASD move, q quits",
        None => "spectating, q quits",
    };
    let status = format!(
        "tick {tick:<8} {} players  {}  {who}",
        dots.len(),
        view.status
    );
    queue!(
        out,
        cursor::MoveTo(0, h as u16 + 2),
        terminal::Clear(terminal::ClearType::CurrentLine),
        Print(status)
    )?;
    out.flush()
}

/// Maps a key to the direction it holds; terminals report presses and repeats, not releases,
/// so a direction lasts until the opposite key, the space bar or about a quarter second.
fn direction(code: KeyCode) -> Option<(i8, i8)> {
    Some(match code {
        KeyCode::Left | KeyCode::Char('a') => (-1, 0),
        KeyCode::Right | KeyCode::Char('d') => (1, 0),
        KeyCode::Up | KeyCode::Char('w') => (0, -1),
        KeyCode::Down | KeyCode::Char('s') => (0, 1),
        KeyCode::Char(' ') => (0, 0),
        _ => return None,
    })
}

fn play(addr: &str, name: String, join: bool, cfg: Config) -> io::Result<()> {
    let view = View {
        name,
        join,
        running: true,
        status: "connecting".into(),
        ..View::default()
    };
    let mut client = Client::connect_with(addr, view, Mode::Stepped, cfg)?;
    let mut out = io::stdout();
    terminal::enable_raw_mode()?;
    execute!(
        out,
        terminal::EnterAlternateScreen,
        cursor::Hide,
        terminal::Clear(terminal::ClearType::All)
    )?;
    let result = frame_loop(&mut client, &mut out);
    // Restore the terminal whatever happened.
    let _ = execute!(out, cursor::Show, terminal::LeaveAlternateScreen);
    let _ = terminal::disable_raw_mode();
    println!("{}", client.listener().status);
    result
}

fn frame_loop(client: &mut Client<View>, out: &mut impl Write) -> io::Result<()> {
    let (mut held, mut held_at) = ((0i8, 0i8), Instant::now());
    let mut sent = (0i8, 0i8);
    while client.listener().running {
        let frame_start = Instant::now();
        client.pump(); // the network advances here, on this thread
        while event::poll(Duration::ZERO)? {
            if let Event::Key(k) = event::read()? {
                if k.kind == KeyEventKind::Release {
                    continue;
                }
                if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                    client.close();
                    return Ok(());
                }
                if let Some(d) = direction(k.code) {
                    held = d;
                    held_at = frame_start;
                }
            }
        }
        if frame_start.duration_since(held_at) > Duration::from_millis(250) {
            held = (0, 0);
        }
        if held != sent && client.listener().me.is_some() {
            let (dx, dy) = (i64::from(held.0), i64::from(held.1));
            client.send(&Typed(ToServer::Input { dx, dy }));
            sent = held;
        }
        draw(out, client.listener(), frame_start)?;
        let spent = frame_start.elapsed();
        std::thread::sleep(FRAME.saturating_sub(spent));
    }
    Ok(())
}

/// The load tool: `n` spectators for `secs` seconds in one loop.
fn spectators(addr: &str, n: usize, secs: f64, cfg: Config) -> io::Result<()> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Connection::connect_with(addr, Mode::Stepped, cfg.clone())?);
    }
    let (mut snaps, mut gaps) = (0u64, 0u64);
    let mut last_tick = vec![None::<u32>; n];
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        for (i, c) in conns.iter_mut().enumerate() {
            c.poll(Duration::ZERO, |_, m| {
                if m.action() == "snap" {
                    let t = m.u32("t").unwrap_or(0);
                    if let Some(prev) = last_tick[i] {
                        gaps += u64::from(t.saturating_sub(prev + 1));
                    }
                    last_tick[i] = Some(t);
                    snaps += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let bytes: u64 = conns
        .iter()
        .filter_map(|c| c.stats())
        .map(|s| s.bytes_in)
        .sum();
    println!(
        "spectators: {n} snapshots={snaps} bytes_per_client_per_s={:.0} gaps={gaps}",
        bytes as f64 / elapsed / n as f64
    );
    Ok(())
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:5080".to_owned();
    let (mut name, mut join, mut load, mut secs) = (String::new(), true, None, 20.0);
    let mut cfg = Config::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--name" => name = args.next().unwrap_or_default(),
            "--spectate" => join = false,
            "--spectators" => load = args.next().and_then(|v| v.parse::<usize>().ok()),
            "--seconds" => secs = args.next().and_then(|v| v.parse().ok()).unwrap_or(secs),
            // A private CA for tls:// (a test certificate); the default trusts Mozilla's roots.
            "--tls-ca" => {
                let file = args.next().unwrap_or_default();
                let tls = repod::TlsConnector::with_ca_file(&file)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                cfg = cfg.tls(tls);
            }
            other if !other.starts_with("--") => addr = other.to_owned(),
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unknown argument {other}\nusage: arena_client [HOST:PORT | tls://HOST:PORT] [--tls-ca FILE] [--name NAME] [--spectate] [--spectators N --seconds S]"),
                ))
            }
        }
    }
    if let Some(n) = load {
        return spectators(&addr, n, secs, cfg);
    }
    if name.is_empty() {
        name = std::env::var("USER").unwrap_or_else(|_| "player".into());
    }
    play(&addr, name, join, cfg)
}
