// TypeScript declarations for repod.js: see the comments there for the behaviour.

/** A value a msgpack message can carry (bigint only with `useBigInt64`). */
export type Value =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Value[]
  | { [key: string]: Value };

/**
 * A received message: a msgpack map decoded to a plain object. Fields are typed `any` so that
 * handlers read them without casts; check what a peer may send you.
 */
export interface Message {
  /** Absent when the map had no `"action"` key (it then reached the fallback). */
  action?: string;
  [key: string]: any;
}

/**
 * What `send` takes: a plain object with an action (any interface with `action: string` fits;
 * its other fields should be `Value`s, `undefined` is sent as nil).
 */
export interface OutgoingMessage {
  action: string;
}

/** The WebSocket opened (generated locally). */
export interface SocketConnectMessage extends Message {
  action: "socketConnect";
}

/**
 * The server's greeting: once per connection (a resumed session shows none; after
 * `resume_failed`, the new session's greeting follows it).
 */
export interface ConnectedMessage extends Message {
  action: "connected";
  /** The session token, from a server that offers sessions (the client handles it by itself). */
  session?: string;
}

/**
 * Connecting failed, or a received message had to be dropped (`error` holds the text). A
 * server's own message with action `"error"` arrives here too, usually without `error`.
 */
export interface ErrorMessage extends Message {
  action: "error";
  error?: string;
}

/**
 * A connection that had opened ended. With a session: the session ended (a clean close,
 * `close()`, or the client gave up resuming), not a link that dropped and is being resumed.
 */
export interface DisconnectedMessage extends Message {
  action: "disconnected";
  /**
   * E.g. `closed by peer (1000)`, `closed locally (1000)`, `connection lost (1006)`,
   * `gave up resuming after 7 attempts in 60.0 s: cannot connect to ws://... (1006)`,
   * `gave up resuming: 16385 messages (...) to hold while the link is down, over ...`.
   */
  reason: string;
  /** The WebSocket close code (1006 when the client gave up resuming). */
  code: number;
}

/**
 * The session's link dropped (or the previous attempt to resume it failed): attempt `attempt`
 * starts in `delayMs`. Messages sent meanwhile are queued.
 */
export interface ReconnectingMessage extends Message {
  action: "reconnecting";
  /** 1 for the first attempt after a drop, then 2, 3... */
  attempt: number;
  /** Why the link or the last attempt ended, e.g. `connection lost (1006)`. */
  reason: string;
  /** The wait before this attempt (backoff with jitter), in ms. */
  delayMs: number;
}

/** The session is back: what either side missed is sent again, nothing twice. */
export interface ResumedMessage extends Message {
  action: "resumed";
}

/**
 * The server could not resume the session (it restarted, the session expired): a new session
 * goes on, and its `connected` follows this event. What the client had sent without the
 * server's acknowledgement, and what was queued during the outage, is dropped.
 */
export interface ResumeFailedMessage extends Message {
  action: "resume_failed";
  /** The server's text, e.g. `unknown or expired session`. */
  reason: string;
  /** How many messages the client dropped (sent unacknowledged, or queued). */
  dropped: number;
}

/** A message handler; `this` is the client as well. */
export type Handler<C, M extends Message = Message> = (this: C, data: M, client: C) => void;

/** The subset of the WebSocket interface repod.js uses (for the `WebSocket` option). */
export interface WebSocketLike {
  readonly readyState: number;
  readonly bufferedAmount: number;
  binaryType: string;
  onopen: ((ev: any) => any) | null;
  // ev: a MessageEvent ({data}) and a CloseEvent ({code, reason}); any, so DOM's WebSocket fits.
  onmessage: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
  /** Gets a Uint8Array; typed any so that DOM's WebSocket fits under every TypeScript version. */
  send(data: any): void;
  close(code?: number, reason?: string): void;
}

/**
 * A WebSocket class as the `WebSocket` option takes it, called as `new WebSocket(url)` or
 * `new WebSocket(url, protocols)`: the browser's fits, the `ws` package's (Node) too, and so does
 * a subclass of that one passing its own options (`super(url, protocols, { ca })`).
 */
export type WebSocketClass = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** When and how a session is resumed after its link drops. */
export interface ReconnectOptions {
  /** The wait before the first attempt, in ms (default 100); it doubles after each failure. */
  initialMs?: number;
  /** The longest wait between attempts, before the jitter (default 5000). */
  maxMs?: number;
  /** No attempt starts after this long without success: `disconnected` (default 60000). */
  giveUpMs?: number;
  /** Attempts per outage at most (default unlimited within `giveUpMs`). */
  maxAttempts?: number;
}

export interface ClientOptions {
  /** `"immediate"` (default): handlers run as messages arrive. `"pump"`: only in `pump()`. */
  dispatch?: "immediate" | "pump";
  /** Decode msgpack int64/uint64 as bigint, and allow sending bigint. Default false. */
  useBigInt64?: boolean;
  /** WebSocket subprotocols to offer. */
  protocols?: string | string[];
  /** Extra options for msgpack's Encoder (`extensionCodec`, `maxDepth`, `ignoreUndefined`...). */
  encoderOptions?: Record<string, unknown>;
  /** Extra options for msgpack's Decoder (`extensionCodec`, `maxStrLength`, `mapKeyConverter`...). */
  decoderOptions?: Record<string, unknown>;
  /**
   * The WebSocket class to use: `globalThis.WebSocket` by default (browsers; Node 22 and later).
   * In Node before 22 pass the `ws` package's (`import WebSocket from "ws"`, then
   * `new Client({ WebSocket })`), or a subclass of it that adds TLS options; or a test double.
   */
  WebSocket?: WebSocketClass;
  /**
   * Ping the server every this many ms, measure `rtt`, and end the connection (`disconnected`)
   * when nothing arrived for `heartbeatTimeoutMs`. Off by default; the server's pings are
   * answered either way and never reach handlers.
   */
  heartbeatMs?: number;
  /** Silence allowed while heartbeats are on; three `heartbeatMs` by default. */
  heartbeatTimeoutMs?: number;
  /**
   * Sessions, when the server offers one (its greeting carries a token): after a dropped link
   * (a reset, a WebSocket closed without a close frame, no answer to heartbeats) reconnect to
   * the same URL with exponential backoff and jitter, and resume: nothing lost, nothing twice.
   * On by default; an object tunes the backoff. `false`: do not opt in at all (a drop ends in
   * `disconnected`, as with a server without sessions).
   */
  reconnect?: boolean | ReconnectOptions;
  /**
   * Bound on one attempt to resume, from creating the socket to the server's answer, in ms
   * (default 10000); a slower attempt counts as failed. The first `connect()` has none.
   */
  connectTimeoutMs?: number;
  /**
   * Bound on what a session holds for a resume while its link is down, in bytes: messages sent
   * but not yet acknowledged, plus those sent during the outage (default 4 MiB). Exceeded: the
   * client gives up (`disconnected`) and that `send` returns 0.
   */
  maxQueuedBytes?: number;
  /** The same bound in messages (default 16384). */
  maxQueuedMessages?: number;
}

/** `"reconnecting"`: a session's link dropped; until it is resumed or given up. */
export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "closing" | "closed";

/**
 * A repod client over a WebSocket (Python: `ConnectionListener`). Subclass it with
 * `Network_<action>(data)` methods, or register handlers with `on`.
 */
export class Client {
  constructor(options?: ClientOptions);

  /** Opens a connection (`ws://` or `wss://` URL) and returns at once. */
  connect(url: string | URL): this;

  /**
   * Sends one message: returns its encoded size, or 0 when not connected or connecting.
   * Messages sent while connecting or reconnecting are queued (0 when that overflows the
   * session's bounds: the session ends). Throws on a value msgpack cannot encode.
   */
  send<T extends OutgoingMessage>(data: T): number;

  /**
   * Closes the connection (1000); `disconnected` (or `error`, if it never opened) follows. While
   * reconnecting: stops, drops what was queued, `disconnected` (`closed locally (1000)`).
   */
  close(): void;

  /** Dispatches what arrived since the last call (pump mode); returns how many. */
  pump(): number;

  /** Routes an action to `handler`, replacing any previous one and any `Network_` method. */
  on(action: "socketConnect", handler: Handler<this, SocketConnectMessage>): this;
  on(action: "connected", handler: Handler<this, ConnectedMessage>): this;
  on(action: "error", handler: Handler<this, ErrorMessage>): this;
  on(action: "disconnected", handler: Handler<this, DisconnectedMessage>): this;
  on(action: "reconnecting", handler: Handler<this, ReconnectingMessage>): this;
  on(action: "resumed", handler: Handler<this, ResumedMessage>): this;
  on(action: "resume_failed", handler: Handler<this, ResumeFailedMessage>): this;
  on(action: string, handler: Handler<this, Message>): this;

  /** Removes the handler registered with `on` for this action. */
  off(action: string): this;

  /** The fallback for messages with no handler (overridable, or assign a function). */
  network_received(data: Message): void;

  /** Open, still opening, or reconnecting (so `send` queues); false after `close()`. */
  readonly isConnected: boolean;
  readonly state: ClientState;
  /** The URL of the current or last connection. */
  readonly url: string | null;
  /** The latest heartbeat round trip in ms (with `heartbeatMs`), or null before the first. */
  readonly rtt: number | null;
  /**
   * Bytes sent but not yet handed to the network (including those queued while opening or
   * reconnecting).
   */
  readonly bufferedAmount: number;
  /** Messages waiting for `pump()`. */
  readonly pending: number;
}

/** Python repod's name for `Client`. */
export { Client as ConnectionListener };
