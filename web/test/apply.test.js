// @ts-check
// Applying snapshots (docs/PROTOCOL.md section 5.1, `delta::World::apply`): the examples,
// every kind of bad delta with the error the Rust client gives and the world left as it
// was, wrapping arithmetic, and the arrays a delta shares with the world it applies to.

import { test } from "node:test";
import assert from "node:assert/strict";
import { World, DeltaError, decodeServerMsg, applySnapshot, entityView } from "../tickcast.js";

/** @typedef {import("../tickcast.js").Snapshot} Snapshot */
/** @typedef {import("../tickcast.js").QEntity} QEntity */

const bytes = (/** @type {string} */ h) => new Uint8Array(h.split(" ").map((b) => parseInt(b, 16)));
const KEYFRAME = "04 fb 2c 01 00 2a 00 00 02 03 00 fb 40 01 fb 80 02 04 01 03 01 fb 80 0c fb 40 06 04 00 02 01 00 02 00 01 fb 58 02";
const DELTA = "04 fb 2f 01 fb 2c 01 2b 01 03 01 00 01 02 01 02 01 0c 00 fb 80 25 fb 00 19 05 02 03 00 00 01 00 01 14 01 00 02";
const f8 = (/** @type {number} */ a = 0, /** @type {number} */ b = 0) => [a, b, 0, 0, 0, 0, 0, 0];
const snap = (/** @type {string} */ h) => /** @type {Snapshot} */ (decodeServerMsg(bytes(h)));

/**
 * @param {number} id
 * @param {[number, number]} pos
 * @param {[number, number]} vel
 * @returns {QEntity}
 */
const npc = (id, pos, vel, fields = f8()) => ({ id, kind: "Npc", pos, vel, fields });

/** @param {number} tick @param {number} baseTick @param {Partial<Snapshot>} [rest] @returns {Snapshot} */
const delta = (tick, baseTick, rest = {}) => ({ type: "Snapshot", tick, baseTick, lastInputSeq: 0, removed: [], changed: [], added: [], fields: [], ...rest });

test("the keyframe and delta examples give the worlds of the document", () => {
  const w300 = new World().apply(snap(KEYFRAME));
  assert.equal(w300.tick, 300);
  assert.deepEqual(w300.entities(), [
    { id: 3, kind: "Npc", pos: [160, 320], vel: [2, -1], fields: f8(0, 0) },
    { id: 7, kind: "Avatar", pos: [1600, 800], vel: [2, 0], fields: f8(1, 300) },
  ]);
  // World units with quantum 1/16 at 30 ticks per second.
  const v = entityView(w300, 0, 0.0625, 30);
  assert.deepEqual([v.x, v.y, v.vx, v.vy], [10, 20, 3.75, -1.875]);
  const w303 = applySnapshot(w300, snap(DELTA));
  assert.equal(w303.tick, 303);
  assert.deepEqual(w303.entities(), [
    { id: 7, kind: "Avatar", pos: [1605, 801], vel: [1, 1], fields: f8(0, 310) },
    { id: 12, kind: "Npc", pos: [4800, 3200], vel: [-3, 1], fields: f8(1, 0) },
  ]);
  assert.equal(w303.indexOf(12), 1);
  assert.equal(w303.indexOf(3), -1);
  // The delta did not touch the world it was applied to, and does not apply twice.
  assert.equal(w300.tick, 300);
  assert.deepEqual(w300.entities()[1].fields, f8(1, 300));
  assert.throws(() => w303.apply(snap(DELTA)), (e) => e instanceof DeltaError && e.kind === "WrongBase");
  assert.throws(() => new World().apply(snap(DELTA)), (e) => e instanceof DeltaError && e.kind === "WrongBase");
  // A keyframe replaces whatever is held.
  assert.deepEqual(w303.apply(snap(KEYFRAME)).entities(), w300.entities());
});

test("bad deltas get the Rust client's error and leave the world as it was", () => {
  const held = World.from(5, [npc(1, [0, 0], [1, 1]), npc(2, [0, 0], [0, 0])]);
  const copy = JSON.stringify(held);
  const add = (/** @type {number} */ idGap) => ({ idGap, kind: /** @type {const} */ ("Npc"), pos: /** @type {[number, number]} */ ([0, 0]), vel: /** @type {[number, number]} */ ([0, 0]) });
  const ch = (/** @type {number} */ skip) => ({ skip, dpos: /** @type {[number, number]} */ ([0, 0]), dvel: /** @type {[number, number]} */ ([0, 0]) });
  const fc = (/** @type {number} */ skip, /** @type {number} */ field) => ({ skip, field, delta: 1 });
  /** @type {[Snapshot, string, object][]} */
  const cases = [
    [delta(7, 6), "WrongBase", { baseTick: 6, held: 5 }],
    [delta(5, 5), "NotNewer", { tick: 5, baseTick: 5 }],
    [delta(0, 0), "NotNewer", { tick: 0, baseTick: 0 }],
    [delta(6, 5, { removed: [3] }), "UnknownRemoved", { id: 3 }],
    [delta(6, 5, { removed: [2, 0] }), "UnknownRemoved", { id: 3 }],
    [delta(6, 5, { removed: [0, 1] }), "UnknownRemoved", { id: 0 }],
    [delta(6, 0, { removed: [1] }), "KeyframeWithChanges", {}],
    [delta(6, 5, { changed: [ch(2)] }), "ChangedOutOfRange", { index: 0 }],
    [delta(6, 5, { changed: [ch(0), ch(1)] }), "ChangedOutOfRange", { index: 1 }],
    [delta(6, 5, { changed: [ch(4294967295)] }), "ChangedOutOfRange", { index: 0 }],
    // Removal first, then the residuals count what is left.
    [delta(6, 5, { removed: [1], changed: [ch(1)] }), "ChangedOutOfRange", { index: 0 }],
    [delta(6, 5, { added: [add(2)] }), "BadAdded", { id: 2 }],
    [delta(6, 5, { added: [add(4294967295), add(0)] }), "BadAdded", { id: 4294967296 }],
    // The fields rules of step 5, on both paths (without and with an added entity).
    [delta(6, 5, { fields: [fc(2, 0)] }), "BadField", { index: 0 }],
    [delta(6, 5, { fields: [fc(0, 8)] }), "BadField", { index: 0 }],
    [delta(6, 5, { fields: [fc(0, 3), fc(0, 3)] }), "BadField", { index: 1 }],
    [delta(6, 5, { fields: [fc(0, 3), fc(0, 1)] }), "BadField", { index: 1 }],
    [delta(6, 5, { fields: [fc(1, 0), fc(4294967295, 0)] }), "BadField", { index: 1 }],
    [delta(6, 5, { added: [add(3)], fields: [fc(3, 0)] }), "BadField", { index: 0 }],
    [delta(6, 5, { added: [add(3)], fields: [fc(2, 5), fc(0, 5)] }), "BadField", { index: 1 }],
  ];
  for (const [s, kind, detail] of cases) {
    assert.throws(() => held.apply(s), (e) => e instanceof DeltaError && e.kind === kind && JSON.stringify(e.detail) === JSON.stringify(detail), `${kind} ${JSON.stringify(s)}`);
    assert.equal(JSON.stringify(held), copy, `world unchanged after ${kind}`);
  }
  // The same field again after moving to another entity is fine; a later field of the
  // same entity too; three entities make a skip of 2 land.
  const ok = held.apply(delta(6, 5, { added: [add(3)], fields: [fc(0, 7), fc(1, 0), fc(0, 7), fc(1, 2)] }));
  assert.deepEqual(ok.entities().map((e) => e.fields), [[0, 0, 0, 0, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0, 0, 1], [0, 0, 1, 0, 0, 0, 0, 0]]);
  assert.deepEqual(ok.entities().map((e) => e.pos), [[1, 1], [0, 0], [0, 0]]);
});

test("prediction and residuals wrap like i32, and so do fields", () => {
  const edge = World.from(1, [npc(0, [2147483647, -2147483648], [1, -1], f8(2147483647, -2147483648))]);
  const later = edge.apply(delta(4, 1));
  assert.deepEqual(later.entities()[0].pos, [-2147483646, 2147483645]);
  const bumped = edge.apply(delta(2, 1, { fields: [{ skip: 0, field: 0, delta: 1 }, { skip: 0, field: 1, delta: -1 }] }));
  assert.deepEqual(bumped.entities()[0].fields, f8(-2147483648, 2147483647));
  const turned = edge.apply(delta(2, 1, { changed: [{ skip: 0, dpos: [1, -1], dvel: [2147483647, 0] }] }));
  assert.deepEqual(turned.entities()[0], { id: 0, kind: "Npc", pos: [-2147483647, 2147483646], vel: [-2147483648, -1], fields: f8(2147483647, -2147483648) });
  // k itself wraps: a delta 2^32 + 3 ticks later predicts 3 ticks.
  const far = World.from(10, [npc(5, [0, 0], [2, 1])]);
  assert.deepEqual(far.apply(delta(10 + 2 ** 32 + 3, 10)).entities()[0].pos, [6, 3]);
});

test("an id reused for another kind is removed and added, its fields starting from 0", () => {
  const held = World.from(1, [npc(1, [5, 5], [0, 0], f8(9, 9)), npc(2, [0, 0], [0, 0], f8(4, 0))]);
  const next = held.apply(delta(2, 1, {
    removed: [2],
    added: [{ idGap: 2, kind: "Avatar", pos: [1, 1], vel: [0, 0] }],
    fields: [{ skip: 1, field: 1, delta: 7 }],
  }));
  assert.deepEqual(next.entities(), [
    { id: 1, kind: "Npc", pos: [5, 5], vel: [0, 0], fields: f8(9, 9) },
    { id: 2, kind: "Avatar", pos: [1, 1], vel: [0, 0], fields: f8(0, 7) },
  ]);
});

test("a delta shares the arrays it does not change, and never writes to the old world", () => {
  const held = World.from(1, [npc(1, [0, 0], [1, 0], f8(3)), npc(2, [9, 9], [0, 0])]);
  const moved = held.apply(delta(3, 1));
  assert.equal(moved.ids, held.ids);
  assert.equal(moved.kinds, held.kinds);
  assert.equal(moved.vel, held.vel);
  assert.equal(moved.fields, held.fields);
  assert.notEqual(moved.pos, held.pos);
  assert.deepEqual(Array.from(moved.pos), [2, 0, 9, 9]);
  assert.deepEqual(Array.from(held.pos), [0, 0, 9, 9]);
  const changed = moved.apply(delta(4, 3, { changed: [{ skip: 1, dpos: [0, 1], dvel: [0, 1] }], fields: [{ skip: 0, field: 0, delta: -3 }] }));
  assert.notEqual(changed.vel, moved.vel);
  assert.notEqual(changed.fields, moved.fields);
  assert.deepEqual(Array.from(moved.vel), [1, 0, 0, 0]);
  assert.deepEqual(Array.from(moved.fields.subarray(0, 1)), [3]);
  assert.deepEqual(changed.entities().map((e) => [e.pos, e.vel, e.fields[0]]), [[[3, 0], [1, 0], 0], [[9, 10], [0, 1], 0]]);
});
