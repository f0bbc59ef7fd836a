// @ts-check
// Client cost of a snapshot in JavaScript: decoding a delta and applying it to the world,
// over 1,000 and 10,000 entities, the same snapshots as benches/frame.rs (a keyframe, then
// a delta one tick later in which one entity in ten turned).
//
//   TICKCAST_CORPUS_DIR=/tmp/tc cargo test -p tickcast-shared --test js_corpus
//   node web/bench.mjs /tmp/tc
//
// The input is written by the Rust encoder (bench.jsonl of the corpus). Prints medians of
// batches; the Rust figures to set beside them come from
// `cargo bench --bench frame -- 'codec/decode/snapshot/delta|apply/delta'`.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { World, decodeServerMsg } from "./tickcast.js";

/** @param {string} h */
const unhex = (h) => Uint8Array.from({ length: h.length / 2 }, (_, i) => parseInt(h.slice(2 * i, 2 * i + 2), 16));

/**
 * Median time of one call of `fn`, in microseconds: batches of calls sized to take about
 * 10 ms each, for about `ms` milliseconds in all, after a warm-up.
 * @param {() => unknown} fn
 */
function median(fn, ms = 1500) {
  let batch = 1;
  for (;;) {
    const t = performance.now();
    for (let i = 0; i < batch; i++) fn();
    if (performance.now() - t > 10) break;
    batch *= 2;
  }
  const samples = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const t = performance.now();
    for (let i = 0; i < batch; i++) fn();
    samples.push(((performance.now() - t) * 1000) / batch);
  }
  samples.sort((a, b) => a - b);
  return { us: samples[samples.length >> 1], samples: samples.length, batch };
}

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node web/bench.mjs <dir written by shared/tests/js_corpus.rs with TICKCAST_CORPUS_DIR>");
  process.exit(2);
}
console.log(`node ${process.version}, ${process.arch}`);
for (const line of readFileSync(join(dir, "bench.jsonl"), "utf8").split("\n").filter(Boolean)) {
  const { entities, keyframe, delta } = JSON.parse(line);
  const key = decodeServerMsg(unhex(keyframe));
  if (key.type !== "Snapshot") throw new Error("not a snapshot");
  const held = new World().apply(key);
  const bytes = unhex(delta);
  const snapshot = decodeServerMsg(bytes);
  if (snapshot.type !== "Snapshot") throw new Error("not a snapshot");
  // Worlds are not modified by apply, so the same delta applies to the same world each time.
  const decode = median(() => decodeServerMsg(bytes));
  const apply = median(() => held.apply(snapshot));
  const both = median(() => held.apply(/** @type {any} */ (decodeServerMsg(bytes))));
  console.log(
    `delta over ${entities} entities (${bytes.length} bytes, ${snapshot.changed.length} changed): ` +
      `decode ${decode.us.toFixed(2)} µs, apply ${apply.us.toFixed(2)} µs, decode+apply ${both.us.toFixed(2)} µs ` +
      `(medians of ${both.samples} batches of ${both.batch})`,
  );
}
