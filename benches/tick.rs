//! Tick cost: one room tick with no sockets, across world and room sizes.
//!
//! Each iteration gives every player a new input (a turning direction, so every
//! avatar's velocity changes every tick: the costly case), then ticks: inputs applied,
//! the Arena stepped, the world quantised once, and every player's snapshot message
//! built by its `SnapshotEncoder` exactly as its writer would (a delta against what
//! that player holds; whole-world bodies shared, view bodies per player). In the
//! server the per-player part runs on the writers, spread over the cores; here it is
//! all on one thread, so this is the total CPU work of a tick.
//!
//! Throughput is the snapshot bytes produced for all players in one tick.

use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glam::Vec2;
use tickcast::server::game::{Arena, ArenaConfig, DEFAULT_POS_QUANTUM};
use tickcast::server::room::{InputInbox, PlayerOutlet, PlayerSnapshot, Room};
use tickcast::server::snapshot::SnapshotEncoder;
use tickcast::shared::Input;

/// Builds each snapshot the way a connection's writer does.
struct WriterOutlet {
    encoder: RefCell<SnapshotEncoder>,
    buf: RefCell<Vec<u8>>,
    bytes: Cell<usize>,
}

/// The room's handle on a writer; the bench keeps another to read the byte counts.
#[derive(Clone)]
struct Writer(Rc<WriterOutlet>);

impl PlayerOutlet for Writer {
    fn offer(&self, s: PlayerSnapshot) {
        let mut buf = self.0.buf.borrow_mut();
        let encoded = self
            .0
            .encoder
            .borrow_mut()
            .encode(&s, &mut buf)
            .expect("encodes");
        self.0.bytes.set(encoded.bytes);
    }

    // The Arena sends no events and refuses no message.
    fn event(&self, _: bytes::Bytes) {}
    fn disconnect(&self, _: tickcast::shared::DisconnectReason) {}
}

struct Bench {
    room: Room<Arena, Writer>,
    inboxes: Vec<Arc<InputInbox>>,
    outlets: Vec<Writer>,
    seq: u32,
}

impl Bench {
    fn new(npcs: u32, players: usize, view_radius: f32) -> Self {
        let radius = (view_radius / DEFAULT_POS_QUANTUM).round() as i64;
        let mut room = Room::new(
            Arena::new(ArenaConfig {
                npcs,
                ..Default::default()
            }),
            30,
            players,
        );
        let mut inboxes = Vec::new();
        let mut outlets = Vec::new();
        for _ in 0..players {
            let outlet = Writer(Rc::new(WriterOutlet {
                encoder: RefCell::new(SnapshotEncoder::new(radius)),
                buf: RefCell::default(),
                bytes: Cell::new(0),
            }));
            inboxes.push(
                room.join(outlet.clone(), [0; 16])
                    .expect("room has space")
                    .inbox,
            );
            outlets.push(outlet);
        }
        let mut bench = Self {
            room,
            inboxes,
            outlets,
            seq: 0,
        };
        // Past the keyframes, into steady state.
        for _ in 0..5 {
            bench.tick();
        }
        bench
    }

    fn tick(&mut self) {
        self.seq += 1;
        let dir = Vec2::from_angle(self.seq as f32 * 0.1);
        for inbox in &self.inboxes {
            inbox.put(Input {
                seq: self.seq,
                movement: dir,
                buttons: 0,
                payload: Default::default(),
            });
        }
        black_box(self.room.tick());
    }

    fn bytes_per_tick(&self) -> u64 {
        self.outlets.iter().map(|o| o.0.bytes.get() as u64).sum()
    }
}

fn run(c: &mut Criterion, group: &str, view_radius: f32, npcs: &[u32], players: &[usize]) {
    let mut group = c.benchmark_group(group);
    group.sample_size(20);
    for &n in npcs {
        for &p in players {
            let mut bench = Bench::new(n, p, view_radius);
            group.throughput(Throughput::Bytes(bench.bytes_per_tick()));
            group.bench_function(
                BenchmarkId::new(format!("npcs={n}"), format!("players={p}")),
                |b| {
                    b.iter(|| bench.tick());
                },
            );
        }
    }
    group.finish();
}

fn tick_cost(c: &mut Criterion) {
    run(c, "tick", 0.0, &[100, 1000, 10_000], &[10, 100, 1000]);
    run(c, "tick_view250", 250.0, &[1000, 10_000], &[100, 1000]);
}

criterion_group!(benches, tick_cost);
criterion_main!(benches);
