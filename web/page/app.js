// The playable page of a tickcast server (served at `/`, embedded in the server binary).
//
// Everything the protocol needs (codec, worlds, interpolation, prediction, resuming) is
// the client library `./tickcast.js`, used as a game would use it; this file is only the
// game's side: a room list, controls, drawing, a HUD, and the connection's messages.
//
// URL parameters: `room`, `name`, `autojoin=1` (join at once instead of showing the room
// list), `ws` (another WebSocket endpoint, e.g. through a proxy). A player token for a
// server that requires player authentication comes in the fragment, `#token=JWT` (a
// browser never sends the fragment to any server, unlike the query, so the token stays
// out of access logs and proxies), or is pasted into the lobby's token field. `window.tickcastPage` is
// a read-only view of the page's state for tests and for curious players (the contract is
// in the project's briefs; keep its names stable).

import { arenaStep, connect, MAX_FIELDS, MAX_NAME_BYTES, walkerStep } from "./tickcast.js";

/** @typedef {import("./tickcast.js").Client} Client */
/** @typedef {import("./tickcast.js").Welcome} Welcome */
/** @typedef {import("./tickcast.js").EntityView} EntityView */
/** @typedef {import("./tickcast.js").StepFn} StepFn */
/** @typedef {"lobby" | "connecting" | "playing" | "reconnecting" | "closed"} PageState */

const params = new URLSearchParams(location.search);

/** @param {string} id */
const el = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const canvas = /** @type {HTMLCanvasElement} */ (el("game"));
const g = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));

// --- page state ---------------------------------------------------------------------------

/** @type {PageState} */
let state = "lobby";
/** @type {Client | null} */
let client = null;
/** The room joined (or being joined) last. */
let room = params.get("room") || "lobby";
let name = cleanName(params.get("name") || `player-${Math.floor(1000 + Math.random() * 9000)}`);
/** The player token sent in every Hello (and to the matchmaker), or null on an open server. */
let authToken = tokenFromFragment();
/** @type {Welcome | null} */
let welcome = null;
/** Resumes done in this page's life. */
let reconnects = 0;
/** @type {{ code: number, reason: string } | null} */
let lastClose = null;
/** The player chose to leave: its close goes back to the room list, not to "closed". */
let leaving = false;
/** Index of the game's `it` and `score` fields (by name, from the Welcome), or -1. */
let itField = -1;
let scoreField = -1;

/** Values seen in the last second, for rates that read the same at any moment. */
class LastSecond {
  constructor() {
    /** @type {number[]} */
    this.times = [];
    /** @type {number[]} */
    this.values = [];
  }
  /** @param {number} now @param {number} value */
  add(now, value) {
    this.times.push(now);
    this.values.push(value);
    this.prune(now);
  }
  /** @param {number} now */
  prune(now) {
    let k = 0;
    while (k < this.times.length && this.times[k] <= now - 1000) k++;
    if (k) {
      this.times.splice(0, k);
      this.values.splice(0, k);
    }
  }
  /** @param {number} now */
  count(now) {
    this.prune(now);
    return this.times.length;
  }
  /** @param {number} now */
  sum(now) {
    this.prune(now);
    return this.values.reduce((a, b) => a + b, 0);
  }
}

const snapshotTimes = new LastSecond();
const bytesIn = new LastSecond();
const frameCosts = new LastSecond();
let frames = 0;

// --- the WebSocket, counted -------------------------------------------------------------

/**
 * The browser's WebSocket, counting what it receives (the library takes the class as an
 * option, so bandwidth is measured without touching the protocol code).
 */
class CountingSocket extends WebSocket {
  /** @param {string | URL} url @param {string | string[]} protocols */
  constructor(url, protocols) {
    super(url, protocols);
    this.addEventListener("message", (ev) => {
      const data = ev.data;
      const n = data instanceof ArrayBuffer ? data.byteLength : new TextEncoder().encode(String(data)).length;
      bytesIn.add(performance.now(), n);
    });
  }
}

/** The `token` of the page URL's fragment (`#token=...`), or null. */
function tokenFromFragment() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  return token?.trim() || null;
}

/** The WebSocket endpoint: `?ws=` if given, else `ws` beside this page (wss: under https:). */
/**
 * The WebSocket endpoint (no query) of a matchmaking answer's `url` when it names another
 * server (a cluster node's public URL); undefined when it is relative, i.e. this server.
 * @param {unknown} url
 * @returns {string | undefined}
 */
function endpointOf(url) {
  if (typeof url !== "string" || !/^wss?:\/\//.test(url)) return undefined;
  const u = new URL(url);
  u.search = "";
  u.hash = "";
  return u.toString();
}

function socketUrl() {
  const given = params.get("ws");
  if (given) return given;
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = "";
  url.hash = "";
  return url.toString();
}

// --- prediction rules -----------------------------------------------------------------------

/** True while the player's own avatar carries the `it` field (tag). */
function ownIsIt() {
  if (!client || !welcome || itField < 0) return false;
  const i = client.world.indexOf(welcome.entityId);
  return i >= 0 && client.world.fields[i * MAX_FIELDS + itField] !== 0;
}

/**
 * `tag`'s movement (server/src/game/tag.rs): the Arena's walk, at 120 units/s while it
 * and 100 otherwise.
 * @type {StepFn}
 */
const walkAsIt = walkerStep(120);
/** @type {StepFn} */
const tagStep = (body, input, ctx) => (ownIsIt() ? walkAsIt : arenaStep)(body, input, ctx);

/**
 * The rule of the game being played: tag's for `tag`, the Arena's otherwise (the
 * server corrects any other game's avatar at the next snapshot).
 * @type {StepFn}
 */
const predict = (body, input, ctx) => (welcome?.game === "tag" ? tagStep : arenaStep)(body, input, ctx);

// --- joining and leaving ----------------------------------------------------------------

/**
 * Joins `roomId` (with a matchmaking ticket if given), leaving any room first.
 * @param {string} roomId
 * @param {string} [ticket]
 */
/**
 * Joins `roomId`, with a matchmaking ticket if given. `at` is the WebSocket endpoint the
 * matchmaker named: in a cluster (`--redis`) the seat may be on another node, whose public
 * URL the answer carries; by default, this server's own endpoint.
 * @param {string} roomId
 * @param {string} [ticket]
 * @param {string} [at]
 */
function join(roomId, ticket, at) {
  if (client) {
    const old = client;
    client = null;
    old.close();
  }
  room = roomId;
  welcome = null;
  leaving = false;
  lastClose = null;
  setUrl(true);
  setState("connecting");
  const c = connect({
    url: at ?? socketUrl(),
    room: roomId,
    name,
    ...(ticket ? { ticket } : {}),
    ...(authToken ? { authToken } : {}),
    // The DOM's WebSocket type is stricter about handler arguments than the library's
    // `SocketLike`, though the class is exactly what the library uses by default.
    WebSocket: /** @type {any} */ (CountingSocket),
    predict,
  });
  client = c;
  c.on("welcome", (e) => {
    if (c !== client) return;
    useWelcome(e.welcome);
    setState("playing");
  });
  c.on("snapshot", () => {
    if (c === client) snapshotTimes.add(performance.now(), 1);
  });
  c.on("event", (e) => {
    if (c === client) showEvent(describeEvent(e.payload));
  });
  c.on("reconnecting", () => {
    if (c === client) setState("reconnecting");
  });
  c.on("reconnected", (e) => {
    if (c !== client) return;
    reconnects += 1;
    useWelcome(e.welcome);
    setState("playing");
  });
  c.on("close", (e) => {
    if (c !== client) return;
    lastClose = { code: e.code, reason: e.reason };
    if (leaving) {
      client = null;
      showLobby();
    } else {
      setState("closed");
    }
  });
  c.on("error", (e) => console.warn("tickcast:", e.error.message));
  // Keys already held go out at the Welcome; an idle player sends nothing but pings
  // until the first key (the client repeats the controls every tick once it has some).
  if (held.size || stick) sendControls();
}

/** @param {Welcome} w */
function useWelcome(w) {
  welcome = w;
  itField = w.fields.findIndex((f) => f.name === "it");
  scoreField = w.fields.findIndex((f) => f.name === "score");
  el("hud-game").textContent = w.game;
  document.title = `tickcast: ${room}`;
}

function leave() {
  if (!client) return showLobby();
  leaving = true;
  client.close(1000, "left");
}

function showLobby() {
  setUrl(false);
  setState("lobby");
  refreshRooms();
}

/**
 * Keeps the address bar useful: while in a room, reloading rejoins it.
 * @param {boolean} inRoom
 */
function setUrl(inRoom) {
  const url = new URL(location.href);
  url.searchParams.set("room", room);
  url.searchParams.set("name", name);
  if (inRoom) url.searchParams.set("autojoin", "1");
  else url.searchParams.delete("autojoin");
  history.replaceState(null, "", url);
}

/** @param {string} raw */
function cleanName(raw) {
  // 1 to 32 bytes of UTF-8 without control characters, as the server requires.
  let s = raw.replace(/\p{Cc}/gu, "").trim();
  const bytes = new TextEncoder();
  while (bytes.encode(s).length > MAX_NAME_BYTES) s = Array.from(s).slice(0, -1).join("");
  return s || "player";
}

// --- connection messages ----------------------------------------------------------------

/** What a close code means to a player. */
const CLOSE_HINTS = /** @type {Record<number, string>} */ ({
  1000: "The session ended.",
  1001: "The server is going away (restarting or draining).",
  1006: "The connection was lost and could not be resumed in time.",
  1008: "Too many messages: the server cut the connection.",
  4000: "The room is full.",
  4003: "The server heard nothing for too long.",
  4005: "The connection was too slow to keep up with the game.",
  4006: "The room was closed.",
  4008: "The session expired: the server no longer holds this player.",
  4010: "This server needs a player token: paste one into the token field, or open the page with #token=... from your game's login.",
  4011: "The server did not accept the player token: it is not one this server's game issued.",
  4012: "The player token has expired: get a fresh one from your game's login and join again.",
  4013: "The player token is for another room.",
  4014: "You joined this room from another tab or device, which took over your seat.",
});

/** @param {PageState} next */
function setState(next) {
  state = next;
  document.body.dataset.state = next;
  const banner = el("banner");
  const notice = el("notice");
  const text = el("notice-text");
  const buttons = el("notice-buttons");
  buttons.replaceChildren();
  banner.classList.toggle("bad", next === "closed");
  if (next === "connecting") {
    banner.textContent = `connecting to ${room}...`;
    text.textContent = "";
    banner.hidden = false;
    notice.hidden = true;
  } else if (next === "reconnecting") {
    banner.textContent = "reconnecting...";
    text.textContent = "The connection dropped. The server holds your place for a few seconds while the page resumes.";
    banner.hidden = false;
    notice.hidden = false;
  } else if (next === "closed") {
    const c = lastClose ?? { code: 1006, reason: "" };
    banner.textContent = `closed: ${c.code}${c.reason ? ` ${c.reason}` : ""}`;
    text.textContent = CLOSE_HINTS[c.code] ?? "The server ended the session.";
    buttons.append(button("Join again", () => join(room)), button("Rooms", showLobby));
    banner.hidden = false;
    notice.hidden = false;
  } else {
    // Nothing to say: no stale text stays behind a hidden banner.
    banner.textContent = "";
    text.textContent = "";
    banner.hidden = true;
    notice.hidden = true;
  }
  if (next !== "playing" && next !== "reconnecting") releaseAll();
  updateHud();
}

/**
 * @param {string} label
 * @param {() => void} onClick
 */
function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

// --- game events --------------------------------------------------------------------------

/** @param {number} id */
const who = (id) => (welcome && id === welcome.entityId ? "you" : `#${id}`);

/**
 * A game event in words: tag's own (`[1, tagger, tagged]`, `[2, entity]`, ids as u32
 * little-endian), or its bytes for a game the page does not know.
 * @param {Uint8Array} p
 */
function describeEvent(p) {
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  if (welcome?.game === "tag") {
    if (p.length === 9 && p[0] === 1) return `${who(view.getUint32(1, true))} tagged ${who(view.getUint32(5, true))}`;
    if (p.length === 5 && p[0] === 2) return `${who(view.getUint32(1, true))} ${view.getUint32(1, true) === welcome.entityId ? "are" : "is"} it`;
  }
  const hex = Array.from(p.subarray(0, 12), (b) => b.toString(16).padStart(2, "0")).join(" ");
  return `event (${p.length} bytes): ${hex}${p.length > 12 ? " ..." : ""}`;
}

/** @param {string} text */
function showEvent(text) {
  const box = el("events");
  const item = document.createElement("div");
  item.className = "event panel";
  item.textContent = text;
  box.prepend(item);
  while (box.children.length > 5) box.lastElementChild?.remove();
  setTimeout(() => item.remove(), 4000);
}

// --- controls -----------------------------------------------------------------------------

/** Keys by `KeyboardEvent.code` (the key's place, so WASD works on any layout). */
const KEYS = /** @type {Record<string, [number, number]>} */ ({
  KeyW: [0, -1],
  ArrowUp: [0, -1],
  KeyS: [0, 1],
  ArrowDown: [0, 1],
  KeyA: [-1, 0],
  ArrowLeft: [-1, 0],
  KeyD: [1, 0],
  ArrowRight: [1, 0],
});
/** @type {Set<string>} */
const held = new Set();
/** The touch stick's direction, length at most 1, or null when not touched. */
/** @type {{ x: number, y: number } | null} */
let stick = null;

/** The movement the controls ask for: the stick if touched, else the keys. */
function movement() {
  if (stick) return stick;
  let x = 0;
  let y = 0;
  for (const code of held) {
    x += KEYS[code][0];
    y += KEYS[code][1];
  }
  x = Math.sign(x);
  y = Math.sign(y);
  const length = Math.hypot(x, y);
  return length > 1 ? { x: x / length, y: y / length } : { x, y };
}

/** Hands the controls to the client, which sends them once per tick while they hold. */
function sendControls() {
  client?.sendInput(movement());
}

function releaseAll() {
  if (!held.size && !stick) return;
  held.clear();
  stick = null;
  moveStick(0, 0);
  sendControls();
}

/** @param {EventTarget | null} t */
const typing = (t) => t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement;

window.addEventListener("keydown", (e) => {
  if (!Object.hasOwn(KEYS, e.code) || typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
  e.preventDefault();
  if (held.has(e.code)) return;
  held.add(e.code);
  sendControls();
});
window.addEventListener("keyup", (e) => {
  if (!held.delete(e.code)) return;
  e.preventDefault();
  sendControls();
});
// A key released while the window was not focused never sends its keyup.
window.addEventListener("blur", releaseAll);

const pad = el("touch");
const knob = el("stick");
/** @type {number | null} */
let stickPointer = null;

/** @param {number} x @param {number} y in -1..1 */
function moveStick(x, y) {
  const reach = (pad.clientWidth - knob.clientWidth) / 2;
  knob.style.transform = `translate(${x * reach}px, ${y * reach}px)`;
}

/** @param {PointerEvent} e */
function stickFrom(e) {
  const r = pad.getBoundingClientRect();
  let x = (e.clientX - (r.left + r.width / 2)) / (r.width / 2);
  let y = (e.clientY - (r.top + r.height / 2)) / (r.height / 2);
  const length = Math.hypot(x, y);
  if (length > 1) {
    x /= length;
    y /= length;
  }
  // A small dead zone, so a resting thumb does not drift.
  stick = Math.hypot(x, y) < 0.15 ? { x: 0, y: 0 } : { x, y };
  moveStick(x, y);
  sendControls();
}

pad.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  stickPointer = e.pointerId;
  pad.setPointerCapture(e.pointerId);
  stickFrom(e);
});
pad.addEventListener("pointermove", (e) => {
  if (e.pointerId === stickPointer) stickFrom(e);
});
for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
  pad.addEventListener(type, (e) => {
    if (/** @type {PointerEvent} */ (e).pointerId !== stickPointer) return;
    stickPointer = null;
    stick = null;
    moveStick(0, 0);
    sendControls();
  });
}

el("leave").addEventListener("click", leave);

// --- the room list --------------------------------------------------------------------------

const nameInput = /** @type {HTMLInputElement} */ (el("name"));
const roomInput = /** @type {HTMLInputElement} */ (el("room"));
const tokenInput = /** @type {HTMLInputElement} */ (el("token"));
nameInput.value = name;
roomInput.value = room;
tokenInput.value = authToken ?? "";
const ROOM_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** @param {string} text */
const lobbyStatus = (text) => {
  el("lobby-status").textContent = text;
};

/** Takes the lobby form's name (cleaned) and player token (empty: none) for the next join. */
function takeName() {
  name = cleanName(nameInput.value);
  nameInput.value = name;
  authToken = tokenInput.value.trim() || null;
}

el("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  takeName();
  const id = roomInput.value.trim();
  if (!ROOM_ID.test(id)) return lobbyStatus("A room name is 1 to 64 letters, digits, '.', '_' or '-'.");
  join(id);
});

el("play-now").addEventListener("click", async () => {
  takeName();
  lobbyStatus("Finding a seat...");
  try {
    const r = await fetch("matchmake", {
      method: "POST",
      // With player authentication on, the matchmaker wants the token too.
      headers: { "Content-Type": "application/json", ...(authToken ? { Authorization: `Bearer ${authToken}` } : {}) },
      body: JSON.stringify({ name }),
    });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ?? `HTTP ${r.status}`);
    lobbyStatus("");
    join(body.room, body.ticket, endpointOf(body.url));
  } catch (error) {
    lobbyStatus(`Matchmaking failed: ${error instanceof Error ? error.message : error}`);
  }
});

async function refreshRooms() {
  if (state !== "lobby") return;
  try {
    const r = await fetch("rooms", { cache: "no-store" });
    const rooms = await r.json();
    if (!r.ok) throw new Error(rooms.error ?? `HTTP ${r.status}`);
    if (state !== "lobby") return;
    const rows = /** @type {any[]} */ (rooms).map((info) => {
      const tr = document.createElement("tr");
      const cells = [info.id, info.game, `${info.players} / ${info.capacity}`, `${info.tick_rate}/s`];
      cells.forEach((text, k) => {
        const td = document.createElement("td");
        td.textContent = String(text);
        if (k >= 2) td.className = "num";
        tr.append(td);
      });
      const td = document.createElement("td");
      const b = button("Join", () => {
        takeName();
        join(info.id);
      });
      b.disabled = info.players >= info.capacity;
      td.append(b);
      tr.append(td);
      return tr;
    });
    el("rooms").replaceChildren(...rows);
    if (!rows.length) lobbyStatus("No rooms yet: Play now starts one, or join any room by name.");
    else if (el("lobby-status").textContent?.startsWith("No rooms") || el("lobby-status").textContent?.startsWith("Could not")) lobbyStatus("");
  } catch (error) {
    lobbyStatus(`Could not list the rooms: ${error instanceof Error ? error.message : error}`);
  }
}
setInterval(refreshRooms, 3000);

// --- drawing ------------------------------------------------------------------------------

/** Where the mouse is over the canvas (CSS pixels), for the HUD's field view. */
/** @type {{ x: number, y: number } | null} */
let mouse = null;
canvas.addEventListener("mousemove", (e) => {
  mouse = { x: e.clientX, y: e.clientY };
});
canvas.addEventListener("mouseleave", () => {
  mouse = null;
});
/** @type {number | null} */
let hovered = null;

const hud = el("hud");

/** The world as drawn in the last frame. */
/** @type {EntityView[]} */
let drawn = [];

/** @param {number} id */
const hue = (id) => (id * 137.508) % 360;

function draw() {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.fillStyle = "#0e1117";
  g.fillRect(0, 0, w, h);
  const c = client;
  const wl = welcome;
  if (!c || !wl || state === "lobby") {
    drawn = [];
    return;
  }
  const view = c.sample(performance.now());
  drawn = view ? view.entities : [];

  // The whole world fits the window, with a margin, and beside the HUD when the
  // window is wide enough for that to cost the world little.
  const margin = 16;
  const size = wl.worldSize;
  const fit = (/** @type {number} */ left) =>
    Math.max(0.01, Math.min((w - left - 2 * margin) / size.x, (h - 2 * margin) / size.y));
  const hudRight = hud.getBoundingClientRect().right;
  const left = fit(hudRight) >= 0.9 * fit(0) ? hudRight : 0;
  const scale = fit(left);
  const ox = left + (w - left - size.x * scale) / 2;
  const oy = (h - size.y * scale) / 2;
  // A world that is not live (the connection is down) is drawn dimmed.
  g.globalAlpha = state === "playing" ? 1 : 0.45;
  /** @param {number} x */
  const sx = (x) => ox + x * scale;
  /** @param {number} y */
  const sy = (y) => oy + y * scale;

  g.fillStyle = "#151b26";
  g.fillRect(ox, oy, size.x * scale, size.y * scale);
  g.strokeStyle = "#1f2836";
  g.lineWidth = 1;
  const step = gridStep(size.x);
  g.beginPath();
  for (let x = step; x < size.x; x += step) {
    g.moveTo(Math.round(sx(x)) + 0.5, oy);
    g.lineTo(Math.round(sx(x)) + 0.5, oy + size.y * scale);
  }
  for (let y = step; y < size.y; y += step) {
    g.moveTo(ox, Math.round(sy(y)) + 0.5);
    g.lineTo(ox + size.x * scale, Math.round(sy(y)) + 0.5);
  }
  g.stroke();
  g.strokeStyle = "#4a5a75";
  g.lineWidth = 2;
  g.strokeRect(ox, oy, size.x * scale, size.y * scale);

  const npcR = Math.max(2.5, 3 * scale);
  const avatarR = Math.max(6, 5 * scale);

  // Which entity the mouse points at (within its drawn radius, plus a little).
  hovered = null;
  if (mouse) {
    let best = Infinity;
    for (const e of drawn) {
      const d = Math.hypot(sx(e.x) - mouse.x, sy(e.y) - mouse.y);
      const r = (e.kind === "Avatar" ? avatarR : npcR) + 6;
      if (d < r && d < best) {
        best = d;
        hovered = e.id;
      }
    }
  }

  g.fillStyle = "#6b7d96";
  g.beginPath();
  for (const e of drawn) {
    if (e.kind !== "Npc") continue;
    g.moveTo(sx(e.x) + npcR, sy(e.y));
    g.arc(sx(e.x), sy(e.y), npcR, 0, 2 * Math.PI);
  }
  g.fill();

  g.textAlign = "center";
  g.font = "11px system-ui, sans-serif";
  /** @type {EntityView | null} */
  let own = null;
  for (const e of drawn) {
    if (e.kind !== "Avatar") continue;
    if (e.id === wl.entityId) own = e;
    else drawAvatar(e, sx(e.x), sy(e.y), avatarR, false);
  }
  // The player's own avatar last, on top: predicted, so it answers the keys at once.
  if (own) drawAvatar(own, sx(own.x), sy(own.y), avatarR, true);

  g.globalAlpha = 1;
  if (hovered != null) {
    const e = drawn.find((d) => d.id === hovered);
    if (e) {
      g.strokeStyle = "#ffffff";
      g.lineWidth = 1;
      g.setLineDash([3, 3]);
      g.beginPath();
      g.arc(sx(e.x), sy(e.y), (e.kind === "Avatar" ? avatarR : npcR) + 5, 0, 2 * Math.PI);
      g.stroke();
      g.setLineDash([]);
    }
  }
}

/**
 * @param {EntityView} e
 * @param {number} x
 * @param {number} y
 * @param {number} r
 * @param {boolean} mine
 */
function drawAvatar(e, x, y, r, mine) {
  const it = itField >= 0 && e.fields[itField] !== 0;
  if (it) {
    // The one who is it glows red.
    g.fillStyle = "rgba(239, 95, 95, 0.25)";
    g.beginPath();
    g.arc(x, y, r * 2.2, 0, 2 * Math.PI);
    g.fill();
  }
  g.fillStyle = it ? "#ef5f5f" : `hsl(${hue(e.id)}, 70%, 60%)`;
  g.beginPath();
  g.arc(x, y, r, 0, 2 * Math.PI);
  g.fill();
  if (mine) {
    g.strokeStyle = "#ffffff";
    g.lineWidth = 2.5;
    g.beginPath();
    g.arc(x, y, r + 3, 0, 2 * Math.PI);
    g.stroke();
  }
  let label = mine ? "you" : `#${e.id}`;
  if (it) label += " (it)";
  if (scoreField >= 0) label += ` ${e.fields[scoreField]}`;
  // The player's own label above, everyone else's below, so that two avatars on top
  // of each other (a tag) still read.
  g.fillStyle = mine ? "#ffffff" : "#c7d0dc";
  g.fillText(label, x, mine ? y - r - 7 : y + r + 13);
}

/** A round grid spacing giving about ten lines across the world. @param {number} extent */
function gridStep(extent) {
  const raw = extent / 10;
  const pow = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? raw;
}

// --- HUD ------------------------------------------------------------------------------------

/** Avatars in the newest world. */
function avatarCount() {
  const world = client?.world;
  if (!world) return 0;
  let n = 0;
  for (let i = 0; i < world.size; i++) if (world.kinds[i] === 1) n++;
  return n;
}

function interpDelay() {
  return client?.interpolator?.delayMs ?? null;
}

/** @param {number | null} v @param {number} digits */
const fmt = (v, digits = 0) => (v == null ? "-" : v.toFixed(digits));

/**
 * One entity's declared fields, as the Welcome names and types them.
 * @param {EntityView} e
 */
function fieldsText(e) {
  if (!welcome) return "";
  return welcome.fields
    .map((f, k) => {
      const v = e.fields[k];
      return `${f.name}=${f.kind === "Bool" ? (v !== 0 ? "yes" : "no") : v}`;
    })
    .join("  ");
}

/** When the HUD was last written, and whether it showed a world then. */
let hudAt = -Infinity;
let hudHadWorld = false;

function updateHud() {
  const now = performance.now();
  hudAt = now;
  hudHadWorld = (client?.world.size ?? 0) > 0;
  el("hud-room").textContent = state === "lobby" ? "-" : room;
  el("hud-players").textContent = client?.world ? String(avatarCount()) : "-";
  el("hud-ping").textContent = client?.rtt != null ? `${fmt(client.rtt)} ms` : "-";
  el("hud-sps").textContent = String(snapshotTimes.count(now));
  el("hud-kibs").textContent = fmt(bytesIn.sum(now) / 1024, 1);
  el("hud-delay").textContent = interpDelay() != null ? `${fmt(interpDelay())} ms` : "-";

  // The declared fields of the entity under the mouse, else of the player's own avatar.
  const fieldsBox = el("hud-fields");
  const target =
    (hovered != null && drawn.find((e) => e.id === hovered)) ||
    (welcome && drawn.find((e) => e.id === welcome?.entityId)) ||
    null;
  if (welcome && welcome.fields.length && target) {
    const whose = target.id === welcome.entityId ? "you" : `#${target.id} (${target.kind})`;
    fieldsBox.textContent = `${whose}: ${fieldsText(target)}`;
  } else if (welcome && target && hovered != null) {
    fieldsBox.textContent = `#${target.id} (${target.kind})`;
  } else {
    fieldsBox.textContent = "";
  }

  // A scoreboard when the game declares a `score` field.
  const scores = el("hud-scores");
  const world = client?.world;
  if (scoreField < 0 || !world || !welcome || state === "lobby") {
    scores.replaceChildren();
    return;
  }
  /** @type {{ id: number, score: number, it: boolean }[]} */
  const rows = [];
  for (let i = 0; i < world.size; i++) {
    if (world.kinds[i] !== 1) continue;
    rows.push({
      id: world.ids[i],
      score: world.fields[i * MAX_FIELDS + scoreField],
      it: itField >= 0 && world.fields[i * MAX_FIELDS + itField] !== 0,
    });
  }
  rows.sort((a, b) => b.score - a.score || a.id - b.id);
  const list = document.createElement("ol");
  for (const r of rows.slice(0, 8)) {
    const li = document.createElement("li");
    li.textContent = `${who(r.id)}${r.it ? " (it)" : ""}: ${r.score}`;
    if (r.id === welcome.entityId) li.classList.add("own");
    if (r.it) li.classList.add("it");
    list.append(li);
  }
  scores.replaceChildren(list);
}

// --- the frame loop ---------------------------------------------------------------------------

function frame() {
  requestAnimationFrame(frame);
  const start = performance.now();
  draw();
  const end = performance.now();
  frames += 1;
  frameCosts.add(end, end - start);
  // The HUD is text: four times a second is enough, but the first world is shown at once.
  if (end - hudAt >= 250 || (!hudHadWorld && client?.world.size)) updateHud();
}
requestAnimationFrame(frame);
// A timer too, so the HUD stays current when the browser draws few frames (a hidden tab).
setInterval(() => {
  if (performance.now() - hudAt >= 250) updateHud();
}, 250);

// --- the test hook ----------------------------------------------------------------------------

/** A read-only view of the page, for tests (puppeteer) and the console. */
const page = Object.freeze({
  get state() {
    return state;
  },
  get room() {
    return state === "lobby" ? null : room;
  },
  get playerId() {
    return welcome?.playerId ?? null;
  },
  get entityId() {
    return welcome?.entityId ?? null;
  },
  get players() {
    return avatarCount();
  },
  get entityCount() {
    return client?.world.size ?? 0;
  },
  get snapshotsPerSec() {
    return snapshotTimes.count(performance.now());
  },
  get bytesPerSec() {
    return bytesIn.sum(performance.now());
  },
  get pingMs() {
    return client?.rtt ?? null;
  },
  get interpDelayMs() {
    return interpDelay();
  },
  get reconnects() {
    return reconnects;
  },
  get frames() {
    return frames;
  },
  get frameMs() {
    const now = performance.now();
    const n = frameCosts.count(now);
    return n ? frameCosts.sum(now) / n : 0;
  },
  get lastClose() {
    return lastClose ? { ...lastClose } : null;
  },
  /** What is drawn now: the interpolated world, the own avatar predicted. */
  entities() {
    const view = client && welcome && state !== "lobby" ? client.sample(performance.now()) : null;
    return (view?.entities ?? []).map((e) => ({ id: e.id, kind: e.kind, x: e.x, y: e.y, fields: Array.from(e.fields) }));
  },
  /** The predicted own avatar, or null. */
  ownPosition() {
    const p = client?.predicted;
    return p ? { x: p.x, y: p.y } : null;
  },
});
Object.defineProperty(window, "tickcastPage", { value: page, writable: false, configurable: false, enumerable: true });

// --- start --------------------------------------------------------------------------------------

if (params.get("autojoin") === "1") {
  const id = params.get("room") || "lobby";
  if (ROOM_ID.test(id)) join(id);
  else {
    showLobby();
    lobbyStatus(`"${id}" is not a room name: 1 to 64 letters, digits, '.', '_' or '-'.`);
  }
} else {
  showLobby();
}
