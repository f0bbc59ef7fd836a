//! A game of your own, hosted by tickcast: `coins`.
//!
//! ```sh
//! cargo run --release --example custom_game                      # ws://127.0.0.1:8080/ws?room=NAME
//! cargo run --release --example custom_game -- --listen 0.0.0.0:9000
//! TICKCAST_LISTEN=127.0.0.1:9000 cargo run --release --example custom_game
//! cargo run --release --bin tickcast-bots -- --url 'ws://127.0.0.1:8080/ws?room=x' --duration 3s
//! ```
//!
//! The rules: coins lie still on a 300 × 300 field. Walking over one (closer than
//! [`PICKUP_RADIUS`]) collects it: the player's `coins` field goes up by one, every
//! player is sent the event `[1, collector: u32 LE, coin: u32 LE]` (entity ids), and the
//! coin reappears somewhere else. A player may also send a one-byte "emote" message,
//! which everyone receives as `[2, sender: u32 LE, emote]`; any other message is
//! refused, which closes the sender's connection with 4009.
//!
//! Everything game-specific is the [`Coins`] type and its [`Game`] impl; hosting it is
//! the few lines of `main`. docs/GAMES.md walks through this file.

use std::net::SocketAddr;

use tickcast::server::game::{
    snap_step, EntityId, Events, Game, GameOptions, Games, MessageRefused, PlayerId,
    DEFAULT_POS_QUANTUM,
};
use tickcast::server::{serve, Config};
use tickcast::shared::glam::Vec2;
use tickcast::shared::{EntityKind, EntityState, FieldKind, FieldSpec, Input, MAX_FIELDS};
use tokio_util::sync::CancellationToken;

/// Side of the square field, in world units (a whole number of position quanta).
const SIZE: f32 = 300.0;
/// Walking speed at full input, in units per second.
const SPEED: f32 = 100.0;
/// Distance under which a player picks a coin up.
pub const PICKUP_RADIUS: f32 = 8.0;
/// Index of the `coins` field: the only field this game declares.
const FIELD_COINS: usize = 0;
/// First byte of a pickup event.
const EVENT_PICKUP: u8 = 1;
/// First byte of an emote event.
const EVENT_EMOTE: u8 = 2;

/// splitmix64: a few lines of seeded randomness, so the same seed lays the same coins.
/// (A real game would use the `rand` crate, as the built-in games do.)
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A point of the field, on the position quantum grid (so it sits exactly where
    /// clients place it).
    fn point(&mut self) -> Vec2 {
        let cells = (SIZE / DEFAULT_POS_QUANTUM) as u64;
        let mut coord = || (self.next_u64() % (cells + 1)) as f32 * DEFAULT_POS_QUANTUM;
        Vec2::new(coord(), coord())
    }
}

#[derive(Debug)]
struct Player {
    id: EntityId,
    pos: Vec2,
    vel: Vec2,
    coins: u16,
}

/// The game. Coins take entity ids `0..n` and players the next ones in join order, so
/// the coins followed by the players are sorted by id, as `write_state` must list them.
#[derive(Debug)]
pub struct Coins {
    coins: Vec<(EntityId, Vec2)>,
    players: Vec<Player>,
    next_id: EntityId,
    rng: Rng,
}

impl Coins {
    /// A field with `count` coins, laid out by `seed`.
    pub fn new(count: u32, seed: u64) -> Self {
        let mut rng = Rng(seed);
        Self {
            coins: (0..count).map(|id| (id, rng.point())).collect(),
            players: Vec::new(),
            next_id: count,
            rng,
        }
    }

    fn player_mut(&mut self, entity: EntityId) -> Option<&mut Player> {
        self.players.iter_mut().find(|p| p.id == entity)
    }
}

impl Game for Coins {
    fn spawn_player(&mut self, _player: PlayerId) -> EntityId {
        let id = self.next_id;
        self.next_id += 1;
        let pos = self.rng.point();
        self.players.push(Player {
            id,
            pos,
            vel: Vec2::ZERO,
            coins: 0,
        });
        id
    }

    fn despawn_player(&mut self, entity: EntityId) {
        self.players.retain(|p| p.id != entity);
    }

    fn apply_input(&mut self, entity: EntityId, input: &Input) {
        if let Some(p) = self.player_mut(entity) {
            p.vel = input.movement.clamp_length_max(1.0) * SPEED;
        }
    }

    fn step(&mut self, dt: f32, events: &mut Events) {
        let Self {
            coins,
            players,
            rng,
            ..
        } = self;
        for p in players.iter_mut() {
            // Whole quanta per tick: straight walks cost no bandwidth.
            p.pos += snap_step(p.vel, dt, DEFAULT_POS_QUANTUM);
            let inside = p.pos.clamp(Vec2::ZERO, Vec2::splat(SIZE));
            if inside.x != p.pos.x {
                p.vel.x = 0.0;
            }
            if inside.y != p.pos.y {
                p.vel.y = 0.0;
            }
            p.pos = inside;
            for (coin, at) in coins.iter_mut() {
                if p.pos.distance(*at) < PICKUP_RADIUS {
                    p.coins = p.coins.saturating_add(1);
                    *at = rng.point();
                    let mut event = vec![EVENT_PICKUP];
                    event.extend_from_slice(&p.id.to_le_bytes());
                    event.extend_from_slice(&coin.to_le_bytes());
                    events.to_all(event);
                }
            }
        }
    }

    fn world_size(&self) -> Vec2 {
        Vec2::splat(SIZE)
    }

    fn write_state(&self, out: &mut Vec<EntityState>) {
        out.extend(
            self.coins
                .iter()
                .map(|&(id, pos)| EntityState::new(id, EntityKind::Npc, pos, Vec2::ZERO)),
        );
        out.extend(self.players.iter().map(|p| {
            let mut fields = [0; MAX_FIELDS];
            fields[FIELD_COINS] = i32::from(p.coins);
            EntityState {
                fields,
                ..EntityState::new(p.id, EntityKind::Avatar, p.pos, p.vel)
            }
        }));
    }

    fn fields(&self) -> Vec<FieldSpec> {
        vec![FieldSpec {
            name: "coins".to_owned(),
            kind: FieldKind::U16,
        }]
    }

    fn on_message(
        &mut self,
        _player: PlayerId,
        entity: EntityId,
        message: &[u8],
        events: &mut Events,
    ) -> Result<(), MessageRefused> {
        match message {
            [emote] => {
                let mut event = vec![EVENT_EMOTE];
                event.extend_from_slice(&entity.to_le_bytes());
                event.push(*emote);
                events.to_all(event);
                Ok(())
            }
            _ => Err(MessageRefused),
        }
    }
}

/// `--listen ADDR` (or `--listen=ADDR`), else `$TICKCAST_LISTEN`, else 127.0.0.1:8080.
fn listen_addr() -> anyhow::Result<SocketAddr> {
    let mut args = std::env::args().skip(1);
    let mut listen = std::env::var("TICKCAST_LISTEN").ok();
    while let Some(arg) = args.next() {
        match arg.strip_prefix("--listen") {
            Some("") => listen = args.next(),
            Some(value) if value.starts_with('=') => listen = Some(value[1..].to_owned()),
            _ => anyhow::bail!("unknown argument {arg:?}; usage: custom_game [--listen ADDR]"),
        }
    }
    let listen = listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    listen
        .parse()
        .map_err(|e| anyhow::anyhow!("--listen {listen:?}: {e}"))
}

/// The first Ctrl-C drains (running games go on, new players are refused), the second
/// ends the drain at once.
async fn stop_on_ctrl_c(drain: CancellationToken, force: CancellationToken) {
    if tokio::signal::ctrl_c().await.is_ok() {
        println!("draining; Ctrl-C again to stop now");
        drain.cancel();
    }
    if tokio::signal::ctrl_c().await.is_ok() {
        force.cancel();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = listen_addr()?;
    // The games this server hosts, by name: only ours. The factory gets each new
    // room's options (`--npcs` is our number of coins, `--seed` our layout).
    let games = Games::new().with("coins", |o: &GameOptions| Coins::new(o.npcs, o.seed));
    let config = Config {
        listen,
        game: "coins".to_owned(),
        npcs: 12,
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "coins on ws://{}/ws?room=NAME (Ctrl-C stops)",
        listener.local_addr()?
    );
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    tokio::spawn(stop_on_ctrl_c(drain.clone(), force.clone()));
    serve(listener, config, games, drain, force).await
}

#[cfg(test)]
mod tests {
    //! `cargo test --example custom_game`. A game is plain Rust: call it directly (or
    //! run it on `tickcast::stepper` to play it through the whole protocol).
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use super::*;

    fn walk(game: &mut Coins, entity: EntityId, to: Vec2) -> Vec<Vec<u8>> {
        let mut events = Events::default();
        for _ in 0..10 * 30 {
            let from = game.players[0].pos;
            let movement = (to - from).clamp_length_max(1.0);
            let input = Input {
                movement,
                ..Input::default()
            };
            game.apply_input(entity, &input);
            game.step(1.0 / 30.0, &mut events);
            if !events.is_empty() {
                break;
            }
        }
        events.drain().map(|(_, payload)| payload).collect()
    }

    #[test]
    fn walking_onto_a_coin_collects_it() {
        let mut game = Coins::new(1, 7);
        let me = game.spawn_player(1);
        assert_eq!(me, 1, "the coin is entity 0");
        let coin = game.coins[0].1;
        let events = walk(&mut game, me, coin);
        assert_eq!(events, [vec![EVENT_PICKUP, 1, 0, 0, 0, 0, 0, 0, 0]]);
        let mut state = Vec::new();
        game.write_state(&mut state);
        assert_eq!(state[1].fields[FIELD_COINS], 1);
        assert_ne!(state[0].pos, coin, "the coin moved away");
    }

    /// The same rules through the whole protocol, on the stepper: a room, two
    /// simulated players, a manual clock, no sockets.
    #[test]
    fn on_the_stepper_emotes_reach_everyone_and_a_bad_message_closes_4009() {
        use tickcast::shared::DisconnectReason;
        use tickcast::stepper::{Stepper, StepperOptions};

        let mut s = Stepper::new(Coins::new(3, 1), StepperOptions::default());
        let ada = s.connect("ada");
        let bo = s.connect("bo");
        s.step().unwrap();
        let welcome = s.client(ada).unwrap().welcome();
        assert_eq!(welcome.fields[0].name, "coins");
        assert_eq!(welcome.entity_id, 3, "coins take ids 0..3");

        s.send_message(ada, vec![7]).unwrap();
        s.step().unwrap();
        for p in [ada, bo] {
            assert_eq!(s.events(p), [vec![EVENT_EMOTE, 3, 0, 0, 0, 7]]);
        }
        s.send_message(bo, b"hello".to_vec()).unwrap();
        s.step().unwrap();
        assert_eq!(s.ended(bo), Some(DisconnectReason::GameMessageRefused));
        assert!(s.is_connected(ada));
    }

    #[test]
    fn a_one_byte_emote_is_sent_to_all_and_anything_else_refused() {
        let mut game = Coins::new(0, 1);
        let me = game.spawn_player(1);
        let mut events = Events::default();
        assert_eq!(game.on_message(1, me, &[9], &mut events), Ok(()));
        let sent: Vec<_> = events.drain().map(|(_, p)| p).collect();
        assert_eq!(sent, [vec![EVENT_EMOTE, 0, 0, 0, 0, 9]]);
        for bad in [&[][..], &[1, 2]] {
            assert_eq!(
                game.on_message(1, me, bad, &mut events),
                Err(MessageRefused)
            );
        }
        assert!(events.is_empty());
    }
}
