//! Tick cost: one `Room` tick with no sockets, across world and room sizes.
//!
//! Each iteration gives every player a new input, then ticks: inputs applied, the Arena
//! stepped, the entity list encoded once, and every player's snapshot message framed
//! (header + shared body copied into that player's reusable buffer, as the writer does).
//! Throughput is reported as the bytes of snapshot messages produced per tick.

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glam::Vec2;
use tickcast::server::game::{Arena, ArenaConfig};
use tickcast::server::room::{InputInbox, PlayerSnapshot, Room, SnapshotOutlet};
use tickcast::shared::codec::write_snapshot;
use tickcast::shared::Input;

/// Frames the snapshot into a per-player buffer, like a connection's writer.
#[derive(Default)]
struct FramingOutlet(RefCell<Vec<u8>>);

impl SnapshotOutlet for FramingOutlet {
    fn offer(&self, s: PlayerSnapshot) {
        let mut buf = self.0.borrow_mut();
        buf.clear();
        write_snapshot(s.tick, s.last_input_seq, &s.body, &mut buf).expect("encodes");
        black_box(buf.len());
    }
}

fn room(npcs: u32, players: usize) -> (Room<Arena, FramingOutlet>, Vec<Arc<InputInbox>>) {
    let mut room = Room::new(
        Arena::new(ArenaConfig {
            npcs,
            ..Default::default()
        }),
        30,
        players,
    );
    let inboxes = (0..players)
        .map(|_| {
            room.join(FramingOutlet::default())
                .expect("room has space")
                .inbox
        })
        .collect();
    (room, inboxes)
}

fn tick_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick");
    group.sample_size(20);
    for npcs in [100u32, 1000, 10_000] {
        for players in [10usize, 100, 1000] {
            let (mut room, inboxes) = room(npcs, players);
            let body = room.tick().expect("tick").body_bytes;
            group.throughput(Throughput::Bytes((body * players) as u64));
            let mut seq = 0u32;
            group.bench_with_input(
                BenchmarkId::new(format!("npcs={npcs}"), format!("players={players}")),
                &(),
                |b, ()| {
                    b.iter(|| {
                        seq += 1;
                        let angle = seq as f32 * 0.1;
                        for inbox in &inboxes {
                            inbox.put(Input {
                                seq,
                                movement: Vec2::from_angle(angle),
                                buttons: 0,
                            });
                        }
                        black_box(room.tick().expect("tick"))
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, tick_cost);
criterion_main!(benches);
