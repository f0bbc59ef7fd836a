//! A bandwidth budget per player (`--max-bytes-per-player-per-sec`): on the in-process
//! stepper, with exact bytes per tick, the budget holds for every player over a long
//! run of many turning NPCs; nothing that differs waits longer than the bound the
//! budget gives; near entities are more exact than far ones; and a budget that never
//! binds sends what no budget sends. One real-socket test checks the server's flag.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::HashMap;
use std::time::Duration;

use tickcast::server::budget::{max_record_bytes, starvation_bound, Budget, HEADER_MAX};
use tickcast::server::game::{EntityId, Events, Game, PlayerId};
use tickcast::shared::delta::{QEntity, World};
use tickcast::shared::glam::Vec2;
use tickcast::shared::{EntityKind, EntityState, Input, ServerMsg};
use tickcast::stepper::{PlayerIndex, Stepper, StepperOptions};

const RATE: u16 = 30;
/// World units per quantum (the default).
const QUANTUM: f32 = 1.0 / 16.0;

/// NPCs on circles around scattered homes: every one of them turns every tick, so
/// none moves as predicted for long and every one keeps asking to be sent. Avatars
/// stand still where they spawn.
struct Orbits {
    npcs: Vec<(Vec2, f32, f32, f32)>,
    avatars: Vec<(EntityId, Vec2)>,
    time: f32,
}

/// Where the avatars of players 1, 2, 3 stand.
const SPAWNS: [Vec2; 3] = [
    Vec2::new(1000.0, 1000.0),
    Vec2::new(300.0, 300.0),
    Vec2::new(1700.0, 400.0),
];
/// Orbit radius (units) and angular speed (rad/s) of every NPC.
const ORBIT: (f32, f32) = (20.0, 1.5);

impl Orbits {
    fn new(npcs: u32) -> Self {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as f32 / (1u64 << 31) as f32
        };
        Self {
            npcs: (0..npcs)
                .map(|_| {
                    let home = Vec2::new(100.0 + 1800.0 * next(), 100.0 + 1800.0 * next());
                    (home, ORBIT.0, ORBIT.1, std::f32::consts::TAU * next())
                })
                .collect(),
            avatars: Vec::new(),
            time: 0.0,
        }
    }
}

impl Game for Orbits {
    fn spawn_player(&mut self, player: PlayerId) -> EntityId {
        let id = self.npcs.len() as u32 + player;
        let at = SPAWNS[(player as usize).saturating_sub(1) % SPAWNS.len()];
        self.avatars.push((id, at));
        id
    }
    fn despawn_player(&mut self, entity: EntityId) {
        self.avatars.retain(|a| a.0 != entity);
    }
    fn apply_input(&mut self, _: EntityId, _: &Input) {}
    fn step(&mut self, dt: f32, _: &mut Events) {
        self.time += dt;
    }
    fn world_size(&self) -> Vec2 {
        Vec2::splat(2000.0)
    }
    fn write_state(&self, out: &mut Vec<EntityState>) {
        for (id, &(home, r, w, phase)) in self.npcs.iter().enumerate() {
            let a = w * self.time + phase;
            let (s, c) = a.sin_cos();
            out.push(EntityState::new(
                id as u32,
                EntityKind::Npc,
                home + r * Vec2::new(c, s),
                r * w * Vec2::new(-s, c),
            ));
        }
        for &(id, at) in &self.avatars {
            out.push(EntityState::new(id, EntityKind::Avatar, at, Vec2::ZERO));
        }
    }
}

fn stepper(npcs: u32, budget: u64) -> Stepper<Orbits> {
    Stepper::new(
        Orbits::new(npcs),
        StepperOptions {
            game: "orbits",
            tick_rate: RATE,
            max_bytes_per_player_per_sec: budget,
            ..StepperOptions::default()
        },
    )
}

/// Connects `players` players and runs `ticks` ticks, calling `each` after every one;
/// returns every player's snapshot bytes per tick.
fn run(
    s: &mut Stepper<Orbits>,
    players: usize,
    ticks: u32,
    mut each: impl FnMut(&Stepper<Orbits>, &[PlayerIndex]),
) -> Vec<Vec<u64>> {
    let ps: Vec<PlayerIndex> = (0..players).map(|i| s.connect(&format!("p{i}"))).collect();
    let mut bytes = vec![Vec::new(); players];
    let mut seen = vec![0u64; players];
    for _ in 0..ticks {
        s.step().expect("every snapshot applies");
        for (i, &p) in ps.iter().enumerate() {
            let total = s.client(p).map_or(0, |c| c.stats().bytes_received);
            bytes[i].push(total - seen[i]);
            seen[i] = total;
        }
        each(s, &ps);
    }
    bytes
}

/// The most bytes sent in any window of ticks, against what the bucket allows for it:
/// `N` per second of the window plus the burst `N`. Returns the worst (sent - allowed),
/// which must not be above 0.
fn worst_window(per_tick: &[u64], budget: u64) -> i64 {
    let mut prefix = vec![0u64];
    for b in per_tick {
        prefix.push(prefix.last().unwrap() + b);
    }
    let mut worst = i64::MIN;
    for a in 0..per_tick.len() {
        for b in a + 1..=per_tick.len() {
            let sent = (prefix[b] - prefix[a]) as i64;
            // Whole ticks: N x ticks / rate, rounded down, plus the burst.
            let allowed = (budget * (b - a) as u64 / u64::from(RATE) + budget) as i64;
            worst = worst.max(sent - allowed);
        }
    }
    worst
}

fn frame_entity(s: &Stepper<Orbits>, p: PlayerIndex, id: u32) -> QEntity {
    let f = s.last_frame(p).expect("a frame");
    f.entities[f.entities.binary_search_by_key(&id, |e| e.id).unwrap()]
}

fn distance(a: [i32; 2], b: [i32; 2]) -> f64 {
    f64::from(a[0] - b[0]).hypot(f64::from(a[1] - b[1]))
}

#[test]
fn every_players_bytes_stay_within_the_budget_over_a_long_run() {
    const N: u64 = 8_000;
    let ticks = 30 * 40;
    let mut s = stepper(500, N);
    let bytes = run(&mut s, 3, ticks, |_, _| {});
    let mut free = stepper(500, 0);
    let unbounded = run(&mut free, 3, ticks, |_, _| {});
    for (p, per_tick) in bytes.iter().enumerate() {
        assert_eq!(per_tick.len(), ticks as usize);
        let worst = worst_window(per_tick, N);
        assert!(worst <= 0, "player {p}: a window went {worst} bytes over");
        let total: u64 = per_tick.iter().sum();
        let free_total: u64 = unbounded[p].iter().sum();
        // The budget binds: without it the same room costs several times as much.
        assert!(free_total > 3 * total, "{free_total} vs {total}");
        // And the budget is used: over the last 30 s, at least 90 % of N per second.
        let tail: u64 = per_tick[300..].iter().sum();
        let secs = (ticks as u64 - 300) / u64::from(RATE);
        assert!(tail >= N * secs * 9 / 10, "{tail} bytes in {secs} s");
        println!(
            "player {p}: {} B/s with a budget of {N}, {} B/s without",
            total * u64::from(RATE) / u64::from(ticks),
            free_total * u64::from(RATE) / u64::from(ticks)
        );
    }
}

#[test]
fn nothing_that_differs_waits_longer_than_the_budget_allows() {
    const N: u64 = 6_000;
    const NPCS: u32 = 500;
    let budget = Budget::new(N, RATE).unwrap();
    // Sends per tick the refill pays for beyond the header, at the largest record.
    let per_tick = ((budget.per_tick() as usize) - HEADER_MAX) / max_record_bytes(0);
    // Everyone else: the NPCs and the two other avatars.
    let bound = starvation_bound(NPCS as usize + 2, per_tick);
    let ticks = u32::try_from(bound).unwrap() + 300;
    let mut s = stepper(NPCS, N);
    // Per player and entity: the tick since which the client's copy differs.
    let mut since: Vec<HashMap<u32, u64>> = vec![HashMap::new(); 3];
    let mut longest = [0u64; 3];
    run(&mut s, 3, ticks, |s, ps| {
        for (i, &p) in ps.iter().enumerate() {
            let world = &s.client(p).unwrap().world();
            let frame = s.last_frame(p).unwrap();
            let tick = frame.tick;
            assert_eq!(world.tick, Some(tick), "a reading player gets every tick");
            for truth in &frame.entities {
                let held = world
                    .entities
                    .binary_search_by_key(&truth.id, |e| e.id)
                    .ok()
                    .map(|j| world.entities[j]);
                if held == Some(*truth) {
                    since[i].remove(&truth.id);
                } else {
                    let from = *since[i].entry(truth.id).or_insert(tick);
                    longest[i] = longest[i].max(tick - from + 1);
                }
            }
        }
    });
    for (p, wait) in longest.iter().enumerate() {
        println!("player {p}: longest wait {wait} ticks, bound {bound}");
        assert!(*wait <= bound, "player {p} waited {wait} ticks");
    }
}

#[test]
fn the_nearest_entities_stay_more_exact_than_far_ones() {
    const N: u64 = 6_000;
    const NPCS: u32 = 500;
    let mut s = stepper(NPCS, N);
    // Per player: sum and count of errors (quanta) of the nearest 10 and farthest 100,
    // the largest near error, after a second of warm-up.
    let mut near = [(0.0f64, 0u64, 0.0f64); 3];
    let mut far = [(0.0f64, 0u64); 3];
    let mut tick = 0;
    run(&mut s, 3, 30 * 30, |s, ps| {
        tick += 1;
        if tick < 30 {
            return;
        }
        for (i, &p) in ps.iter().enumerate() {
            let client = s.client(p).unwrap();
            let world = client.world();
            let own = client.welcome().entity_id;
            let centre = frame_entity(s, p, own).pos;
            let now = world.tick.unwrap();
            let mut by_distance: Vec<(f64, f64)> = s
                .last_frame(p)
                .unwrap()
                .entities
                .iter()
                .filter(|e| e.kind == EntityKind::Npc)
                .map(|truth| {
                    let shown = world.extrapolated(truth.id, now).expect("every NPC held");
                    (distance(truth.pos, centre), distance(truth.pos, shown))
                })
                .collect();
            by_distance.sort_by(|a, b| a.0.total_cmp(&b.0));
            for &(_, err) in &by_distance[..10] {
                near[i].0 += err;
                near[i].1 += 1;
                near[i].2 = near[i].2.max(err);
            }
            for &(_, err) in &by_distance[by_distance.len() - 100..] {
                far[i].0 += err;
                far[i].1 += 1;
            }
        }
    });
    // The orbit's acceleration in quanta per tick²: an entity not sent for k ticks is
    // off by at most a k² / 2, plus a quantum of rounding per tick of velocity.
    let dt = 1.0 / f64::from(RATE);
    let accel = f64::from(ORBIT.0 * ORBIT.1 * ORBIT.1) * dt * dt / f64::from(QUANTUM);
    let budget = Budget::new(N, RATE).unwrap();
    let per_tick = ((budget.per_tick() as usize) - HEADER_MAX) / max_record_bytes(0);
    let wait = starvation_bound(NPCS as usize + 2, per_tick) as f64;
    let bound = accel * wait * wait / 2.0 + wait + 1.0;
    for p in 0..3 {
        let near_mean = near[p].0 / near[p].1 as f64;
        let far_mean = far[p].0 / far[p].1 as f64;
        println!(
            "player {p}: nearest 10 mean error {near_mean:.1} quanta (max {:.1}), farthest 100 {far_mean:.1}",
            near[p].2
        );
        assert!(near[p].2 <= bound, "player {p}: {} > {bound}", near[p].2);
        assert!(
            near_mean * 1.5 < far_mean,
            "player {p}: near {near_mean} vs far {far_mean}"
        );
    }
}

#[test]
fn a_budget_that_never_binds_sends_exactly_what_no_budget_sends() {
    let ticks = 200;
    let mut off = stepper(200, 0);
    let mut check = |s: &Stepper<Orbits>, ps: &[PlayerIndex]| {
        for &p in ps {
            let world = s.client(p).unwrap().world();
            assert_eq!(world.entities, s.last_frame(p).unwrap().entities);
        }
    };
    let a = run(&mut off, 2, ticks, &mut check);
    let mut huge = stepper(200, 1 << 30);
    let b = run(&mut huge, 2, ticks, &mut check);
    assert_eq!(a, b, "the same bytes, tick by tick");
    let mut default = Stepper::new(
        Orbits::new(200),
        StepperOptions {
            game: "orbits",
            ..StepperOptions::default()
        },
    );
    let c = run(&mut default, 2, ticks, |_, _| {});
    assert_eq!(a, c, "0 is the default: no budget");
}

#[tokio::test]
async fn the_server_flag_holds_a_real_players_bytes_to_the_budget() {
    const N: u64 = 3_000;
    let server = common::start(tickcast::server::Config {
        npcs: 300,
        max_bytes_per_player_per_sec: N,
        ..common::config()
    })
    .await;
    let mut ws = common::connect(&server.ws_url("budget")).await;
    let welcome = common::hello(&mut ws, "thrifty").await;
    let rate = u64::from(welcome.tick_rate);
    let mut world = World::default();
    let mut first: Option<(u64, usize)> = None;
    let mut bytes = 0u64;
    // Two seconds of server ticks, counted by tick (not by the clock).
    let span = 2 * rate;
    loop {
        let (msg, size) =
            tokio::time::timeout(Duration::from_secs(10), common::recv_sized(&mut ws))
                .await
                .expect("snapshots keep coming");
        let ServerMsg::Snapshot(snap) = msg else {
            continue;
        };
        world
            .apply(&snap)
            .expect("every delta applies to what the client holds");
        let (start, _) = *first.get_or_insert((snap.tick, world.entities.len()));
        if snap.tick >= start + span {
            break;
        }
        bytes += size as u64;
    }
    let (_, first_entities) = first.unwrap();
    // Ticks start..start+span: the burst and two seconds' worth at most.
    assert!(bytes <= N + 2 * N, "{bytes} bytes in 2 s");
    assert!(
        first_entities < 301,
        "the first keyframe ({first_entities} entities) did not fit the burst"
    );
    assert_eq!(
        world.entities.len(),
        301,
        "every NPC and the avatar arrived"
    );
    common::close_normally(&mut ws).await;
    server.stop().await.unwrap();
}
