// @ts-check
// Entities a server leaves out of a delta (a bandwidth budget, docs/PROTOCOL.md 5.1): the
// client keeps their last state moved on by their velocity, remembers when each was last
// sent, and the interpolator draws them moving on; a standing entity does not drift.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Interpolator, World } from "../tickcast.js";

/** @typedef {import("../tickcast.js").Snapshot} Snapshot */

const RATE = 30;
const TICK = 1000 / RATE;
const Q = 1 / 16;
const ZERO = [0, 0, 0, 0, 0, 0, 0, 0];
const close = (/** @type {number} */ a, /** @type {number} */ b) => Math.abs(a - b) < 1e-9;

/** @returns {Snapshot} */
const delta = (/** @type {number} */ tick, /** @type {number} */ baseTick, changed = /** @type {Snapshot["changed"]} */ ([]), added = /** @type {Snapshot["added"]} */ ([])) => ({
  type: "Snapshot",
  tick,
  baseTick,
  lastInputSeq: 0,
  removed: [],
  changed,
  added,
  fields: [],
});

test("entities left out of deltas move on by their velocity and keep the tick of their last update", () => {
  // Tick 10: entity 1 moves 16 quanta per tick along x, 2 stands still, 3 moves along y.
  const w10 = World.from(10, [
    { id: 1, kind: "Npc", pos: [0, 0], vel: [16, 0], fields: ZERO },
    { id: 2, kind: "Npc", pos: [500, 500], vel: [0, 0], fields: ZERO },
    { id: 3, kind: "Npc", pos: [0, 100], vel: [0, 4], fields: ZERO },
  ]);
  assert.deepEqual(Array.from(w10.updated), [10, 10, 10]);
  // Tick 11: only entity 3 is sent (it turned); 1 and 2 are left out.
  const w11 = w10.apply(delta(11, 10, [{ skip: 2, dpos: [3, -4], dvel: [3, -4] }]));
  assert.deepEqual(Array.from(w11.updated), [10, 10, 11]);
  assert.deepEqual(Array.from(w11.pos), [16, 0, 500, 500, 3, 100]);
  // Tick 13: entity 4 enters (the rebuilding path); nobody else is sent.
  const w13 = w11.apply(delta(13, 11, [], [{ idGap: 4, kind: "Npc", pos: [9, 9], vel: [0, 0] }]));
  assert.deepEqual(Array.from(w13.updated), [10, 10, 11, 13]);
  assert.deepEqual(w13.extrapolated(0, 13), [48, 0], "16 quanta a tick since tick 10");
  assert.deepEqual(w13.extrapolated(0, 15.5), [88, 0]);
  assert.deepEqual(w13.extrapolated(1, 1000), [500, 500], "velocity 0: no drift");
  assert.deepEqual(w13.extrapolated(2, 14), [12, 100], "its new velocity from tick 11");

  // The interpolator draws the left-out entity moving on, the standing one still.
  const ip = new Interpolator({ tickRate: RATE, posQuantum: Q, delayTicks: 1, addJitter: false });
  ip.push(w11, 11 * TICK);
  ip.push(w13, 13 * TICK);
  const s = ip.sample(13 * TICK + TICK / 2); // render tick 12.5
  assert.ok(s);
  assert.ok(close(s.tick, 12.5), `${s.tick}`);
  const [one, two] = s.entities;
  assert.ok(close(one.x, (16 * 12.5 - 16 * 10) * Q), `moved on by its velocity: ${one.x}`);
  assert.equal(one.vx, 16 * Q * RATE);
  assert.equal(one.updated, 10);
  assert.equal(two.x, 500 * Q);
  assert.equal(two.y, 500 * Q);
  assert.equal(s.entities.length, 3, "entity 4 is drawn from its first tick on");
});
