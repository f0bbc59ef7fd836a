// @ts-check
// Prediction of the player's own avatar: the Arena's movement rule in f32 as the server
// computes it (server/src/game/arena.rs), and reconciliation against last_input_seq with
// a simulated server that applies the newest input once per tick, with latency.

import { test } from "node:test";
import assert from "node:assert/strict";
import { arenaStep, Predictor } from "../tickcast.js";

/** @typedef {import("../tickcast.js").Body} Body */
/** @typedef {import("../tickcast.js").SentInput} SentInput */

const CTX = { dt: Math.fround(1 / 30), posQuantum: 0.0625, worldSize: { x: 1000, y: 1000 } };
const input = (/** @type {number} */ seq, /** @type {number} */ x, /** @type {number} */ y) => ({ seq, movement: { x, y }, buttons: 0, payload: new Uint8Array(0) });

test("the Arena rule: 100 units/s in whole quanta per tick, length clamped to 1, walls stop", () => {
  // 100 u/s x 1/30 s = 3.33 units = 53.3 quanta: 53 quanta, 3.3125 units.
  assert.deepEqual(arenaStep({ x: 500, y: 500, vx: 0, vy: 0 }, input(1, 1, 0), CTX), { x: 503.3125, y: 500, vx: 100, vy: 0 });
  // Longer than 1: clamped as glam does it in f32 (3 / sqrt(18) x 100 = 70.71068572998047,
  // the value Rust prints for `Vec2::new(3.0, 3.0).clamp_length_max(1.0) * 100.0`), 37.7
  // quanta per tick: 38.
  const diag = arenaStep({ x: 500, y: 500, vx: 0, vy: 0 }, input(1, 3, 3), CTX);
  assert.deepEqual(diag, { x: 502.375, y: 502.375, vx: 70.71068572998047, vy: 70.71068572998047 });
  // Shorter than 1: as it is.
  assert.deepEqual(arenaStep({ x: 0, y: 0, vx: 0, vy: 0 }, input(1, 0.5, 0), CTX), { x: 1.6875, y: 0, vx: 50, vy: 0 });
  // No new input: the velocity persists.
  assert.deepEqual(arenaStep({ x: 10, y: 10, vx: -100, vy: 0 }, null, CTX), { x: 6.6875, y: 10, vx: -100, vy: 0 });
  // Into a wall: clamped, and the velocity on that axis is 0 until a new input.
  const wall = arenaStep({ x: 999, y: 500, vx: 100, vy: 100 }, null, CTX);
  assert.deepEqual(wall, { x: 1000, y: 503.3125, vx: 0, vy: 100 });
  assert.deepEqual(arenaStep(wall, null, CTX), { x: 1000, y: 506.625, vx: 0, vy: 100 });
  // f32::round rounds half away from zero (-2.5 -> -3), unlike Math.round.
  assert.deepEqual(arenaStep({ x: 10, y: 10, vx: -2.5, vy: 2.5 }, null, { dt: 1, posQuantum: 1, worldSize: { x: 100, y: 100 } }), { x: 7, y: 13, vx: -2.5, vy: 2.5 });
});

/**
 * A server that applies the newest input it received once per tick (latest wins), and a
 * client that sends one input per tick; each way takes `latency` ticks.
 * @param {(tick: number) => [number, number]} controls
 * @param {{ latency: number, ticks: number, teleportAt?: number }} opts
 */
function simulate(controls, opts) {
  /** @type {Body} */
  let server = { x: 500, y: 500, vx: 0, vy: 0 };
  let lastApplied = 0;
  /** @type {{ arrives: number, input: SentInput }[]} */
  const toServer = [];
  /** @type {{ arrives: number, body: Body, seq: number }[]} */
  const toClient = [];
  const p = new Predictor({ tickRate: 30, posQuantum: 0.0625, worldSize: { x: 1000, y: 1000 } });
  p.reconcile(server, 0);
  const corrections = [];
  /** @type {Map<number, Body>} */
  const predictedAfter = new Map();
  /** @type {Map<number, Body>} */
  const serverAfter = new Map();
  for (let tick = 1; tick <= opts.ticks; tick++) {
    // The client: snapshots that arrived, then this tick's input.
    while (toClient.length && toClient[0].arrives <= tick) {
      const s = /** @type {{ body: Body, seq: number }} */ (toClient.shift());
      p.reconcile(s.body, s.seq);
      corrections.push(p.correction);
    }
    const [x, y] = controls(tick);
    const sent = input(tick, x, y);
    p.sent(sent);
    predictedAfter.set(sent.seq, /** @type {Body} */ (p.state));
    toServer.push({ arrives: tick + opts.latency, input: sent });
    // The server: the newest input that arrived, then one step.
    /** @type {SentInput | null} */
    let newest = null;
    while (toServer.length && toServer[0].arrives <= tick) newest = /** @type {{ input: SentInput }} */ (toServer.shift()).input;
    server = arenaStep(server, newest, CTX);
    if (opts.teleportAt === tick) server = { ...server, x: server.x + 10 };
    if (newest) {
      lastApplied = newest.seq;
      serverAfter.set(newest.seq, server);
    }
    toClient.push({ arrives: tick + opts.latency, body: server, seq: lastApplied });
  }
  return { corrections, predictedAfter, serverAfter, p };
}

test("with the server's rule, the prediction is where the server puts the avatar: no corrections", () => {
  const turns = (/** @type {number} */ t) => /** @type {[number, number]} */ ([[1, 0], [0, 1], [-1, -1], [0.3, 0]][Math.floor(t / 7) % 4]);
  const run = simulate(turns, { latency: 3, ticks: 120 });
  assert.equal(run.corrections.length, 120 - 3);
  assert.deepEqual(run.corrections.filter((c) => c !== 0), []);
  // The prediction made when input n was sent is the server's state after applying it.
  for (const [seq, body] of run.serverAfter) assert.deepEqual(run.predictedAfter.get(seq), body, `input ${seq}`);
  // Acknowledged inputs are dropped: those of the last 2 x latency ticks remain.
  assert.deepEqual(run.p.pending.map((i) => i.seq), [115, 116, 117, 118, 119, 120]);
});

test("a server that disagrees is followed: one correction, then none", () => {
  const run = simulate(() => [1, 0], { latency: 2, ticks: 60, teleportAt: 30 });
  const nonzero = run.corrections.map((c, i) => [i, c]).filter(([, c]) => c !== 0);
  // Snapshots arrive from tick 3 on: the one of tick 30 arrives at tick 32, the 30th
  // reconciliation (index 29), and moves the prediction by the 10 units of the teleport.
  assert.deepEqual(nonzero, [[29, 10]]);
  // Afterwards the prediction again equals the server's state.
  assert.deepEqual(run.predictedAfter.get(50), run.serverAfter.get(50));
});

test("a game passes its own rule", () => {
  /** @type {import("../tickcast.js").StepFn} */
  const hop = (b, i) => ({ ...b, x: b.x + (i ? i.buttons : 0) });
  const p = new Predictor({ tickRate: 30, posQuantum: 1, worldSize: { x: 10, y: 10 }, step: hop });
  p.reconcile({ x: 0, y: 0, vx: 0, vy: 0 }, 0);
  p.sent({ seq: 1, movement: { x: 0, y: 0 }, buttons: 5, payload: new Uint8Array(0) });
  p.sent({ seq: 2, movement: { x: 0, y: 0 }, buttons: 7, payload: new Uint8Array(0) });
  assert.equal(p.state?.x, 12);
  // The server applied input 1 and says the avatar is at 6: replay input 2 on that.
  assert.deepEqual(p.reconcile({ x: 6, y: 0, vx: 0, vy: 0 }, 1), { x: 13, y: 0, vx: 0, vy: 0 });
  assert.equal(p.correction, 1);
  p.reset();
  assert.deepEqual([p.pending, p.state], [[], null]);
});
