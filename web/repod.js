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
 * | `disconnected`  | a connection that had opened ended                                | `reason`: text such as `closed by peer (1000)`, `closed locally (1000)`, `connection lost (1006)`; `code`: the WebSocket close code |
 *
 * Every `connect()` ends in exactly one `error` (it never opened) or one `disconnected` (it
 * did). A server may also send its own message with action `error` (the chat server sends
 * `{"action": "error", "message": ...}`): it reaches the same handler, without an `error` field.
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
  }

  /**
   * Opens a connection to `url` (`ws://host:port/path` or `wss://...`) and returns at once;
   * `socketConnect` or `error` follows. Messages sent before the socket opens are queued and
   * delivered once it does. A connection still open (or opening) is closed first, its final
   * event (`disconnected` or `error`, reason `closed locally`) delivered before the new
   * connection's events.
   * @param {string | URL} url
   * @returns {this}
   */
  connect(url) {
    const old = this.#link;
    if (old && !old.ended) {
      old.closing = true;
      this.#detach(old);
      if (old.ws) old.ws.close();
      this.#end(old, 1000, "", false);
    }
    /** @type {Link} */
    const link = {
      ws: null, url: String(url), outbox: [], established: false, closing: false, ended: false,
      lastReceived: 0, beat: null,
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
      link.ended = true;
      link.outbox = null;
      this.#emit({ action: "error", error: `cannot connect to ${link.url}: ${errorText(e)}` }, false);
      return this;
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
    return this;
  }

  /**
   * Sends one message to the server.
   * @param {{ action: string, [key: string]: any }} data a plain object: a msgpack map
   * @returns {number} the encoded size in bytes (there is no length prefix over WebSocket, so
   *   4 less than the Rust client reports for the same message), or 0 when there is no open or
   *   opening connection (after `close()`, after the end, before `connect()`). While the socket
   *   is still opening, the message is queued and the size is returned.
   * @throws {TypeError} when `data` is not a plain object
   * @throws {Error} when msgpack cannot encode a value (a function, a symbol, a `bigint`
   *   without `useBigInt64`, nesting over `encoderOptions.maxDepth`, 100 by default)
   */
  send(data) {
    if (data === null || typeof data !== "object" || Array.isArray(data) || ArrayBuffer.isView(data)) {
      throw new TypeError("repod: send() takes a plain object (a msgpack map with an \"action\")");
    }
    const link = this.#link;
    if (!link || link.ended || link.closing) return 0;
    if (!link.established) {
      // A copy: encodeSharedRef's buffer is reused by the next encode.
      const bytes = this.#encoder.encode(data);
      /** @type {Uint8Array[]} */ (link.outbox).push(bytes);
      return bytes.byteLength;
    }
    const ws = /** @type {WebSocketLike} */ (link.ws);
    // Closed by the peer but the close event not yet delivered: the browser would drop the
    // data silently, so say so now.
    if (ws.readyState !== OPEN) return 0;
    const bytes = this.#encodeFor(ws, data);
    ws.send(bytes);
    return bytes.byteLength;
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
   * messages queued for it are dropped, and an `error` event follows instead. Does nothing
   * when already closed or closing.
   * @returns {void}
   */
  close() {
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
   * `connected`, `error`, `disconnected`.
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
   * Whether the connection is open or still opening (as Rust's `is_connected`): `send` queues
   * a message exactly when this is true. False after `close()`.
   * @type {boolean}
   */
  get isConnected() {
    const link = this.#link;
    return !!link && !link.ended && !link.closing
      && (!link.established || /** @type {WebSocketLike} */ (link.ws).readyState === OPEN);
  }

  /**
   * Where the connection is: `"idle"` before the first `connect()`, then `"connecting"`,
   * `"open"`, `"closing"` (after `close()`, until the socket has closed), `"closed"`.
   * @type {"idle" | "connecting" | "open" | "closing" | "closed"}
   */
  get state() {
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
   * queued while opening. A game can watch it to stop sending to a slow link.
   * @type {number}
   */
  get bufferedAmount() {
    const link = this.#link;
    if (!link || link.ended) return 0;
    const queued = link.outbox ? link.outbox.reduce((n, b) => n + b.byteLength, 0) : 0;
    return queued + (link.ws ? link.ws.bufferedAmount : 0);
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
    for (const bytes of /** @type {Uint8Array[]} */ (link.outbox)) ws.send(bytes);
    link.outbox = null;
    link.lastReceived = performance.now();
    if (this.#heartbeatMs > 0) link.beat = setInterval(() => this.#heartbeat(link), this.#heartbeatMs);
    this.#emit({ action: "socketConnect" }, true);
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
      // The socket may be dead for good: do not wait for a close handshake that cannot come.
      this.#detach(link);
      ws.close(1000);
      link.ended = true;
      link.outbox = null;
      const reason = `no answer to heartbeats for ${(silent / 1000).toFixed(1)} s`;
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
    const data = ev.data;
    if (typeof data === "string") {
      this.#emit({ action: "error", error: "received a text message: the protocol uses binary messages only" }, true);
      return;
    }
    let msg;
    try {
      msg = this.#decoder.decode(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
    } catch (e) {
      this.#emit({ action: "error", error: `invalid msgpack: ${errorText(e)}` }, true);
      return;
    }
    // The same texts as the Rust client's errors, so logs read alike.
    if (msg === null || typeof msg !== "object" || Array.isArray(msg) || ArrayBuffer.isView(msg)) {
      this.#emit({ action: "error", error: "message is not a msgpack map" }, true);
      return;
    }
    if ("action" in msg && typeof msg.action !== "string") {
      this.#emit({ action: "error", error: "\"action\" is not a string" }, true);
      return;
    }
    link.lastReceived = performance.now();
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
    this.#emit(msg, true);
  }

  /**
   * @param {Link} link
   * @param {CloseEvent} ev
   */
  #onClose(link, ev) {
    if (link.ended) return;
    this.#detach(link);
    this.#end(link, ev.code, ev.reason, true);
  }

  /**
   * Emits the final event of a connection, once.
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

  /** @param {Link} link */
  #detach(link) {
    if (link.beat !== null) {
      clearInterval(link.beat);
      link.beat = null;
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
    this.#queue.push(msg);
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
