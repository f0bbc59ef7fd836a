// @ts-check
// Test doubles for the Client: a manual clock with timers, and a WebSocket class whose
// instances record what was sent and let the test play the server. No network.
// (This file is also picked up by `node --test web/test/` and simply has no tests.)

/** A clock that moves only when told, running due timers in time order. */
export class FakeClock {
  constructor(start = 1000) {
    this.t = start;
    /** @type {Map<number, { at: number, fn: () => void }>} */
    this.timers = new Map();
    this.nextId = 1;
  }
  now() {
    return this.t;
  }
  /** @param {() => void} fn @param {number} ms */
  setTimeout(fn, ms) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }
  /** @param {any} id */
  clearTimeout(id) {
    this.timers.delete(id);
  }
  /** Moves time forward by `ms`, running every timer that falls due on the way. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (next === null || timer.at < next[1].at || (timer.at === next[1].at && id < next[0]))) next = [id, timer];
      }
      if (next === null) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
  /** @returns {Clock} */
  get api() {
    return { now: () => this.now(), setTimeout: (f, ms) => this.setTimeout(f, ms), clearTimeout: (h) => this.clearTimeout(h) };
  }
}
/** @typedef {import("../tickcast.js").Clock} Clock */

/** Makes a WebSocket class whose instances are collected in `sockets`. */
export function fakeWebSocket() {
  /** @type {FakeSocket[]} */
  const sockets = [];
  class FakeSocket {
    /** @param {string} url @param {string | string[]} protocols */
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.binaryType = "blob";
      this.bufferedAmount = 0;
      this.readyState = 0;
      /** @type {Uint8Array[]} */
      this.sent = [];
      /** @type {{ code?: number, reason?: string } | null} */
      this.closedWith = null;
      /** @type {any} */ this.onopen = null;
      /** @type {any} */ this.onmessage = null;
      /** @type {any} */ this.onclose = null;
      /** @type {any} */ this.onerror = null;
      sockets.push(this);
    }
    /** @param {Uint8Array} data */
    send(data) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(data);
    }
    /** @param {number} [code] @param {string} [reason] */
    close(code, reason) {
      if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) {
        throw new Error(`InvalidAccessError: a page cannot close with ${code}`);
      }
      this.closedWith = { code, reason };
      this.readyState = 2;
    }
    // --- the server's side ---
    serverOpen() {
      this.readyState = 1;
      this.onopen?.({});
    }
    /** @param {Uint8Array} bytes */
    serverSend(bytes) {
      this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
    }
    /** @param {number} code @param {string} [reason] */
    serverClose(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }
  return { WebSocket: FakeSocket, sockets };
}
