//! The arena's messages, shared by `arena_server`, `arena_client` and the tests (`web/arena.js`
//! reads the same bytes). Everything a client learns arrives in three messages:
//!
//! - `{"action": "snap", "t": tick, "p": bin, "g": bin}`, every tick, to everyone: `p` holds 3
//!   bytes per player (id, x, y), `g` 2 bytes per gem (x, y), positions quantised to a quarter
//!   unit, which interpolation hides. 64 players make a 236-byte frame: 6.9 KiB/s at 30 Hz.
//! - `{"action": "board", "players": [[id, name, score, bot], ...]}` when a join or a leave
//!   changed who plays (and to every newcomer): names do not ride in every snapshot;
//! - `{"action": "scores", "s": bin}` at most twice a second when scores changed: 3 bytes per
//!   player (id, score as a big-endian u16). With 64 busy bots, 0.4 KiB/s.
//! - `{"action": "welcome", "id": id}` to a client whose `join` made it a player.
//!
//! A client sends `{"action": "join", "name": "..."}` once to play (a client that never joins
//! is a spectator: it gets every snapshot), then `{"action": "input", "dx": -1|0|1, "dy": ...}`
//! whenever its keys change.
//!
//! The messages are Rust types (feature `serde`, on by default): what clients send is one enum
//! tagged by `"action"`, which the server routes with one `match`; the snapshot is a struct
//! whose byte fields borrow from the frame when a Rust client reads it.

#![allow(dead_code)] // each program uses its own half

use repod::{msg, Encode, Message, Typed};
use serde::{Deserialize, Serialize};

use super::sim::{World, HEIGHT, WIDTH};

/// Units to snapshot steps.
const Q: f32 = 4.0;

fn quantise(v: f32, max: f32) -> u8 {
    (v * Q).round().clamp(0.0, (max * Q - 1.0).min(255.0)) as u8
}

/// Encodes the snapshot of `world` into the two byte strings of a `snap` message.
pub fn snapshot_bytes(world: &World, players: &mut Vec<u8>, gems: &mut Vec<u8>) {
    players.clear();
    gems.clear();
    for p in &world.players {
        players.extend_from_slice(&[p.id, quantise(p.x, WIDTH), quantise(p.y, HEIGHT)]);
    }
    for &(x, y) in &world.gems {
        gems.extend_from_slice(&[quantise(x, WIDTH), quantise(y, HEIGHT)]);
    }
}

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToServer {
    /// Play, under this name (a missing name gets a numbered one).
    Join {
        /// Shown on the score board.
        #[serde(default)]
        name: String,
    },
    /// The direction the player's keys hold; out-of-range numbers are clamped.
    Input {
        /// -1, 0 or 1.
        dx: i64,
        /// -1, 0 or 1.
        dy: i64,
    },
}

/// The `snap` message as it travels: byte strings borrowed from the frame.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snap<'a> {
    /// Always `"snap"`.
    pub action: &'a str,
    /// The tick.
    pub t: u32,
    /// 3 bytes a player: id, x, y.
    #[serde(with = "serde_bytes")]
    pub p: &'a [u8],
    /// 2 bytes a gem: x, y.
    #[serde(with = "serde_bytes")]
    pub g: &'a [u8],
}

/// The `snap` message.
pub fn snapshot<'a>(tick: u32, players: &'a [u8], gems: &'a [u8]) -> impl Encode + 'a {
    Typed(Snap {
        action: "snap",
        t: tick,
        p: players,
        g: gems,
    })
}

/// The `board` message.
pub fn board(world: &World) -> rmpv::Value {
    use rmpv::Value;
    let players = world
        .players
        .iter()
        .map(|p| {
            Value::Array(vec![
                Value::from(p.id),
                Value::from(p.name.as_str()),
                Value::from(p.score),
                Value::from(p.bot),
            ])
        })
        .collect();
    Value::Map(vec![
        (Value::from("action"), Value::from("board")),
        (Value::from("players"), Value::Array(players)),
    ])
}

/// The `scores` message's bytes.
pub fn scores_bytes(world: &World, out: &mut Vec<u8>) {
    out.clear();
    for p in &world.players {
        let s = p.score.min(u32::from(u16::MAX)) as u16;
        out.push(p.id);
        out.extend_from_slice(&s.to_be_bytes());
    }
}

/// The `scores` message.
pub fn scores(bytes: &[u8]) -> impl Encode + '_ {
    msg! { "action": "scores", "s": repod::Bin(bytes) }
}

/// Applies a `scores` message to a board; false if `m` is not one.
pub fn apply_scores(m: &Message<'_>, board: &mut [Line]) -> bool {
    if m.action() != "scores" {
        return false;
    }
    let Ok(s) = m.bin("s") else { return false };
    for c in s.chunks_exact(3) {
        if let Some(line) = board.iter_mut().find(|l| l.0 == c[0]) {
            line.2 = u32::from(u16::from_be_bytes([c[1], c[2]]));
        }
    }
    true
}

/// One player's position in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dot {
    /// The player's id.
    pub id: u8,
    /// Position in units.
    pub x: f32,
    /// Position in units.
    pub y: f32,
}

/// A decoded `snap`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The server's tick.
    pub tick: u32,
    /// Every player.
    pub players: Vec<Dot>,
    /// Every gem, in units.
    pub gems: Vec<(f32, f32)>,
}

impl Snapshot {
    /// Reads a `snap` message; `None` if it is not one.
    pub fn read(m: &Message<'_>) -> Option<Snapshot> {
        if m.action() != "snap" {
            return None;
        }
        let Snap { t: tick, p, g, .. } = m.decode().ok()?;
        Some(Snapshot {
            tick,
            players: p
                .chunks_exact(3)
                .map(|c| Dot {
                    id: c[0],
                    x: f32::from(c[1]) / Q,
                    y: f32::from(c[2]) / Q,
                })
                .collect(),
            gems: g
                .chunks_exact(2)
                .map(|c| (f32::from(c[0]) / Q, f32::from(c[1]) / Q))
                .collect(),
        })
    }

    /// Player `id`'s position.
    pub fn dot(&self, id: u8) -> Option<Dot> {
        self.players.iter().copied().find(|d| d.id == id)
    }
}

/// A score board line: id, name, score, bot.
pub type Line = (u8, String, u32, bool);

/// Reads a `board` message.
pub fn read_board(m: &Message<'_>) -> Option<Vec<Line>> {
    if m.action() != "board" {
        return None;
    }
    let lines = m.field("players").ok()?.elements()?;
    Some(
        lines
            .filter_map(|l| {
                let mut f = l.elements()?;
                let id = f.next()?.as_u64()? as u8;
                let name = f.next()?.as_str()?.to_owned();
                let score = f.next()?.as_u64()? as u32;
                let bot = f.next()?.as_bool()?;
                Some((id, name, score, bot))
            })
            .collect(),
    )
}

/// Interpolates between the last two snapshots: `at` is how far the render time is past
/// `older`'s arrival, as a fraction of the time between the two (clamped to [0, 1]).
pub fn lerp(older: &Snapshot, newer: &Snapshot, at: f32) -> Vec<Dot> {
    let at = at.clamp(0.0, 1.0);
    newer
        .players
        .iter()
        .map(|n| match older.dot(n.id) {
            Some(o) => Dot {
                id: n.id,
                x: o.x + (n.x - o.x) * at,
                y: o.y + (n.y - o.y) * at,
            },
            None => *n, // just joined: no motion to smooth yet
        })
        .collect()
}
