// @ts-check
/**
 * tickcast for browsers and Node: the v2 wire protocol (docs/PROTOCOL.md), the snapshot
 * world a client rebuilds from keyframes and deltas, snapshot interpolation, prediction of
 * the player's own avatar, and a connection that resumes by itself.
 *
 * One ES module with no dependencies. The parts are layered the way the Rust crates are:
 * the codec and {@link World} are pure functions over bytes and values; {@link Interpolator},
 * {@link Predictor} and {@link Backoff} hold state but take the time as an argument; only
 * {@link Client} touches a WebSocket and timers, and both can be injected (tests drive it
 * with a fake socket class and a manual clock).
 *
 * Correctness is checked against the Rust encoder, not against this file: the corpus test
 * (shared/tests/js_corpus.rs) writes snapshots encoded by `shared::delta::diff` and the Rust
 * codec, with the world `World::apply` holds after each, and web/corpus-check.mjs requires
 * this module to decode and apply them to the same worlds and to refuse the same bad deltas
 * with the same error.
 *
 * @module tickcast
 */

// ---------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------

/** Version carried in `Hello` and `Welcome`. */
export const PROTOCOL_VERSION = 2;
/** The WebSocket subprotocol this module speaks. */
export const SUBPROTOCOL = "tickcast.v2";
/** Room a client joins when it names none. */
export const DEFAULT_ROOM = "lobby";
/** Integer fields every entity carries. */
export const MAX_FIELDS = 8;
/** Most bytes an `Input` payload may hold. */
export const MAX_INPUT_PAYLOAD = 32;
/** Longest player name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 32;
/** Ceiling on what one server message may claim when decoded (docs/PROTOCOL.md section 6). */
export const DECODE_ALLOC_LIMIT = 16 << 20;
/** The same ceiling for client messages, as the server applies it. */
export const CLIENT_ALLOC_LIMIT = 4 << 10;
/** Largest client message the server accepts by default. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;

/** `FieldKind` by wire index. */
export const FIELD_KINDS = /** @type {const} */ (["Bool", "U8", "I8", "U16", "I16", "I32"]);
/** `EntityKind` by wire index. */
export const ENTITY_KINDS = /** @type {const} */ (["Npc", "Avatar"]);

/**
 * The close codes of docs/PROTOCOL.md section 7, by name. 1006 is never sent on the wire;
 * it is what a WebSocket reports when the connection ended without a close frame.
 */
export const CloseCode = Object.freeze({
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  TextFrame: 1003,
  Abnormal: 1006,
  InvalidPayload: 1007,
  RateLimited: 1008,
  MessageTooBig: 1009,
  InternalError: 1011,
  RoomFull: 4000,
  VersionMismatch: 4001,
  UnexpectedMessage: 4002,
  IdleTimeout: 4003,
  HelloTimeout: 4004,
  SlowConsumer: 4005,
  RoomClosed: 4006,
  InvalidHello: 4007,
  SessionExpired: 4008,
  GameMessageRefused: 4009,
  AuthRequired: 4010,
  AuthInvalid: 4011,
  AuthExpired: 4012,
  AuthWrongRoom: 4013,
  Replaced: 4014,
});

// ---------------------------------------------------------------------------------------
// Message types
// ---------------------------------------------------------------------------------------

/** @typedef {{ x: number, y: number }} Vec2 */
/** @typedef {typeof FIELD_KINDS[number]} FieldKind */
/** @typedef {typeof ENTITY_KINDS[number]} EntityKind */
/** @typedef {{ name: string, kind: FieldKind }} FieldSpec */
/** @typedef {[number, number]} Pair Two `i32`, `x` then `y`. */

/**
 * @typedef {Object} Hello
 * @property {"Hello"} type
 * @property {number} protocolVersion
 * @property {string} name
 * @property {string} room
 * @property {Uint8Array | null} resume The 16-byte session token, or `null` for a new player.
 * @property {string | null} authToken A signed player token (a JWT from the game's backend)
 *   for servers that require one, or `null`. Sent as `HelloWithToken` (variant 5).
 */
/**
 * @typedef {Object} Input
 * @property {"Input"} type
 * @property {number} seq
 * @property {Vec2} movement
 * @property {number} buttons
 * @property {Uint8Array} payload 0 to 32 game-defined bytes.
 */
/**
 * @typedef {Object} Ping
 * @property {"Ping"} type
 * @property {number} nonce
 */
/**
 * @typedef {Object} GameMessage
 * @property {"Message"} type
 * @property {Uint8Array} payload
 */
/** @typedef {Hello | Input | Ping | GameMessage} ClientMsg */

/**
 * @typedef {Object} Welcome
 * @property {"Welcome"} type
 * @property {number} protocolVersion
 * @property {number} playerId
 * @property {number} entityId
 * @property {number} tickRate
 * @property {number} serverTick
 * @property {Vec2} worldSize
 * @property {Uint8Array} sessionToken A secret: never log it or put it in a URL.
 * @property {number} posQuantum
 * @property {string} game
 * @property {FieldSpec[]} fields
 */
/**
 * @typedef {Object} Changed
 * @property {number} skip
 * @property {Pair} dpos
 * @property {Pair} dvel
 */
/**
 * @typedef {Object} Added
 * @property {number} idGap
 * @property {EntityKind} kind
 * @property {Pair} pos
 * @property {Pair} vel
 */
/**
 * @typedef {Object} FieldChange
 * @property {number} skip
 * @property {number} field
 * @property {number} delta
 */
/**
 * @typedef {Object} Snapshot
 * @property {"Snapshot"} type
 * @property {number} tick
 * @property {number} baseTick 0 for a keyframe.
 * @property {number} lastInputSeq
 * @property {number[]} removed Id gaps.
 * @property {Changed[]} changed
 * @property {Added[]} added
 * @property {FieldChange[]} fields
 */
/**
 * @typedef {Object} Pong
 * @property {"Pong"} type
 * @property {number} nonce
 * @property {number} serverTick
 */
/**
 * @typedef {Object} GameEvent
 * @property {"Event"} type
 * @property {Uint8Array} payload
 */
/** @typedef {Welcome | Snapshot | Pong | GameEvent} ServerMsg */

// ---------------------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------------------

/**
 * Bytes that are not one valid message. `kind` says why, as the Rust `DecodeError` does:
 * `TooLarge` (refused before decoding), `Malformed` (truncated, unknown variant, bad
 * UTF-8, past the decode ceiling, ...), `TrailingBytes`; and `Unsupported` for a `u64`
 * above 2^53, which the Rust decoder takes but a JavaScript number cannot hold exactly.
 */
export class DecodeError extends Error {
  /**
   * @param {"TooLarge" | "Malformed" | "TrailingBytes" | "Unsupported"} kind
   * @param {string} message
   */
  constructor(kind, message) {
    super(message);
    this.name = "DecodeError";
    this.kind = kind;
  }
}

/** @param {string} what */
const malformed = (what) => new DecodeError("Malformed", `malformed message: ${what}`);

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const UTF8_OUT = new TextEncoder();
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const EMPTY = new Uint8Array(0);

/**
 * Reads bincode 2 `standard()` values, with the decode ceiling of the Rust codec: every
 * value claims its in-memory width (docs/PROTOCOL.md section 6), and a message whose claims
 * pass `limit` is malformed, whatever its length on the wire.
 */
class Reader {
  /**
   * @param {Uint8Array} bytes
   * @param {number} limit
   */
  constructor(bytes, limit) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 0;
    this.claimed = 0;
    this.limit = limit;
  }

  /** @param {number} n bytes claimed against the ceiling */
  claim(n) {
    this.claimed += n;
    if (this.claimed > this.limit) throw malformed("decode ceiling exceeded");
  }

  /** @param {number} n */
  need(n) {
    if (this.at + n > this.bytes.length) throw malformed("unexpected end");
  }

  /** A list count: a `u64` varint, at most the bytes left (every item takes one at least). */
  count() {
    const n = this.u64();
    if (n > this.bytes.length - this.at) throw malformed("list longer than the message");
    return n;
  }

  u8() {
    this.need(1);
    return this.bytes[this.at++];
  }

  u16() {
    const m = this.u8();
    if (m < 251) return m;
    if (m !== 251) throw malformed(`varint marker ${m} in a u16`);
    this.need(2);
    const v = this.view.getUint16(this.at, true);
    this.at += 2;
    return v;
  }

  u32() {
    const m = this.u8();
    if (m < 251) return m;
    if (m === 251) {
      this.need(2);
      const v = this.view.getUint16(this.at, true);
      this.at += 2;
      return v;
    }
    if (m !== 252) throw malformed(`varint marker ${m} in a u32`);
    this.need(4);
    const v = this.view.getUint32(this.at, true);
    this.at += 4;
    return v;
  }

  u64() {
    const m = this.bytes[this.at];
    if (m === 253) {
      this.need(9);
      const lo = this.view.getUint32(this.at + 1, true);
      const hi = this.view.getUint32(this.at + 5, true);
      this.at += 9;
      if (hi > 0x1fffff) throw new DecodeError("Unsupported", "integer above 2^53");
      return hi * 0x100000000 + lo;
    }
    if (m === 254 || m === 255) {
      this.at += 1;
      throw malformed(`varint marker ${m} in a u64`);
    }
    return this.u32();
  }

  i32() {
    const z = this.u32();
    return (z >>> 1) ^ -(z & 1);
  }

  f32() {
    this.need(4);
    const v = this.view.getFloat32(this.at, true);
    this.at += 4;
    return v;
  }

  /** @returns {Vec2} */
  vec2() {
    const x = this.f32();
    return { x, y: this.f32() };
  }

  /** @param {number} n @returns {Uint8Array} a copy of the next `n` bytes */
  raw(n) {
    this.need(n);
    const out = this.bytes.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }

  /** A byte string (`Vec<u8>`): claims 8 for the length and 1 per byte. */
  byteString() {
    const n = this.count();
    this.claim(8 + n);
    return this.raw(n);
  }

  string() {
    const n = this.count();
    this.claim(8 + n);
    this.need(n);
    try {
      const s = UTF8.decode(this.bytes.subarray(this.at, this.at + n));
      this.at += n;
      return s;
    } catch {
      throw malformed("invalid UTF-8");
    }
  }

  /** @returns {EntityKind} */
  entityKind() {
    const k = this.u32();
    if (k > 1) throw malformed(`entity kind ${k}`);
    return ENTITY_KINDS[k];
  }

  /** @returns {FieldKind} */
  fieldKind() {
    const k = this.u32();
    if (k >= FIELD_KINDS.length) throw malformed(`field kind ${k}`);
    return FIELD_KINDS[k];
  }

  finish() {
    if (this.at !== this.bytes.length) {
      throw new DecodeError("TrailingBytes", `${this.bytes.length - this.at} trailing bytes after the message`);
    }
  }
}

/**
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {Uint8Array}
 */
function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError("expected an ArrayBuffer or a typed array");
}

/**
 * Decodes one server message (the data of one WebSocket binary message). Never returns a
 * partial message: every list is read whole, trailing bytes are refused.
 *
 * @param {ArrayBuffer | ArrayBufferView} data
 * @param {{ limit?: number }} [options] `limit`: the decode ceiling, {@link DECODE_ALLOC_LIMIT} by default.
 * @returns {ServerMsg}
 * @throws {DecodeError}
 */
export function decodeServerMsg(data, options = {}) {
  const r = new Reader(asBytes(data), options.limit ?? DECODE_ALLOC_LIMIT);
  if (r.bytes.length === 0) throw malformed("empty message");
  /** @type {ServerMsg} */
  let msg;
  const variant = r.u32();
  switch (variant) {
    case 0: {
      // variant 4, version 2, ids 4 + 4, rate 2, tick 8, size 8, token 16, quantum 4,
      // and the fields list's length 8.
      r.claim(4 + 2 + 4 + 4 + 2 + 8 + 8 + 16 + 4 + 8);
      const protocolVersion = r.u16();
      const playerId = r.u32();
      const entityId = r.u32();
      const tickRate = r.u16();
      const serverTick = r.u64();
      const worldSize = r.vec2();
      const sessionToken = r.raw(16);
      const posQuantum = r.f32();
      const game = r.string();
      const n = r.count();
      /** @type {FieldSpec[]} */
      const fields = [];
      for (let i = 0; i < n; i++) {
        const name = r.string();
        r.claim(4);
        fields.push({ name, kind: r.fieldKind() });
      }
      msg = { type: "Welcome", protocolVersion, playerId, entityId, tickRate, serverTick, worldSize, sessionToken, posQuantum, game, fields };
      break;
    }
    case 1:
      msg = decodeSnapshotBody(r, false);
      break;
    case 4:
      msg = decodeSnapshotBody(r, true);
      break;
    case 2: {
      r.claim(4 + 8 + 8);
      const nonce = r.u64();
      msg = { type: "Pong", nonce, serverTick: r.u64() };
      break;
    }
    case 3:
      r.claim(4);
      msg = { type: "Event", payload: r.byteString() };
      break;
    default:
      throw malformed(`unknown ServerMsg variant ${variant}`);
  }
  r.finish();
  return msg;
}

/**
 * A snapshot: variant 1 is the plain layout (no field changes, as in v1), variant 4 the
 * one with the list of field changes appended (shared/src/wire.rs).
 * @param {Reader} r positioned after the variant index
 * @param {boolean} withFields
 * @returns {Snapshot}
 */
function decodeSnapshotBody(r, withFields) {
  // Variant 4, two ticks 8 + 8, last_input_seq 4, three or four list lengths 8 each.
  r.claim(withFields ? 56 : 48);
  const tick = r.u64();
  const baseTick = r.u64();
  const lastInputSeq = r.u32();
  let n = r.count();
  r.claim(4 * n);
  const removed = new Array(n);
  for (let i = 0; i < n; i++) removed[i] = r.u32();
  n = r.count();
  r.claim(20 * n);
  /** @type {Changed[]} */
  const changed = new Array(n);
  for (let i = 0; i < n; i++) {
    const skip = r.u32();
    const px = r.i32();
    const py = r.i32();
    const vx = r.i32();
    changed[i] = { skip, dpos: [px, py], dvel: [vx, r.i32()] };
  }
  n = r.count();
  r.claim(24 * n);
  /** @type {Added[]} */
  const added = new Array(n);
  for (let i = 0; i < n; i++) {
    const idGap = r.u32();
    const kind = r.entityKind();
    const px = r.i32();
    const py = r.i32();
    const vx = r.i32();
    added[i] = { idGap, kind, pos: [px, py], vel: [vx, r.i32()] };
  }
  n = withFields ? r.count() : 0;
  r.claim(9 * n);
  /** @type {FieldChange[]} */
  const fields = new Array(n);
  for (let i = 0; i < n; i++) {
    const skip = r.u32();
    const field = r.u8();
    fields[i] = { skip, field, delta: r.i32() };
  }
  return { type: "Snapshot", tick, baseTick, lastInputSeq, removed, changed, added, fields };
}

/**
 * Decodes one client message as the server does (size limit first, then the client decode
 * ceiling). For tools and tests: a client never receives these.
 *
 * @param {ArrayBuffer | ArrayBufferView} data
 * @param {{ maxBytes?: number }} [options] `maxBytes`: {@link DEFAULT_MAX_MESSAGE_BYTES} by default.
 * @returns {ClientMsg}
 * @throws {DecodeError}
 */
export function decodeClientMsg(data, options = {}) {
  const bytes = asBytes(data);
  const max = options.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (bytes.length > max) {
    throw new DecodeError("TooLarge", `message of ${bytes.length} bytes exceeds the limit of ${max}`);
  }
  const r = new Reader(bytes, CLIENT_ALLOC_LIMIT);
  if (bytes.length === 0) throw malformed("empty message");
  /** @type {ClientMsg} */
  let msg;
  const variant = r.u32();
  switch (variant) {
    case 0:
    case 5: {
      // 0: without a player token; 5: the token appended.
      r.claim(4 + 2);
      const protocolVersion = r.u16();
      const name = r.string();
      const room = r.string();
      r.claim(1);
      const tag = r.u8();
      /** @type {Uint8Array | null} */
      let resume = null;
      if (tag === 1) {
        r.claim(16);
        resume = r.raw(16);
      } else if (tag !== 0) throw malformed(`option tag ${tag}`);
      const authToken = variant === 5 ? r.string() : null;
      msg = { type: "Hello", protocolVersion, name, room, resume, authToken };
      break;
    }
    case 1:
    case 4: {
      // 1: the plain layout (no payload, as in v1); 4: the payload appended.
      r.claim(4 + 4 + 8 + 2);
      const seq = r.u32();
      const movement = r.vec2();
      const buttons = r.u16();
      const payload = variant === 4 ? r.byteString() : new Uint8Array(0);
      if (payload.length > MAX_INPUT_PAYLOAD) throw malformed(`input payload of ${payload.length} bytes`);
      msg = { type: "Input", seq, movement, buttons, payload };
      break;
    }
    case 2:
      r.claim(4 + 8);
      msg = { type: "Ping", nonce: r.u64() };
      break;
    case 3:
      r.claim(4);
      msg = { type: "Message", payload: r.byteString() };
      break;
    default:
      throw malformed(`unknown ClientMsg variant ${variant}`);
  }
  r.finish();
  return msg;
}

/** Writes bincode 2 `standard()` values into a growing buffer. */
class Writer {
  /** @param {number} [capacity] */
  constructor(capacity = 64) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
    this.at = 0;
  }

  /** @param {number} n */
  reserve(n) {
    if (this.at + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.at + n));
    next.set(this.buf.subarray(0, this.at));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** @param {number} v */
  u8(v) {
    if (!Number.isInteger(v) || v < 0 || v > 255) throw new RangeError(`${v} is not a u8`);
    this.reserve(1);
    this.buf[this.at++] = v;
    return this;
  }

  /**
   * @param {number} v
   * @param {number} [max] the largest value of the field's type
   */
  varint(v, max = MAX_SAFE) {
    if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${v} does not fit the field (0 to ${max})`);
    this.reserve(9);
    if (v < 251) {
      this.buf[this.at++] = v;
    } else if (v <= 0xffff) {
      this.buf[this.at] = 251;
      this.view.setUint16(this.at + 1, v, true);
      this.at += 3;
    } else if (v <= 0xffffffff) {
      this.buf[this.at] = 252;
      this.view.setUint32(this.at + 1, v, true);
      this.at += 5;
    } else {
      this.buf[this.at] = 253;
      this.view.setUint32(this.at + 1, v % 0x100000000, true);
      this.view.setUint32(this.at + 5, Math.floor(v / 0x100000000), true);
      this.at += 9;
    }
    return this;
  }

  /** @param {number} v */
  u16(v) {
    return this.varint(v, 0xffff);
  }

  /** @param {number} v */
  u32(v) {
    return this.varint(v, 0xffffffff);
  }

  /** @param {number} v */
  i32(v) {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`${v} is not an i32`);
    return this.varint(((v << 1) ^ (v >> 31)) >>> 0);
  }

  /** @param {number} v */
  f32(v) {
    this.reserve(4);
    this.view.setFloat32(this.at, v, true);
    this.at += 4;
    return this;
  }

  /** @param {Uint8Array} bytes */
  raw(bytes) {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.at);
    this.at += bytes.length;
    return this;
  }

  /** @param {Uint8Array} bytes */
  byteString(bytes) {
    return this.varint(bytes.length).raw(bytes);
  }

  /** @param {string} s */
  string(s) {
    return this.byteString(UTF8_OUT.encode(s));
  }

  /** @param {Pair} p */
  pair(p) {
    return this.i32(p[0]).i32(p[1]);
  }

  /** @param {EntityKind} k */
  entityKind(k) {
    const i = ENTITY_KINDS.indexOf(k);
    if (i < 0) throw new RangeError(`unknown entity kind ${k}`);
    return this.varint(i);
  }

  finish() {
    return this.buf.slice(0, this.at);
  }
}

/**
 * @param {Vec2 | [number, number]} m
 * @returns {Vec2}
 */
function toVec2(m) {
  return Array.isArray(m) ? { x: m[0], y: m[1] } : m;
}

/**
 * Encodes one client message.
 *
 * @param {ClientMsg} msg
 * @returns {Uint8Array}
 * @throws {RangeError} when a value does not fit its field (a payload over 32 bytes, a
 *   token that is not 16 bytes, a sequence number beyond `u32`).
 */
export function encodeClientMsg(msg) {
  const w = new Writer();
  switch (msg.type) {
    case "Hello":
      // Without a player token the plain variant 0; with one, variant 5 with it appended.
      w.u32(msg.authToken == null ? 0 : 5).u16(msg.protocolVersion).string(msg.name).string(msg.room);
      if (msg.resume == null) w.u8(0);
      else {
        if (msg.resume.length !== 16) throw new RangeError("a session token is 16 bytes");
        w.u8(1).raw(msg.resume);
      }
      if (msg.authToken != null) w.string(msg.authToken);
      break;
    case "Input":
      if (msg.payload.length > MAX_INPUT_PAYLOAD) {
        throw new RangeError(`an input payload is at most ${MAX_INPUT_PAYLOAD} bytes`);
      }
      // An empty payload costs nothing: the plain variant 1; else variant 4 with it.
      w.u32(msg.payload.length ? 4 : 1).u32(msg.seq).f32(msg.movement.x).f32(msg.movement.y).u16(msg.buttons);
      if (msg.payload.length) w.byteString(msg.payload);
      break;
    case "Ping":
      w.u32(2).varint(msg.nonce);
      break;
    case "Message":
      w.u32(3).byteString(msg.payload);
      break;
    default:
      throw new TypeError(`unknown client message ${/** @type {any} */ (msg).type}`);
  }
  return w.finish();
}

/**
 * Encodes one server message: what tests and tools use to build server bytes (the server
 * itself is the Rust crate).
 *
 * @param {ServerMsg} msg
 * @returns {Uint8Array}
 */
export function encodeServerMsg(msg) {
  const w = new Writer();
  switch (msg.type) {
    case "Welcome": {
      if (msg.sessionToken.length !== 16) throw new RangeError("a session token is 16 bytes");
      w.u32(0).u16(msg.protocolVersion).u32(msg.playerId).u32(msg.entityId).u16(msg.tickRate);
      w.varint(msg.serverTick).f32(msg.worldSize.x).f32(msg.worldSize.y).raw(msg.sessionToken);
      w.f32(msg.posQuantum).string(msg.game).varint(msg.fields.length);
      for (const f of msg.fields) {
        const k = FIELD_KINDS.indexOf(f.kind);
        if (k < 0) throw new RangeError(`unknown field kind ${f.kind}`);
        w.string(f.name).varint(k);
      }
      break;
    }
    case "Snapshot":
      w.reserve(16 + msg.removed.length * 5 + msg.changed.length * 21 + msg.added.length * 26 + msg.fields.length * 11);
      // No field changes: the plain variant 1; else variant 4 with the list appended.
      w.u32(msg.fields.length ? 4 : 1).varint(msg.tick).varint(msg.baseTick).u32(msg.lastInputSeq);
      w.varint(msg.removed.length);
      for (const g of msg.removed) w.u32(g);
      w.varint(msg.changed.length);
      for (const c of msg.changed) w.u32(c.skip).pair(c.dpos).pair(c.dvel);
      w.varint(msg.added.length);
      for (const a of msg.added) w.u32(a.idGap).entityKind(a.kind).pair(a.pos).pair(a.vel);
      if (msg.fields.length) {
        w.varint(msg.fields.length);
        for (const f of msg.fields) w.u32(f.skip).u8(f.field).i32(f.delta);
      }
      break;
    case "Pong":
      w.u32(2).varint(msg.nonce).varint(msg.serverTick);
      break;
    case "Event":
      w.u32(3).byteString(msg.payload);
      break;
    default:
      throw new TypeError(`unknown server message ${/** @type {any} */ (msg).type}`);
  }
  return w.finish();
}

/**
 * `Hello`: joins `room` (or resumes the player whose token is `resume`), with a signed
 * player token when the server requires one.
 * @param {string} name
 * @param {string} room
 * @param {Uint8Array | null} [resume]
 * @param {string | null} [authToken]
 */
export const encodeHello = (name, room, resume = null, authToken = null) =>
  encodeClientMsg({ type: "Hello", protocolVersion: PROTOCOL_VERSION, name, room, resume, authToken });

/**
 * `Input` with sequence number `seq`.
 * @param {number} seq
 * @param {Vec2 | [number, number]} movement
 * @param {number} [buttons]
 * @param {Uint8Array} [payload]
 */
export const encodeInput = (seq, movement, buttons = 0, payload = EMPTY) =>
  encodeClientMsg({ type: "Input", seq, movement: toVec2(movement), buttons, payload });

/** @param {number} nonce */
export const encodePing = (nonce) => encodeClientMsg({ type: "Ping", nonce });

/** @param {Uint8Array} payload */
export const encodeMessage = (payload) => encodeClientMsg({ type: "Message", payload });

// ---------------------------------------------------------------------------------------
// The world: keyframes and deltas
// ---------------------------------------------------------------------------------------

/**
 * Why a snapshot does not apply, with the same kinds and values as the Rust `DeltaError`:
 * `WrongBase {baseTick, held}`, `NotNewer {tick, baseTick}`, `KeyframeWithChanges`,
 * `UnknownRemoved {id}`, `ChangedOutOfRange {index}`, `BadAdded {id}`, `BadField {index}`.
 * The world it was applied to is unchanged (worlds are never changed: see {@link World}).
 */
export class DeltaError extends Error {
  /**
   * @param {"WrongBase" | "NotNewer" | "KeyframeWithChanges" | "UnknownRemoved" | "ChangedOutOfRange" | "BadAdded" | "BadField"} kind
   * @param {{ baseTick?: number, held?: number | null, tick?: number, id?: number, index?: number }} [detail]
   */
  constructor(kind, detail = {}) {
    super(`snapshot does not apply: ${kind} ${JSON.stringify(detail)}`);
    this.name = "DeltaError";
    this.kind = kind;
    this.detail = detail;
  }
}

/**
 * One entity as it travels: positions in quanta, velocities in quanta per tick.
 * @typedef {Object} QEntity
 * @property {number} id
 * @property {EntityKind} kind
 * @property {Pair} pos
 * @property {Pair} vel
 * @property {number[]} fields Eight `i32`.
 */

/**
 * A client's reconstruction of the world at one tick, sorted by id, in structure-of-arrays
 * form (typed arrays, quantised as on the wire).
 *
 * A World is never modified: {@link World#apply} returns a new one and shares the arrays
 * a snapshot did not touch (the ids and kinds of a delta without spawns, the fields of a
 * delta without field changes). So a refused snapshot cannot leave a half-applied world
 * (the all-or-nothing rule of `World::apply`), and the interpolation buffer can keep
 * worlds of several ticks without copying them. Treat the arrays as read-only.
 */
export class World {
  /**
   * @param {number | null} [tick] `null` before the first keyframe.
   * @param {Uint32Array} [ids]
   * @param {Uint8Array} [kinds] 0 Npc, 1 Avatar.
   * @param {Int32Array} [pos] x, y per entity.
   * @param {Int32Array} [vel] x, y per entity.
   * @param {Int32Array} [fields] {@link MAX_FIELDS} per entity.
   * @param {Float64Array | null} [updated] Per entity, the tick its position and velocity were
   *   last sent (`null`: `tick`, as for a world that was just received whole).
   */
  constructor(tick = null, ids = new Uint32Array(0), kinds = new Uint8Array(0), pos = new Int32Array(0), vel = new Int32Array(0), fields = new Int32Array(0), updated = null) {
    this.tick = tick;
    this.ids = ids;
    this.kinds = kinds;
    this.pos = pos;
    this.vel = vel;
    this.fields = fields;
    /**
     * Per entity, the tick at which the server last sent its position and velocity (it was
     * added or changed). A server under a bandwidth budget may leave an entity out of
     * deltas for a while (docs/PROTOCOL.md 5.1); its position is then extrapolated by its
     * velocity, and `tick - updated[i]` says for how many ticks.
     * @type {Float64Array}
     */
    this.updated = updated ?? new Float64Array(ids.length).fill(tick ?? 0);
  }

  /**
   * Where entity `i` is at `tick` (any tick, fractional for rendering) if nothing changes:
   * its position moved on by its velocity since this world's tick, in quanta. An entity with
   * velocity 0 stays where it is.
   * @param {number} i
   * @param {number} tick
   * @returns {[number, number]}
   */
  extrapolated(i, tick) {
    const k = tick - (this.tick ?? tick);
    return [this.pos[2 * i] + this.vel[2 * i] * k, this.pos[2 * i + 1] + this.vel[2 * i + 1] * k];
  }

  /** Number of entities. */
  get size() {
    return this.ids.length;
  }

  /**
   * Index of entity `id`, or -1.
   * @param {number} id
   */
  indexOf(id) {
    let lo = 0;
    let hi = this.ids.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.ids[mid];
      if (v === id) return mid;
      if (v < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /**
   * The entity at index `i`, as a plain object.
   * @param {number} i
   * @returns {QEntity}
   */
  entity(i) {
    return {
      id: this.ids[i],
      kind: ENTITY_KINDS[this.kinds[i]],
      pos: [this.pos[2 * i], this.pos[2 * i + 1]],
      vel: [this.vel[2 * i], this.vel[2 * i + 1]],
      fields: Array.from(this.fields.subarray(i * MAX_FIELDS, (i + 1) * MAX_FIELDS)),
    };
  }

  /** @returns {QEntity[]} every entity, in id order */
  entities() {
    const out = [];
    for (let i = 0; i < this.ids.length; i++) out.push(this.entity(i));
    return out;
  }

  /**
   * A world holding `entities` (sorted by id) at `tick`: for tests and tools.
   * @param {number | null} tick
   * @param {QEntity[]} entities
   */
  static from(tick, entities) {
    const n = entities.length;
    const w = new World(tick, new Uint32Array(n), new Uint8Array(n), new Int32Array(2 * n), new Int32Array(2 * n), new Int32Array(MAX_FIELDS * n));
    entities.forEach((e, i) => {
      w.ids[i] = e.id;
      w.kinds[i] = ENTITY_KINDS.indexOf(e.kind);
      w.pos.set(e.pos, 2 * i);
      w.vel.set(e.vel, 2 * i);
      w.fields.set(e.fields, MAX_FIELDS * i);
    });
    return w;
  }

  /**
   * Applies a snapshot: a keyframe replaces the world, a delta must name this world's tick
   * as its base. Follows docs/PROTOCOL.md section 5.1 and `delta::World::apply` step for
   * step, including which error a bad snapshot gets.
   *
   * @param {Snapshot} s
   * @returns {World} the world at `s.tick`; `this` is unchanged.
   * @throws {DeltaError} when the snapshot does not fit this world.
   */
  apply(s) {
    if (s.tick === 0) throw new DeltaError("NotNewer", { tick: 0, baseTick: s.baseTick });
    const keyframe = s.baseTick === 0;
    if (keyframe) {
      if (s.removed.length !== 0 || s.changed.length !== 0) throw new DeltaError("KeyframeWithChanges");
    } else {
      if (this.tick !== s.baseTick) throw new DeltaError("WrongBase", { baseTick: s.baseTick, held: this.tick });
      if (s.tick <= s.baseTick) throw new DeltaError("NotNewer", { tick: s.tick, baseTick: s.baseTick });
    }
    // Ticks since the base as a wrapping i32 (exact: both ticks are below 2^53).
    const k = (s.tick - s.baseTick) | 0;
    if (!keyframe && s.removed.length === 0 && s.added.length === 0) return this.applySameEntities(s, k);

    const n = keyframe ? 0 : this.ids.length;
    const ids = this.ids;
    // 2. Removed: the indices of the base entities that stay.
    const kept = new Int32Array(n);
    let m = 0;
    let r = 0;
    let next = s.removed.length > 0 ? s.removed[0] : -1;
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      if (next >= 0) {
        if (next === id) {
          r++;
          next = r < s.removed.length ? next + 1 + s.removed[r] : -1;
          continue;
        }
        if (next < id) throw new DeltaError("UnknownRemoved", { id: next });
      }
      kept[m++] = i;
    }
    if (next >= 0) throw new DeltaError("UnknownRemoved", { id: next });
    // 3. Changed: checked against what is left.
    checkChanged(m, s.changed);
    // 4. Added: ids in u32, none already held.
    const a = s.added.length;
    const addedIds = new Float64Array(a);
    let prev = -1;
    for (let j = 0; j < a; j++) {
      const id = prev < 0 ? s.added[j].idGap : prev + 1 + s.added[j].idGap;
      if (id > 0xffffffff) throw new DeltaError("BadAdded", { id });
      addedIds[j] = id;
      prev = id;
    }
    const total = m + a;
    const outIds = new Uint32Array(total);
    const outKinds = new Uint8Array(total);
    const outPos = new Int32Array(2 * total);
    const outVel = new Int32Array(2 * total);
    const outFields = new Int32Array(MAX_FIELDS * total);
    const outUpdated = new Float64Array(total);
    const keptAt = new Int32Array(m);
    const pos = this.pos;
    const vel = this.vel;
    let i = 0;
    let j = 0;
    for (let o = 0; o < total; o++) {
      if (j >= a || (i < m && ids[kept[i]] < addedIds[j])) {
        const src = kept[i];
        outIds[o] = ids[src];
        outKinds[o] = this.kinds[src];
        const vx = vel[2 * src];
        const vy = vel[2 * src + 1];
        outPos[2 * o] = (pos[2 * src] + Math.imul(vx, k)) | 0;
        outPos[2 * o + 1] = (pos[2 * src + 1] + Math.imul(vy, k)) | 0;
        outVel[2 * o] = vx;
        outVel[2 * o + 1] = vy;
        outFields.set(this.fields.subarray(src * MAX_FIELDS, (src + 1) * MAX_FIELDS), o * MAX_FIELDS);
        outUpdated[o] = this.updated[src] ?? s.baseTick;
        keptAt[i++] = o;
      } else {
        if (i < m && ids[kept[i]] === addedIds[j]) throw new DeltaError("BadAdded", { id: addedIds[j] });
        const e = s.added[j];
        outIds[o] = addedIds[j];
        outKinds[o] = e.kind === "Avatar" ? 1 : 0;
        outPos[2 * o] = e.pos[0];
        outPos[2 * o + 1] = e.pos[1];
        outVel[2 * o] = e.vel[0];
        outVel[2 * o + 1] = e.vel[1];
        outUpdated[o] = s.tick;
        j++;
      }
    }
    // Residuals of step 3, on the kept entities wherever they landed.
    let at = 0;
    for (const c of s.changed) {
      at += c.skip;
      const o = keptAt[at];
      outPos[2 * o] = (outPos[2 * o] + c.dpos[0]) | 0;
      outPos[2 * o + 1] = (outPos[2 * o + 1] + c.dpos[1]) | 0;
      outVel[2 * o] = (outVel[2 * o] + c.dvel[0]) | 0;
      outVel[2 * o + 1] = (outVel[2 * o + 1] + c.dvel[1]) | 0;
      outUpdated[o] = s.tick;
      at += 1;
    }
    // 5. Fields, checked on the new list before they are added.
    checkFields(total, s.fields);
    addFields(outFields, s.fields);
    return new World(s.tick, outIds, outKinds, outPos, outVel, outFields, outUpdated);
  }

  /**
   * The common delta (the same entities, some changed): predict and correct, sharing the
   * arrays it does not change. Everything is checked before anything is built.
   * @private
   * @param {Snapshot} s
   * @param {number} k
   */
  applySameEntities(s, k) {
    const n = this.ids.length;
    checkChanged(n, s.changed);
    checkFields(n, s.fields);
    const src = this.pos;
    const v = this.vel;
    const pos = new Int32Array(2 * n);
    if (k === 1) {
      for (let i = 0; i < 2 * n; i++) pos[i] = (src[i] + v[i]) | 0;
    } else {
      for (let i = 0; i < 2 * n; i++) pos[i] = (src[i] + Math.imul(v[i], k)) | 0;
    }
    let vel = v;
    let updated = this.updated;
    if (s.changed.length > 0) {
      vel = v.slice();
      updated = updated.slice();
      let at = 0;
      for (const c of s.changed) {
        at += c.skip;
        pos[2 * at] = (pos[2 * at] + c.dpos[0]) | 0;
        pos[2 * at + 1] = (pos[2 * at + 1] + c.dpos[1]) | 0;
        vel[2 * at] = (vel[2 * at] + c.dvel[0]) | 0;
        vel[2 * at + 1] = (vel[2 * at + 1] + c.dvel[1]) | 0;
        updated[at] = s.tick;
        at += 1;
      }
    }
    let fields = this.fields;
    if (s.fields.length > 0) {
      fields = fields.slice();
      addFields(fields, s.fields);
    }
    return new World(s.tick, this.ids, this.kinds, pos, vel, fields, updated);
  }
}

/**
 * Every `changed` entry lands on one of `len` entities.
 * @param {number} len
 * @param {Changed[]} changed
 */
function checkChanged(len, changed) {
  let at = 0;
  for (let n = 0; n < changed.length; n++) {
    at += changed[n].skip;
    if (at >= len) throw new DeltaError("ChangedOutOfRange", { index: n });
    at += 1;
  }
}

/**
 * Every field change lands on one of `len` entities, names a field that exists, and the
 * changes of one entity come in ascending field order.
 * @param {number} len
 * @param {FieldChange[]} changes
 */
function checkFields(len, changes) {
  let at = 0;
  let last = -1;
  for (let n = 0; n < changes.length; n++) {
    const c = changes[n];
    if (c.skip > 0) last = -1;
    at += c.skip;
    if (at >= len || c.field >= MAX_FIELDS || c.field <= last) throw new DeltaError("BadField", { index: n });
    last = c.field;
  }
}

/**
 * Adds checked field deltas, wrapping.
 * @param {Int32Array} fields
 * @param {FieldChange[]} changes
 */
function addFields(fields, changes) {
  let at = 0;
  for (const c of changes) {
    at += c.skip;
    const i = at * MAX_FIELDS + c.field;
    fields[i] = (fields[i] + c.delta) | 0;
  }
}

/**
 * `world.apply(snapshot)`, as a function.
 * @param {World} world
 * @param {Snapshot} snapshot
 */
export const applySnapshot = (world, snapshot) => world.apply(snapshot);

// ---------------------------------------------------------------------------------------
// World units
// ---------------------------------------------------------------------------------------

/**
 * An entity in world units, for drawing.
 * @typedef {Object} EntityView
 * @property {number} id
 * @property {EntityKind} kind
 * @property {number} x
 * @property {number} y
 * @property {number} vx Units per second.
 * @property {number} vy
 * @property {Int32Array} fields The eight fields (a view: do not modify).
 * @property {number} updated The tick its position and velocity were last sent
 *   ({@link World#updated}); older than the world's tick when the server left it out.
 * @property {boolean} [predicted] True for the player's own avatar when it comes from the {@link Predictor}.
 */

/**
 * Entity `i` of `world` in world units.
 * @param {World} world
 * @param {number} i
 * @param {number} quantum `Welcome.posQuantum`
 * @param {number} tickRate `Welcome.tickRate`
 * @returns {EntityView}
 */
export function entityView(world, i, quantum, tickRate) {
  const speed = quantum * tickRate;
  return {
    id: world.ids[i],
    kind: ENTITY_KINDS[world.kinds[i]],
    x: world.pos[2 * i] * quantum,
    y: world.pos[2 * i + 1] * quantum,
    vx: world.vel[2 * i] * speed,
    vy: world.vel[2 * i + 1] * speed,
    fields: world.fields.subarray(i * MAX_FIELDS, (i + 1) * MAX_FIELDS),
    updated: world.updated[i],
  };
}

// ---------------------------------------------------------------------------------------
// Interpolation
// ---------------------------------------------------------------------------------------

/**
 * @typedef {Object} InterpolatorOptions
 * @property {number} tickRate Ticks per second (`Welcome.tickRate`).
 * @property {number} posQuantum World units per quantum (`Welcome.posQuantum`).
 * @property {number} [delayTicks] Ticks rendered behind the newest one, before jitter: 2.
 * @property {boolean} [addJitter] Add the measured jitter to the delay: true.
 * @property {number} [capacity] Most snapshots kept: 64.
 * @property {number} [lateTicks] A snapshot this many ticks (or the delay, if longer)
 *   later than the clock expects counts as late: 4.
 * @property {number} [resetAfter] Consecutive late snapshots that re-anchor the clock (the
 *   stream stalled and resumed behind it): 3.
 */

/**
 * A buffer of worlds keyed by tick, and the render clock that samples it.
 *
 * Time comes from ticks: tick `t` happened at `t × 1000 / tickRate` ms of server time,
 * never from a wall clock. Each arrival at local time `a` of tick `t` is a sample of the
 * offset between the two clocks, `t × dt − a`. The estimate jumps up to a sample that is
 * ahead of it (a snapshot cannot arrive before it was made, so the largest offset is the
 * least delayed one) and drifts down slowly otherwise. The render time is then
 * `now + offset − delay`, where the delay is `delayTicks` ticks plus the measured jitter
 * (the mean deviation of the samples, as RFC 3550 measures it): the newest tick's time
 * minus the delay, moving smoothly between arrivals. Rendering never passes the newest
 * tick (no extrapolation) and never goes back.
 *
 * After a stall (the stream stopped and resumed with ticks that are late against the old
 * offset, as when a server's room paused or a tab slept), `resetAfter` late snapshots in a
 * row re-anchor the offset to them, so the buffer recovers its delay instead of lagging
 * behind by the length of the stall forever.
 */
export class Interpolator {
  /** @param {InterpolatorOptions} options */
  constructor(options) {
    this.tickMs = 1000 / Math.max(1, options.tickRate);
    this.tickRate = options.tickRate;
    this.quantum = options.posQuantum;
    this.delayTicks = options.delayTicks ?? 2;
    this.addJitter = options.addJitter ?? true;
    this.capacity = Math.max(2, options.capacity ?? 64);
    this.lateTicks = options.lateTicks ?? 4;
    this.resetAfter = options.resetAfter ?? 3;
    /** @type {World[]} worlds by ascending tick */
    this.buffer = [];
    /** @type {number | null} server time minus local time, ms */
    this.offset = null;
    /** Mean deviation of the arrival offsets, ms. */
    this.jitterMs = 0;
    this.late = 0;
    /** Times the clock was re-anchored after a stall. */
    this.resets = 0;
    /** @type {number | null} last render time handed out, in server ms */
    this.last = null;
  }

  /** The delay behind the newest tick, ms. */
  get delayMs() {
    return this.delayTicks * this.tickMs + (this.addJitter ? this.jitterMs : 0);
  }

  /** @returns {World | null} */
  get newest() {
    return this.buffer.length ? this.buffer[this.buffer.length - 1] : null;
  }

  /**
   * Adds the world of a snapshot that arrived at `now` (ms, any monotonic clock). A world
   * not newer than the newest held is ignored.
   * @param {World} world
   * @param {number} now
   */
  push(world, now) {
    if (world.tick == null) return;
    const newest = this.newest;
    if (newest && newest.tick != null && world.tick <= newest.tick) return;
    this.buffer.push(world);
    if (this.buffer.length > this.capacity) this.buffer.shift();
    const sample = world.tick * this.tickMs - now;
    if (this.offset == null) {
      this.offset = sample;
      return;
    }
    const deviation = this.offset - sample;
    if (deviation > Math.max(this.lateTicks * this.tickMs, this.delayMs)) {
      this.late += 1;
      if (this.late >= this.resetAfter) {
        this.offset = sample;
        this.late = 0;
        this.resets += 1;
      }
      return;
    }
    this.late = 0;
    this.jitterMs += (Math.abs(deviation) - this.jitterMs) / 16;
    if (sample > this.offset) this.offset = sample;
    else this.offset += (sample - this.offset) / 64;
  }

  /**
   * The tick to render at `now`, fractional, or `null` before the first snapshot.
   * @param {number} now
   */
  renderTick(now) {
    const newest = this.newest;
    if (!newest || newest.tick == null || this.offset == null) return null;
    let t = now + this.offset - this.delayMs;
    const newestMs = newest.tick * this.tickMs;
    if (t > newestMs) t = newestMs;
    if (this.last != null && t < this.last) t = this.last;
    this.last = t;
    // Older worlds than the bracket are no longer needed.
    while (this.buffer.length > 2 && /** @type {number} */ (this.buffer[1].tick) * this.tickMs <= t) this.buffer.shift();
    return t / this.tickMs;
  }

  /**
   * The entities to draw at `now`, in world units: each entity of the two worlds around
   * the render time, its position interpolated linearly (an entity not yet in the older
   * world is not drawn yet; one gone from the newer is drawn until its last tick).
   * @param {number} now
   * @returns {{ tick: number, entities: EntityView[] } | null}
   */
  sample(now) {
    const tick = this.renderTick(now);
    if (tick == null) return null;
    const b = this.buffer;
    let lo = 0;
    while (lo + 1 < b.length && /** @type {number} */ (b[lo + 1].tick) <= tick) lo++;
    const A = b[lo];
    const B = lo + 1 < b.length ? b[lo + 1] : null;
    const entities = [];
    const at = /** @type {number} */ (A.tick);
    const alpha = B ? (tick - at) / (/** @type {number} */ (B.tick) - at) : 0;
    let j = 0;
    for (let i = 0; i < A.ids.length; i++) {
      const e = entityView(A, i, this.quantum, this.tickRate);
      if (B && alpha > 0) {
        while (j < B.ids.length && B.ids[j] < e.id) j++;
        if (j < B.ids.length && B.ids[j] === e.id) {
          const f = entityView(B, j, this.quantum, this.tickRate);
          e.x += (f.x - e.x) * alpha;
          e.y += (f.y - e.y) * alpha;
          e.vx += (f.vx - e.vx) * alpha;
          e.vy += (f.vy - e.vy) * alpha;
          e.updated = f.updated;
        }
      }
      entities.push(e);
    }
    return { tick, entities };
  }

  /** Forgets everything (a new room, or a new player after 4008). */
  clear() {
    this.buffer = [];
    this.offset = null;
    this.jitterMs = 0;
    this.late = 0;
    this.last = null;
  }
}

// ---------------------------------------------------------------------------------------
// Prediction
// ---------------------------------------------------------------------------------------

/**
 * The player's avatar in world units.
 * @typedef {{ x: number, y: number, vx: number, vy: number }} Body
 */
/**
 * What a step of the game's movement rule may use.
 * @typedef {Object} StepContext
 * @property {number} dt Seconds per tick, as the server's `f32` `1 / tick_rate`.
 * @property {number} posQuantum
 * @property {Vec2} worldSize
 */
/**
 * One input as the predictor keeps it.
 * @typedef {{ seq: number, movement: Vec2, buttons: number, payload: Uint8Array }} SentInput
 */
/**
 * The movement rule of a game: the avatar one tick later, given the input the server
 * applies at that tick (`null`: no new input, the previous one persists).
 * @typedef {(body: Body, input: SentInput | null, ctx: StepContext) => Body} StepFn
 */

const f32 = Math.fround;

/** Rust's `f32::round`: half away from zero. @param {number} v */
const roundHalfAway = (v) => (v < 0 ? -Math.round(-v) : Math.round(v));

/**
 * The movement rule of an avatar that walks at `speed` units per second, the Arena's
 * (server/src/game/arena.rs) with another speed, in `f32` arithmetic like the server: an
 * input sets the velocity to its movement, clamped to length 1, times `speed`; each tick
 * the avatar moves by its velocity snapped to whole quanta per tick (`snap_step`), is
 * clamped to the world, and stops on the axis of a wall it hit.
 * @param {number} speed Units per second at full input.
 * @returns {StepFn}
 */
export function walkerStep(speed) {
  const full = f32(speed);
  return (body, input, ctx) => {
    let vx = body.vx;
    let vy = body.vy;
    if (input) {
      let mx = f32(input.movement.x);
      let my = f32(input.movement.y);
      const lengthSq = f32(f32(mx * mx) + f32(my * my));
      if (lengthSq > 1) {
        const length = f32(Math.sqrt(lengthSq));
        mx = f32(mx / length);
        my = f32(my / length);
      }
      vx = f32(mx * full);
      vy = f32(my * full);
    }
    const dt = f32(ctx.dt);
    const q = f32(ctx.posQuantum);
    const snap = (/** @type {number} */ v) => f32(roundHalfAway(f32(f32(v * dt) / q)) * q);
    let x = f32(body.x + snap(vx));
    let y = f32(body.y + snap(vy));
    const cx = Math.min(Math.max(x, 0), ctx.worldSize.x);
    const cy = Math.min(Math.max(y, 0), ctx.worldSize.y);
    if (cx !== x) vx = 0;
    if (cy !== y) vy = 0;
    x = cx;
    y = cy;
    return { x, y, vx, vy };
  };
}

/**
 * The Arena's rule for an avatar: {@link walkerStep} at 100 units/s. The default predictor.
 * @type {StepFn}
 */
export const arenaStep = walkerStep(100);

/**
 * @typedef {Object} PredictorOptions
 * @property {number} tickRate
 * @property {number} posQuantum
 * @property {Vec2} worldSize
 * @property {StepFn} [step] The game's movement rule; {@link arenaStep} by default.
 */

/**
 * Client-side prediction of the player's own avatar, with reconciliation.
 *
 * Every input sent is kept and stepped at once (so the avatar answers the controls
 * without waiting a round trip). Each snapshot gives the avatar's authoritative state and
 * `last_input_seq`: the inputs up to it are dropped, and the rest are replayed, one tick
 * each, on the authoritative state. One tick per input holds because {@link Client} sends
 * at most one input per tick and the server applies the newest input once per tick.
 */
export class Predictor {
  /** @param {PredictorOptions} options */
  constructor(options) {
    this.step = options.step ?? arenaStep;
    /** @type {StepContext} */
    this.ctx = { dt: f32(1 / Math.max(1, options.tickRate)), posQuantum: options.posQuantum, worldSize: options.worldSize };
    /** @type {SentInput[]} inputs not yet acknowledged, oldest first */
    this.pending = [];
    /** @type {Body | null} */
    this.state = null;
    /** Distance between the prediction before and after the last reconciliation. */
    this.correction = 0;
  }

  /**
   * An input was sent: keep it, and step the prediction with it.
   * @param {SentInput} input
   */
  sent(input) {
    this.pending.push(input);
    if (this.state) this.state = this.step(this.state, input, this.ctx);
  }

  /**
   * A snapshot arrived: `body` is the avatar in it, `lastInputSeq` the snapshot's.
   * @param {Body} body
   * @param {number} lastInputSeq
   * @returns {Body} the new prediction
   */
  reconcile(body, lastInputSeq) {
    let drop = 0;
    while (drop < this.pending.length && this.pending[drop].seq <= lastInputSeq) drop++;
    if (drop > 0) this.pending.splice(0, drop);
    let s = body;
    for (const input of this.pending) s = this.step(s, input, this.ctx);
    const before = this.state;
    this.correction = before ? Math.hypot(s.x - before.x, s.y - before.y) : 0;
    this.state = s;
    return s;
  }

  /** Forgets the inputs (a resumed connection numbers them from 1 again). */
  reset() {
    this.pending = [];
    this.state = null;
    this.correction = 0;
  }
}

// ---------------------------------------------------------------------------------------
// Reconnection policy
// ---------------------------------------------------------------------------------------

/**
 * @typedef {Object} ReconnectPolicy
 * @property {number} initial Ceiling of the first delay, ms (at least 1).
 * @property {number} max Largest ceiling, ms.
 * @property {number} budget Time from the loss after which no attempt is made, ms; the
 *   server's reconnect grace (10 s by default) is the useful maximum.
 */

/** The Rust client's defaults: 100 ms doubling up to 2 s, for 10 s. */
export const DEFAULT_RECONNECT = Object.freeze({ initial: 100, max: 2000, budget: 10000 });

/**
 * The delays of one reconnection: exponential backoff with full jitter, like
 * `client::reconnect::Backoff`. Each delay is drawn uniformly between zero and a ceiling
 * that doubles from `initial` up to `max`, so clients cut at once do not come back in
 * lockstep; a delay never passes the budget.
 */
export class Backoff {
  /**
   * @param {ReconnectPolicy} policy
   * @param {() => number} [random] uniform in [0, 1); `Math.random` by default.
   */
  constructor(policy, random = Math.random) {
    this.policy = policy;
    this.random = random;
    /** Delays handed out so far. */
    this.drawn = 0;
  }

  /**
   * Ceiling of the delay before attempt `attempt` (0 for the first).
   * @param {number} attempt
   */
  ceiling(attempt) {
    const initial = Math.max(1, this.policy.initial);
    return Math.min(initial * 2 ** Math.min(attempt, 60), Math.max(1, this.policy.max));
  }

  /**
   * How long to wait before the next attempt, `elapsed` ms after the loss; `null` once the
   * budget is spent.
   * @param {number} elapsed
   * @returns {number | null}
   */
  nextDelay(elapsed) {
    const remaining = this.policy.budget - elapsed;
    if (!(remaining > 0)) return null;
    const delay = this.random() * this.ceiling(this.drawn);
    this.drawn += 1;
    return Math.min(delay, remaining);
  }
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

/**
 * What the client needs of a WebSocket: the browser's, or any class with its shape.
 * @typedef {Object} SocketLike
 * @property {string} binaryType
 * @property {number} bufferedAmount
 * @property {number} readyState
 * @property {string} [protocol]
 * @property {((ev: any) => void) | null} onopen
 * @property {((ev: { data: any }) => void) | null} onmessage
 * @property {((ev: { code: number, reason: string }) => void) | null} onclose
 * @property {((ev: any) => void) | null} onerror
 * @property {(data: Uint8Array) => void} send
 * @property {(code?: number, reason?: string) => void} close
 */
/** @typedef {new (url: string, protocols: string | string[]) => SocketLike} SocketClass */

/**
 * Timers and a monotonic clock; injectable so that tests run without real time.
 * @typedef {Object} Clock
 * @property {() => number} now ms
 * @property {(fn: () => void, ms: number) => any} setTimeout
 * @property {(handle: any) => void} clearTimeout
 */

/**
 * @typedef {Object} ConnectOptions
 * @property {string} url The WebSocket endpoint, e.g. `wss://game.example/ws`.
 * @property {string} name Player name, 1 to 32 bytes of UTF-8.
 * @property {string} [room] {@link DEFAULT_ROOM} by default.
 * @property {Uint8Array | null} [resume] A session token from an earlier `Welcome`, to
 *   take that player back (a page reload within the server's grace).
 * @property {string} [ticket] A matchmaking ticket (`POST /matchmake`): used for the first
 *   connection only, since it is single use.
 * @property {string | null} [authToken] A signed player token from the game's backend, for
 *   servers that require player authentication: sent in every `Hello` (never in the URL).
 *   Close codes 4010 to 4013 say what the server thought of it.
 * @property {Record<string, string>} [params] More query parameters for every connection.
 * @property {SocketClass} [WebSocket] `globalThis.WebSocket` by default.
 * @property {Clock} [clock] `performance.now` and the global timers by default.
 * @property {Partial<ReconnectPolicy> | false} [reconnect] `false`: never resume by itself.
 * @property {() => number} [random] Jitter source of the backoff.
 * @property {number} [pingInterval] ms between automatic pings (0: none); 1000.
 * @property {number} [maxBufferedAmount] Bytes the socket may hold unsent before inputs
 *   and pings are held back; 1024.
 * @property {boolean} [repeatInput] Send the current controls every tick after the first
 *   `sendInput` (what prediction assumes); true.
 * @property {Omit<InterpolatorOptions, "tickRate" | "posQuantum">} [interpolation]
 * @property {StepFn | false} [predict] The game's movement rule for prediction;
 *   {@link arenaStep} by default, `false` for none.
 */

/**
 * @typedef {Object} ClientEvents
 * @property {{ welcome: Welcome }} welcome The first `Welcome` of the session.
 * @property {{ snapshot: Snapshot, world: World }} snapshot A snapshot, applied.
 * @property {{ payload: Uint8Array }} event A game event.
 * @property {{ rtt: number }} pong A round trip, ms.
 * @property {{ code: number, reason: string }} reconnecting The connection was lost; resuming.
 * @property {{ attempts: number, welcome: Welcome }} reconnected The server took the player back.
 * @property {{ code: number, reason: string }} close The session is over; nothing follows.
 * @property {{ error: Error }} error Something the server sent could not be used (the
 *   session then closes), or a listener threw.
 */

/** @typedef {"connecting" | "open" | "reconnecting" | "closed"} ClientState */

const OPEN = 1;

/**
 * A player's connection to a room: joins, keeps the world, interpolates and predicts,
 * sends inputs at most once per tick, and resumes by itself after a drop it did not choose
 * (close 1006 or 4003), as docs/PROTOCOL.md section 3 says. Create it with {@link connect}.
 */
export class Client {
  /** @param {ConnectOptions} options */
  constructor(options) {
    this.options = options;
    this.room = options.room ?? DEFAULT_ROOM;
    const Socket = options.WebSocket ?? /** @type {any} */ (globalThis).WebSocket;
    if (!Socket) throw new TypeError("no WebSocket class: pass options.WebSocket");
    /** @type {SocketClass} */
    this.Socket = Socket;
    /** @type {Clock} */
    this.clock = options.clock ?? {
      now: () => performance.now(),
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (h) => clearTimeout(h),
    };
    /** @type {ReconnectPolicy | null} */
    this.policy = options.reconnect === false ? null : { ...DEFAULT_RECONNECT, ...options.reconnect };
    this.pingInterval = options.pingInterval ?? 1000;
    this.maxBufferedAmount = options.maxBufferedAmount ?? 1024;
    this.repeatInput = options.repeatInput ?? true;
    /** @type {ClientState} */
    this.state = "connecting";
    /** @type {Welcome | null} */
    this.welcome = null;
    /** @type {Uint8Array | null} */
    this.token = options.resume ?? null;
    /** The world of the newest snapshot. */
    this.world = new World();
    /** @type {Interpolator | null} */
    this.interpolator = null;
    /** @type {Predictor | null} */
    this.predictor = null;
    /** @type {number | null} the last round-trip time, ms */
    this.rtt = null;
    /** Inputs held back because the socket had more than `maxBufferedAmount` unsent. */
    this.inputsHeld = 0;
    /** Newest `last_input_seq`. */
    this.ackedSeq = 0;
    /** @type {SocketLike | null} */
    this.ws = null;
    /** @type {Partial<Record<keyof ClientEvents, Set<(e: any) => void>>>} */
    this.listeners = {};
    /** @type {{ movement: Vec2, buttons: number, payload: Uint8Array } | null} */
    this.controls = null;
    this.seq = 0;
    /** @type {number | null} when an input was last due (sent, or held back) */
    this.lastAttemptAt = null;
    this.epoch = this.clock.now();
    /** @type {any} */
    this.inputTimer = null;
    /** @type {any} */
    this.pingTimer = null;
    /** @type {any} */
    this.retryTimer = null;
    /** @type {any} */
    this.budgetTimer = null;
    /** @type {Backoff | null} */
    this.backoff = null;
    this.attempts = 0;
    this.lostAt = 0;
    /** @type {{ code: number, reason: string }} */
    this.lostWith = { code: CloseCode.Abnormal, reason: "" };
    this.closeRequested = false;
    this.open(false);
  }

  // --- events ---------------------------------------------------------------------------

  /**
   * Listens to `type`; returns a function that stops listening.
   * @template {keyof ClientEvents} K
   * @param {K} type
   * @param {(event: ClientEvents[K]) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    const set = (this.listeners[type] ??= new Set());
    set.add(listener);
    return () => set.delete(listener);
  }

  /**
   * @template {keyof ClientEvents} K
   * @param {K} type
   * @param {ClientEvents[K]} event
   * @private
   */
  emit(type, event) {
    for (const listener of this.listeners[type] ?? []) {
      try {
        listener(event);
      } catch (error) {
        // A game's bug must not break the connection; report it, asynchronously if no
        // one listens to errors, as an uncaught error would be.
        if (type !== "error" && this.listeners.error?.size) {
          this.emit("error", { error: error instanceof Error ? error : new Error(String(error)) });
        } else queueMicrotask(() => { throw error; });
      }
    }
  }

  // --- connection -------------------------------------------------------------------------

  /**
   * @param {boolean} resuming
   * @private
   */
  open(resuming) {
    const url = new URL(this.options.url);
    url.searchParams.set("room", this.room);
    if (resuming) url.searchParams.set("resume", "1");
    else if (this.options.ticket) url.searchParams.set("ticket", this.options.ticket);
    for (const [k, v] of Object.entries(this.options.params ?? {})) url.searchParams.set(k, v);
    const ws = new this.Socket(url.toString(), SUBPROTOCOL);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      ws.send(encodeHello(this.options.name, this.room, this.token, this.options.authToken ?? null));
    };
    ws.onmessage = (ev) => {
      if (ws === this.ws) this.handleData(ev.data);
    };
    ws.onclose = (ev) => {
      if (ws === this.ws) this.handleClose(ev.code, ev.reason ?? "");
    };
    ws.onerror = () => {};
  }

  /**
   * @param {unknown} data
   * @private
   */
  handleData(data) {
    if (typeof data === "string") {
      this.fail(CloseCode.TextFrame, "text messages are not part of the protocol");
      return;
    }
    /** @type {ServerMsg} */
    let msg;
    try {
      msg = decodeServerMsg(/** @type {ArrayBuffer} */ (data));
    } catch (error) {
      this.fail(CloseCode.InvalidPayload, error instanceof Error ? error.message : String(error));
      return;
    }
    const now = this.clock.now();
    switch (msg.type) {
      case "Welcome":
        this.handleWelcome(msg);
        break;
      case "Snapshot":
        this.handleSnapshot(msg, now);
        break;
      case "Pong": {
        const rtt = now - (this.epoch + msg.nonce / 1000);
        if (rtt >= 0) {
          this.rtt = rtt;
          this.emit("pong", { rtt });
        }
        break;
      }
      case "Event":
        if (this.state === "open") this.emit("event", { payload: msg.payload });
        break;
    }
  }

  /**
   * @param {Welcome} w
   * @private
   */
  handleWelcome(w) {
    if (this.state === "open") {
      this.fail(CloseCode.UnexpectedMessage, "a second Welcome");
      return;
    }
    const resumed = this.state === "reconnecting";
    this.welcome = w;
    this.token = w.sessionToken;
    this.seq = 0;
    this.ackedSeq = 0;
    this.lastAttemptAt = null;
    this.clearRetry();
    if (!this.interpolator) {
      this.interpolator = new Interpolator({ tickRate: w.tickRate, posQuantum: w.posQuantum, ...this.options.interpolation });
    }
    if (this.options.predict !== false) {
      this.predictor ??= new Predictor({ tickRate: w.tickRate, posQuantum: w.posQuantum, worldSize: w.worldSize, step: this.options.predict });
      this.predictor.reset();
    }
    this.state = "open";
    this.schedulePing();
    if (this.controls && this.repeatInput) this.scheduleInput(0);
    if (resumed) this.emit("reconnected", { attempts: this.attempts, welcome: w });
    else this.emit("welcome", { welcome: w });
  }

  /**
   * @param {Snapshot} s
   * @param {number} now
   * @private
   */
  handleSnapshot(s, now) {
    const w = this.welcome;
    if (this.state !== "open" || !w) {
      this.fail(CloseCode.UnexpectedMessage, "a snapshot before the Welcome");
      return;
    }
    let world;
    try {
      world = this.world.apply(s);
    } catch (error) {
      this.fail(CloseCode.InvalidPayload, error instanceof Error ? error.message : String(error));
      return;
    }
    this.world = world;
    if (s.lastInputSeq <= this.seq && s.lastInputSeq > this.ackedSeq) this.ackedSeq = s.lastInputSeq;
    this.interpolator?.push(world, now);
    const i = world.indexOf(w.entityId);
    if (this.predictor && i >= 0) {
      const e = entityView(world, i, w.posQuantum, w.tickRate);
      this.predictor.reconcile({ x: e.x, y: e.y, vx: e.vx, vy: e.vy }, this.ackedSeq);
    }
    this.emit("snapshot", { snapshot: s, world });
  }

  /**
   * @param {number} code
   * @param {string} reason
   * @private
   */
  handleClose(code, reason) {
    this.stopTimers();
    this.ws = null;
    if (this.state === "closed") return;
    const lost = code === CloseCode.Abnormal || code === CloseCode.IdleTimeout;
    if (this.closeRequested || !lost || !this.token || !this.policy) {
      if (this.state === "reconnecting" && code === CloseCode.SessionExpired) this.token = null;
      this.finish(code, reason);
      return;
    }
    if (this.state === "open" || (this.state === "connecting" && this.options.resume)) {
      // A drop we did not choose: resume within the server's grace.
      this.state = "reconnecting";
      this.backoff = new Backoff(this.policy, this.options.random);
      this.attempts = 0;
      this.lostAt = this.clock.now();
      this.lostWith = { code, reason };
      this.budgetTimer = this.clock.setTimeout(() => this.giveUp(), this.policy.budget);
      this.emit("reconnecting", { code, reason });
    }
    if (this.state !== "reconnecting") {
      this.finish(code, reason);
      return;
    }
    this.scheduleAttempt();
  }

  /** @private */
  scheduleAttempt() {
    const delay = this.backoff?.nextDelay(this.clock.now() - this.lostAt) ?? null;
    if (delay == null) {
      this.giveUp();
      return;
    }
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = null;
      if (this.state !== "reconnecting") return;
      this.attempts += 1;
      this.open(true);
    }, delay);
  }

  /** @private */
  giveUp() {
    if (this.state !== "reconnecting") return;
    const ws = this.ws;
    this.ws = null;
    // An attempt still running is cut short; it never sent a Hello that counts.
    if (ws) ws.close(CloseCode.Normal, "reconnect budget spent");
    this.finish(this.lostWith.code, `reconnect failed after ${this.attempts} attempts`);
  }

  /**
   * Ends the session because of something the server sent. Browsers only let a page close
   * with 1000 or 3000-4999, so the socket is closed with 1000 (which also ends the session
   * on the server, as a broken stream must); the `close` event carries the real reason.
   * @param {number} code
   * @param {string} reason
   * @private
   */
  fail(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.emit("error", { error: new Error(reason) });
    if (ws) ws.close(CloseCode.Normal, reason.slice(0, 100));
    this.finish(code, reason);
  }

  /**
   * @param {number} code
   * @param {string} reason
   * @private
   */
  finish(code, reason) {
    if (this.state === "closed") return;
    this.state = "closed";
    this.stopTimers();
    this.clearRetry();
    this.emit("close", { code, reason });
  }

  /** @private */
  stopTimers() {
    if (this.inputTimer != null) this.clock.clearTimeout(this.inputTimer);
    if (this.pingTimer != null) this.clock.clearTimeout(this.pingTimer);
    this.inputTimer = null;
    this.pingTimer = null;
  }

  /** @private */
  clearRetry() {
    if (this.retryTimer != null) this.clock.clearTimeout(this.retryTimer);
    if (this.budgetTimer != null) this.clock.clearTimeout(this.budgetTimer);
    this.retryTimer = null;
    this.budgetTimer = null;
  }

  // --- sending --------------------------------------------------------------------------

  /** @private */
  get tickMs() {
    return 1000 / Math.max(1, this.welcome?.tickRate ?? 30);
  }

  /**
   * True when the socket has room: more than `maxBufferedAmount` bytes still unsent means
   * the network is not keeping up, and another input would only wait behind the old ones.
   * @private
   */
  writable() {
    const ws = this.ws;
    return this.state === "open" && ws != null && ws.readyState === OPEN && ws.bufferedAmount <= this.maxBufferedAmount;
  }

  /**
   * Sets the player's controls. They are sent at once unless an input already went out
   * less than a tick ago, else at the next tick (latest wins, as on the server); with
   * `repeatInput` they are sent again every tick until changed. An input that finds the
   * socket backed up is held back, not queued: the next tick sends the newest one.
   *
   * @param {Vec2 | [number, number]} movement Finite; the server clamps its length to 1.
   * @param {number} [buttons] Game-defined bits, `u16`.
   * @param {Uint8Array} [payload] 0 to 32 game-defined bytes.
   * @returns {boolean} false when not connected (the controls are kept for later).
   * @throws {RangeError} for a non-finite movement, a payload over 32 bytes, buttons beyond `u16`.
   */
  sendInput(movement, buttons = 0, payload = EMPTY) {
    const m = toVec2(movement);
    if (!Number.isFinite(m.x) || !Number.isFinite(m.y)) throw new RangeError("movement must be finite");
    if (payload.length > MAX_INPUT_PAYLOAD) throw new RangeError(`an input payload is at most ${MAX_INPUT_PAYLOAD} bytes`);
    if (!Number.isInteger(buttons) || buttons < 0 || buttons > 0xffff) throw new RangeError("buttons are a u16");
    this.controls = { movement: { x: m.x, y: m.y }, buttons, payload };
    if (this.state !== "open") return false;
    const now = this.clock.now();
    if (this.lastAttemptAt == null || now - this.lastAttemptAt >= this.tickMs) {
      if (this.inputTimer != null) this.clock.clearTimeout(this.inputTimer);
      this.inputTimer = null;
      this.flushInput();
    } else if (this.inputTimer == null) {
      this.scheduleInput(this.lastAttemptAt + this.tickMs - now);
    }
    return true;
  }

  /**
   * @param {number} delay
   * @private
   */
  scheduleInput(delay) {
    if (this.inputTimer != null) this.clock.clearTimeout(this.inputTimer);
    this.inputTimer = this.clock.setTimeout(() => {
      this.inputTimer = null;
      this.flushInput();
    }, Math.max(0, delay));
  }

  /** @private */
  flushInput() {
    const c = this.controls;
    if (!c || this.state !== "open") return;
    this.lastAttemptAt = this.clock.now();
    if (this.writable()) {
      const seq = ++this.seq;
      /** @type {SocketLike} */ (this.ws).send(encodeInput(seq, c.movement, c.buttons, c.payload));
      this.predictor?.sent({ seq, movement: c.movement, buttons: c.buttons, payload: c.payload });
      if (this.repeatInput) this.scheduleInput(this.tickMs);
    } else {
      // Held back, not dropped: the newest controls go at the next tick if there is room.
      this.inputsHeld += 1;
      this.scheduleInput(this.tickMs);
    }
  }

  /**
   * Sends a reliable message to the game. Never held back: game messages are the game's
   * reliable channel, so they queue behind whatever the socket holds.
   * @param {Uint8Array} payload
   * @returns {boolean} false when not connected (the message was not sent).
   */
  sendMessage(payload) {
    if (this.state !== "open" || !this.ws) return false;
    this.ws.send(encodeMessage(payload));
    return true;
  }

  /**
   * Sends a ping now (automatic ones go every `pingInterval`). Held back, like inputs,
   * when the socket is backed up: it would only measure the backlog.
   * @returns {boolean} whether it was sent
   */
  ping() {
    if (!this.writable()) return false;
    const nonce = Math.max(0, Math.round((this.clock.now() - this.epoch) * 1000));
    /** @type {SocketLike} */ (this.ws).send(encodePing(nonce));
    return true;
  }

  /** @private */
  schedulePing() {
    if (!(this.pingInterval > 0)) return;
    this.ping();
    this.pingTimer = this.clock.setTimeout(() => {
      this.pingTimer = null;
      if (this.state === "open") this.schedulePing();
    }, this.pingInterval);
  }

  /**
   * Leaves: closes with `code` (1000 by default), which ends the session on the server,
   * and stops any reconnection. The `close` event follows.
   * @param {number} [code]
   * @param {string} [reason]
   */
  close(code = CloseCode.Normal, reason = "bye") {
    if (this.state === "closed") return;
    this.closeRequested = true;
    const ws = this.ws;
    if (this.state === "reconnecting" || !ws) {
      this.ws = null;
      if (ws) ws.close(code, reason);
      this.finish(code, reason);
      return;
    }
    this.stopTimers();
    ws.close(code, reason);
  }

  // --- reading --------------------------------------------------------------------------

  /**
   * The player's own avatar as predicted, in world units, or `null` before the first
   * snapshot that holds it (or without prediction).
   * @returns {Body | null}
   */
  get predicted() {
    return this.predictor?.state ?? null;
  }

  /**
   * What to draw at `now` (ms on the client's clock): the interpolated world, with the
   * player's own avatar at its predicted place.
   * @param {number} [now]
   * @returns {{ tick: number, entities: EntityView[] } | null}
   */
  sample(now = this.clock.now()) {
    const out = this.interpolator?.sample(now) ?? null;
    const own = this.predicted;
    const w = this.welcome;
    if (!out || !own || !w) return out;
    const i = out.entities.findIndex((e) => e.id === w.entityId);
    if (i >= 0) out.entities[i] = { ...out.entities[i], ...own, predicted: true };
    return out;
  }
}

/**
 * Connects to a room; the `welcome` event (or `close`) follows.
 * @param {ConnectOptions} options
 * @returns {Client}
 */
export function connect(options) {
  return new Client(options);
}
