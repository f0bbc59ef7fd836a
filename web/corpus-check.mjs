// @ts-check
// Runs the corpus that shared/tests/js_corpus.rs writes through web/tickcast.js:
//
//   node web/corpus-check.mjs <dir>
//
// <dir>/cases.jsonl holds one case a line, all produced by the Rust encoder and checked
// there against `World::apply` and the Rust decoders:
//   stream  a new client: start again from an empty world
//   snap    a snapshot: it must decode, re-encode to the same bytes, and apply to the
//           world the Rust client holds after it
//   bad     a snapshot `World::apply` refuses: the same DeltaError kind and values, and
//           the world unchanged
//   server  a server message (often damaged): refused by both decoders, or decoded to the
//           same values; `exact` ones must re-encode byte for byte
//   client  a client message, likewise, as the server decodes it; `exact` ones must be
//           what `encodeClientMsg` writes for those values
// Prints `corpus ok: N cases` and exits 0, or names the first failing line and exits 1.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  World,
  DecodeError,
  DeltaError,
  decodeServerMsg,
  decodeClientMsg,
  encodeServerMsg,
  encodeClientMsg,
  MAX_FIELDS,
} from "./tickcast.js";

/** @param {string} h */
const unhex = (h) => {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
};
/** @param {Uint8Array} b */
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

const f32view = new DataView(new ArrayBuffer(4));
/** An `f32` as the corpus writes it: its bits, or "NaN". @param {number} v */
const f32json = (v) => {
  if (Number.isNaN(v)) return "NaN";
  f32view.setFloat32(0, v, true);
  return f32view.getUint32(0, true);
};
/** @param {number | string} j */
const f32from = (j) => {
  if (j === "NaN") return NaN;
  f32view.setUint32(0, Number(j), true);
  return f32view.getFloat32(0, true);
};
/** @param {{x: number, y: number}} v */
const vec2json = (v) => ({ x: f32json(v.x), y: f32json(v.y) });

/**
 * A decoded message in the corpus's JSON shape (the Rust test writes the same keys in the
 * same order, so the two compare as strings).
 * @param {import("./tickcast.js").ServerMsg | import("./tickcast.js").ClientMsg} m
 */
function toJson(m) {
  switch (m.type) {
    case "Welcome":
      return {
        type: m.type, protocolVersion: m.protocolVersion, playerId: m.playerId, entityId: m.entityId,
        tickRate: m.tickRate, serverTick: m.serverTick, worldSize: vec2json(m.worldSize),
        sessionToken: hex(m.sessionToken), posQuantum: f32json(m.posQuantum), game: m.game,
        fields: m.fields.map((f) => ({ name: f.name, kind: f.kind })),
      };
    case "Snapshot":
      return {
        type: m.type, tick: m.tick, baseTick: m.baseTick, lastInputSeq: m.lastInputSeq, removed: m.removed,
        changed: m.changed.map((c) => ({ skip: c.skip, dpos: c.dpos, dvel: c.dvel })),
        added: m.added.map((a) => ({ idGap: a.idGap, kind: a.kind, pos: a.pos, vel: a.vel })),
        fields: m.fields.map((f) => ({ skip: f.skip, field: f.field, delta: f.delta })),
      };
    case "Pong":
      return { type: m.type, nonce: m.nonce, serverTick: m.serverTick };
    case "Event":
    case "Message":
      return { type: m.type, payload: hex(m.payload) };
    case "Hello":
      return { type: m.type, protocolVersion: m.protocolVersion, name: m.name, room: m.room, resume: m.resume ? hex(m.resume) : null, authToken: m.authToken };
    case "Input":
      return { type: m.type, seq: m.seq, movement: vec2json(m.movement), buttons: m.buttons, payload: hex(m.payload) };
    case "Ping":
      return { type: m.type, nonce: m.nonce };
  }
}

/**
 * The client message whose JSON is `j`.
 * @param {any} j
 * @returns {import("./tickcast.js").ClientMsg}
 */
function clientFromJson(j) {
  switch (j.type) {
    case "Hello":
      return { type: "Hello", protocolVersion: j.protocolVersion, name: j.name, room: j.room, resume: j.resume == null ? null : unhex(j.resume), authToken: j.authToken };
    case "Input":
      return { type: "Input", seq: j.seq, movement: { x: f32from(j.movement.x), y: f32from(j.movement.y) }, buttons: j.buttons, payload: unhex(j.payload) };
    case "Ping":
      return { type: "Ping", nonce: j.nonce };
    default:
      return { type: "Message", payload: unhex(j.payload) };
  }
}

/** A world as the corpus writes it. @param {World} w */
function worldJson(w) {
  const e = [];
  for (let i = 0; i < w.size; i++) {
    e.push([w.ids[i], w.kinds[i], w.pos[2 * i], w.pos[2 * i + 1], w.vel[2 * i], w.vel[2 * i + 1], ...w.fields.subarray(i * MAX_FIELDS, (i + 1) * MAX_FIELDS)]);
  }
  return { tick: w.tick, e };
}

class Failure extends Error {}
/** @param {boolean} ok @param {string} what */
const check = (ok, what) => {
  if (!ok) throw new Failure(what);
};
/** @param {unknown} a @param {unknown} b */
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Runs the cases of `text`; returns how many passed, or throws at the first that did not.
 * @param {string} text
 */
export function runCorpus(text) {
  const lines = text.split("\n").filter((l) => l.length > 0);
  let world = new World();
  lines.forEach((line, index) => {
    try {
      runCase(JSON.parse(line));
    } catch (error) {
      const why = error instanceof Failure ? error.message : `unexpected ${error instanceof Error ? error.stack : error}`;
      throw new Error(`case ${index} (line ${index + 1}): ${why}`);
    }
  });
  return lines.length;

  /** @param {any} c */
  function runCase(c) {
    switch (c.t) {
      case "stream":
        world = new World();
        return;
      case "snap": {
        const bytes = unhex(c.hex);
        const msg = decodeServerMsg(bytes);
        check(msg.type === "Snapshot", `not a snapshot: ${msg.type}`);
        if (msg.type !== "Snapshot") return;
        check(hex(encodeServerMsg(msg)) === c.hex, "re-encoding differs from the Rust bytes");
        world = world.apply(msg);
        const got = worldJson(world);
        check(same(got, c.world), `world differs:\n  js:   ${JSON.stringify(got).slice(0, 2000)}\n  rust: ${JSON.stringify(c.world).slice(0, 2000)}`);
        return;
      }
      case "bad": {
        const msg = decodeServerMsg(unhex(c.hex));
        if (msg.type !== "Snapshot") throw new Failure("not a snapshot");
        const before = JSON.stringify(worldJson(world));
        let error = null;
        try {
          world.apply(msg);
        } catch (e) {
          error = e;
        }
        check(error instanceof DeltaError, `applied, but Rust refuses it with ${JSON.stringify(c.error)}`);
        if (!(error instanceof DeltaError)) return;
        const got = { kind: error.kind, ...error.detail };
        check(same(got, c.error), `error ${JSON.stringify(got)}, Rust ${JSON.stringify(c.error)}`);
        check(JSON.stringify(worldJson(world)) === before, "the refused snapshot changed the world");
        return;
      }
      case "server":
      case "client": {
        const bytes = unhex(c.hex);
        const decode = c.t === "server" ? decodeServerMsg : decodeClientMsg;
        /** @type {any} */
        let msg = null;
        /** @type {unknown} */
        let error = null;
        try {
          msg = decode(bytes);
        } catch (e) {
          error = e;
        }
        if (c.msg === null) {
          check(error instanceof DecodeError, `decoded ${JSON.stringify(msg && toJson(msg))}, Rust refuses it`);
          return;
        }
        check(msg !== null, `refused (${error}), Rust decodes ${JSON.stringify(c.msg)}`);
        check(same(toJson(msg), c.msg), `decoded ${JSON.stringify(toJson(msg))}, Rust ${JSON.stringify(c.msg)}`);
        if (c.exact) {
          const again = c.t === "server" ? encodeServerMsg(msg) : encodeClientMsg(clientFromJson(c.msg));
          check(hex(again) === c.hex, `encodes as ${hex(again)}`);
        }
        return;
      }
      default:
        throw new Failure(`unknown case ${c.t}`);
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("corpus-check.mjs")) {
  const dir = process.argv[2];
  if (!dir) {
    console.error("usage: node web/corpus-check.mjs <dir written by shared/tests/js_corpus.rs>");
    process.exit(2);
  }
  try {
    const n = runCorpus(readFileSync(join(dir, "cases.jsonl"), "utf8"));
    console.log(`corpus ok: ${n} cases`);
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  }
}
