//! Frame cost: encoding and decoding each protocol message, writing a snapshot frame
//! through fastwebsockets to an in-memory sink, and applying a snapshot on the client.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fastwebsockets::{Frame, Payload, Role};
use glam::Vec2;
use tickcast::shared::codec::{
    decode_client, decode_server, encode_into, encode_snapshot_body, write_snapshot,
};
use tickcast::shared::delta::{diff, DeltaBody, QEntity, World};
use tickcast::shared::{
    ClientMsg, EntityKind, Hello, Input, Ping, Pong, ServerMsg, Snapshot, Welcome,
};

/// A world of `n` entities in quanta (1/16 unit), spread over 1000 x 1000 units.
fn entities(n: u32) -> Vec<QEntity> {
    (0..n)
        .map(|i| QEntity {
            id: i,
            kind: if i % 10 == 0 {
                EntityKind::Avatar
            } else {
                EntityKind::Npc
            },
            pos: [(i * 37 % 16_000) as i32, (i * 91 % 16_000) as i32],
            vel: [18, -22],
            fields: Default::default(),
        })
        .collect()
}

/// A keyframe of `n` entities, and a typical delta a tick later (one in ten turned).
fn snapshots(n: u32) -> [(String, Snapshot); 2] {
    let base = entities(n);
    let mut now: Vec<QEntity> = base
        .iter()
        .map(|e| QEntity {
            pos: e.predicted(1),
            ..*e
        })
        .collect();
    for e in now.iter_mut().step_by(10) {
        e.vel = [-e.vel[1], e.vel[0]];
    }
    let snap = |body: &DeltaBody, base_tick| Snapshot {
        tick: 90_001,
        base_tick,
        last_input_seq: 123_456,
        removed: body.removed.clone(),
        changed: body.changed.clone(),
        added: body.added.clone(),
        fields: Vec::new(),
    };
    let mut body = DeltaBody::default();
    diff(None, 90_001, &now, &mut body);
    let key = snap(&body, 0);
    diff(Some((90_000, &base)), 90_001, &now, &mut body);
    [
        (format!("keyframe/{n}"), key),
        (format!("delta/{n}"), snap(&body, 90_000)),
    ]
}

fn client_messages() -> Vec<(&'static str, ClientMsg)> {
    vec![
        (
            "hello",
            ClientMsg::Hello(Hello {
                protocol_version: 1,
                name: "player-one".into(),
                room: "lobby".into(),
                resume: None,
                auth_token: None,
            }),
        ),
        (
            "input",
            ClientMsg::Input(Input {
                seq: 123_456,
                movement: Vec2::new(0.6, -0.8),
                buttons: 3,
                payload: Default::default(),
            }),
        ),
        (
            "ping",
            ClientMsg::Ping(Ping {
                nonce: 1_700_000_000_000,
            }),
        ),
    ]
}

fn server_messages() -> Vec<(String, ServerMsg)> {
    let welcome = Welcome {
        protocol_version: 1,
        player_id: 7,
        entity_id: 1007,
        tick_rate: 30,
        server_tick: 90_000,
        world_size: Vec2::splat(1000.0),
        session_token: [0x5a; 16],
        pos_quantum: 1.0 / 16.0,
        game: "arena".into(),
        fields: Vec::new(),
    };
    let mut v = vec![
        ("welcome".to_owned(), ServerMsg::Welcome(welcome)),
        (
            "pong".to_owned(),
            ServerMsg::Pong(Pong {
                nonce: 1_700_000_000_000,
                server_tick: 90_000,
            }),
        ),
    ];
    for n in [100, 1000, 10_000] {
        for (name, snap) in snapshots(n) {
            v.push((format!("snapshot/{name}"), ServerMsg::Snapshot(snap)));
        }
    }
    v
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let mut buf = Vec::with_capacity(1 << 20);
    for (name, msg) in client_messages() {
        buf.clear();
        let len = encode_into(&msg, &mut buf).expect("encodes");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| {
                buf.clear();
                encode_into(black_box(&msg), &mut buf).expect("encodes")
            })
        });
        let bytes = buf.clone();
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| decode_client(black_box(&bytes), 64 * 1024).expect("decodes"))
        });
    }
    for (name, msg) in server_messages() {
        buf.clear();
        let len = encode_into(&msg, &mut buf).expect("encodes");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("encode", &name), |b| {
            b.iter(|| {
                buf.clear();
                encode_into(black_box(&msg), &mut buf).expect("encodes")
            })
        });
        let bytes = buf.clone();
        group.bench_function(BenchmarkId::new("decode", &name), |b| {
            b.iter(|| decode_server(black_box(&bytes)).expect("decodes"))
        });
    }
    group.finish();
}

/// What a writer does per player per tick once the shared body exists: frame it with
/// the player's header, and write it as one WebSocket binary frame. A keyframe body is
/// the largest a player gets.
fn snapshot_frame(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("snapshot_frame");
    for n in [100u32, 1000, 10_000] {
        let mut delta = DeltaBody::default();
        diff(None, 1, &entities(n), &mut delta);
        let mut body = Vec::new();
        encode_snapshot_body(&delta, &mut body).expect("encodes");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(BenchmarkId::new("fastwebsockets_write", n), |b| {
            let (_, mut ws) = fastwebsockets::after_handshake_split(
                tokio::io::empty(),
                tokio::io::sink(),
                Role::Server,
            );
            let mut buf = Vec::with_capacity(body.len() + 16);
            let mut tick = 0u64;
            // The sink is always ready, so block_on adds only a poll's overhead.
            b.iter(|| {
                tick += 1;
                buf.clear();
                write_snapshot(tick, 0, 42, &body, &mut buf).expect("encodes");
                rt.block_on(ws.write_frame(Frame::binary(Payload::Borrowed(&buf))))
                    .expect("sink accepts");
            });
        });
    }
    group.finish();
}

/// Client-side cost of a snapshot: applying it to the world the client holds (what
/// every bot does for every snapshot, so it bounds how many bots one process runs).
fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    for n in [100u32, 1_100, 10_000] {
        let base = entities(n);
        let mut body = DeltaBody::default();
        diff(None, 90_000, &base, &mut body);
        let mut held = World::default();
        held.apply(&Snapshot {
            tick: 90_000,
            base_tick: 0,
            last_input_seq: 0,
            removed: Vec::new(),
            changed: Vec::new(),
            added: body.added.clone(),
            fields: Vec::new(),
        })
        .expect("keyframe applies");
        for (name, snapshot) in snapshots(n) {
            group.throughput(Throughput::Elements(u64::from(n)));
            // The same snapshot over and over on one world, as a client applies one per
            // tick with its buffers warm: rewinding the held tick makes the delta fit
            // again (the positions drift, which costs the same).
            let mut world = held.clone();
            group.bench_function(BenchmarkId::from_parameter(&name), |b| {
                b.iter(|| {
                    world.tick = Some(90_000);
                    world.apply(black_box(&snapshot)).expect("applies");
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, codec, snapshot_frame, apply);
criterion_main!(benches);
