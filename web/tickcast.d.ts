/**
 * Decodes one server message (the data of one WebSocket binary message). Never returns a
 * partial message: every list is read whole, trailing bytes are refused.
 *
 * @param {ArrayBuffer | ArrayBufferView} data
 * @param {{ limit?: number }} [options] `limit`: the decode ceiling, {@link DECODE_ALLOC_LIMIT} by default.
 * @returns {ServerMsg}
 * @throws {DecodeError}
 */
export function decodeServerMsg(data: ArrayBuffer | ArrayBufferView, options?: {
    limit?: number;
}): ServerMsg;
/**
 * Decodes one client message as the server does (size limit first, then the client decode
 * ceiling). For tools and tests: a client never receives these.
 *
 * @param {ArrayBuffer | ArrayBufferView} data
 * @param {{ maxBytes?: number }} [options] `maxBytes`: {@link DEFAULT_MAX_MESSAGE_BYTES} by default.
 * @returns {ClientMsg}
 * @throws {DecodeError}
 */
export function decodeClientMsg(data: ArrayBuffer | ArrayBufferView, options?: {
    maxBytes?: number;
}): ClientMsg;
/**
 * Encodes one client message.
 *
 * @param {ClientMsg} msg
 * @returns {Uint8Array}
 * @throws {RangeError} when a value does not fit its field (a payload over 32 bytes, a
 *   token that is not 16 bytes, a sequence number beyond `u32`).
 */
export function encodeClientMsg(msg: ClientMsg): Uint8Array;
/**
 * Encodes one server message: what tests and tools use to build server bytes (the server
 * itself is the Rust crate).
 *
 * @param {ServerMsg} msg
 * @returns {Uint8Array}
 */
export function encodeServerMsg(msg: ServerMsg): Uint8Array;
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
export function entityView(world: World, i: number, quantum: number, tickRate: number): EntityView;
/**
 * The movement rule of an avatar that walks at `speed` units per second, the Arena's
 * (server/src/game/arena.rs) with another speed, in `f32` arithmetic like the server: an
 * input sets the velocity to its movement, clamped to length 1, times `speed`; each tick
 * the avatar moves by its velocity snapped to whole quanta per tick (`snap_step`), is
 * clamped to the world, and stops on the axis of a wall it hit.
 * @param {number} speed Units per second at full input.
 * @returns {StepFn}
 */
export function walkerStep(speed: number): StepFn;
/**
 * Connects to a room; the `welcome` event (or `close`) follows.
 * @param {ConnectOptions} options
 * @returns {Client}
 */
export function connect(options: ConnectOptions): Client;
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
/** Version carried in `Hello` and `Welcome`. */
export const PROTOCOL_VERSION: 2;
/** The WebSocket subprotocol this module speaks. */
export const SUBPROTOCOL: "tickcast.v2";
/** Room a client joins when it names none. */
export const DEFAULT_ROOM: "lobby";
/** Integer fields every entity carries. */
export const MAX_FIELDS: 8;
/** Most bytes an `Input` payload may hold. */
export const MAX_INPUT_PAYLOAD: 32;
/** Longest player name, in UTF-8 bytes. */
export const MAX_NAME_BYTES: 32;
/** Ceiling on what one server message may claim when decoded (docs/PROTOCOL.md section 6). */
export const DECODE_ALLOC_LIMIT: number;
/** The same ceiling for client messages, as the server applies it. */
export const CLIENT_ALLOC_LIMIT: number;
/** Largest client message the server accepts by default. */
export const DEFAULT_MAX_MESSAGE_BYTES: number;
/** `FieldKind` by wire index. */
export const FIELD_KINDS: readonly ["Bool", "U8", "I8", "U16", "I16", "I32"];
/** `EntityKind` by wire index. */
export const ENTITY_KINDS: readonly ["Npc", "Avatar"];
/**
 * The close codes of docs/PROTOCOL.md section 7, by name. 1006 is never sent on the wire;
 * it is what a WebSocket reports when the connection ended without a close frame.
 */
export const CloseCode: Readonly<{
    Normal: 1000;
    GoingAway: 1001;
    ProtocolError: 1002;
    TextFrame: 1003;
    Abnormal: 1006;
    InvalidPayload: 1007;
    RateLimited: 1008;
    MessageTooBig: 1009;
    InternalError: 1011;
    RoomFull: 4000;
    VersionMismatch: 4001;
    UnexpectedMessage: 4002;
    IdleTimeout: 4003;
    HelloTimeout: 4004;
    SlowConsumer: 4005;
    RoomClosed: 4006;
    InvalidHello: 4007;
    SessionExpired: 4008;
    GameMessageRefused: 4009;
    AuthRequired: 4010;
    AuthInvalid: 4011;
    AuthExpired: 4012;
    AuthWrongRoom: 4013;
    Replaced: 4014;
}>;
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
    constructor(kind: "TooLarge" | "Malformed" | "TrailingBytes" | "Unsupported", message: string);
    kind: "TooLarge" | "Malformed" | "TrailingBytes" | "Unsupported";
}
export function encodeHello(name: string, room: string, resume?: Uint8Array | null, authToken?: string | null): Uint8Array<ArrayBufferLike>;
export function encodeInput(seq: number, movement: Vec2 | [number, number], buttons?: number, payload?: Uint8Array): Uint8Array<ArrayBufferLike>;
export function encodePing(nonce: number): Uint8Array<ArrayBufferLike>;
export function encodeMessage(payload: Uint8Array): Uint8Array<ArrayBufferLike>;
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
    constructor(kind: "WrongBase" | "NotNewer" | "KeyframeWithChanges" | "UnknownRemoved" | "ChangedOutOfRange" | "BadAdded" | "BadField", detail?: {
        baseTick?: number;
        held?: number | null;
        tick?: number;
        id?: number;
        index?: number;
    });
    kind: "WrongBase" | "NotNewer" | "KeyframeWithChanges" | "UnknownRemoved" | "ChangedOutOfRange" | "BadAdded" | "BadField";
    detail: {
        baseTick?: number;
        held?: number | null;
        tick?: number;
        id?: number;
        index?: number;
    };
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
     * A world holding `entities` (sorted by id) at `tick`: for tests and tools.
     * @param {number | null} tick
     * @param {QEntity[]} entities
     */
    static from(tick: number | null, entities: QEntity[]): World;
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
    constructor(tick?: number | null, ids?: Uint32Array, kinds?: Uint8Array, pos?: Int32Array, vel?: Int32Array, fields?: Int32Array, updated?: Float64Array | null);
    tick: number | null;
    ids: Uint32Array<ArrayBufferLike>;
    kinds: Uint8Array<ArrayBufferLike>;
    pos: Int32Array<ArrayBufferLike>;
    vel: Int32Array<ArrayBufferLike>;
    fields: Int32Array<ArrayBufferLike>;
    /**
     * Per entity, the tick at which the server last sent its position and velocity (it was
     * added or changed). A server under a bandwidth budget may leave an entity out of
     * deltas for a while (docs/PROTOCOL.md 5.1); its position is then extrapolated by its
     * velocity, and `tick - updated[i]` says for how many ticks.
     * @type {Float64Array}
     */
    updated: Float64Array;
    /**
     * Where entity `i` is at `tick` (any tick, fractional for rendering) if nothing changes:
     * its position moved on by its velocity since this world's tick, in quanta. An entity with
     * velocity 0 stays where it is.
     * @param {number} i
     * @param {number} tick
     * @returns {[number, number]}
     */
    extrapolated(i: number, tick: number): [number, number];
    /** Number of entities. */
    get size(): number;
    /**
     * Index of entity `id`, or -1.
     * @param {number} id
     */
    indexOf(id: number): number;
    /**
     * The entity at index `i`, as a plain object.
     * @param {number} i
     * @returns {QEntity}
     */
    entity(i: number): QEntity;
    /** @returns {QEntity[]} every entity, in id order */
    entities(): QEntity[];
    /**
     * Applies a snapshot: a keyframe replaces the world, a delta must name this world's tick
     * as its base. Follows docs/PROTOCOL.md section 5.1 and `delta::World::apply` step for
     * step, including which error a bad snapshot gets.
     *
     * @param {Snapshot} s
     * @returns {World} the world at `s.tick`; `this` is unchanged.
     * @throws {DeltaError} when the snapshot does not fit this world.
     */
    apply(s: Snapshot): World;
    /**
     * The common delta (the same entities, some changed): predict and correct, sharing the
     * arrays it does not change. Everything is checked before anything is built.
     * @private
     * @param {Snapshot} s
     * @param {number} k
     */
    private applySameEntities;
}
export function applySnapshot(world: World, snapshot: Snapshot): World;
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
    constructor(options: InterpolatorOptions);
    tickMs: number;
    tickRate: number;
    quantum: number;
    delayTicks: number;
    addJitter: boolean;
    capacity: number;
    lateTicks: number;
    resetAfter: number;
    /** @type {World[]} worlds by ascending tick */
    buffer: World[];
    /** @type {number | null} server time minus local time, ms */
    offset: number | null;
    /** Mean deviation of the arrival offsets, ms. */
    jitterMs: number;
    late: number;
    /** Times the clock was re-anchored after a stall. */
    resets: number;
    /** @type {number | null} last render time handed out, in server ms */
    last: number | null;
    /** The delay behind the newest tick, ms. */
    get delayMs(): number;
    /** @returns {World | null} */
    get newest(): World | null;
    /**
     * Adds the world of a snapshot that arrived at `now` (ms, any monotonic clock). A world
     * not newer than the newest held is ignored.
     * @param {World} world
     * @param {number} now
     */
    push(world: World, now: number): void;
    /**
     * The tick to render at `now`, fractional, or `null` before the first snapshot.
     * @param {number} now
     */
    renderTick(now: number): number | null;
    /**
     * The entities to draw at `now`, in world units: each entity of the two worlds around
     * the render time, its position interpolated linearly (an entity not yet in the older
     * world is not drawn yet; one gone from the newer is drawn until its last tick).
     * @param {number} now
     * @returns {{ tick: number, entities: EntityView[] } | null}
     */
    sample(now: number): {
        tick: number;
        entities: EntityView[];
    } | null;
    /** Forgets everything (a new room, or a new player after 4008). */
    clear(): void;
}
/**
 * The Arena's rule for an avatar: {@link walkerStep} at 100 units/s. The default predictor.
 * @type {StepFn}
 */
export const arenaStep: StepFn;
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
    constructor(options: PredictorOptions);
    step: StepFn;
    /** @type {StepContext} */
    ctx: StepContext;
    /** @type {SentInput[]} inputs not yet acknowledged, oldest first */
    pending: SentInput[];
    /** @type {Body | null} */
    state: Body | null;
    /** Distance between the prediction before and after the last reconciliation. */
    correction: number;
    /**
     * An input was sent: keep it, and step the prediction with it.
     * @param {SentInput} input
     */
    sent(input: SentInput): void;
    /**
     * A snapshot arrived: `body` is the avatar in it, `lastInputSeq` the snapshot's.
     * @param {Body} body
     * @param {number} lastInputSeq
     * @returns {Body} the new prediction
     */
    reconcile(body: Body, lastInputSeq: number): Body;
    /** Forgets the inputs (a resumed connection numbers them from 1 again). */
    reset(): void;
}
/**
 * @typedef {Object} ReconnectPolicy
 * @property {number} initial Ceiling of the first delay, ms (at least 1).
 * @property {number} max Largest ceiling, ms.
 * @property {number} budget Time from the loss after which no attempt is made, ms; the
 *   server's reconnect grace (10 s by default) is the useful maximum.
 */
/** The Rust client's defaults: 100 ms doubling up to 2 s, for 10 s. */
export const DEFAULT_RECONNECT: Readonly<{
    initial: 100;
    max: 2000;
    budget: 10000;
}>;
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
    constructor(policy: ReconnectPolicy, random?: () => number);
    policy: ReconnectPolicy;
    random: () => number;
    /** Delays handed out so far. */
    drawn: number;
    /**
     * Ceiling of the delay before attempt `attempt` (0 for the first).
     * @param {number} attempt
     */
    ceiling(attempt: number): number;
    /**
     * How long to wait before the next attempt, `elapsed` ms after the loss; `null` once the
     * budget is spent.
     * @param {number} elapsed
     * @returns {number | null}
     */
    nextDelay(elapsed: number): number | null;
}
/**
 * A player's connection to a room: joins, keeps the world, interpolates and predicts,
 * sends inputs at most once per tick, and resumes by itself after a drop it did not choose
 * (close 1006 or 4003), as docs/PROTOCOL.md section 3 says. Create it with {@link connect}.
 */
export class Client {
    /** @param {ConnectOptions} options */
    constructor(options: ConnectOptions);
    options: ConnectOptions;
    room: string;
    /** @type {SocketClass} */
    Socket: SocketClass;
    /** @type {Clock} */
    clock: Clock;
    /** @type {ReconnectPolicy | null} */
    policy: ReconnectPolicy | null;
    pingInterval: number;
    maxBufferedAmount: number;
    repeatInput: boolean;
    /** @type {ClientState} */
    state: ClientState;
    /** @type {Welcome | null} */
    welcome: Welcome | null;
    /** @type {Uint8Array | null} */
    token: Uint8Array | null;
    /** The world of the newest snapshot. */
    world: World;
    /** @type {Interpolator | null} */
    interpolator: Interpolator | null;
    /** @type {Predictor | null} */
    predictor: Predictor | null;
    /** @type {number | null} the last round-trip time, ms */
    rtt: number | null;
    /** Inputs held back because the socket had more than `maxBufferedAmount` unsent. */
    inputsHeld: number;
    /** Newest `last_input_seq`. */
    ackedSeq: number;
    /** @type {SocketLike | null} */
    ws: SocketLike | null;
    /** @type {Partial<Record<keyof ClientEvents, Set<(e: any) => void>>>} */
    listeners: Partial<Record<keyof ClientEvents, Set<(e: any) => void>>>;
    /** @type {{ movement: Vec2, buttons: number, payload: Uint8Array } | null} */
    controls: {
        movement: Vec2;
        buttons: number;
        payload: Uint8Array;
    } | null;
    seq: number;
    /** @type {number | null} when an input was last due (sent, or held back) */
    lastAttemptAt: number | null;
    epoch: number;
    /** @type {any} */
    inputTimer: any;
    /** @type {any} */
    pingTimer: any;
    /** @type {any} */
    retryTimer: any;
    /** @type {any} */
    budgetTimer: any;
    /** @type {Backoff | null} */
    backoff: Backoff | null;
    attempts: number;
    lostAt: number;
    /** @type {{ code: number, reason: string }} */
    lostWith: {
        code: number;
        reason: string;
    };
    closeRequested: boolean;
    /**
     * Listens to `type`; returns a function that stops listening.
     * @template {keyof ClientEvents} K
     * @param {K} type
     * @param {(event: ClientEvents[K]) => void} listener
     * @returns {() => void}
     */
    on<K extends keyof ClientEvents>(type: K, listener: (event: ClientEvents[K]) => void): () => void;
    /**
     * @template {keyof ClientEvents} K
     * @param {K} type
     * @param {ClientEvents[K]} event
     * @private
     */
    private emit;
    /**
     * @param {boolean} resuming
     * @private
     */
    private open;
    /**
     * @param {unknown} data
     * @private
     */
    private handleData;
    /**
     * @param {Welcome} w
     * @private
     */
    private handleWelcome;
    /**
     * @param {Snapshot} s
     * @param {number} now
     * @private
     */
    private handleSnapshot;
    /**
     * @param {number} code
     * @param {string} reason
     * @private
     */
    private handleClose;
    /** @private */
    private scheduleAttempt;
    /** @private */
    private giveUp;
    /**
     * Ends the session because of something the server sent. Browsers only let a page close
     * with 1000 or 3000-4999, so the socket is closed with 1000 (which also ends the session
     * on the server, as a broken stream must); the `close` event carries the real reason.
     * @param {number} code
     * @param {string} reason
     * @private
     */
    private fail;
    /**
     * @param {number} code
     * @param {string} reason
     * @private
     */
    private finish;
    /** @private */
    private stopTimers;
    /** @private */
    private clearRetry;
    /** @private */
    private get tickMs();
    /**
     * True when the socket has room: more than `maxBufferedAmount` bytes still unsent means
     * the network is not keeping up, and another input would only wait behind the old ones.
     * @private
     */
    private writable;
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
    sendInput(movement: Vec2 | [number, number], buttons?: number, payload?: Uint8Array): boolean;
    /**
     * @param {number} delay
     * @private
     */
    private scheduleInput;
    /** @private */
    private flushInput;
    /**
     * Sends a reliable message to the game. Never held back: game messages are the game's
     * reliable channel, so they queue behind whatever the socket holds.
     * @param {Uint8Array} payload
     * @returns {boolean} false when not connected (the message was not sent).
     */
    sendMessage(payload: Uint8Array): boolean;
    /**
     * Sends a ping now (automatic ones go every `pingInterval`). Held back, like inputs,
     * when the socket is backed up: it would only measure the backlog.
     * @returns {boolean} whether it was sent
     */
    ping(): boolean;
    /** @private */
    private schedulePing;
    /**
     * Leaves: closes with `code` (1000 by default), which ends the session on the server,
     * and stops any reconnection. The `close` event follows.
     * @param {number} [code]
     * @param {string} [reason]
     */
    close(code?: number, reason?: string): void;
    /**
     * The player's own avatar as predicted, in world units, or `null` before the first
     * snapshot that holds it (or without prediction).
     * @returns {Body | null}
     */
    get predicted(): Body | null;
    /**
     * What to draw at `now` (ms on the client's clock): the interpolated world, with the
     * player's own avatar at its predicted place.
     * @param {number} [now]
     * @returns {{ tick: number, entities: EntityView[] } | null}
     */
    sample(now?: number): {
        tick: number;
        entities: EntityView[];
    } | null;
}
/**
 * An entity in world units, for drawing.
 */
export type EntityView = {
    id: number;
    kind: EntityKind;
    x: number;
    y: number;
    /**
     * Units per second.
     */
    vx: number;
    vy: number;
    /**
     * The eight fields (a view: do not modify).
     */
    fields: Int32Array;
    /**
     * The tick its position and velocity were last sent
     * ({@link World#updated}); older than the world's tick when the server left it out.
     */
    updated: number;
    /**
     * True for the player's own avatar when it comes from the {@link Predictor}.
     */
    predicted?: boolean | undefined;
};
export type Vec2 = {
    x: number;
    y: number;
};
export type FieldKind = (typeof FIELD_KINDS)[number];
export type EntityKind = (typeof ENTITY_KINDS)[number];
export type FieldSpec = {
    name: string;
    kind: FieldKind;
};
/**
 * Two `i32`, `x` then `y`.
 */
export type Pair = [number, number];
export type Hello = {
    type: "Hello";
    protocolVersion: number;
    name: string;
    room: string;
    /**
     * The 16-byte session token, or `null` for a new player.
     */
    resume: Uint8Array | null;
    /**
     * A signed player token (a JWT from the game's backend)
     * for servers that require one, or `null`. Sent as `HelloWithToken` (variant 5).
     */
    authToken: string | null;
};
export type Input = {
    type: "Input";
    seq: number;
    movement: Vec2;
    buttons: number;
    /**
     * 0 to 32 game-defined bytes.
     */
    payload: Uint8Array;
};
export type Ping = {
    type: "Ping";
    nonce: number;
};
export type GameMessage = {
    type: "Message";
    payload: Uint8Array;
};
export type ClientMsg = Hello | Input | Ping | GameMessage;
export type Welcome = {
    type: "Welcome";
    protocolVersion: number;
    playerId: number;
    entityId: number;
    tickRate: number;
    serverTick: number;
    worldSize: Vec2;
    /**
     * A secret: never log it or put it in a URL.
     */
    sessionToken: Uint8Array;
    posQuantum: number;
    game: string;
    fields: FieldSpec[];
};
export type Changed = {
    skip: number;
    dpos: Pair;
    dvel: Pair;
};
export type Added = {
    idGap: number;
    kind: EntityKind;
    pos: Pair;
    vel: Pair;
};
export type FieldChange = {
    skip: number;
    field: number;
    delta: number;
};
export type Snapshot = {
    type: "Snapshot";
    tick: number;
    /**
     * 0 for a keyframe.
     */
    baseTick: number;
    lastInputSeq: number;
    /**
     * Id gaps.
     */
    removed: number[];
    changed: Changed[];
    added: Added[];
    fields: FieldChange[];
};
export type Pong = {
    type: "Pong";
    nonce: number;
    serverTick: number;
};
export type GameEvent = {
    type: "Event";
    payload: Uint8Array;
};
export type ServerMsg = Welcome | Snapshot | Pong | GameEvent;
/**
 * One entity as it travels: positions in quanta, velocities in quanta per tick.
 */
export type QEntity = {
    id: number;
    kind: EntityKind;
    pos: Pair;
    vel: Pair;
    /**
     * Eight `i32`.
     */
    fields: number[];
};
export type InterpolatorOptions = {
    /**
     * Ticks per second (`Welcome.tickRate`).
     */
    tickRate: number;
    /**
     * World units per quantum (`Welcome.posQuantum`).
     */
    posQuantum: number;
    /**
     * Ticks rendered behind the newest one, before jitter: 2.
     */
    delayTicks?: number | undefined;
    /**
     * Add the measured jitter to the delay: true.
     */
    addJitter?: boolean | undefined;
    /**
     * Most snapshots kept: 64.
     */
    capacity?: number | undefined;
    /**
     * A snapshot this many ticks (or the delay, if longer)
     * later than the clock expects counts as late: 4.
     */
    lateTicks?: number | undefined;
    /**
     * Consecutive late snapshots that re-anchor the clock (the
     * stream stalled and resumed behind it): 3.
     */
    resetAfter?: number | undefined;
};
/**
 * The player's avatar in world units.
 */
export type Body = {
    x: number;
    y: number;
    vx: number;
    vy: number;
};
/**
 * What a step of the game's movement rule may use.
 */
export type StepContext = {
    /**
     * Seconds per tick, as the server's `f32` `1 / tick_rate`.
     */
    dt: number;
    posQuantum: number;
    worldSize: Vec2;
};
/**
 * One input as the predictor keeps it.
 */
export type SentInput = {
    seq: number;
    movement: Vec2;
    buttons: number;
    payload: Uint8Array;
};
/**
 * The movement rule of a game: the avatar one tick later, given the input the server
 * applies at that tick (`null`: no new input, the previous one persists).
 */
export type StepFn = (body: Body, input: SentInput | null, ctx: StepContext) => Body;
export type PredictorOptions = {
    tickRate: number;
    posQuantum: number;
    worldSize: Vec2;
    /**
     * The game's movement rule; {@link arenaStep} by default.
     */
    step?: StepFn | undefined;
};
export type ReconnectPolicy = {
    /**
     * Ceiling of the first delay, ms (at least 1).
     */
    initial: number;
    /**
     * Largest ceiling, ms.
     */
    max: number;
    /**
     * Time from the loss after which no attempt is made, ms; the
     * server's reconnect grace (10 s by default) is the useful maximum.
     */
    budget: number;
};
/**
 * What the client needs of a WebSocket: the browser's, or any class with its shape.
 */
export type SocketLike = {
    binaryType: string;
    bufferedAmount: number;
    readyState: number;
    protocol?: string | undefined;
    onopen: ((ev: any) => void) | null;
    onmessage: ((ev: {
        data: any;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((ev: any) => void) | null;
    send: (data: Uint8Array) => void;
    close: (code?: number, reason?: string) => void;
};
export type SocketClass = new (url: string, protocols: string | string[]) => SocketLike;
/**
 * Timers and a monotonic clock; injectable so that tests run without real time.
 */
export type Clock = {
    /**
     * ms
     */
    now: () => number;
    setTimeout: (fn: () => void, ms: number) => any;
    clearTimeout: (handle: any) => void;
};
export type ConnectOptions = {
    /**
     * The WebSocket endpoint, e.g. `wss://game.example/ws`.
     */
    url: string;
    /**
     * Player name, 1 to 32 bytes of UTF-8.
     */
    name: string;
    /**
     * {@link DEFAULT_ROOM} by default.
     */
    room?: string | undefined;
    /**
     * A session token from an earlier `Welcome`, to
     * take that player back (a page reload within the server's grace).
     */
    resume?: Uint8Array<ArrayBufferLike> | null | undefined;
    /**
     * A matchmaking ticket (`POST /matchmake`): used for the first
     * connection only, since it is single use.
     */
    ticket?: string | undefined;
    /**
     * A signed player token from the game's backend, for
     * servers that require player authentication: sent in every `Hello` (never in the URL).
     * Close codes 4010 to 4013 say what the server thought of it.
     */
    authToken?: string | null | undefined;
    /**
     * More query parameters for every connection.
     */
    params?: Record<string, string> | undefined;
    /**
     * `globalThis.WebSocket` by default.
     */
    WebSocket?: SocketClass | undefined;
    /**
     * `performance.now` and the global timers by default.
     */
    clock?: Clock | undefined;
    /**
     * `false`: never resume by itself.
     */
    reconnect?: false | Partial<ReconnectPolicy> | undefined;
    /**
     * Jitter source of the backoff.
     */
    random?: (() => number) | undefined;
    /**
     * ms between automatic pings (0: none); 1000.
     */
    pingInterval?: number | undefined;
    /**
     * Bytes the socket may hold unsent before inputs
     * and pings are held back; 1024.
     */
    maxBufferedAmount?: number | undefined;
    /**
     * Send the current controls every tick after the first
     * `sendInput` (what prediction assumes); true.
     */
    repeatInput?: boolean | undefined;
    interpolation?: Omit<InterpolatorOptions, "tickRate" | "posQuantum"> | undefined;
    /**
     * The game's movement rule for prediction;
     * {@link arenaStep} by default, `false` for none.
     */
    predict?: false | StepFn | undefined;
};
export type ClientEvents = {
    /**
     * The first `Welcome` of the session.
     */
    welcome: {
        welcome: Welcome;
    };
    /**
     * A snapshot, applied.
     */
    snapshot: {
        snapshot: Snapshot;
        world: World;
    };
    /**
     * A game event.
     */
    event: {
        payload: Uint8Array;
    };
    /**
     * A round trip, ms.
     */
    pong: {
        rtt: number;
    };
    /**
     * The connection was lost; resuming.
     */
    reconnecting: {
        code: number;
        reason: string;
    };
    /**
     * The server took the player back.
     */
    reconnected: {
        attempts: number;
        welcome: Welcome;
    };
    /**
     * The session is over; nothing follows.
     */
    close: {
        code: number;
        reason: string;
    };
    /**
     * Something the server sent could not be used (the
     * session then closes), or a listener threw.
     */
    error: {
        error: Error;
    };
};
export type ClientState = "connecting" | "open" | "reconnecting" | "closed";
