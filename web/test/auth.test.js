// @ts-check
// The Client with a player token (options.authToken), driven with a fake WebSocket class
// and a manual clock: the token goes in the first Hello (HelloWithToken, variant 5) and
// again in the Hello of every resume, never in the URL; and the token refusals and the
// takeover (4010-4014) end the session without a reconnection.

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, encodeServerMsg, decodeClientMsg, encodeHello, CloseCode } from "../tickcast.js";
import { FakeClock, fakeWebSocket } from "./fakes.js";

const SESSION = Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i);
const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEiLCJleHAiOjk5OTk5OTk5OTl9.c2lnbmF0dXJl";
const welcome = () =>
  encodeServerMsg({
    type: "Welcome", protocolVersion: 2, playerId: 1, entityId: 7, tickRate: 30, serverTick: 100,
    worldSize: { x: 1000, y: 1000 }, sessionToken: SESSION, posQuantum: 0.0625, game: "arena", fields: [],
  });

function setup(options = {}) {
  const clock = new FakeClock();
  const { WebSocket, sockets } = fakeWebSocket();
  const client = connect({
    url: "ws://game.test:7000/ws", name: "ada", room: "r1", WebSocket, clock: clock.api, random: () => 0.5,
    pingInterval: 0, authToken: JWT, ...options,
  });
  /** @type {[string, any][]} */
  const events = [];
  for (const type of /** @type {const} */ (["welcome", "reconnecting", "reconnected", "close"])) {
    client.on(type, (e) => events.push([type, e]));
  }
  return { clock, sockets, client, events };
}

/** @param {{ sent: Uint8Array[] }} ws */
const hellos = (ws) => ws.sent.map((b) => decodeClientMsg(b)).filter((m) => m.type === "Hello");

test("the token goes in the Hello of the first connection and of every resume, never in the URL", () => {
  const t = setup();
  const first = t.sockets[0];
  first.serverOpen();
  assert.deepEqual(first.sent, [encodeHello("ada", "r1", null, JWT)]);
  // Variant 5 (HelloWithToken) first, then protocol version 2.
  assert.deepEqual([...first.sent[0].subarray(0, 2)], [5, 2]);
  assert.deepEqual(hellos(first), [
    { type: "Hello", protocolVersion: 2, name: "ada", room: "r1", resume: null, authToken: JWT },
  ]);
  first.serverSend(welcome());

  // Two drops in a row: each attempt presents the session token and the player token.
  first.serverClose(CloseCode.Abnormal);
  t.clock.advance(50);
  t.sockets[1].serverOpen();
  assert.deepEqual(hellos(t.sockets[1]), [
    { type: "Hello", protocolVersion: 2, name: "ada", room: "r1", resume: SESSION, authToken: JWT },
  ]);
  t.sockets[1].serverClose(CloseCode.Abnormal);
  t.clock.advance(100);
  const third = t.sockets[2];
  third.serverOpen();
  assert.deepEqual(third.sent, [encodeHello("ada", "r1", SESSION, JWT)]);
  third.serverSend(welcome());
  assert.equal(t.events.at(-1)?.[0], "reconnected");
  for (const ws of t.sockets) assert.ok(!ws.url.includes(JWT), ws.url);
  assert.deepEqual(
    t.sockets.map((ws) => ws.url),
    ["ws://game.test:7000/ws?room=r1", "ws://game.test:7000/ws?room=r1&resume=1", "ws://game.test:7000/ws?room=r1&resume=1"],
  );
});

test("without a token the Hello is the short form", () => {
  const t = setup({ authToken: null });
  t.sockets[0].serverOpen();
  assert.deepEqual([...t.sockets[0].sent[0].subarray(0, 2)], [0, 2]);
  assert.deepEqual(hellos(t.sockets[0])[0].authToken, null);
});

for (const [name, code] of /** @type {const} */ ([
  ["AuthRequired", 4010], ["AuthInvalid", 4011], ["AuthExpired", 4012], ["AuthWrongRoom", 4013], ["Replaced", 4014],
])) {
  test(`close ${code} (${name}) ends the session: no reconnection`, () => {
    assert.equal(CloseCode[name], code);
    const t = setup();
    const ws = t.sockets[0];
    ws.serverOpen();
    if (code === 4014) ws.serverSend(welcome()); // the takeover comes to a player already in
    ws.serverClose(code, "why");
    assert.deepEqual(t.events.at(-1), ["close", { code, reason: "why" }]);
    assert.equal(t.client.state, "closed");
    t.clock.advance(20_000);
    assert.equal(t.sockets.length, 1, "nothing reconnects");
  });
}
