// @ts-check
// The Client, driven with a fake WebSocket class and a manual clock (no network, no real
// time): the handshake and Hello, events, inputs once per tick and held back behind a
// stalled socket, ping/rtt, game messages and events, closing, a bad delta, and resuming
// with backoff and jitter within the budget.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  Backoff,
  encodeServerMsg,
  decodeClientMsg,
  encodeHello,
  SUBPROTOCOL,
  DEFAULT_RECONNECT,
} from "../tickcast.js";
import { FakeClock, fakeWebSocket } from "./fakes.js";

/** @typedef {import("../tickcast.js").Snapshot} Snapshot */

const TOKEN = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
const welcome = (serverTick = 100) =>
  encodeServerMsg({
    type: "Welcome", protocolVersion: 2, playerId: 1, entityId: 7, tickRate: 30, serverTick,
    worldSize: { x: 1000, y: 1000 }, sessionToken: TOKEN, posQuantum: 0.0625, game: "arena", fields: [],
  });
/** @param {number} tick @param {number} [baseTick] @param {number} [lastInputSeq] @param {Partial<Snapshot>} [rest] */
const snapshot = (tick, baseTick = 0, lastInputSeq = 0, rest = {}) =>
  encodeServerMsg({
    type: "Snapshot", tick, baseTick, lastInputSeq, removed: [], changed: [],
    added: baseTick === 0 ? [{ idGap: 7, kind: "Avatar", pos: [8000, 8000], vel: [0, 0] }] : [], fields: [], ...rest,
  });

/** A client with a fake socket class and clock, and a log of its events. */
function setup(options = {}) {
  const clock = new FakeClock();
  const { WebSocket, sockets } = fakeWebSocket();
  const client = connect({
    url: "ws://game.test:7000/ws", name: "ada", room: "r1", WebSocket, clock: clock.api, random: () => 0.5, pingInterval: 0, ...options,
  });
  /** @type {[string, any][]} */
  const events = [];
  for (const type of /** @type {const} */ (["welcome", "snapshot", "event", "pong", "reconnecting", "reconnected", "close", "error"])) {
    client.on(type, (e) => events.push([type, e]));
  }
  const sent = (i = sockets.length - 1) => sockets[i].sent.map((b) => decodeClientMsg(b));
  return { clock, sockets, client, events, sent, types: () => events.map(([t]) => t) };
}

/** Opens the newest socket and welcomes the player, then sends a keyframe. */
function join(/** @type {ReturnType<typeof setup>} */ t) {
  const ws = t.sockets[t.sockets.length - 1];
  ws.serverOpen();
  ws.serverSend(welcome());
  ws.serverSend(snapshot(100));
  return ws;
}

test("connects with the subprotocol and the room, sends Hello, and reports the Welcome", () => {
  const t = setup({ ticket: "t0", params: { auth: "x" } });
  const ws = t.sockets[0];
  assert.equal(ws.url, "ws://game.test:7000/ws?room=r1&ticket=t0&auth=x");
  assert.equal(ws.protocols, SUBPROTOCOL);
  assert.equal(ws.binaryType, "arraybuffer");
  assert.equal(t.client.state, "connecting");
  ws.serverOpen();
  assert.deepEqual(ws.sent, [encodeHello("ada", "r1")]);
  ws.serverSend(welcome());
  assert.equal(t.client.state, "open");
  assert.deepEqual(t.types(), ["welcome"]);
  assert.equal(t.events[0][1].welcome.entityId, 7);
  ws.serverSend(snapshot(100));
  assert.deepEqual(t.types(), ["welcome", "snapshot"]);
  assert.equal(t.client.world.tick, 100);
  assert.deepEqual(t.client.world.entities()[0].pos, [8000, 8000]);
  // The own avatar is predicted from the snapshot: 8000 quanta = 500 units.
  assert.deepEqual(t.client.predicted, { x: 500, y: 500, vx: 0, vy: 0 });
  // A page reload within the grace resumes with a stored token.
  const again = setup({ resume: TOKEN });
  again.sockets[0].serverOpen();
  assert.deepEqual(again.sockets[0].sent, [encodeHello("ada", "r1", TOKEN)]);
});

test("inputs go out at most once per tick, the newest controls winning, and repeat every tick", () => {
  const t = setup();
  const ws = join(t);
  assert.equal(t.client.sendInput([1, 0], 3), true);
  t.client.sendInput([0, 1]);
  t.client.sendInput({ x: -1, y: 0 }, 1, new Uint8Array([9]));
  assert.deepEqual(t.sent(), [
    { type: "Hello", protocolVersion: 2, name: "ada", room: "r1", resume: null, authToken: null },
    { type: "Input", seq: 1, movement: { x: 1, y: 0 }, buttons: 3, payload: new Uint8Array(0) },
  ]);
  t.clock.advance(1000 / 30);
  t.clock.advance(1000 / 30);
  const inputs = t.sent().slice(1);
  assert.deepEqual(inputs.map((m) => /** @type {any} */ (m).seq), [1, 2, 3]);
  assert.deepEqual(inputs[1], { type: "Input", seq: 2, movement: { x: -1, y: 0 }, buttons: 1, payload: new Uint8Array([9]) });
  assert.deepEqual(inputs[2], { ...inputs[1], seq: 3 });
  // Each sent input moved the prediction one tick (53 quanta = 3.3125 units).
  assert.deepEqual(t.client.predicted, { x: 500 + 3.3125 - 2 * 3.3125, y: 500, vx: -100, vy: 0 });
  // The server acknowledges input 2: input 3 is replayed on its state.
  ws.serverSend(snapshot(101, 100, 2, { changed: [{ skip: 0, dpos: [0, 0], dvel: [-53, 0] }] }));
  assert.equal(t.client.ackedSeq, 2);
  assert.deepEqual(t.client.predicted, { x: 500 - 3.3125, y: 500, vx: -100, vy: 0 });
  assert.throws(() => t.client.sendInput([NaN, 0]), RangeError);
  assert.throws(() => t.client.sendInput([0, 0], 0, new Uint8Array(33)), RangeError);
});

test("inputs and pings are held back while the socket is backed up, never queued behind it", () => {
  const t = setup({ pingInterval: 500, maxBufferedAmount: 1024 });
  const ws = join(t);
  t.client.sendInput([1, 0]);
  const before = ws.sent.length;
  ws.bufferedAmount = 5000;
  for (let i = 0; i < 10; i++) {
    t.client.sendInput([0, i / 10]);
    t.clock.advance(1000 / 30);
  }
  assert.equal(ws.sent.length, before, "nothing sent into a stalled socket");
  assert.equal(t.client.inputsHeld, 10, "one input due per tick, each held back");
  assert.equal(t.client.ping(), false);
  // A game message is the game's reliable channel: it still goes.
  assert.equal(t.client.sendMessage(new Uint8Array([1, 2])), true);
  assert.deepEqual(decodeClientMsg(ws.sent[ws.sent.length - 1]), { type: "Message", payload: new Uint8Array([1, 2]) });
  // The socket drains: at the next tick one input, the newest, with the next seq.
  ws.bufferedAmount = 0;
  t.clock.advance(1000 / 30);
  const after = ws.sent.slice(before + 1).map((b) => decodeClientMsg(b));
  assert.deepEqual(after, [{ type: "Input", seq: 2, movement: { x: 0, y: Math.fround(0.9) }, buttons: 0, payload: new Uint8Array(0) }]);
});

test("pings measure the round trip; events and messages pass through", () => {
  const t = setup({ pingInterval: 1000 });
  const ws = join(t);
  const ping = /** @type {any} */ (t.sent().find((m) => m.type === "Ping"));
  t.clock.advance(30);
  ws.serverSend(encodeServerMsg({ type: "Pong", nonce: ping.nonce, serverTick: 101 }));
  assert.equal(t.client.rtt, 30);
  assert.deepEqual(t.events.filter(([k]) => k === "pong").map(([, e]) => e), [{ rtt: 30 }]);
  t.clock.advance(1000);
  assert.equal(t.sent().filter((m) => m.type === "Ping").length, 2);
  ws.serverSend(encodeServerMsg({ type: "Event", payload: new Uint8Array([1, 7]) }));
  assert.deepEqual(t.events.filter(([k]) => k === "event").map(([, e]) => e), [{ payload: new Uint8Array([1, 7]) }]);
});

test("close sends 1000 and reports the server's answer; no reconnection follows", () => {
  const t = setup();
  const ws = join(t);
  t.client.close();
  assert.deepEqual(ws.closedWith, { code: 1000, reason: "bye" });
  ws.serverClose(1000, "bye");
  assert.deepEqual(t.events.at(-1), ["close", { code: 1000, reason: "bye" }]);
  assert.equal(t.client.state, "closed");
  t.clock.advance(20_000);
  assert.equal(t.sockets.length, 1);
  assert.equal(t.client.sendMessage(new Uint8Array(1)), false);
});

test("a delta that does not apply ends the session: closed with 1000 (what a page may send), reported as 1007", () => {
  const t = setup();
  const ws = join(t);
  ws.serverSend(snapshot(105, 104));
  assert.deepEqual(ws.closedWith, { code: 1000, reason: ws.closedWith?.reason });
  assert.match(String(ws.closedWith?.reason), /WrongBase/);
  assert.deepEqual(t.types().slice(-2), ["error", "close"]);
  assert.equal(t.events.at(-1)?.[1].code, 1007);
  assert.equal(t.client.world.tick, 100, "the world stays as it was");
  t.clock.advance(20_000);
  assert.equal(t.sockets.length, 1);
});

test("server closes that are answers end the session", () => {
  for (const code of [1001, 1008, 4001, 4006, 4009]) {
    const t = setup();
    join(t).serverClose(code, "why");
    assert.deepEqual(t.events.at(-1), ["close", { code, reason: "why" }]);
    t.clock.advance(20_000);
    assert.equal(t.sockets.length, 1, `no reconnection after ${code}`);
  }
});

test("a dropped connection resumes with backoff and jitter: same token, resume hint, seq from 1", () => {
  const t = setup({ ticket: "t0" });
  const first = join(t);
  t.client.sendInput([1, 0]);
  first.serverClose(1006);
  assert.equal(t.client.state, "reconnecting");
  assert.deepEqual(t.events.at(-1), ["reconnecting", { code: 1006, reason: "" }]);
  assert.equal(t.client.sendMessage(new Uint8Array(1)), false);
  // random() = 0.5: the first delay is half of 100 ms.
  t.clock.advance(49);
  assert.equal(t.sockets.length, 1);
  t.clock.advance(1);
  assert.equal(t.sockets.length, 2);
  assert.equal(t.sockets[1].url, "ws://game.test:7000/ws?room=r1&resume=1", "the spent ticket is not sent again");
  t.sockets[1].serverOpen();
  assert.deepEqual(t.sockets[1].sent, [encodeHello("ada", "r1", TOKEN)]);
  // This attempt fails too: the next waits half of 200 ms.
  t.sockets[1].serverClose(1006);
  t.clock.advance(99);
  assert.equal(t.sockets.length, 2);
  t.clock.advance(1);
  const ws = t.sockets[2];
  ws.serverOpen();
  ws.serverSend(welcome(190));
  assert.deepEqual(t.events.at(-1)?.[0], "reconnected");
  assert.equal(t.events.at(-1)?.[1].attempts, 2);
  assert.equal(t.client.state, "open");
  // The world is kept until the keyframe; input seq starts again at 1.
  assert.equal(t.client.world.tick, 100);
  ws.serverSend(snapshot(190));
  assert.equal(t.client.world.tick, 190);
  // The controls go again at once, then every tick.
  t.clock.advance(1000 / 30);
  const inputs = t.sent(2).filter((m) => m.type === "Input");
  assert.deepEqual(inputs.map((m) => /** @type {any} */ (m).seq), [1, 2]);
  // 4003 (idle timeout) is a loss too.
  ws.serverClose(4003, "idle timeout");
  assert.deepEqual(t.events.at(-1), ["reconnecting", { code: 4003, reason: "idle timeout" }]);
});

test("a resume refused with 4008 ends the session and forgets the token", () => {
  const t = setup();
  join(t).serverClose(1006);
  t.clock.advance(50);
  t.sockets[1].serverOpen();
  t.sockets[1].serverClose(4008, "session unknown or expired");
  assert.deepEqual(t.events.at(-1), ["close", { code: 4008, reason: "session unknown or expired" }]);
  assert.equal(t.client.token, null);
  t.clock.advance(20_000);
  assert.equal(t.sockets.length, 2);
});

test("reconnecting stops when the budget (the server's grace) is spent", () => {
  const t = setup();
  join(t).serverClose(1006);
  /** @type {number[]} */
  const opened = [];
  const start = t.clock.now();
  for (let ms = 0; ms <= 12_000; ms++) {
    const before = t.sockets.length;
    t.clock.advance(1);
    if (t.sockets.length > before) {
      opened.push(t.clock.now() - start);
      t.sockets[t.sockets.length - 1].serverClose(1006); // the server is unreachable
    }
  }
  // Delays of half the ceiling: 50, 100, 200, 400, 800, then 1000 (the 2 s cap, halved).
  assert.deepEqual(opened, [50, 150, 350, 750, 1550, 2550, 3550, 4550, 5550, 6550, 7550, 8550, 9550]);
  assert.deepEqual(t.events.at(-1), ["close", { code: 1006, reason: "reconnect failed after 13 attempts" }]);
  assert.equal(DEFAULT_RECONNECT.budget, 10_000);
});

test("the backoff policy: full jitter under a doubling ceiling, capped, within the budget", () => {
  const b = new Backoff({ initial: 100, max: 2000, budget: 10_000 }, () => 0.999);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 40, 2000].map((n) => b.ceiling(n)), [100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000]);
  assert.equal(b.nextDelay(0), 99.9);
  assert.equal(b.nextDelay(0), 199.8);
  assert.equal(b.nextDelay(9_950), 50, "cut to what is left of the budget");
  assert.equal(b.nextDelay(10_000), null);
  assert.equal(b.nextDelay(12_000), null);
  assert.equal(b.drawn, 3);
  const zero = new Backoff({ initial: 0, max: 0, budget: 5 }, () => 1);
  assert.equal(zero.nextDelay(0), 1, "never a busy loop");
  const low = new Backoff({ initial: 100, max: 2000, budget: 10_000 }, () => 0);
  assert.equal(low.nextDelay(0), 0);
});
