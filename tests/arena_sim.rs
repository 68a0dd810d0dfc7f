//! The arena's simulation (`examples/arena/sim.rs`) on its own: no sockets, just inputs and
//! ticks.

#[path = "../examples/arena/sim.rs"]
mod sim;

use sim::{Input, World, GEMS, HEIGHT, WIDTH};

fn run(w: &mut World, ticks: u32) {
    for _ in 0..ticks {
        w.step();
    }
}

#[test]
fn the_same_seed_and_inputs_give_the_same_match() {
    let play = || {
        let mut w = World::new(7);
        let a = w.join("ann", false).unwrap();
        w.join("bot", true).unwrap();
        for t in 0..300 {
            w.set_input(a, Input::clamped((t / 40) % 3 - 1, (t / 25) % 3 - 1));
            w.step();
        }
        w.players
            .iter()
            .map(|p| (p.id, p.x, p.y, p.score))
            .collect::<Vec<_>>()
    };
    assert_eq!(play(), play());
}

#[test]
fn a_player_moves_the_way_it_steers_and_stops_at_walls() {
    let mut w = World::new(1);
    let id = w.join("ann", false).unwrap();
    let start = w.player(id).unwrap().clone();
    w.set_input(id, Input { dx: 1, dy: 0 });
    run(&mut w, 15);
    let p = w.player(id).unwrap();
    assert!(p.x > start.x + 2.0, "moved right: {} -> {}", start.x, p.x);
    assert!((p.y - start.y).abs() < 0.01, "not vertically");
    run(&mut w, 30 * 10);
    let p = w.player(id).unwrap();
    assert!(
        p.x < WIDTH && p.x > WIDTH - 0.1,
        "held by the right wall at {}",
        p.x
    );
    // Untrusted input is clamped.
    assert_eq!(Input::clamped(100, -7), Input { dx: 1, dy: -1 });
}

#[test]
fn touching_a_gem_scores_and_moves_it() {
    let mut w = World::new(3);
    let id = w.join("ann", false).unwrap();
    let gem = w.gems[0];
    w.players[0].x = gem.0;
    w.players[0].y = gem.1;
    w.scores_changed = false;
    w.step();
    assert_eq!(w.player(id).unwrap().score, 1);
    assert_ne!(w.gems[0], gem, "the gem moved elsewhere");
    assert_eq!(w.gems.len(), GEMS);
    assert!(w.scores_changed, "a score is news");
}

#[test]
fn players_bump_apart_the_faster_pushing_harder() {
    let mut w = World::new(5);
    let a = w.join("a", false).unwrap();
    let b = w.join("b", false).unwrap();
    w.gems.iter_mut().for_each(|g| *g = (0.5, 0.5)); // out of the way
    let (ia, ib) = (0, 1);
    w.players[ia].x = 20.0;
    w.players[ia].y = 10.0;
    w.players[ib].x = 22.0;
    w.players[ib].y = 10.0;
    w.set_input(a, Input { dx: 1, dy: 0 }); // a runs into b, who stands still
    run(&mut w, 20);
    let (pa, pb) = (w.player(a).unwrap(), w.player(b).unwrap());
    assert!(pb.x - pa.x >= 0.85, "never overlapping: {} {}", pa.x, pb.x);
    assert!(pb.x > 22.2, "b was pushed: {}", pb.x);
}

#[test]
fn bots_chase_gems_and_score() {
    let mut w = World::new(9);
    for i in 0..4 {
        w.join(&format!("bot{i}"), true).unwrap();
    }
    run(&mut w, 30 * 20);
    let total: u32 = w.players.iter().map(|p| p.score).sum();
    assert!(total >= 4, "bots collected {total} gems in 20 s");
    for p in &w.players {
        assert!((0.0..WIDTH).contains(&p.x) && (0.0..HEIGHT).contains(&p.y));
    }
}

#[test]
fn joining_and_leaving_keep_ids_unique_and_names_clean() {
    let mut w = World::new(11);
    let ids: Vec<u8> = (0..10)
        .map(|i| w.join(&format!("p{i}"), false).unwrap())
        .collect();
    w.leave(ids[3]);
    let again = w.join("back\u{7}\n", false).unwrap();
    assert_eq!(again, ids[3], "a free number is reused");
    assert_eq!(w.player(again).unwrap().name, "back");
    assert_eq!(w.players.len(), 10);
    let long = "x".repeat(100);
    let id = w.join(&long, false).unwrap();
    assert_eq!(w.player(id).unwrap().name.len(), 16);
}
