// @ts-check
// Snapshot interpolation: a buffer keyed by tick, time from tick x dt, a render time the
// delay behind the newest tick, and recovery after a stall.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Interpolator, World } from "../tickcast.js";

const RATE = 30;
const TICK = 1000 / RATE;
const Q = 1 / 16;

/** A world at `tick` with entity 1 moving 16 quanta (1 unit) per tick along x. */
const at = (/** @type {number} */ tick, extra = false) =>
  World.from(tick, [
    { id: 1, kind: "Npc", pos: [16 * tick, 0], vel: [16, 0], fields: [0, 0, 0, 0, 0, 0, 0, 0] },
    ...(extra ? [{ id: 2, kind: /** @type {const} */ ("Avatar"), pos: /** @type {[number, number]} */ ([0, 0]), vel: /** @type {[number, number]} */ ([0, 0]), fields: [0, 0, 0, 0, 0, 0, 0, 0] }] : []),
  ]);
const close = (/** @type {number} */ a, /** @type {number} */ b) => Math.abs(a - b) < 1e-9;

test("steady arrivals render exactly two ticks behind the newest, interpolating by tick", () => {
  const ip = new Interpolator({ tickRate: RATE, posQuantum: Q });
  // Tick t arrives 50 ms after t x dt, always.
  for (let t = 100; t <= 110; t++) ip.push(at(t), t * TICK + 50);
  assert.equal(ip.jitterMs, 0);
  assert.ok(close(ip.delayMs, 2 * TICK));
  const now = 110 * TICK + 50;
  assert.ok(close(/** @type {number} */ (ip.renderTick(now)), 108));
  // Half a tick later: tick 108.5, entity 1 half way between 108 and 109 units.
  const s = ip.sample(now + TICK / 2);
  assert.ok(s && close(s.tick, 108.5));
  assert.ok(s && close(s.entities[0].x, 108.5));
  assert.ok(s && close(s.entities[0].vx, 30));
  // Old worlds are dropped once the render time has passed them.
  assert.equal(ip.buffer[0].tick, 108);
});

test("the delay is configurable and grows by the measured jitter", () => {
  const fixed = new Interpolator({ tickRate: RATE, posQuantum: Q, delayTicks: 3, addJitter: false });
  const jittery = new Interpolator({ tickRate: RATE, posQuantum: Q });
  for (let t = 1; t <= 200; t++) {
    const arrival = t * TICK + 50 + (t % 2 ? 0 : 10);
    fixed.push(at(t), arrival);
    jittery.push(at(t), arrival);
  }
  assert.ok(close(fixed.delayMs, 3 * TICK));
  // Deviations alternate between 0 and 10 ms: the mean deviation lies between.
  assert.ok(jittery.jitterMs > 1 && jittery.jitterMs < 10, `${jittery.jitterMs}`);
  assert.ok(close(jittery.delayMs, 2 * TICK + jittery.jitterMs));
  // The offset follows the earliest arrivals (50 ms after their tick): at such an
  // arrival the render time is two ticks and the jitter behind.
  const rt = /** @type {number} */ (jittery.renderTick(199 * TICK + 50));
  assert.ok(rt < 199 - 2 - jittery.jitterMs / TICK && rt > 199 - 2 - (jittery.jitterMs + 1) / TICK, `${rt}`);
});

test("the buffer is keyed by tick: stale ticks are ignored, gaps are interpolated across", () => {
  const ip = new Interpolator({ tickRate: RATE, posQuantum: Q });
  ip.push(at(10), 10 * TICK);
  ip.push(at(9), 10 * TICK + 1);
  ip.push(at(10), 10 * TICK + 2);
  assert.deepEqual(ip.buffer.map((w) => w.tick), [10]);
  // Ticks 11 and 12 skipped by the server: 10 and 13 bracket 11.5.
  ip.push(at(13, true), 13 * TICK);
  const s = ip.sample(13.5 * TICK);
  assert.ok(s && close(s.tick, 11.5));
  assert.ok(s && close(s.entities[0].x, 11.5));
  // Entity 2 is new at tick 13: not drawn before then.
  assert.deepEqual(s?.entities.map((e) => e.id), [1]);
  const later = ip.sample(13 * TICK + 10 * TICK);
  assert.ok(later && later.tick === 13);
  assert.deepEqual(later?.entities.map((e) => e.id), [1, 2]);
});

test("no extrapolation past the newest tick, and the render time never goes back", () => {
  const ip = new Interpolator({ tickRate: RATE, posQuantum: Q });
  for (let t = 1; t <= 5; t++) ip.push(at(t), t * TICK);
  // Nothing more arrives: the render time stops at tick 5.
  assert.equal(ip.renderTick(5 * TICK + 1000), 5);
  assert.equal(ip.renderTick(5 * TICK + 2000), 5);
  // A clock read out of order does not move it back.
  assert.equal(ip.renderTick(4 * TICK), 5);
});

test("after a stall the clock re-anchors and the delay comes back", () => {
  const ip = new Interpolator({ tickRate: RATE, posQuantum: Q });
  for (let t = 1; t <= 30; t++) ip.push(at(t), t * TICK + 50);
  // The room stalls for 2 s; ticks then go on from 31, each 2 s later than before.
  const arrival = (/** @type {number} */ t) => t * TICK + 50 + 2000;
  ip.push(at(31), arrival(31));
  ip.push(at(32), arrival(32));
  // Two late snapshots: not yet re-anchored, the render time holds at the newest tick.
  assert.equal(ip.resets, 0);
  assert.equal(ip.renderTick(arrival(32)), 32);
  ip.push(at(33), arrival(33));
  assert.equal(ip.resets, 1);
  for (let t = 34; t <= 40; t++) ip.push(at(t), arrival(t));
  // Two ticks of delay again, and no jitter from the stall itself.
  assert.ok(close(ip.jitterMs, 0));
  assert.ok(close(/** @type {number} */ (ip.renderTick(arrival(40) + TICK)), 39));
  // Without re-anchoring the buffer would stay drained (rendering the newest tick, with
  // nothing to interpolate towards).
  const stuck = new Interpolator({ tickRate: RATE, posQuantum: Q, resetAfter: Infinity });
  for (let t = 1; t <= 30; t++) stuck.push(at(t), t * TICK + 50);
  for (let t = 31; t <= 40; t++) stuck.push(at(t), arrival(t));
  assert.equal(stuck.renderTick(arrival(40) + TICK), 40);
});
