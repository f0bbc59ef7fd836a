//! Whole-session scenarios on the in-process stepper: a real room, the server's
//! per-connection protocol, the snapshot encoder and the client library, on a manual
//! clock with no sockets. Every assertion here is exact: nothing depends on timing.

use std::time::Duration;

use tickcast::server::game::{Arena, ArenaConfig};
use tickcast::server::session::Limits;
use tickcast::shared::delta::QEntity;
use tickcast::shared::glam::Vec2;
use tickcast::shared::{ClientMsg, DisconnectReason, Input};
use tickcast::stepper::{PlayerIndex, Stepper, StepperError, StepperOptions};

fn arena(npcs: u32) -> Arena {
    Arena::new(ArenaConfig {
        npcs,
        ..ArenaConfig::default()
    })
}

fn stepper(npcs: u32) -> Stepper<Arena> {
    Stepper::new(arena(npcs), StepperOptions::default())
}

/// The client's reconstructed world equals the server's frame behind its last snapshot.
fn assert_in_sync(s: &Stepper<Arena>, player: PlayerIndex) {
    let client = s.client(player).expect("welcomed");
    let frame = s.last_frame(player).expect("a snapshot was applied");
    assert_eq!(client.world().tick, Some(frame.tick), "player {player}");
    assert_eq!(client.world().entities, frame.entities, "player {player}");
}

fn own(s: &Stepper<Arena>, player: PlayerIndex) -> QEntity {
    let client = s.client(player).expect("welcomed");
    let id = client.welcome().entity_id;
    *client
        .world()
        .entities
        .iter()
        .find(|e| e.id == id)
        .expect("own avatar in view")
}

#[test]
fn welcome_comes_first_then_a_keyframe_then_deltas() {
    let mut s = stepper(8);
    let a = s.connect("ada");
    s.step().unwrap();
    let client = s.client(a).expect("welcomed in the first step");
    assert_eq!(client.welcome().tick_rate, 30);
    assert_eq!(client.welcome().entity_id, 8, "NPCs take ids 0..8");
    let stats = client.stats();
    assert_eq!((stats.snapshots_received, stats.keyframes_received), (1, 1));
    s.run(10).unwrap();
    let stats = s.client(a).unwrap().stats();
    assert_eq!(
        (stats.snapshots_received, stats.keyframes_received),
        (11, 1)
    );
    assert_eq!(stats.snapshots_missed, 0);
    assert_in_sync(&s, a);
}

#[test]
fn every_client_holds_the_server_world_at_every_tick() {
    let mut s = stepper(40);
    let players: Vec<_> = ["a", "b", "c"].iter().map(|n| s.connect(n)).collect();
    s.step().unwrap();
    for t in 0..90u32 {
        for (i, &p) in players.iter().enumerate() {
            // Each player turns at its own pace, so avatars change course often.
            let angle = (t as f32) * 0.2 * (i as f32 + 1.0);
            s.send_input(p, Vec2::new(angle.cos(), angle.sin()), 0)
                .unwrap();
        }
        s.step().unwrap();
        for &p in &players {
            assert_in_sync(&s, p);
        }
    }
    for &p in &players {
        let stats = s.client(p).unwrap().stats();
        assert_eq!(stats.snapshots_received, 91);
        assert_eq!(stats.keyframes_received, 1, "deltas after the first");
        assert_eq!(s.client(p).unwrap().acked_seq(), 90, "every input applied");
    }
}

#[test]
fn an_avatar_moves_where_its_input_points_at_the_arena_speed() {
    let mut s = stepper(0);
    let a = s.connect("ada");
    s.step().unwrap();
    let start = own(&s, a);
    let q = s.client(a).unwrap().welcome().pos_quantum;
    // Thirty ticks of +x at 30 Hz: one second at 100 units per second, unless a wall
    // stops it first.
    for _ in 0..30 {
        s.send_input(a, Vec2::X, 0).unwrap();
        s.step().unwrap();
    }
    let end = own(&s, a);
    let moved_x = (end.pos[0] - start.pos[0]) as f32 * q;
    let room_left = 1000.0 - start.pos[0] as f32 * q;
    // The input of a tick is applied in that tick: 30 ticks of motion, each snapped to
    // whole quanta of 100/30 units (3.3125), so 99.375 units.
    let expected = (30.0 * (100.0f32 / 30.0 / q).round() * q).min(room_left);
    assert!(
        (moved_x - expected).abs() <= q,
        "moved {moved_x}, expected {expected}"
    );
    assert_eq!(end.pos[1], start.pos[1], "no motion across the input");
    assert_eq!(s.client(a).unwrap().acked_seq(), 30);
}

#[test]
fn a_player_that_leaves_disappears_from_every_other_world() {
    let mut s = stepper(4);
    let (a, b) = (s.connect("a"), s.connect("b"));
    s.run(3).unwrap();
    let b_entity = s.client(b).unwrap().welcome().entity_id;
    assert!(s.client(a).unwrap().entity(b_entity).is_some());
    s.close(b);
    s.step().unwrap();
    assert_eq!(s.ended(b), Some(DisconnectReason::Normal));
    assert_eq!(s.room().player_count(), 1);
    assert!(s.client(a).unwrap().entity(b_entity).is_none());
    assert_in_sync(&s, a);
}

#[test]
fn a_dropped_player_resumes_its_entity_with_a_keyframe_within_the_grace() {
    let mut s = stepper(6);
    let (a, watcher) = (s.connect("a"), s.connect("w"));
    s.step().unwrap();
    s.send_input(a, Vec2::Y, 0).unwrap();
    s.run(5).unwrap();
    let before = s.client(a).unwrap().welcome().clone();
    s.drop_connection(a);
    s.run(60).unwrap(); // two seconds: within the ten-second grace
    assert_eq!(s.ended(a), None, "a lost connection has no close reason");
    assert_eq!(s.room().player_count(), 2, "the avatar waits");
    // Its avatar keeps its last input while away, as others see.
    assert!(s
        .client(watcher)
        .unwrap()
        .entity(before.entity_id)
        .is_some());

    s.resume(a).unwrap();
    s.step().unwrap();
    let client = s.client(a).unwrap();
    assert_eq!(client.welcome().entity_id, before.entity_id);
    assert_eq!(client.welcome().player_id, before.player_id);
    assert_eq!(client.welcome().session_token, before.session_token);
    let stats = client.stats();
    assert_eq!(stats.reconnects, 1);
    assert_eq!(
        stats.keyframes_received, 2,
        "a resume starts with a keyframe"
    );
    assert_in_sync(&s, a);
    // Input sequence numbers start over on the new connection, and are accepted.
    assert_eq!(s.send_input(a, Vec2::X, 0).unwrap(), 1);
    s.step().unwrap();
    assert_eq!(s.client(a).unwrap().acked_seq(), 1);
    assert_eq!(s.room().player_count(), 2);
}

#[test]
fn after_the_grace_a_resume_is_refused_with_4008() {
    let options = StepperOptions {
        reconnect_grace: Duration::from_secs(1),
        ..StepperOptions::default()
    };
    let mut s = Stepper::new(arena(2), options);
    let a = s.connect("a");
    s.step().unwrap();
    s.drop_connection(a);
    s.run(29).unwrap();
    assert_eq!(s.room().player_count(), 1, "within the grace");
    s.step().unwrap(); // exactly one second later: the grace is over
    assert_eq!(s.room().player_count(), 0);
    s.resume(a).unwrap();
    s.step().unwrap();
    assert_eq!(s.ended(a), Some(DisconnectReason::SessionExpired));
    assert!(!s.is_connected(a));
}

#[test]
fn a_normal_close_ends_the_session_for_good() {
    let mut s = stepper(2);
    let a = s.connect("a");
    s.step().unwrap();
    s.close(a);
    s.step().unwrap();
    s.resume(a).unwrap();
    s.step().unwrap();
    assert_eq!(s.ended(a), Some(DisconnectReason::SessionExpired));
}

#[test]
fn a_stalled_reader_skips_to_the_newest_snapshot_and_stays_exact() {
    let mut s = stepper(30);
    let (slow, fast) = (s.connect("slow"), s.connect("fast"));
    s.run(2).unwrap();
    s.set_reading(slow, false);
    for t in 0..20 {
        // The fast player keeps turning, so the slow one's delta has real changes.
        s.send_input(fast, Vec2::new((t as f32).cos(), (t as f32).sin()), 0)
            .unwrap();
        s.step().unwrap();
    }
    assert_eq!(
        s.skipped(slow),
        0,
        "counted when the reader takes the newest"
    );
    s.set_reading(slow, true);
    s.step().unwrap();
    // 21 snapshots were offered while it did not read; it receives only the newest.
    assert_eq!(s.skipped(slow), 20);
    let stats = s.client(slow).unwrap().stats();
    assert_eq!(stats.snapshots_received, 3);
    assert_eq!(stats.snapshots_missed, 20);
    assert_eq!(stats.keyframes_received, 1, "a delta against what it holds");
    assert_in_sync(&s, slow);
    assert_eq!(s.skipped(fast), 0);
    assert_eq!(s.client(fast).unwrap().stats().snapshots_missed, 0);
    assert_in_sync(&s, fast);
}

#[test]
fn a_silent_client_times_out_4003_and_keeps_its_avatar_for_a_resume() {
    let options = StepperOptions {
        limits: Limits {
            idle_timeout: Duration::from_secs(1),
            ..StepperOptions::default().limits
        },
        ping_interval: Duration::from_millis(300),
        ..StepperOptions::default()
    };
    let mut s = Stepper::new(arena(2), options);
    let (a, b) = (s.connect("a"), s.connect("b"));
    // Answering the keepalive keeps a connection alive with no message at all.
    s.run(90).unwrap();
    assert!(s.is_connected(a) && s.is_connected(b));
    // Last heard at tick 90 (the keepalive of 3.0 s); silent from then on.
    s.set_reading(a, false);
    s.run(29).unwrap();
    assert!(s.is_connected(a), "3.967 s: within the idle timeout");
    s.step().unwrap();
    assert_eq!(s.ended(a), Some(DisconnectReason::IdleTimeout));
    assert!(s.is_connected(b));
    assert_eq!(s.room().player_count(), 2, "an idle close keeps the avatar");
    s.resume(a).unwrap();
    s.step().unwrap();
    assert!(s.is_connected(a));
    assert_eq!(s.client(a).unwrap().stats().reconnects, 1);
    assert_in_sync(&s, a);
}

#[test]
fn no_hello_in_time_closes_4004() {
    let mut s = stepper(0);
    let silent = s.connect_silent();
    s.run(149).unwrap(); // 4.97 s of the 5 s hello timeout
    assert!(s.is_connected(silent));
    s.run(2).unwrap();
    assert_eq!(s.ended(silent), Some(DisconnectReason::HelloTimeout));
    assert_eq!(s.room().player_count(), 0);
}

#[test]
fn bad_input_closes_only_its_own_connection() {
    let mut s = stepper(10);
    let (good, garbage, replay, early) = (
        s.connect("good"),
        s.connect("garbage"),
        s.connect("replay"),
        s.connect_silent(),
    );
    s.step().unwrap();
    s.send_raw(garbage, vec![0xff, 0xfe, 0xfd]).unwrap();
    s.send_input(replay, Vec2::X, 0).unwrap();
    let again = ClientMsg::Input(Input {
        seq: 1,
        movement: Vec2::X,
        buttons: 0,
        payload: Default::default(),
    });
    s.send_raw(
        replay,
        tickcast::shared::codec::encode_to_vec(&again).unwrap(),
    )
    .unwrap();
    s.send_raw(
        early,
        tickcast::shared::codec::encode_to_vec(&again).unwrap(),
    )
    .unwrap();
    s.run(5).unwrap();
    assert_eq!(s.ended(garbage), Some(DisconnectReason::InvalidPayload));
    assert_eq!(s.ended(replay), Some(DisconnectReason::UnexpectedMessage));
    assert_eq!(s.ended(early), Some(DisconnectReason::UnexpectedMessage));
    assert!(s.is_connected(good));
    let stats = s.client(good).unwrap().stats();
    assert_eq!((stats.snapshots_received, stats.snapshots_missed), (6, 0));
    assert_in_sync(&s, good);
    // Closed by the server with a reason: they left, their avatars are gone.
    assert_eq!(s.room().player_count(), 1);
}

#[test]
fn a_full_room_refuses_with_4000() {
    let options = StepperOptions {
        max_players: 2,
        ..StepperOptions::default()
    };
    let mut s = Stepper::new(arena(0), options);
    let (a, b, c) = (s.connect("a"), s.connect("b"), s.connect("c"));
    s.step().unwrap();
    assert!(s.is_connected(a) && s.is_connected(b));
    assert_eq!(s.ended(c), Some(DisconnectReason::RoomFull));
    // A seat frees when a player leaves.
    s.close(a);
    let d = s.connect("d");
    s.step().unwrap();
    assert!(s.is_connected(d));
}

#[test]
fn a_view_radius_sends_each_player_exactly_what_is_near_it() {
    let radius_units = 150.0f32;
    let quantum = tickcast::server::game::DEFAULT_POS_QUANTUM;
    let radius = (radius_units / quantum) as i64;
    let options = StepperOptions {
        view_radius_quanta: radius,
        ..StepperOptions::default()
    };
    let mut s = Stepper::new(arena(300), options);
    let players: Vec<_> = (0..3).map(|i| s.connect(&format!("p{i}"))).collect();
    s.step().unwrap();
    for t in 0..60u32 {
        for &p in &players {
            let a = t as f32 * 0.1 + p as f32;
            s.send_input(p, Vec2::new(a.cos(), a.sin()), 0).unwrap();
        }
        s.step().unwrap();
        for &p in &players {
            let client = s.client(p).unwrap();
            let frame = s.last_frame(p).unwrap();
            let me = frame
                .entities
                .iter()
                .find(|e| e.id == client.welcome().entity_id)
                .expect("own avatar in the frame");
            let near = |e: &&QEntity| {
                let dx = i64::from(e.pos[0]) - i64::from(me.pos[0]);
                let dy = i64::from(e.pos[1]) - i64::from(me.pos[1]);
                dx * dx + dy * dy <= radius * radius
            };
            let expected: Vec<QEntity> = frame.entities.iter().filter(near).copied().collect();
            assert!(
                expected.len() < frame.entities.len(),
                "the radius hides something"
            );
            assert_eq!(client.world().entities, expected, "player {p} at tick {t}");
        }
    }
}

#[test]
fn the_same_script_gives_the_same_session_every_run() {
    fn play() -> (Vec<QEntity>, [u8; 16], u64) {
        let mut s = stepper(20);
        let (a, b) = (s.connect("a"), s.connect("b"));
        s.step().unwrap();
        for t in 0..40 {
            s.send_input(a, Vec2::new(1.0, (t as f32).sin()), 1)
                .unwrap();
            if t % 3 == 0 {
                s.send_input(b, Vec2::NEG_Y, 0).unwrap();
            }
            s.step().unwrap();
        }
        let client = s.client(a).unwrap();
        (
            client.world().entities.clone(),
            client.welcome().session_token,
            client.stats().bytes_received,
        )
    }
    assert_eq!(play(), play());
}

#[test]
fn misuse_of_the_stepper_is_an_error_not_a_panic() {
    let mut s = stepper(0);
    let a = s.connect_silent();
    assert_eq!(s.send_input(a, Vec2::X, 0), Err(StepperError::NoSession(a)));
    assert_eq!(s.resume(a), Err(StepperError::NoSession(a)));
}

/// A game with declared fields, messages and events, to check how the room routes them:
/// each avatar has a `score` and a `team`; message `[1]` scores a point (everyone is
/// told), `[2, p]` pokes player `p` (only `p` is told), `[3]` rallies the sender's team
/// (only its members are told); anything else is refused.
mod scoreboard {
    use tickcast::server::game::{EntityId, Events, Game, MessageRefused, PlayerId, Recipients};
    use tickcast::shared::glam::Vec2;
    use tickcast::shared::{EntityKind, EntityState, FieldKind, FieldSpec, Input};

    #[derive(Default)]
    pub struct Scoreboard {
        /// (player, entity, score)
        pub avatars: Vec<(PlayerId, EntityId, i32)>,
    }

    pub const SCORE: usize = 0;
    pub const TEAM: usize = 1;

    impl Game for Scoreboard {
        fn spawn_player(&mut self, player: PlayerId) -> EntityId {
            let entity = 100 + player;
            self.avatars.push((player, entity, 0));
            entity
        }
        fn despawn_player(&mut self, entity: EntityId) {
            self.avatars.retain(|a| a.1 != entity);
        }
        fn apply_input(&mut self, _: EntityId, _: &Input) {}
        fn step(&mut self, _: f32, _: &mut Events) {}
        fn world_size(&self) -> Vec2 {
            Vec2::splat(100.0)
        }
        fn write_state(&self, out: &mut Vec<EntityState>) {
            for &(player, entity, score) in &self.avatars {
                let mut e = EntityState::new(entity, EntityKind::Avatar, Vec2::ZERO, Vec2::ZERO);
                e.fields[SCORE] = score;
                e.fields[TEAM] = (player % 2) as i32;
                out.push(e);
            }
        }
        fn fields(&self) -> Vec<FieldSpec> {
            vec![
                FieldSpec {
                    name: "score".into(),
                    kind: FieldKind::I32,
                },
                FieldSpec {
                    name: "team".into(),
                    kind: FieldKind::U8,
                },
            ]
        }
        fn on_message(
            &mut self,
            player: PlayerId,
            _: EntityId,
            message: &[u8],
            events: &mut Events,
        ) -> Result<(), MessageRefused> {
            match *message {
                [1] => {
                    let me = self
                        .avatars
                        .iter_mut()
                        .find(|a| a.0 == player)
                        .ok_or(MessageRefused)?;
                    me.2 += 1;
                    events.to_all(vec![1, player as u8, me.2 as u8]);
                }
                [2, target] => events.to_player(PlayerId::from(target), vec![2, player as u8]),
                [3] => {
                    let team: Vec<PlayerId> = self
                        .avatars
                        .iter()
                        .map(|a| a.0)
                        .filter(|p| p % 2 == player % 2)
                        .collect();
                    events.to_players(&team, vec![3, player as u8]);
                }
                _ => return Err(MessageRefused),
            }
            Ok(())
        }
    }

    /// Every recipient kind, for the doc of what the room does with each.
    #[allow(dead_code)]
    pub fn kinds() -> [Recipients; 3] {
        [
            Recipients::Player(1),
            Recipients::Players(vec![1]),
            Recipients::All,
        ]
    }
}

fn scoreboard(options: StepperOptions) -> Stepper<scoreboard::Scoreboard> {
    Stepper::new(
        scoreboard::Scoreboard::default(),
        StepperOptions {
            game: "scoreboard",
            ..options
        },
    )
}

#[test]
fn the_welcome_describes_the_game_and_its_fields() {
    let mut s = scoreboard(StepperOptions::default());
    let a = s.connect("a");
    s.step().unwrap();
    let welcome = s.client(a).unwrap().welcome();
    assert_eq!(welcome.game, "scoreboard");
    assert_eq!(
        welcome.fields,
        [
            tickcast::shared::FieldSpec {
                name: "score".into(),
                kind: tickcast::shared::FieldKind::I32
            },
            tickcast::shared::FieldSpec {
                name: "team".into(),
                kind: tickcast::shared::FieldKind::U8
            },
        ]
    );
}

#[test]
fn game_messages_change_fields_and_events_reach_exactly_their_recipients() {
    use scoreboard::{SCORE, TEAM};
    let mut s = scoreboard(StepperOptions::default());
    // Players 1..=4: teams 1, 0, 1, 0.
    let p: Vec<_> = (0..4).map(|i| s.connect(&format!("p{i}"))).collect();
    s.step().unwrap();
    let bytes_before = s.client(p[1]).unwrap().stats().bytes_received;
    s.run(5).unwrap();
    // Nothing changes: five empty deltas, and not a byte for the fields.
    let idle = s.client(p[1]).unwrap().stats().bytes_received - bytes_before;
    // Variant, tick, base tick, input seq and three empty lists, 7 bytes: a snapshot
    // with no field change carries no field list at all.
    assert_eq!(idle, 5 * 7, "five empty deltas");

    s.send_message(p[0], vec![1]).unwrap(); // player 1 scores
    s.send_message(p[0], vec![1]).unwrap(); // and again
    s.send_message(p[1], vec![2, 4]).unwrap(); // player 2 pokes player 4
    s.send_message(p[2], vec![3]).unwrap(); // player 3 rallies team 1 (players 1, 3)
    s.step().unwrap();
    assert_eq!(s.events(p[0]), [vec![1, 1, 1], vec![1, 1, 2], vec![3, 3]]);
    assert_eq!(s.events(p[1]), [vec![1, 1, 1], vec![1, 1, 2]]);
    assert_eq!(s.events(p[2]), [vec![1, 1, 1], vec![1, 1, 2], vec![3, 3]]);
    assert_eq!(s.events(p[3]), [vec![1, 1, 1], vec![1, 1, 2], vec![2, 2]]);
    for &i in &p {
        let client = s.client(i).unwrap();
        assert_eq!(client.stats().events_received, s.events(i).len() as u64);
        // Everyone's world shows player 1's score, and the teams, as the server has them.
        let scorer = client
            .world()
            .entities
            .iter()
            .find(|e| e.id == 101)
            .unwrap();
        assert_eq!(scorer.fields[SCORE], 2);
        assert_eq!(scorer.fields[TEAM], 1);
        assert_in_sync_fields(&s, i);
    }
}

/// Like [`assert_in_sync`] for any game.
fn assert_in_sync_fields<G: tickcast::server::game::Game>(s: &Stepper<G>, player: PlayerIndex) {
    let client = s.client(player).expect("welcomed");
    let frame = s.last_frame(player).expect("a snapshot was applied");
    assert_eq!(client.world().entities, frame.entities, "player {player}");
}

#[test]
fn a_refused_message_closes_its_sender_with_4009_and_no_one_else() {
    let mut s = scoreboard(StepperOptions::default());
    let (a, b) = (s.connect("a"), s.connect("b"));
    s.step().unwrap();
    s.send_message(a, vec![9, 9, 9]).unwrap();
    s.step().unwrap();
    assert_eq!(s.ended(a), Some(DisconnectReason::GameMessageRefused));
    assert!(s.is_connected(b));
    assert_eq!(s.room().player_count(), 1, "refused players leave");
    s.run(3).unwrap();
    assert_in_sync_fields(&s, b);
}

#[test]
fn a_player_that_lets_its_events_pile_up_is_closed_4005() {
    let mut s = scoreboard(StepperOptions {
        reliable_queue: 2,
        ..StepperOptions::default()
    });
    let (deaf, loud) = (s.connect("deaf"), s.connect("loud"));
    s.step().unwrap();
    // One event a tick: the reading player takes each as it comes; the one that does
    // not read holds two, which its queue allows.
    s.set_reading(deaf, false);
    for _ in 0..2 {
        s.send_message(loud, vec![1]).unwrap();
        s.step().unwrap();
    }
    s.set_reading(deaf, true);
    s.step().unwrap();
    assert!(s.is_connected(deaf), "two events fit");
    assert_eq!(s.events(deaf).len(), 2);
    // A third unread event does not.
    s.set_reading(deaf, false);
    for _ in 0..3 {
        s.send_message(loud, vec![1]).unwrap();
        s.step().unwrap();
    }
    assert_eq!(s.ended(deaf), Some(DisconnectReason::SlowConsumer));
    assert!(s.is_connected(loud));
    assert_eq!(s.events(loud).len(), 5);
}

#[test]
fn game_messages_are_limited_in_size_and_rate() {
    let mut s = scoreboard(StepperOptions {
        limits: Limits {
            max_game_message_bytes: 4,
            max_game_messages_per_sec: 2,
            ..StepperOptions::default().limits
        },
        ..StepperOptions::default()
    });
    let (big, fast, fine) = (s.connect("big"), s.connect("fast"), s.connect("fine"));
    s.step().unwrap();
    s.send_message(big, vec![1; 5]).unwrap();
    for _ in 0..3 {
        s.send_message(fast, vec![1]).unwrap();
    }
    s.send_message(fine, vec![1]).unwrap();
    s.step().unwrap();
    assert_eq!(s.ended(big), Some(DisconnectReason::MessageTooBig));
    assert_eq!(s.ended(fast), Some(DisconnectReason::RateLimited));
    assert!(s.is_connected(fine));
}
