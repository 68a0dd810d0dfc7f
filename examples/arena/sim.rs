//! The arena's rules, with no networking: a pure function of the inputs and the ticks.
//!
//! A 64 x 32 field. Players steer with four directions, gems appear at random places, touching
//! one scores a point, and players bump each other apart (the faster one pushes harder). Bots
//! steer towards the nearest gem. Everything random comes from one seeded generator, so the
//! same seed, joins and inputs give the same match: the tests rely on it.

#![allow(dead_code)] // shared by the server, the client and the tests, each using a part

/// Width of the field, in units (a terminal cell; 12 pixels in the browser).
pub const WIDTH: f32 = 64.0;
/// Height of the field.
pub const HEIGHT: f32 = 32.0;
/// Gems on the field at any time.
pub const GEMS: usize = 8;
/// Ticks per second.
pub const TICK_HZ: f32 = 30.0;
/// Top speed, units per second.
const SPEED: f32 = 14.0;
/// How fast a player reaches its top speed (per second).
const ACCEL: f32 = 10.0;
/// Players closer than this bump.
const RADIUS: f32 = 0.9;
/// A gem is collected by a player closer than this.
const REACH: f32 = 1.0;

/// What a player asks for: a direction on each axis, each -1, 0 or 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Input {
    /// Left (-1) or right (1).
    pub dx: i8,
    /// Up (-1) or down (1).
    pub dy: i8,
}

impl Input {
    /// An input from untrusted numbers: anything out of range is clamped.
    pub fn clamped(dx: i64, dy: i64) -> Input {
        Input {
            dx: dx.clamp(-1, 1) as i8,
            dy: dy.clamp(-1, 1) as i8,
        }
    }
}

/// One player, human or bot.
#[derive(Debug, Clone, PartialEq)]
pub struct Player {
    /// Its number in snapshots, unique among the players present.
    pub id: u8,
    /// Shown on the score board.
    pub name: String,
    /// Position, in units.
    pub x: f32,
    /// Position, in units.
    pub y: f32,
    vx: f32,
    vy: f32,
    /// Gems collected.
    pub score: u32,
    /// Steered by the server.
    pub bot: bool,
    input: Input,
}

/// The whole match.
#[derive(Debug, Clone)]
pub struct World {
    /// Ticks simulated so far.
    pub tick: u32,
    /// The players, in joining order.
    pub players: Vec<Player>,
    /// Gem positions.
    pub gems: Vec<(f32, f32)>,
    rng: u64,
    /// Set when a join or a leave changed who is playing.
    pub roster_changed: bool,
    /// Set when a score changed.
    pub scores_changed: bool,
}

impl World {
    /// An empty field with its gems, from `seed`.
    pub fn new(seed: u64) -> World {
        let mut w = World {
            tick: 0,
            players: Vec::new(),
            gems: Vec::new(),
            rng: seed.max(1),
            roster_changed: true,
            scores_changed: false,
        };
        for _ in 0..GEMS {
            let g = w.random_spot();
            w.gems.push(g);
        }
        w
    }

    /// xorshift64*: plenty for placing gems, and reproducible.
    fn random(&mut self) -> f32 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (r >> 40) as f32 / (1u64 << 24) as f32
    }

    fn random_spot(&mut self) -> (f32, f32) {
        (
            1.0 + self.random() * (WIDTH - 2.0),
            1.0 + self.random() * (HEIGHT - 2.0),
        )
    }

    /// Adds a player at a random place; `None` when all 255 numbers are taken.
    pub fn join(&mut self, name: &str, bot: bool) -> Option<u8> {
        let id = (1..=u8::MAX).find(|id| self.players.iter().all(|p| p.id != *id))?;
        let (x, y) = self.random_spot();
        let name: String = name.chars().filter(|c| !c.is_control()).take(16).collect();
        self.players.push(Player {
            id,
            name: if name.is_empty() {
                format!("player{id}")
            } else {
                name
            },
            x,
            y,
            vx: 0.0,
            vy: 0.0,
            score: 0,
            bot,
            input: Input::default(),
        });
        self.roster_changed = true;
        Some(id)
    }

    /// Removes player `id` (it left).
    pub fn leave(&mut self, id: u8) {
        self.players.retain(|p| p.id != id);
        self.roster_changed = true;
    }

    /// Sets what player `id` asks for until its next input.
    pub fn set_input(&mut self, id: u8, input: Input) {
        if let Some(p) = self.players.iter_mut().find(|p| p.id == id) {
            p.input = input;
        }
    }

    /// Player `id`.
    pub fn player(&self, id: u8) -> Option<&Player> {
        self.players.iter().find(|p| p.id == id)
    }

    /// Advances the match by one tick.
    pub fn step(&mut self) {
        let dt = 1.0 / TICK_HZ;
        self.tick += 1;
        for i in 0..self.players.len() {
            if self.players[i].bot {
                let input = self.bot_input(i);
                self.players[i].input = input;
            }
        }
        for p in &mut self.players {
            let (tx, ty) = (f32::from(p.input.dx), f32::from(p.input.dy));
            let norm = if tx != 0.0 && ty != 0.0 {
                std::f32::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            let k = (ACCEL * dt).min(1.0);
            p.vx += (tx * norm * SPEED - p.vx) * k;
            p.vy += (ty * norm * SPEED - p.vy) * k;
            p.x += p.vx * dt;
            p.y += p.vy * dt;
            // Walls stop a player dead on that axis.
            if p.x < 0.0 || p.x > WIDTH - 0.01 {
                p.x = p.x.clamp(0.0, WIDTH - 0.01);
                p.vx = 0.0;
            }
            if p.y < 0.0 || p.y > HEIGHT - 0.01 {
                p.y = p.y.clamp(0.0, HEIGHT - 0.01);
                p.vy = 0.0;
            }
        }
        self.bump();
        self.collect();
    }

    /// Pushes overlapping players apart, each by its share of the overlap: the faster one
    /// moves the slower one more.
    fn bump(&mut self) {
        let n = self.players.len();
        for i in 0..n {
            for j in i + 1..n {
                let (a, b) = (&self.players[i], &self.players[j]);
                let (dx, dy) = (b.x - a.x, b.y - a.y);
                let d2 = dx * dx + dy * dy;
                if d2 >= RADIUS * RADIUS {
                    continue;
                }
                let d = d2.sqrt().max(1e-3);
                let overlap = RADIUS - d;
                let (sa, sb) = (a.vx.hypot(a.vy) + 1.0, b.vx.hypot(b.vy) + 1.0);
                let share_a = sb / (sa + sb); // pushed by b's speed
                let (ux, uy) = if d2 > 1e-6 {
                    (dx / d, dy / d)
                } else {
                    (1.0, 0.0)
                };
                let (ax, ay) = (ux * overlap * share_a, uy * overlap * share_a);
                let (bx, by) = (
                    ux * overlap * (1.0 - share_a),
                    uy * overlap * (1.0 - share_a),
                );
                let a = &mut self.players[i];
                a.x = (a.x - ax).clamp(0.0, WIDTH - 0.01);
                a.y = (a.y - ay).clamp(0.0, HEIGHT - 0.01);
                let b = &mut self.players[j];
                b.x = (b.x + bx).clamp(0.0, WIDTH - 0.01);
                b.y = (b.y + by).clamp(0.0, HEIGHT - 0.01);
            }
        }
    }

    fn collect(&mut self) {
        for g in 0..self.gems.len() {
            let (gx, gy) = self.gems[g];
            let taker = self
                .players
                .iter()
                .position(|p| (p.x - gx).powi(2) + (p.y - gy).powi(2) < REACH * REACH);
            if let Some(i) = taker {
                self.players[i].score += 1;
                self.gems[g] = self.random_spot();
                self.scores_changed = true;
            }
        }
    }

    /// A bot heads for the nearest gem.
    fn bot_input(&self, i: usize) -> Input {
        let p = &self.players[i];
        let nearest = self.gems.iter().min_by(|a, b| {
            let da = (a.0 - p.x).powi(2) + (a.1 - p.y).powi(2);
            let db = (b.0 - p.x).powi(2) + (b.1 - p.y).powi(2);
            da.total_cmp(&db)
        });
        let Some(&(gx, gy)) = nearest else {
            return Input::default();
        };
        let axis = |d: f32| {
            if d > 0.3 {
                1
            } else if d < -0.3 {
                -1
            } else {
                0
            }
        };
        Input {
            dx: axis(gx - p.x),
            dy: axis(gy - p.y),
        }
    }
}
