// @ts-check
// The codec: the byte examples of docs/PROTOCOL.md section 8, the encoding primer of
// section 4 (varints, zig-zag, strings, options), what a decoder refuses, the decode
// ceiling of section 6, and round trips of seeded random messages. The corpus test
// (shared/tests/js_corpus.rs) checks the same functions against the Rust codec.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  decodeServerMsg,
  decodeClientMsg,
  encodeServerMsg,
  encodeClientMsg,
  encodeHello,
  encodeInput,
  encodeMessage,
  encodePing,
  DecodeError,
  DECODE_ALLOC_LIMIT,
  CLIENT_ALLOC_LIMIT,
} from "../tickcast.js";

/** @param {string} h */
const bytes = (h) => new Uint8Array(h.trim().split(/\s+/).map((b) => parseInt(b, 16)));
/** @param {Uint8Array} b */
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");

// The examples of docs/PROTOCOL.md section 8, as the Rust encoder writes them
// (shared/tests/protocol_examples.rs pins the document to it). An input without a payload
// and a snapshot without field changes use the plain variant 1 (the v1 layout); with them,
// variant 4 (shared/src/wire.rs).
const TOKEN = "9e 2f 41 c7 08 d3 6a fb 15 e0 77 3c b9 04 5d ff";
const HELLO = "00 02 03 61 64 61 05 6c 6f 62 62 79 00";
const RESUME = `00 02 03 61 64 61 05 6c 6f 62 62 79 01 ${TOKEN}`;
const WELCOME = `00 02 01 07 1e fb 2c 01 00 00 48 44 00 00 16 44 ${TOKEN} 00 00 80 3d 03 74 61 67 02 02 69 74 00 05 73 63 6f 72 65 03`;
const INPUT = "01 01 00 00 80 3f 00 00 00 00 00";
const INPUT_PAYLOAD = "04 02 00 00 00 00 00 00 80 bf 01 03 2c 01 fb";
const MESSAGE = "03 03 68 69 21";
const EVENT = "03 02 01 07";
const HELLO_TOKEN = "05 02 03 61 64 61 05 6c 6f 62 62 79 00 05 68 2e 70 2e 73";
const PING = "02 fd 00 68 e5 cf 8b 01 00 00";
const PONG = "02 fd 00 68 e5 cf 8b 01 00 00 fc 70 11 01 00";
const KEYFRAME = "04 fb 2c 01 00 2a 00 00 02 03 00 fb 40 01 fb 80 02 04 01 03 01 fb 80 0c fb 40 06 04 00 02 01 00 02 00 01 fb 58 02";
const DELTA = "04 fb 2f 01 fb 2c 01 2b 01 03 01 00 01 02 01 02 01 0c 00 fb 80 25 fb 00 19 05 02 03 00 00 01 00 01 14 01 00 02";

test("the client examples encode byte for byte and decode back", () => {
  assert.equal(hex(encodeHello("ada", "lobby")), HELLO);
  assert.equal(hex(encodeHello("ada", "lobby", bytes(TOKEN))), RESUME);
  assert.equal(hex(encodeHello("ada", "lobby", null, "h.p.s")), HELLO_TOKEN);
  assert.deepEqual(decodeClientMsg(bytes(HELLO_TOKEN)), { type: "Hello", protocolVersion: 2, name: "ada", room: "lobby", resume: null, authToken: "h.p.s" });
  assert.equal(hex(encodeInput(1, { x: 1, y: 0 })), INPUT);
  assert.equal(hex(encodeInput(2, [0, -1], 1, new Uint8Array([0x2c, 0x01, 0xfb]))), INPUT_PAYLOAD);
  assert.equal(hex(encodeMessage(new TextEncoder().encode("hi!"))), MESSAGE);
  assert.equal(hex(encodePing(1_700_000_000_000)), PING);
  assert.deepEqual(decodeClientMsg(bytes(RESUME)), { type: "Hello", protocolVersion: 2, name: "ada", room: "lobby", resume: bytes(TOKEN), authToken: null });
  assert.deepEqual(decodeClientMsg(bytes(INPUT_PAYLOAD)), {
    type: "Input", seq: 2, movement: { x: 0, y: -1 }, buttons: 1, payload: new Uint8Array([0x2c, 0x01, 0xfb]),
  });
  assert.deepEqual(decodeClientMsg(bytes(PING)), { type: "Ping", nonce: 1_700_000_000_000 });
  assert.deepEqual(decodeClientMsg(bytes(MESSAGE)), { type: "Message", payload: new TextEncoder().encode("hi!") });
});

test("the server examples decode to the values of the document and encode back", () => {
  const welcome = decodeServerMsg(bytes(WELCOME));
  assert.deepEqual(welcome, {
    type: "Welcome", protocolVersion: 2, playerId: 1, entityId: 7, tickRate: 30, serverTick: 300,
    worldSize: { x: 800, y: 600 }, sessionToken: bytes(TOKEN), posQuantum: 0.0625, game: "tag",
    fields: [{ name: "it", kind: "Bool" }, { name: "score", kind: "U16" }],
  });
  assert.deepEqual(decodeServerMsg(bytes(KEYFRAME)), {
    type: "Snapshot", tick: 300, baseTick: 0, lastInputSeq: 42, removed: [], changed: [],
    added: [
      { idGap: 3, kind: "Npc", pos: [160, 320], vel: [2, -1] },
      { idGap: 3, kind: "Avatar", pos: [1600, 800], vel: [2, 0] },
    ],
    fields: [{ skip: 1, field: 0, delta: 1 }, { skip: 0, field: 1, delta: 300 }],
  });
  assert.deepEqual(decodeServerMsg(bytes(DELTA)), {
    type: "Snapshot", tick: 303, baseTick: 300, lastInputSeq: 43, removed: [3],
    changed: [{ skip: 0, dpos: [-1, 1], dvel: [-1, 1] }],
    added: [{ idGap: 12, kind: "Npc", pos: [4800, 3200], vel: [-3, 1] }],
    fields: [{ skip: 0, field: 0, delta: -1 }, { skip: 0, field: 1, delta: 10 }, { skip: 1, field: 0, delta: 1 }],
  });
  assert.deepEqual(decodeServerMsg(bytes(PONG)), { type: "Pong", nonce: 1_700_000_000_000, serverTick: 70_000 });
  assert.deepEqual(decodeServerMsg(bytes(EVENT)), { type: "Event", payload: new Uint8Array([1, 7]) });
  for (const h of [WELCOME, KEYFRAME, DELTA, PONG, EVENT]) assert.equal(hex(encodeServerMsg(decodeServerMsg(bytes(h)))), h);
  // A game without fields ends its Welcome with "arena" and an empty list.
  const plain = encodeServerMsg({ ...(/** @type {any} */ (welcome)), game: "arena", fields: [] });
  assert.equal(hex(plain.subarray(36)), "05 61 72 65 6e 61 00");
  // Any view of the bytes decodes, not only a whole ArrayBuffer.
  const padded = bytes(`ff ${EVENT} ff`);
  assert.deepEqual(decodeServerMsg(padded.subarray(1, 5)), { type: "Event", payload: new Uint8Array([1, 7]) });
});

test("varints: the table of section 4, and the markers a field refuses", () => {
  /** @type {[number, string][]} */
  const table = [[0, "00"], [250, "fa"], [251, "fb fb 00"], [300, "fb 2c 01"], [65_535, "fb ff ff"],
    [65_536, "fc 00 00 01 00"], [4_294_967_295, "fc ff ff ff ff"], [4_294_967_296, "fd 00 00 00 00 01 00 00 00"]];
  for (const [v, h] of table) {
    // A u64 field: Ping.nonce.
    assert.equal(hex(encodePing(v)), `02 ${h}`);
    assert.deepEqual(decodeClientMsg(bytes(`02 ${h}`)), { type: "Ping", nonce: v });
  }
  // A longer form than needed decodes (never sent): tick 5 as fb 05 00.
  assert.equal(/** @type {any} */ (decodeServerMsg(bytes("01 fb 05 00 00 00 00 00 00"))).tick, 5);
  // 252 in a u16 field (Welcome.protocol_version), 253 in a u32 field (Snapshot.last_input_seq).
  assert.throws(() => decodeServerMsg(bytes(`00 fc 02 00 00 00 ${WELCOME.slice(6)}`)), DecodeError);
  assert.throws(() => decodeServerMsg(bytes("01 05 00 fd 01 00 00 00 00 00 00 00 00 00 00 00")), DecodeError);
  // 254 and 255 are never valid.
  for (const m of ["fe", "ff"]) assert.throws(() => decodeClientMsg(bytes(`02 ${m} ${"00 ".repeat(16)}`)), DecodeError);
  // A u64 above 2^53 is refused as unsupported, not rounded.
  assert.throws(() => decodeClientMsg(bytes("02 fd 00 00 00 00 00 00 20 00")), (e) => e instanceof DecodeError && e.kind === "Unsupported");
  assert.deepEqual(decodeClientMsg(bytes("02 fd ff ff ff ff ff ff 1f 00")), { type: "Ping", nonce: Number.MAX_SAFE_INTEGER });
  assert.throws(() => encodePing(2 ** 53), RangeError);
});

test("zig-zag: the i32 table of section 4", () => {
  /** @type {[number, string][]} */
  const table = [[0, "00"], [-1, "01"], [1, "02"], [-2, "03"], [125, "fa"], [-125, "f9"], [-126, "fb fb 00"],
    [126, "fb fc 00"], [-32_768, "fb ff ff"], [32_768, "fc 00 00 01 00"], [2_147_483_647, "fc fe ff ff ff"], [-2_147_483_648, "fc ff ff ff ff"]];
  for (const [v, h] of table) {
    // FieldChange.delta, the last value of a snapshot.
    const msg = { type: "Snapshot", tick: 2, baseTick: 1, lastInputSeq: 0, removed: [], changed: [], added: [], fields: [{ skip: 0, field: 0, delta: v }] };
    const encoded = encodeServerMsg(/** @type {any} */ (msg));
    assert.equal(hex(encoded.subarray(10)), h, `${v}`);
    assert.deepEqual(decodeServerMsg(encoded), msg);
  }
  // FieldChange.field is a raw byte: 251 is one byte fb.
  const raw = encodeServerMsg({ type: "Snapshot", tick: 2, baseTick: 1, lastInputSeq: 0, removed: [], changed: [], added: [], fields: [{ skip: 0, field: 251, delta: -1 }] });
  assert.equal(hex(raw), "04 02 01 00 00 00 00 01 00 fb 01");
  // fd (eight bytes) is refused in an i32.
  assert.throws(() => decodeServerMsg(bytes("04 02 01 00 00 00 00 01 00 00 fd 00 00 00 00 00 00 00 00")), DecodeError);
});

test("strings are strict UTF-8, and a leading U+FEFF is part of the name", () => {
  const name = "\uFEFFé🎮";
  const msg = decodeClientMsg(encodeHello(name, ""));
  assert.equal(/** @type {any} */ (msg).name, name);
  assert.throws(() => decodeClientMsg(bytes("00 02 02 c3 28 00 00")), DecodeError);
  // 300 bytes take a three-byte length.
  assert.equal(hex(encodeHello("x".repeat(300), "").subarray(2, 5)), "fb 2c 01");
});

test("what a decoder refuses: truncation, trailing bytes, unknown variants and tags, long payloads", () => {
  const refuse = (/** @type {string} */ h, /** @type {string} */ kind, server = true) =>
    assert.throws(() => (server ? decodeServerMsg : decodeClientMsg)(bytes(h)), (e) => e instanceof DecodeError && e.kind === kind, h);
  refuse(WELCOME.split(" ").slice(0, 50).join(" "), "Malformed");
  refuse(`${DELTA} 00`, "TrailingBytes");
  refuse("05 00", "Malformed");
  refuse("05 00", "Malformed", false);
  assert.doesNotThrow(() => decodeServerMsg(bytes("03 00")));
  // An added entity of kind 2; a Welcome field of kind 6.
  refuse("01 01 00 00 00 00 01 05 02 00 00 00 00 00", "Malformed");
  refuse(`${WELCOME.slice(0, -2)}06`, "Malformed");
  // The plain layout has no fields count; the field layout (4) without one is truncated,
  // and with an empty list it is valid (not what an encoder writes).
  assert.deepEqual(/** @type {any} */ (decodeServerMsg(bytes("01 01 00 00 00 00 01 05 01 00 00 00 00"))).fields, []);
  refuse("04 01 00 00 00 00 01 05 01 00 00 00 00", "Malformed");
  assert.deepEqual(decodeServerMsg(bytes("04 02 01 00 00 00 00 00")), decodeServerMsg(bytes("01 02 01 00 00 00 00")));
  refuse("01 02 01 00 00 00 00 00", "TrailingBytes");
  // An input: plain, or with a payload (an empty one is valid in the second form).
  assert.deepEqual(decodeClientMsg(bytes("04 01 00 00 80 3f 00 00 00 00 00 00")), decodeClientMsg(bytes(INPUT)));
  refuse(`${INPUT} 00`, "TrailingBytes", false);
  // Option tags other than 0 and 1; a 15-byte token; a token after tag 0.
  for (const tag of ["02", "7f", "fb", "ff"]) refuse(`${HELLO.slice(0, -2)}${tag} ${TOKEN}`, "Malformed", false);
  refuse(RESUME.slice(0, -3), "Malformed", false);
  refuse(`${HELLO} ${TOKEN}`, "TrailingBytes", false);
  // Input payloads: 32 bytes decode, 33 do not; an encoder refuses 33 as well.
  const input = (/** @type {number} */ n) => `${INPUT_PAYLOAD.slice(0, 32)} ${n.toString(16).padStart(2, "0")}${" fb".repeat(n)}`;
  assert.equal(/** @type {any} */ (decodeClientMsg(bytes(input(32)))).payload.length, 32);
  refuse(input(33), "Malformed", false);
  assert.throws(() => encodeInput(1, [0, 0], 0, new Uint8Array(33)), RangeError);
  // The server's size limit comes first.
  assert.throws(() => decodeClientMsg(bytes(PING), { maxBytes: 9 }), (e) => e instanceof DecodeError && e.kind === "TooLarge");
  refuse("", "Malformed");
  refuse("", "Malformed", false);
  // Encoders refuse values that do not fit their field.
  assert.throws(() => encodeInput(2 ** 32, [0, 0]), RangeError);
  assert.throws(() => encodeInput(1, [0, 0], 65_536), RangeError);
  assert.throws(() => encodeHello("a", "b", new Uint8Array(15)), RangeError);
});

test("the decode ceiling: what each record claims, the 699,048-entity keyframe, the client ceiling", () => {
  /** @param {number} r @param {number} c @param {number} a @param {number} f */
  const snapshot = (r, c, a, f) => encodeServerMsg({
    type: "Snapshot", tick: 1, baseTick: 0, lastInputSeq: 0,
    removed: new Array(r).fill(0),
    changed: Array.from({ length: c }, () => ({ skip: 0, dpos: [0, 0], dvel: [0, 0] })),
    added: Array.from({ length: a }, () => ({ idGap: 0, kind: "Npc", pos: [0, 0], vel: [0, 0] })),
    fields: Array.from({ length: f }, () => ({ skip: 0, field: 0, delta: 0 })),
  });
  /** @param {Uint8Array} msg @param {number} limit */
  const fits = (msg, limit) => {
    try {
      decodeServerMsg(msg, { limit });
      return true;
    } catch (e) {
      assert.ok(e instanceof DecodeError && /ceiling/.test(e.message), String(e));
      return false;
    }
  };
  // The plain header claims 48 (three list lengths), the one with field changes 56.
  for (const [counts, claim] of /** @type {[[number, number, number, number], number][]} */ ([
    [[0, 0, 0, 0], 48], [[3, 0, 0, 0], 48 + 12], [[0, 3, 0, 0], 48 + 60], [[0, 0, 3, 0], 48 + 72], [[0, 0, 0, 3], 56 + 27], [[1, 1, 1, 1], 56 + 57],
  ])) {
    assert.ok(fits(snapshot(...counts), claim), `${counts} fits in ${claim}`);
    assert.ok(!fits(snapshot(...counts), claim - 1), `${counts} does not fit in ${claim - 1}`);
  }
  // The real ceiling: one entity past 699,048 is refused before any is decoded.
  assert.equal(Math.floor((DECODE_ALLOC_LIMIT - 48) / 24), 699_048);
  const keyframe = (/** @type {number} */ n) => {
    const msg = new Uint8Array(7 + 4 + 6 * n);
    msg.set([1, 1, 0, 0, 0, 0, 0xfc]);
    new DataView(msg.buffer).setUint32(7, n, true);
    return msg;
  };
  assert.throws(() => decodeServerMsg(keyframe(699_049)), /ceiling/);
  assert.equal(/** @type {any} */ (decodeServerMsg(keyframe(1000))).added.length, 1000);
  // Client messages: a GameMessage of n bytes claims 12 + n, so 4,084 bytes at most.
  const message = (/** @type {number} */ n) => encodeMessage(new Uint8Array(n));
  assert.equal(CLIENT_ALLOC_LIMIT - 12, 4084);
  assert.equal(/** @type {any} */ (decodeClientMsg(message(4084))).payload.length, 4084);
  assert.throws(() => decodeClientMsg(message(4085)), /ceiling/);
  // A forged name length in a 7-byte Hello is refused without reading further.
  assert.throws(() => decodeClientMsg(bytes("00 01 fc 00 24 f4 00")), DecodeError);
  // A list longer than the message is refused before anything is allocated.
  assert.throws(() => decodeServerMsg(bytes("01 01 00 00 fd 00 00 00 00 00 00 00 01")), DecodeError);
});

test("seeded random messages of every kind round-trip", () => {
  let s = 12345;
  const rnd = (/** @type {number} */ n) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s % n;
  };
  const f32 = (/** @type {number} */ v) => Math.fround(v);
  const bytesOf = (/** @type {number} */ n) => Uint8Array.from({ length: rnd(n + 1) }, () => rnd(256));
  const i32 = () => (rnd(4) === 0 ? [-2147483648, 2147483647, -1, 0][rnd(4)] : rnd(200_001) - 100_000);
  for (let i = 0; i < 300; i++) {
    /** @type {any[]} */
    const client = [
      { type: "Hello", protocolVersion: rnd(3), name: "n".repeat(rnd(5)) + "é", room: "r".repeat(rnd(70)), resume: rnd(2) ? Uint8Array.from({ length: 16 }, () => rnd(256)) : null, authToken: rnd(2) ? "t".repeat(rnd(300)) : null },
      { type: "Input", seq: rnd(2 ** 31) * 2, movement: { x: f32(rnd(2001) / 7 - 100), y: f32(-rnd(100) / 3) }, buttons: rnd(65_536), payload: bytesOf(32) },
      { type: "Ping", nonce: rnd(2 ** 31) * 2 ** 21 + rnd(2 ** 21) },
      { type: "Message", payload: bytesOf(400) },
    ];
    for (const m of client) assert.deepEqual(decodeClientMsg(encodeClientMsg(m)), m);
    /** @type {any[]} */
    const server = [
      { type: "Welcome", protocolVersion: 2, playerId: rnd(2 ** 31), entityId: rnd(300), tickRate: rnd(65_536), serverTick: rnd(2 ** 31) * 4096, worldSize: { x: f32(rnd(5000) / 3), y: 1 }, sessionToken: Uint8Array.from({ length: 16 }, () => rnd(256)), posQuantum: f32(1 / (1 + rnd(64))), game: "g".repeat(rnd(20)), fields: Array.from({ length: rnd(9) }, () => ({ name: "f", kind: ["Bool", "U8", "I8", "U16", "I16", "I32"][rnd(6)] })) },
      { type: "Snapshot", tick: rnd(2 ** 31) * 3 + 1, baseTick: rnd(1000), lastInputSeq: rnd(2 ** 31) * 2 + 1, removed: Array.from({ length: rnd(5) }, () => rnd(2 ** 31) * 2), changed: Array.from({ length: rnd(5) }, () => ({ skip: rnd(300), dpos: [i32(), i32()], dvel: [i32(), i32()] })), added: Array.from({ length: rnd(5) }, () => ({ idGap: rnd(70_000), kind: rnd(2) ? "Npc" : "Avatar", pos: [i32(), i32()], vel: [i32(), i32()] })), fields: Array.from({ length: rnd(5) }, () => ({ skip: rnd(3), field: rnd(256), delta: i32() })) },
      { type: "Pong", nonce: rnd(2 ** 31) * 2 ** 21, serverTick: rnd(2 ** 31) },
      { type: "Event", payload: bytesOf(300) },
    ];
    for (const m of server) assert.deepEqual(decodeServerMsg(encodeServerMsg(m)), m);
  }
});
