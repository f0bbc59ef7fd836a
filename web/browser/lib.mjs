// The node side of tests/browser.rs: what every scenario shares.
//
// A scenario is `node web/browser/<name>.mjs '<json args>'`. It drives Debian's Chromium
// through puppeteer-core (which never downloads a browser) and talks to the Rust test
// over its standard streams, one JSON object per line:
// - `{"step": NAME, ...}` on stdout: the scenario reached NAME and waits; the test does
//   what that step needs (cuts a connection, reads what its bots saw) and answers with
//   one JSON line on stdin, which `step()` returns.
// - `{"browser": PID}` on stdout, once Chromium runs: its pid, which is also the id of
//   its process group.
// - `{"result": {...}}` on stdout: the last line of a run that went to its end, written
//   once the browser is closed.
// - `{"error": TEXT}` on stdout: the run failed (an exception, or the deadline).
// Nothing else goes to stdout; diagnostics go to stderr, which the test shows on failure.
//
// Every run is bounded: `args.deadlineMs` after the start node exits with 2 (and
// puppeteer kills the browser as node exits). The test ends node (SIGTERM, then SIGKILL)
// and Chromium's process group at its end, so a browser outlives neither its scenario
// nor its test.

import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

/** Chromium flags for this machine: headless, no sandbox (root), and no traffic
 *  beyond what the page itself opens (the network is closed: background fetches would
 *  only fail, slowly). Puppeteer adds its own defaults, among them the ones that stop
 *  a page in a window that is not in front from being throttled. */
export const CHROMIUM_FLAGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];

/** The scenario's arguments: the JSON object of argv[2]. */
export const args = JSON.parse(process.argv[2] ?? "{}");

const lines = createInterface({ input: process.stdin });
const waiting = [];
const queued = [];
lines.on("line", (line) => {
  const value = JSON.parse(line);
  const next = waiting.shift();
  if (next) next(value);
  else queued.push(value);
});

function emit(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

/** Tells the test that the scenario reached `name` (with `data`), and returns the
 *  test's answer once it has done its part. */
export function step(name, data = {}) {
  emit({ step: name, ...data });
  if (queued.length > 0) return Promise.resolve(queued.shift());
  return new Promise((resolve) => waiting.push(resolve));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `scenario(browser)` in a fresh Chromium, closes the browser, then prints the
 *  result (or the error) and exits. So when the test reads the result line, the
 *  browser has already gone. At the deadline, or on SIGTERM, node exits at once: on
 *  exit, puppeteer kills the browser's process group (a group of its own). */
export async function run(scenario) {
  let browser = null;
  process.on("SIGTERM", () => process.exit(143));
  const deadline = setTimeout(() => {
    emit({ error: `deadline of ${args.deadlineMs} ms passed` });
    process.exit(2);
  }, args.deadlineMs ?? 60_000);
  let outcome;
  try {
    browser = await puppeteer.launch({
      executablePath: args.chromium ?? "/usr/bin/chromium",
      headless: true,
      pipe: true,
      userDataDir: args.userDataDir,
      args: CHROMIUM_FLAGS,
      protocolTimeout: 30_000,
    });
    // The test kills this group too if node cannot.
    emit({ browser: browser.process()?.pid ?? null });
    outcome = { result: await scenario(browser) };
  } catch (e) {
    outcome = { error: String(e?.stack ?? e) };
  }
  await browser?.close().catch(() => {});
  clearTimeout(deadline);
  emit(outcome);
  lines.close();
  process.exit(outcome.error === undefined ? 0 : 1);
}

/** A new page in a window of its own (so that it is never a background tab, whose
 *  timers and frames the browser slows down), with its uncaught exceptions in
 *  `page.errors` and its console errors in `page.consoleErrors`. */
export async function openPage(browser, url) {
  const page = await browser.newPage({ type: "window" });
  page.errors = [];
  page.consoleErrors = [];
  page.on("pageerror", (e) => page.errors.push(String(e?.message ?? e)));
  page.on("console", (m) => {
    // The browser asks every origin for a favicon, which the server does not have.
    if (m.type() === "error" && !(m.location()?.url ?? "").endsWith("/favicon.ico")) {
      page.consoleErrors.push(m.text());
    }
  });
  await page.goto(url, { waitUntil: "load", timeout: 20_000 });
  return page;
}

/** Waits until `fn(arg)`, evaluated in the page, returns something truthy, and returns it. */
export async function until(page, what, fn, arg = null, timeout = 15_000) {
  try {
    const handle = await page.waitForFunction(fn, { polling: 20, timeout }, arg);
    const value = await handle.jsonValue();
    await handle.dispose();
    return value;
  } catch (e) {
    const state = await hook(page).catch((err) => String(err));
    throw new Error(`${what}: ${e.message}; tickcastPage: ${JSON.stringify(state)}`);
  }
}

/** Waits until the page has joined (state `playing`, with its ids). */
export function playing(page) {
  return until(
    page,
    "playing",
    () => {
      const t = window.tickcastPage;
      return t && t.state === "playing" && t.entityId != null && t.ownPosition() != null;
    },
  );
}

/** What the page's test hook shows now: every plain field, `entities()` and
 *  `ownPosition()`. */
export function hook(page) {
  return page.evaluate(() => {
    const t = window.tickcastPage;
    if (!t) return null;
    const plain = {};
    for (const k of [
      "state", "room", "playerId", "entityId", "players", "entityCount", "snapshotsPerSec",
      "bytesPerSec", "pingMs", "interpDelayMs", "reconnects", "frames", "frameMs", "lastClose",
    ]) plain[k] = t[k] ?? null;
    plain.entities = t.entities().map(({ id, kind, x, y }) => ({ id, kind, x, y }));
    plain.own = t.ownPosition();
    plain.dataState = document.body.dataset.state ?? null;
    plain.banner = document.getElementById("banner")?.textContent ?? null;
    return plain;
  });
}

/** Holds the key with DOM code `code` (KeyD, ArrowLeft, ...) for `ms` through the
 *  real keyboard of the DevTools protocol. Returns how long it was held as seen from
 *  here (from the press's acknowledgement to the release's) and as the page saw it
 *  (between its keydown and keyup events). */
export async function holdKey(page, code, ms) {
  await page.evaluate((code) => {
    const seen = (window.__h12Key = { down: null, up: null });
    const on = (type) =>
      window.addEventListener(type, (e) => {
        if (e.code === code && seen[type.slice(3)] === null) seen[type.slice(3)] = performance.now();
      });
    on("keydown");
    on("keyup");
  }, code);
  await page.keyboard.down(code);
  const down = performance.now();
  await sleep(ms);
  const beforeUp = performance.now();
  await page.keyboard.up(code);
  const releasedMs = performance.now() - down;
  const inPage = await page.evaluate(() => window.__h12Key);
  const pageHeldMs = inPage.down !== null && inPage.up !== null ? inPage.up - inPage.down : null;
  return { code, heldMs: beforeUp - down, releasedMs, pageHeldMs };
}

/** What the arena canvas shows: its size, the number of distinct colours, the pixels
 *  that differ from the most common colour (the background), and a digest of the
 *  pixels, so that two calls tell whether the picture changed. Read through an
 *  ImageBitmap, which works whatever context the page draws with. */
export function canvasStats(page) {
  return page.evaluate(async () => {
    const canvas = document.getElementById("game");
    if (!(canvas instanceof HTMLCanvasElement)) return null;
    const { width, height } = canvas;
    if (width === 0 || height === 0) return { width, height, colours: 0, drawn: 0, digest: 0 };
    const bitmap = await createImageBitmap(canvas);
    const copy = new OffscreenCanvas(width, height);
    const ctx = copy.getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    const px = new Uint32Array(ctx.getImageData(0, 0, width, height).data.buffer);
    const counts = new Map();
    let digest = 0;
    for (let i = 0; i < px.length; i++) {
      counts.set(px[i], (counts.get(px[i]) ?? 0) + 1);
      digest = (Math.imul(digest, 31) + px[i]) | 0;
    }
    const background = Math.max(...counts.values());
    return { width, height, colours: counts.size, drawn: px.length - background, digest };
  });
}

/** Records, in the page, every value `document.body.dataset.state` takes from now on
 *  (from the mutation records, so that a state held for less than a task is not
 *  missed) and every text the banner shows; `states(page)` reads them. */
export function recordStates(page) {
  return page.evaluate(() => {
    const rec = (window.__h12 = { before: [document.body.dataset.state ?? null], banners: [] });
    const banner = () => {
      const text = document.getElementById("banner")?.textContent?.trim() ?? "";
      if (text && !rec.banners.includes(text)) rec.banners.push(text);
    };
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.target === document.body && r.attributeName === "data-state") rec.before.push(r.oldValue);
      }
      banner();
    }).observe(document.body, {
      attributes: true,
      attributeOldValue: true,
      childList: true,
      subtree: true,
      characterData: true,
    });
  });
}

/** The states recorded since `recordStates(page)`, in order, without repeats, and
 *  the banner texts seen. */
export function states(page) {
  return page.evaluate(() => {
    const rec = window.__h12 ?? { before: [], banners: [] };
    const all = [...rec.before.slice(1), document.body.dataset.state ?? null];
    const seq = [rec.before[0]];
    for (const s of all) if (seq[seq.length - 1] !== s) seq.push(s);
    return { states: seq, banners: rec.banners };
  });
}

/** The median of some numbers (null for none). */
export function median(values) {
  const v = values.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}
