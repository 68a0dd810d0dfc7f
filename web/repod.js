/**
 * repod for browsers (and Node): the client side of repod's protocol over a WebSocket,
 * mirroring Python repod's `ConnectionListener` and the Rust `repod::Client`.
 *
 * Wire mapping: one WebSocket binary message carries exactly one msgpack map (a TCP frame's
 * payload, without its 4-byte length prefix), with a string key `"action"`. Right after the
 * WebSocket opens, the server sends `{"action": "connected"}`. Text messages are not part of
 * the protocol.
 *
 * ```js
 * import { Client } from "repod";                 // npm; or "./repod.js" next to the file
 *
 * const client = new Client();
 * client.on("connected", () => client.send({ action: "nickname", nickname: "Alice" }));
 * client.on("message", (data) => console.log(`${data.nickname}: ${data.text}`));
 * client.on("disconnected", (data) => console.log("gone:", data.reason));
 * client.connect("ws://127.0.0.1:5071/ws");
 * ```
 *
 * or, as in Python, a subclass with one `Network_<action>` method per action:
 *
 * ```js
 * class Chat extends Client {
 *   Network_message(data) { console.log(`${data.nickname}: ${data.text}`); }
 * }
 * new Chat().connect(url);
 * ```
 *
 * In Node (bots, load tests), pass a WebSocket class: Node 22 and later have a global one, used
 * by default; before that, take the `ws` package's: `new Client({ WebSocket })` with
 * `import WebSocket from "ws"`. Anything with the browser's `onopen`/`onmessage`/`onclose`/
 * `onerror` properties, `binaryType = "arraybuffer"`, `send` and `close` will do.
 *
 * Routing: an action goes to the handler registered with `on(action, fn)`, else to the method
 * `Network_<action>`, else to `network_received(data)` (the fallback, as in Python and Rust;
 * override it or assign a function to it). One handler per action, as in Rust: `on` replaces
 * the previous handler for that action, and takes precedence over a `Network_` method.
 * A map without `"action"` goes to the `""` handler if one is registered, else to the fallback.
 *
 * Connection events arrive as messages, routed like any other:
 *
 * | action          | when                                                              | fields |
 * |-----------------|-------------------------------------------------------------------|--------|
 * | `socketConnect` | the WebSocket opened (generated here)                             | none |
 * | `connected`     | the server's greeting arrived: once per connection (not generated here, unlike Python's client) | none |
 * | `error`         | connecting failed, or a received message had to be dropped (bad msgpack, not a map, non-string action, a text message); the connection stays in the second case | `error`: text |
 * | `disconnected`  | a connection that had opened ended (with a session: the session ended, see below) | `reason`: text such as `closed by peer (1000)`, `closed locally (1000)`, `connection lost (1006)`, `gave up resuming ...`; `code`: the WebSocket close code |
 * | `reconnecting`  | a session's link dropped; attempt `attempt` starts in `delayMs`   | `attempt`: 1, 2...; `reason`: why the link (or the previous attempt) ended; `delayMs` |
 * | `resumed`       | the session is back: nothing lost, nothing twice                 | none |
 * | `resume_failed` | the server could not resume the session; a new one goes on        | `reason`: the server's text; `dropped`: how many of the messages sent were dropped unconfirmed |
 *
 * Every `connect()` ends in exactly one `error` (it never opened) or one `disconnected` (it
 * did). A server may also send its own message with action `error` (the chat server sends
 * `{"action": "error", "message": ...}`): it reaches the same handler, without an `error` field.
 *
 * Sessions (a server with `Config::resume_window`; the wire is in `repod::session`): when the
 * greeting carries a `session` token, the client opts in. Each side then counts the messages it
 * received and acknowledges them (`_ack`: every 32 messages, or 200 ms after the first one not
 * yet acknowledged), and the client keeps every message it sent until the server acknowledged
 * it. When the link drops (a reset, a WebSocket closed without a close frame, code 1006, or no
 * answer to heartbeats), the client emits `reconnecting` and reconnects to the same URL with
 * exponential backoff and jitter (the `reconnect` option); it sends `resume` as its first
 * message; the server answers `resumed` and sends again what the client missed, the client sends
 * again what the server missed, then what the app sent meanwhile (queued, up to `maxQueuedBytes`
 * and `maxQueuedMessages`). The app sees one `resumed`, never a second `socketConnect` or
 * `connected`. If the server cannot resume (restarted, the session expired), the app sees
 * `resume_failed`, then the new link's `connected`: a new session, as after a fresh connect;
 * what was not confirmed and what was queued is dropped. If no attempt succeeds within
 * `giveUpMs`, or the queue overflows, `disconnected` ends it. A clean close (a close frame from
 * the server, or `close()`) ends the session with `disconnected`, as before. In a browser, the
 * wait before the next attempt is cut short when the page comes back online or becomes visible
 * again. The control messages (`_ack`, `resume`, the server's `resumed` and `resume_failed`)
 * never reach handlers. Against a server that offers no session nothing of this happens.
 *
 * Dispatch: by default (`dispatch: "immediate"`) handlers run as messages arrive, from the
 * WebSocket's event callbacks. With `dispatch: "pump"` messages and events wait in a queue until
 * the game calls `pump()`, once per frame, as with the Rust and Python clients; the socket itself
 * still reads and writes in the background (the browser owns it). Handlers never run inside
 * `connect()`, `send()` or `close()`: events those cause are delivered later (a microtask later in
 * immediate mode, the next `pump()` in pump mode).
 *
 * A handler that throws does not stop the dispatch: the exception is passed to
 * `reportError` (the console and `window.onerror` see it) and the next message is dispatched.
 *
 * Data types (msgpack via `@msgpack/msgpack` 3.x: the npm dependency, or for the pages served
 * from this folder the vendored copy, see vendor/msgpack/README.md):
 * - msgpack str <-> string, bin <-> `Uint8Array` (Python `bytes`, Rust `repod::Bin`), nil <->
 *   `null` (`undefined` is sent as nil too), arrays <-> arrays, maps <-> plain objects.
 * - Integers: a JS number that is a safe integer is sent as a msgpack integer, any other number
 *   as a float64. So `1.0` leaves as the integer 1 and `-0` as 0; a server reading a float
 *   field should accept integers (Rust: read by value, `Message::f64`).
 * - Decoding, `useBigInt64: false` (the default): every integer becomes a number; integers
 *   beyond +/-2^53 lose precision silently. `useBigInt64: true`: integers in msgpack's 64-bit
 *   formats become `bigint` (Rust and Python servers use those only for values outside
 *   [-2^31, 2^32), so small numbers stay numbers, but 2^40 arrives as `2n ** 40n`), and a
 *   `bigint` can be sent. Without the option, sending a `bigint` throws.
 * - Map keys: str or integer keys decode to object property names (an integer key 5 becomes
 *   the property "5", and goes back as the string "5"); a map with another key type (bin,
 *   array...) or a `__proto__` key cannot be decoded and becomes an `error` event. Send plain
 *   objects: a JS `Map` is not encoded as its entries.
 * - Strings with invalid UTF-8 decode with U+FFFD replacement characters (a Rust or Python
 *   server never sends them).
 *
 * @module repod
 */

// A bare specifier: npm, bundlers and Node resolve it to the `@msgpack/msgpack` dependency.
// Pages served straight from this folder, with no build step, map it to the vendored copy with
// an import map before their first module script (see README.md, "Serving"):
//   <script type="importmap">{ "imports": { "@msgpack/msgpack": "./vendor/msgpack/index.mjs" } }</script>
import { Decoder, Encoder } from "@msgpack/msgpack";

// Numeric, so a stand-in WebSocket class (Node's `ws`, a test double) needs no static constants.
const CONNECTING = 0;
const OPEN = 1;

/**
 * Actions never counted as session messages, in either direction.
 * @type {Set<unknown>}
 */
const UNCOUNTED = new Set(["connected", "_ack", "_ping", "_pong", "resume", "resumed", "resume_failed"]);
/** An `_ack` goes out after this many messages arrived since the last one... */
const ACK_EVERY = 32;
/** ... or this long after the first message not yet acknowledged arrived. */
const ACK_DELAY_MS = 200;

/**
 * A received (or locally generated) message: a msgpack map decoded to a plain object.
 * @typedef {{ action?: string, [key: string]: any }} Message
 */

/**
 * A message handler; `this` is the client as well.
 * @callback Handler
 * @param {Message} data the message
 * @param {Client} client the client that received it
 * @returns {void}
 */

/**
 * @typedef {object} ClientOptions
 * @property {"immediate" | "pump"} [dispatch="immediate"] when handlers run: as messages
 *   arrive, or only inside `pump()`.
 * @property {boolean} [useBigInt64=false] decode msgpack int64/uint64 as `bigint`, and allow
 *   sending `bigint`.
 * @property {string | string[]} [protocols] WebSocket subprotocols to offer.
 * @property {object} [encoderOptions] extra options for msgpack's `Encoder` (`extensionCodec`,
 *   `maxDepth`, `ignoreUndefined`...).
 * @property {object} [decoderOptions] extra options for msgpack's `Decoder` (`extensionCodec`,
 *   `maxStrLength`, `mapKeyConverter`...).
 * @property {new (url: string, protocols?: string | string[]) => WebSocketLike} [WebSocket] the
 *   WebSocket class to use: the global one by default; pass Node's `ws` package, or a test
 *   double.
 * @property {number} [heartbeatMs] send the server a heartbeat ping every this many
 *   milliseconds, measure the round trip (`rtt`), and end the connection with a `disconnected`
 *   event when nothing at all arrived for `heartbeatTimeoutMs`: a server that vanished without
 *   closing (a dead network, a frozen process) is found. Off by default. Whatever this says,
 *   the server's own pings are always answered, and never reach handlers.
 * @property {number} [heartbeatTimeoutMs] how long the server may stay silent while heartbeats
 *   are on; three `heartbeatMs` by default.
 * @property {false | true | ReconnectOptions} [reconnect] when the server offers a session:
 *   reconnect and resume it after a dropped link (on by default, with the defaults of
 *   `ReconnectOptions`). `false`: do not opt in to sessions at all (the client behaves as one
 *   that knows nothing of them: a drop ends in `disconnected`).
 * @property {number} [connectTimeoutMs=10000] bound on one reconnect attempt: from creating the
 *   socket until the server's answer to `resume`; a slower attempt counts as failed.
 * @property {number} [maxQueuedBytes=4194304] bound on what a session holds for a resume while
 *   the link is down: messages sent but not yet acknowledged by the server, plus those the app
 *   sends during the outage. Exceeded (at the drop, or by a `send` during the outage): the client
 *   gives up the session (`disconnected`), and that `send` returns 0.
 * @property {number} [maxQueuedMessages=16384] the same bound, in messages.
 */

/**
 * @typedef {object} ReconnectOptions
 * @property {number} [initialMs=100] the wait before the first attempt; it doubles for each
 *   next one, times a random factor between 0.5 and 1.5.
 * @property {number} [maxMs=5000] the longest wait between two attempts (before the jitter).
 * @property {number} [giveUpMs=60000] no attempt starts after this long without success: then
 *   `disconnected`.
 * @property {number} [maxAttempts=Infinity] attempts per outage, at most.
 */

/**
 * What repod.js uses of a WebSocket, so a stand-in needs no more.
 * @typedef {object} WebSocketLike
 * @property {number} readyState
 * @property {number} bufferedAmount
 * @property {string} binaryType
 * @property {string} [extensions] the negotiated extensions ("" for none)
 * @property {((ev: any) => any) | null} onopen
 * @property {((ev: MessageEvent) => any) | null} onmessage
 * @property {((ev: CloseEvent) => any) | null} onclose
 * @property {((ev: any) => any) | null} onerror
 * @property {(data: any) => void} send a Uint8Array, in practice
 * @property {(code?: number, reason?: string) => void} close
 */

/**
 * One connection attempt. A new one per `connect()`, so callbacks from an abandoned socket can
 * be recognised and ignored.
 * @typedef {object} Link
 * @property {WebSocketLike | null} ws
 * @property {string} url
 * @property {Uint8Array[] | null} outbox messages sent before the socket opened
 * @property {boolean} established the socket opened
 * @property {boolean} closing `close()` was called
 * @property {boolean} ended its final event (`error` or `disconnected`) was emitted
 * @property {number} lastReceived when the last message arrived (`performance.now()`)
 * @property {ReturnType<typeof setInterval> | null} beat the heartbeat timer, while open
 * @property {Uint8Array[] | null} early counted messages sent on the first link of a
 *   `connect()` before the greeting said whether the server offers sessions (kept for replay
 *   if it does)
 * @property {boolean} greeted the greeting arrived
 * @property {boolean} resuming opened to resume the session: `resume` sent, answer awaited
 * @property {ReturnType<typeof setTimeout> | null} deadline the bound on a resume attempt
 * @property {Message | null} greeting the greeting of a resume link, held until the answer
 * @property {string | null} newToken the token that greeting carried
 * @property {Message[]} held messages that arrived between that greeting and the answer
 */

/**
 * A message kept or queued for a session, encoded.
 * @typedef {object} Outgoing
 * @property {Uint8Array} bytes
 * @property {boolean} counted whether the server counts it (not a control action)
 */

/**
 * The wait for the link to come back.
 * @typedef {object} Outage
 * @property {number} since when the link dropped (`performance.now()`)
 * @property {number} attempt the number of the latest attempt (0 before the first)
 * @property {Outgoing[]} queue what the app sent meanwhile
 * @property {number} queueBytes
 * @property {ReturnType<typeof setTimeout> | null} wait the backoff timer, between attempts
 * @property {() => void} wake starts the next attempt now, when waiting
 * @property {() => void} unlisten removes the browser's online/visibility listeners
 */

/**
 * A session (the server's greeting offered one and the client opted in): it outlives links.
 * @typedef {object} Session
 * @property {string} token the token to resume with
 * @property {string} url
 * @property {number} received session messages received from the server
 * @property {number} unacked of those, how many since the last `_ack` sent
 * @property {ReturnType<typeof setTimeout> | null} ackTimer
 * @property {number} sent counted messages the client sent
 * @property {Uint8Array[]} kept the last ones, not yet acknowledged: numbers
 *   `sent - kept.length + 1` to `sent`
 * @property {number} keptBytes
 * @property {Outage | null} outage set while the link is down (and until the resume answer)
 * @property {WebSocketLike[]} parked sockets given up for dead but not closed: closing them
 *   (a FIN) could reach a server that merely stalled, which takes it for the end of the
 *   session; they are closed once the session is resumed elsewhere, failed or ended
 */

/**
 * A repod client over a WebSocket (Python: `ConnectionListener`; Rust: `Client` with a
 * `Listener`). Subclass it with `Network_<action>` methods, or register handlers with `on`.
 */
export class Client {
  /** @type {Map<string, Handler>} */
  #handlers = new Map();
  /** @type {Message[]} */
  #queue = [];
  /** @type {Link | null} */
  #link = null;
  #pumpMode;
  #draining = false;
  #drainScheduled = false;
  #protocols;
  #WebSocket;
  #encoder;
  #decoder;
  #heartbeatMs;
  #heartbeatTimeoutMs;
  /** @type {number | null} */
  #rtt = null;
  /** @type {Required<ReconnectOptions> | null} null: sessions off */
  #reconnect;
  #connectTimeoutMs;
  #maxQueuedBytes;
  #maxQueuedMessages;
  /** @type {Session | null} */
  #session = null;

  /**
   * @param {ClientOptions} [options]
   */
  constructor(options = {}) {
    const dispatch = options.dispatch ?? "immediate";
    if (dispatch !== "immediate" && dispatch !== "pump") {
      throw new RangeError(`repod: dispatch must be "immediate" or "pump", not ${JSON.stringify(dispatch)}`);
    }
    this.#pumpMode = dispatch === "pump";
    this.#protocols = options.protocols;
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    const useBigInt64 = options.useBigInt64 ?? false;
    this.#encoder = new Encoder({ useBigInt64, ...options.encoderOptions });
    this.#decoder = new Decoder({ useBigInt64, ...options.decoderOptions });
    this.#heartbeatMs = options.heartbeatMs ?? 0;
    this.#heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 3 * this.#heartbeatMs;
    const reconnect = options.reconnect ?? true;
    if (reconnect === false) {
      this.#reconnect = null;
    } else {
      if (reconnect !== true && (typeof reconnect !== "object" || reconnect === null)) {
        throw new TypeError("repod: reconnect must be false, true or an object");
      }
      const r = reconnect === true ? {} : reconnect;
      this.#reconnect = {
        initialMs: amount(r.initialMs, 100, "reconnect.initialMs"),
        maxMs: amount(r.maxMs, 5000, "reconnect.maxMs"),
        giveUpMs: amount(r.giveUpMs, 60_000, "reconnect.giveUpMs"),
        maxAttempts: amount(r.maxAttempts, Infinity, "reconnect.maxAttempts"),
      };
    }
    this.#connectTimeoutMs = amount(options.connectTimeoutMs, 10_000, "connectTimeoutMs");
    this.#maxQueuedBytes = amount(options.maxQueuedBytes, 4 * 1024 * 1024, "maxQueuedBytes");
    this.#maxQueuedMessages = amount(options.maxQueuedMessages, 16384, "maxQueuedMessages");
  }

  /**
   * Opens a connection to `url` (`ws://host:port/path` or `wss://...`) and returns at once;
   * `socketConnect` or `error` follows. Messages sent before the socket opens are queued and
   * delivered once it does. A connection still open (or opening, or reconnecting) is closed
   * first, its final event (`disconnected` or `error`, reason `closed locally`) delivered before
   * the new connection's events; a session it had ends with it.
   * @param {string | URL} url
   * @returns {this}
   */
  connect(url) {
    if (this.#session?.outage) {
      this.#endSession({ action: "disconnected", reason: "closed locally (1000)", code: 1000 }, false);
    } else {
      const old = this.#link;
      if (old && !old.ended) {
        old.closing = true;
        this.#detach(old);
        if (old.ws) old.ws.close();
        this.#end(old, 1000, "", false);
      }
    }
    this.#open(String(url), false);
    return this;
  }

  /**
   * Creates a link and its socket: for `connect()`, or for an attempt to resume the session.
   * @param {string} url
   * @param {boolean} resuming
   */
  #open(url, resuming) {
    /** @type {Link} */
    const link = {
      ws: null, url, outbox: [], established: false, closing: false, ended: false,
      lastReceived: 0, beat: null, early: !resuming && this.#reconnect !== null ? [] : null,
      greeted: false, resuming, deadline: null, greeting: null, newToken: null, held: [],
    };
    this.#link = link;
    let ws;
    try {
      if (typeof this.#WebSocket !== "function") {
        throw new TypeError("no WebSocket class: pass one as the WebSocket option (in Node before 22, the ws package's)");
      }
      ws = this.#protocols === undefined
        ? new this.#WebSocket(link.url)
        : new this.#WebSocket(link.url, this.#protocols);
    } catch (e) {
      // A malformed URL or a forbidden port throws here; report it the way a refused
      // connection is reported, so a game needs only one code path.
      const error = `cannot connect to ${link.url}: ${errorText(e)}`;
      if (resuming) {
        this.#dropped(link, error);
        return;
      }
      link.ended = true;
      link.outbox = null;
      this.#emit({ action: "error", error }, false);
      return;
    }
    link.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => this.#onOpen(link);
    ws.onmessage = (ev) => this.#onMessage(link, ev);
    ws.onclose = (ev) => this.#onClose(link, ev);
    // The error event carries no detail (browsers hide it on purpose); close always follows
    // with a code, and that is where the outcome is reported. A listener that does nothing
    // rather than none: the `ws` package emits "error" as a Node EventEmitter event, and one
    // with no listener is thrown (an uncaught exception: a refused connect would end a bot).
    ws.onerror = ignore;
    if (resuming) {
      link.deadline = setTimeout(() => this.#attemptTimedOut(link), this.#connectTimeoutMs);
    }
  }

  /**
   * Sends one message to the server.
   * @param {{ action: string, [key: string]: any }} data a plain object: a msgpack map
   * @returns {number} the encoded size in bytes (there is no length prefix over WebSocket, so
   *   4 less than the Rust client reports for the same message), or 0 when there is no open or
   *   opening connection (after `close()`, after the end, before `connect()`). While the socket
   *   is still opening, the message is queued and the size is returned; so it is while a
   *   session reconnects (0 if that overflows the queue: the session then ends).
   * @throws {TypeError} when `data` is not a plain object
   * @throws {Error} when msgpack cannot encode a value (a function, a symbol, a `bigint`
   *   without `useBigInt64`, nesting over `encoderOptions.maxDepth`, 100 by default)
   */
  send(data) {
    if (data === null || typeof data !== "object" || Array.isArray(data) || ArrayBuffer.isView(data)) {
      throw new TypeError("repod: send() takes a plain object (a msgpack map with an \"action\")");
    }
    // Whether the server counts it as a session message (control actions are not counted).
    const counted = this.#reconnect !== null && !UNCOUNTED.has(data.action);
    const s = this.#session;
    if (s && s.outage) return this.#queueDuringOutage(s, data, counted);
    const link = this.#link;
    if (!link || link.ended || link.closing) return 0;
    if (!link.established) {
      // A copy: encodeSharedRef's buffer is reused by the next encode.
      const bytes = this.#encoder.encode(data);
      /** @type {Uint8Array[]} */ (link.outbox).push(bytes);
      if (counted && link.early) link.early.push(bytes);
      return bytes.byteLength;
    }
    const ws = /** @type {WebSocketLike} */ (link.ws);
    if (s && counted) {
      // Kept until the server acknowledges it, so a copy of its own.
      const bytes = this.#encoder.encode(data);
      s.kept.push(bytes);
      s.keptBytes += bytes.byteLength;
      s.sent += 1;
      // A socket already closing (its close event not yet delivered) would drop it: if that
      // turns out to be a drop, the resume sends it again.
      if (ws.readyState === OPEN) ws.send(bytes);
      return bytes.byteLength;
    }
    // Closed by the peer but the close event not yet delivered: the browser would drop the
    // data silently, so say so now.
    if (ws.readyState !== OPEN) return 0;
    if (counted && link.early) {
      // Before the greeting: kept in case it offers a session (these messages count in it).
      const bytes = this.#encoder.encode(data);
      link.early.push(bytes);
      ws.send(bytes);
      return bytes.byteLength;
    }
    const bytes = this.#encodeFor(ws, data);
    ws.send(bytes);
    return bytes.byteLength;
  }

  /**
   * A send while the session's link is down: queued for after the resume, within the bounds.
   * @param {Session} s
   * @param {object} data
   * @param {boolean} counted
   */
  #queueDuringOutage(s, data, counted) {
    const o = /** @type {Outage} */ (s.outage);
    const bytes = this.#encoder.encode(data);
    const messages = s.kept.length + o.queue.length + 1;
    const total = s.keptBytes + o.queueBytes + bytes.byteLength;
    if (messages > this.#maxQueuedMessages || total > this.#maxQueuedBytes) {
      this.#endSession({ action: "disconnected", reason: this.#overflow(messages, total), code: 1006 }, false);
      return 0;
    }
    o.queue.push({ bytes, counted });
    o.queueBytes += bytes.byteLength;
    return bytes.byteLength;
  }

  /**
   * @param {number} messages
   * @param {number} bytes
   */
  #overflow(messages, bytes) {
    return `gave up resuming: ${messages} messages (${bytes} bytes) to hold while the link is down, `
      + `over maxQueuedMessages (${this.#maxQueuedMessages}) or maxQueuedBytes (${this.#maxQueuedBytes})`;
  }

  /**
   * The bytes of `data` for `ws.send`. A browser's `send` copies them, so the encoder's shared
   * buffer is reused for the next message. Node's `ws` with an extension negotiated
   * (permessage-deflate) compresses later, after `send` returned: it gets a copy of its own.
   * @param {WebSocketLike} ws
   * @param {object} data
   */
  #encodeFor(ws, data) {
    return ws.extensions ? this.#encoder.encode(data) : this.#encoder.encodeSharedRef(data);
  }

  /**
   * Closes the connection (status 1000). What was sent before is still delivered (the close
   * frame follows it). A `disconnected` event with reason `closed locally (...)` follows once
   * the WebSocket has closed; if the socket had not opened yet, the attempt is abandoned, the
   * messages queued for it are dropped, and an `error` event follows instead. While a session
   * reconnects, reconnecting stops, what was queued is dropped, and `disconnected` (`closed
   * locally (1000)`) follows. Does nothing when already closed or closing.
   * @returns {void}
   */
  close() {
    if (this.#session?.outage) {
      this.#endSession({ action: "disconnected", reason: "closed locally (1000)", code: 1000 }, false);
      return;
    }
    const link = this.#link;
    if (!link || link.ended || link.closing) return;
    link.closing = true;
    link.outbox = null;
    const ws = /** @type {WebSocketLike} */ (link.ws);
    if (ws.readyState === CONNECTING) {
      // Browsers fail a connecting socket with 1006 and may log a console warning; reporting
      // the end now keeps the outcome independent of that.
      this.#detach(link);
      ws.close();
      this.#end(link, 1000, "", false);
      return;
    }
    ws.close(1000);
  }

  /**
   * Dispatches the messages and events that arrived since the last call, in order; returns
   * how many. Call it once per frame with `dispatch: "pump"`. Messages that arrive during the
   * call (or that handlers cause) wait for the next call. In immediate mode there is nothing to
   * pump and it returns 0.
   * @returns {number}
   */
  pump() {
    return this.#drain(this.#queue.length);
  }

  /**
   * Routes messages with this action to `handler`, replacing any previous handler for it and
   * taking precedence over a `Network_<action>` method. Events too: `socketConnect`,
   * `connected`, `error`, `disconnected`, `reconnecting`, `resumed`, `resume_failed`.
   * @param {string} action
   * @param {Handler} handler
   * @returns {this}
   */
  on(action, handler) {
    if (typeof handler !== "function") throw new TypeError("repod: on() needs a function");
    this.#handlers.set(String(action), handler);
    return this;
  }

  /**
   * Removes the handler registered with `on` for this action (a `Network_` method, if any,
   * takes over again).
   * @param {string} action
   * @returns {this}
   */
  off(action) {
    this.#handlers.delete(String(action));
    return this;
  }

  /**
   * The fallback for messages no handler and no `Network_` method takes (Python and Rust:
   * `network_received`). Override it in a subclass, or assign a function to it. The default
   * logs: `error` events with `console.warn` (so a failed connect is not silent), the rest
   * with `console.debug`.
   * @param {Message} data
   * @returns {void}
   */
  network_received(data) {
    if (data.action === "error") {
      console.warn("repod: unhandled error:", data.error ?? data);
    } else {
      console.debug("repod: no handler for action", JSON.stringify(data.action ?? ""));
    }
  }

  /**
   * Whether the connection is open or still opening (as Rust's `is_connected`), or a session
   * is reconnecting: `send` queues a message exactly when this is true. False after `close()`.
   * @type {boolean}
   */
  get isConnected() {
    if (this.#session?.outage) return true;
    const link = this.#link;
    return !!link && !link.ended && !link.closing
      && (!link.established || /** @type {WebSocketLike} */ (link.ws).readyState === OPEN);
  }

  /**
   * Where the connection is: `"idle"` before the first `connect()`, then `"connecting"`,
   * `"open"`, `"reconnecting"` (a session's link dropped, until it is resumed or given up),
   * `"closing"` (after `close()`, until the socket has closed), `"closed"`.
   * @type {"idle" | "connecting" | "open" | "reconnecting" | "closing" | "closed"}
   */
  get state() {
    if (this.#session?.outage) return "reconnecting";
    const link = this.#link;
    if (!link) return "idle";
    if (link.ended) return "closed";
    if (link.closing) return "closing";
    return link.established ? "open" : "connecting";
  }

  /**
   * The latest heartbeat round-trip time in milliseconds (with `heartbeatMs`), or null before
   * the first answer. It includes the time the server took to answer (at most one reactor
   * turn).
   * @type {number | null}
   */
  get rtt() {
    return this.#rtt;
  }

  /**
   * The URL of the current (or last) connection, or null before `connect()`.
   * @type {string | null}
   */
  get url() {
    return this.#link ? this.#link.url : null;
  }

  /**
   * Bytes sent but not yet handed to the network: the socket's `bufferedAmount`, plus what is
   * queued while opening or reconnecting. A game can watch it to stop sending to a slow link.
   * @type {number}
   */
  get bufferedAmount() {
    const outage = this.#session?.outage;
    const waiting = outage ? outage.queueBytes : 0;
    const link = this.#link;
    if (!link || link.ended) return waiting;
    const queued = link.outbox ? link.outbox.reduce((n, b) => n + b.byteLength, 0) : 0;
    return waiting + queued + (link.ws ? link.ws.bufferedAmount : 0);
  }

  /**
   * Messages and events waiting for `pump()` (always 0 in immediate mode, outside handlers).
   * @type {number}
   */
  get pending() {
    return this.#queue.length;
  }

  /** @param {Link} link */
  #onOpen(link) {
    if (link !== this.#link || link.ended) return;
    link.established = true;
    const ws = /** @type {WebSocketLike} */ (link.ws);
    if (link.resuming) {
      // At once, before the greeting: the first message of the link.
      const s = /** @type {Session} */ (this.#session);
      ws.send(this.#encodeFor(ws, { action: "resume", session: s.token, received: s.received }));
    }
    for (const bytes of /** @type {Uint8Array[]} */ (link.outbox)) ws.send(bytes);
    link.outbox = null;
    link.lastReceived = performance.now();
    if (this.#heartbeatMs > 0) link.beat = setInterval(() => this.#heartbeat(link), this.#heartbeatMs);
    // Once per connect(): a link that resumes a session is not news to the app.
    if (!link.resuming) this.#emit({ action: "socketConnect" }, true);
  }

  /**
   * One heartbeat round: end a connection that stayed silent too long, else ping it.
   * @param {Link} link
   */
  #heartbeat(link) {
    if (link !== this.#link || link.ended) return;
    const ws = /** @type {WebSocketLike} */ (link.ws);
    const silent = performance.now() - link.lastReceived;
    if (silent >= this.#heartbeatTimeoutMs) {
      const reason = `no answer to heartbeats for ${(silent / 1000).toFixed(1)} s`;
      if (this.#session && !link.closing) {
        // A drop: resume on a new link. This socket is left open until then: a server that
        // only stalled would take its close for the end of the session.
        this.#detach(link);
        this.#session.parked.push(ws);
        this.#dropped(link, reason);
        return;
      }
      // The socket may be dead for good: do not wait for a close handshake that cannot come.
      this.#detach(link);
      ws.close(1000);
      link.ended = true;
      link.outbox = null;
      this.#clearSession();
      this.#emit({ action: "disconnected", reason, code: 1006 }, true);
      return;
    }
    if (ws.readyState === OPEN) {
      // Microseconds, as the Rust side stamps them; only this side reads them back. Rounded
      // down, so an answer at the same instant (a frozen test clock) reads 0, not -0.4 us.
      ws.send(this.#encodeFor(ws, { action: "_ping", t: Math.floor(performance.now() * 1000) }));
    }
  }

  /**
   * @param {Link} link
   * @param {MessageEvent} ev
   */
  #onMessage(link, ev) {
    if (link !== this.#link || link.ended) return;
    // Anything that arrives shows the link is alive, a message the app cannot use included:
    // the heartbeat finds dead links, and the errors below are reported on their own.
    link.lastReceived = performance.now();
    const data = ev.data;
    if (typeof data === "string") {
      this.#emit({ action: "error", error: "received a text message: the protocol uses binary messages only" }, true);
      return;
    }
    let decoded;
    try {
      decoded = this.#decoder.decode(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
    } catch (e) {
      this.#emit({ action: "error", error: `invalid msgpack: ${errorText(e)}` }, true);
      return;
    }
    // The same texts as the Rust client's errors, so logs read alike.
    if (decoded === null || typeof decoded !== "object" || Array.isArray(decoded) || ArrayBuffer.isView(decoded)) {
      this.#emit({ action: "error", error: "message is not a msgpack map" }, true);
      return;
    }
    const msg = /** @type {Message} */ (decoded);
    if ("action" in msg && typeof msg.action !== "string") {
      this.#emit({ action: "error", error: "\"action\" is not a string" }, true);
      return;
    }
    // Heartbeats are the library's business: answered or measured here, never dispatched.
    if (msg.action === "_ping") {
      const ws = /** @type {WebSocketLike} */ (link.ws);
      const pong = "t" in msg ? { action: "_pong", t: msg.t } : { action: "_pong" };
      if (ws.readyState === OPEN) ws.send(this.#encodeFor(ws, pong));
      return;
    }
    if (msg.action === "_pong") {
      const t = Number(msg.t) / 1000;
      const rtt = performance.now() - t;
      if (Number.isFinite(rtt) && rtt >= 0 && t > 0) this.#rtt = rtt;
      return;
    }
    // So are a session's acknowledgements (and never shown, session or not: `_` is reserved).
    if (msg.action === "_ack") {
      const s = this.#session;
      if (s && !link.resuming) this.#release(s, Number(msg.received));
      return;
    }
    if (!link.greeted) {
      link.greeted = true;
      if (msg.action === "connected") {
        this.#onGreeting(link, msg);
        return;
      }
      // Not a repod greeting: no session on this link.
      if (link.resuming) {
        this.#resumeFailed(link, "the server did not greet");
      } else {
        link.early = null;
      }
    }
    const s = this.#session;
    if (link.resuming) {
      if (msg.action === "resumed") {
        this.#resumed(link, msg);
      } else if (msg.action === "resume_failed") {
        this.#resumeFailed(link, typeof msg.reason === "string" ? msg.reason : "the server could not resume");
      } else {
        link.held.push(msg);
      }
      return;
    }
    if (s) {
      // A control message out of place (the answer to a resume that was not asked): never shown.
      if (msg.action === "resumed" || msg.action === "resume_failed") return;
      if (!UNCOUNTED.has(msg.action)) this.#count(s);
    }
    this.#emit(msg, true);
  }

  /**
   * The greeting of a link: opts in to the session it offers; held on a link that resumes.
   * @param {Link} link
   * @param {Message} msg
   */
  #onGreeting(link, msg) {
    const token = typeof msg.session === "string" && msg.session !== "" ? msg.session : null;
    if (link.resuming) {
      // Shown only if the resume fails: then it begins the new session.
      link.greeting = msg;
      link.newToken = token;
      // A server without sessions will never answer the resume.
      if (token === null) this.#resumeFailed(link, "the server offers no sessions");
      return;
    }
    const early = link.early;
    link.early = null;
    if (token !== null && this.#reconnect !== null && early) {
      const s = newSession(token, link.url, 0);
      // What was sent on this link so far counts in the session: the server greeted first.
      s.kept = early;
      s.sent = early.length;
      s.keptBytes = early.reduce((n, b) => n + b.byteLength, 0);
      this.#session = s;
      this.#sendAck(s); // the opt-in, at once
    }
    this.#emit(msg, true);
  }

  /**
   * One more session message received: acknowledged after 32, or within 200 ms.
   * @param {Session} s
   */
  #count(s) {
    s.received += 1;
    s.unacked += 1;
    if (s.unacked >= ACK_EVERY) {
      this.#sendAck(s);
    } else if (s.ackTimer === null) {
      s.ackTimer = setTimeout(() => this.#sendAck(s), ACK_DELAY_MS);
    }
  }

  /**
   * Sends `_ack` with what was received so far, when the session's link is up.
   * @param {Session} s
   */
  #sendAck(s) {
    if (s.ackTimer !== null) {
      clearTimeout(s.ackTimer);
      s.ackTimer = null;
    }
    const link = this.#link;
    if (this.#session !== s || s.outage || !link || link.ended || link.resuming) return;
    const ws = /** @type {WebSocketLike} */ (link.ws);
    if (ws.readyState !== OPEN) return;
    s.unacked = 0;
    ws.send(this.#encodeFor(ws, { action: "_ack", received: s.received }));
  }

  /**
   * The server acknowledged its first `n` messages from us: they need not be kept.
   * @param {Session} s
   * @param {number} n
   */
  #release(s, n) {
    if (!Number.isFinite(n)) return;
    const first = s.sent - s.kept.length; // how many were released before
    const k = Math.min(Math.floor(n) - first, s.kept.length);
    if (k <= 0) return;
    for (let i = 0; i < k; i += 1) s.keptBytes -= s.kept[i].byteLength;
    s.kept.splice(0, k);
  }

  /**
   * @param {Link} link
   * @param {CloseEvent} ev
   */
  #onClose(link, ev) {
    if (link.ended) return;
    this.#detach(link);
    // A drop (no close frame: a reset, a dead network) of a session's link, or a failed
    // attempt to resume: try again. A clean close ends the session, as any connection.
    if (this.#session && link === this.#link && !link.closing
      && (!link.established || ev.wasClean === false || ev.code === 1006)) {
      const detail = `(${ev.code}${ev.reason ? `: ${ev.reason}` : ""})`;
      this.#dropped(link, link.established ? `connection lost ${detail}` : `cannot connect to ${link.url} ${detail}`);
      return;
    }
    this.#end(link, ev.code, ev.reason, true);
  }

  /**
   * Emits the final event of a connection, once (and ends its session, if any).
   * @param {Link} link
   * @param {number} code
   * @param {string} reason
   * @param {boolean} fromSocket
   */
  #end(link, code, reason, fromSocket) {
    if (link.beat !== null) {
      clearInterval(link.beat);
      link.beat = null;
    }
    link.ended = true;
    link.outbox = null;
    if (link === this.#link) this.#clearSession();
    const detail = `(${code}${reason ? `: ${reason}` : ""})`;
    if (link.established) {
      // 1006 is never sent by a peer: the browser reports it when the TCP connection ended
      // without a close frame.
      const why = link.closing ? "closed locally" : code === 1006 ? "connection lost" : "closed by peer";
      this.#emit({ action: "disconnected", reason: `${why} ${detail}`, code }, fromSocket);
    } else if (link.closing) {
      this.#emit({ action: "error", error: "closed locally before the connection was established" }, fromSocket);
    } else {
      // Browsers do not say why (refused, unreachable, HTTP error on the upgrade): 1006 it is.
      this.#emit({ action: "error", error: `cannot connect to ${link.url} ${detail}` }, fromSocket);
    }
  }

  /**
   * The session's link (or an attempt to resume it) is gone: wait, then try again.
   * @param {Link} link already detached
   * @param {string} reason
   */
  #dropped(link, reason) {
    link.ended = true;
    link.outbox = null;
    const s = /** @type {Session} */ (this.#session);
    if (s.ackTimer !== null) {
      clearTimeout(s.ackTimer);
      s.ackTimer = null;
    }
    if (!s.outage) {
      s.outage = this.#startOutage(s);
      if (s.kept.length > this.#maxQueuedMessages || s.keptBytes > this.#maxQueuedBytes) {
        this.#endSession({ action: "disconnected", reason: this.#overflow(s.kept.length, s.keptBytes), code: 1006 }, true);
        return;
      }
    }
    this.#scheduleAttempt(s, reason);
  }

  /**
   * @param {Session} s
   * @returns {Outage}
   */
  #startOutage(s) {
    /** @type {Outage} */
    const o = {
      since: performance.now(), attempt: 0, queue: [], queueBytes: 0, wait: null, wake: ignore, unlisten: ignore,
    };
    // Skip the rest of the wait when the page comes back: online again, or visible again (a
    // phone that slept). Browsers only: Node has neither `window` nor `document`.
    o.wake = () => {
      if (this.#session !== s || s.outage !== o || o.wait === null) return;
      clearTimeout(o.wait);
      o.wait = null;
      this.#attempt(s);
    };
    const g = /** @type {any} */ (globalThis);
    const win = g.window;
    const doc = g.document;
    const onVisible = () => {
      if (doc.visibilityState === "visible") o.wake();
    };
    const hasWin = !!win && typeof win.addEventListener === "function";
    const hasDoc = !!doc && typeof doc.addEventListener === "function";
    if (hasWin) win.addEventListener("online", o.wake);
    if (hasDoc) doc.addEventListener("visibilitychange", onVisible);
    o.unlisten = () => {
      if (hasWin) win.removeEventListener("online", o.wake);
      if (hasDoc) doc.removeEventListener("visibilitychange", onVisible);
    };
    return o;
  }

  /**
   * Emits `reconnecting` and sets the timer of the next attempt; or gives up.
   * @param {Session} s
   * @param {string} reason why the link, or the last attempt, ended
   */
  #scheduleAttempt(s, reason) {
    const o = /** @type {Outage} */ (s.outage);
    const r = /** @type {Required<ReconnectOptions>} */ (this.#reconnect);
    const elapsed = performance.now() - o.since;
    if (o.attempt >= r.maxAttempts || elapsed >= r.giveUpMs) {
      const tries = o.attempt === 1 ? "1 attempt" : `${o.attempt} attempts`;
      const after = `${tries} in ${(elapsed / 1000).toFixed(1)} s`;
      this.#endSession({ action: "disconnected", reason: `gave up resuming after ${after}: ${reason}`, code: 1006 }, true);
      return;
    }
    o.attempt += 1;
    const base = Math.min(r.maxMs, r.initialMs * 2 ** (o.attempt - 1));
    const delayMs = Math.max(0, Math.round(Math.min(base * (0.5 + Math.random()), r.giveUpMs - elapsed)));
    o.wait = setTimeout(() => {
      o.wait = null;
      this.#attempt(s);
    }, delayMs);
    // Last: a handler may call close() or connect().
    this.#emit({ action: "reconnecting", attempt: o.attempt, reason, delayMs }, true);
  }

  /** @param {Session} s */
  #attempt(s) {
    if (this.#session !== s || !s.outage) return;
    this.#open(s.url, true);
  }

  /** @param {Link} link */
  #attemptTimedOut(link) {
    link.deadline = null;
    if (link !== this.#link || link.ended) return;
    this.#detach(link);
    const ws = /** @type {WebSocketLike} */ (link.ws);
    if (ws.readyState === OPEN) {
      // `resume` went out on it: the server may have moved the session onto this link.
      /** @type {Session} */ (this.#session).parked.push(ws);
    } else {
      abort(ws);
    }
    const what = link.established ? "no answer to resume" : `cannot connect to ${link.url}`;
    this.#dropped(link, `${what} within ${(this.#connectTimeoutMs / 1000).toFixed(1)} s`);
  }

  /**
   * The server resumed the session: send again what it missed, then what waited.
   * @param {Link} link
   * @param {Message} msg
   */
  #resumed(link, msg) {
    const s = /** @type {Session} */ (this.#session);
    const o = /** @type {Outage} */ (s.outage);
    if (link.deadline !== null) {
      clearTimeout(link.deadline);
      link.deadline = null;
    }
    const m = Number(msg.received);
    const first = s.sent - s.kept.length;
    if (!Number.isSafeInteger(m) || m < first || m > s.sent) {
      // Its count does not fit what was sent: a replay could not be exact.
      const reason = `gave up resuming: the server says it received ${String(msg.received)} messages, `
        + `but ${first} were acknowledged and ${s.sent} sent`;
      this.#endSession({ action: "disconnected", reason, code: 1006 }, true);
      return;
    }
    this.#release(s, m);
    if (typeof msg.session === "string" && msg.session !== "") s.token = msg.session;
    link.resuming = false;
    o.unlisten();
    s.outage = null;
    // The session lives on this link now: the old ones may go.
    closeParked(s);
    s.unacked = 0; // the resume told the server what arrived
    const ws = /** @type {WebSocketLike} */ (link.ws);
    for (const bytes of s.kept) ws.send(bytes);
    for (const { bytes, counted } of o.queue) {
      if (counted) {
        s.kept.push(bytes);
        s.keptBytes += bytes.byteLength;
        s.sent += 1;
      }
      ws.send(bytes);
    }
    // Anything the new link carried before the answer (not expected) is shown after it.
    const held = link.held;
    link.held = [];
    this.#emitAll([{ action: "resumed" }, ...held], true);
  }

  /**
   * The server could not resume: what was kept and queued is dropped; the link goes on as a
   * new session (the token of its greeting), and the app sees `resume_failed`, then `connected`.
   * @param {Link} link
   * @param {string} reason
   */
  #resumeFailed(link, reason) {
    const s = /** @type {Session} */ (this.#session);
    const o = /** @type {Outage} */ (s.outage);
    if (link.deadline !== null) {
      clearTimeout(link.deadline);
      link.deadline = null;
    }
    const dropped = s.kept.length + o.queue.length;
    this.#clearSession();
    link.resuming = false;
    const held = link.held;
    link.held = [];
    if (link.newToken !== null) {
      const next = newSession(link.newToken, link.url, held.filter((m) => !UNCOUNTED.has(m.action)).length);
      this.#session = next;
      this.#sendAck(next); // the opt-in for the new session
    }
    /** @type {Message[]} */
    const events = [{ action: "resume_failed", reason, dropped }];
    if (link.greeting) events.push(link.greeting);
    this.#emitAll([...events, ...held], true);
  }

  /**
   * Ends the session at once (given up, or closed locally while reconnecting) with one event.
   * @param {Message} msg
   * @param {boolean} fromSocket
   */
  #endSession(msg, fromSocket) {
    const link = this.#link;
    if (link && !link.ended) {
      link.closing = true;
      this.#detach(link);
      const ws = link.ws;
      if (ws) {
        if (ws.readyState === OPEN) ws.close(1000);
        else ws.close();
      }
      link.ended = true;
      link.outbox = null;
    }
    this.#clearSession();
    this.#emit(msg, fromSocket);
  }

  /** Forgets the session, its timers, listeners and parked sockets. */
  #clearSession() {
    const s = this.#session;
    if (!s) return;
    this.#session = null;
    closeParked(s);
    if (s.ackTimer !== null) {
      clearTimeout(s.ackTimer);
      s.ackTimer = null;
    }
    const o = s.outage;
    if (o) {
      o.unlisten();
      if (o.wait !== null) clearTimeout(o.wait);
      o.wait = null;
    }
  }

  /** @param {Link} link */
  #detach(link) {
    if (link.beat !== null) {
      clearInterval(link.beat);
      link.beat = null;
    }
    if (link.deadline !== null) {
      clearTimeout(link.deadline);
      link.deadline = null;
    }
    const ws = link.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    // Not null: see connect(). `ws` still reports the abandoned handshake of a socket closed
    // while connecting as an "error".
    ws.onerror = ignore;
  }

  /**
   * Queues a message for dispatch. From a socket callback, immediate mode dispatches at once;
   * from an API call it waits for a microtask, so handlers never run inside the caller.
   * @param {Message} msg
   * @param {boolean} fromSocket
   */
  #emit(msg, fromSocket) {
    this.#emitAll([msg], fromSocket);
  }

  /**
   * Queues messages for dispatch, all before any handler runs (see `#emit`).
   * @param {Message[]} msgs
   * @param {boolean} fromSocket
   */
  #emitAll(msgs, fromSocket) {
    for (const msg of msgs) this.#queue.push(msg);
    if (this.#pumpMode) return;
    if (fromSocket) {
      this.#drain(Infinity);
    } else if (!this.#drainScheduled) {
      this.#drainScheduled = true;
      queueMicrotask(() => {
        this.#drainScheduled = false;
        this.#drain(Infinity);
      });
    }
  }

  /**
   * Dispatches up to `max` queued messages; returns how many.
   * @param {number} max
   */
  #drain(max) {
    // A handler that calls pump() must not dispatch the messages after its own out of order.
    if (this.#draining) return 0;
    this.#draining = true;
    let n = 0;
    try {
      while (n < max && this.#queue.length > 0) {
        this.#dispatch(/** @type {Message} */ (this.#queue.shift()));
        n += 1;
      }
    } finally {
      this.#draining = false;
    }
    return n;
  }

  /** @param {Message} data */
  #dispatch(data) {
    const action = typeof data.action === "string" ? data.action : "";
    try {
      const handler = this.#handlers.get(action);
      if (handler) {
        handler.call(this, data, this);
        return;
      }
      const method = action === "" ? undefined : /** @type {any} */ (this)[`Network_${action}`];
      if (typeof method === "function") {
        method.call(this, data);
      } else {
        this.network_received(data);
      }
    } catch (e) {
      report(e);
    }
  }
}

/**
 * Python repod's name for the same class, for code ported from Python.
 */
export const ConnectionListener = Client;

/** The error listener of every socket: errors are reported from the close event. */
function ignore() {}

/**
 * Closes a socket without waiting for a close handshake where the class can (`ws`:
 * `terminate()`); a browser's can only `close()`.
 * @param {WebSocketLike} ws
 */
function abort(ws) {
  const w = /** @type {any} */ (ws);
  if (typeof w.terminate === "function") {
    w.terminate();
  } else {
    ws.close();
  }
}

/**
 * A new session, nothing sent yet.
 * @param {string} token
 * @param {string} url
 * @param {number} received
 * @returns {Session}
 */
function newSession(token, url, received) {
  return {
    token, url, received, unacked: 0, ackTimer: null, sent: 0, kept: [], keptBytes: 0, outage: null, parked: [],
  };
}

/**
 * Closes the sockets a session left open when they stopped answering.
 * @param {Session} s
 */
function closeParked(s) {
  for (const ws of s.parked.splice(0)) {
    try {
      abort(ws);
    } catch {
      // already closed
    }
  }
}

/**
 * A count or duration option: `fallback` when absent, else a number >= 0.
 * @param {unknown} value
 * @param {number} fallback
 * @param {string} name
 */
function amount(value, fallback, name) {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value >= 0)) {
    throw new RangeError(`repod: ${name} must be a number >= 0, not ${String(value)}`);
  }
  return value;
}

/** @param {unknown} e */
function errorText(e) {
  return e instanceof Error ? e.message : String(e);
}

/** @param {unknown} e */
function report(e) {
  if (typeof globalThis.reportError === "function") {
    globalThis.reportError(e);
  } else {
    console.error(e);
  }
}
