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

/** The server's greeting: once per connection. */
export interface ConnectedMessage extends Message {
  action: "connected";
}

/**
 * Connecting failed, or a received message had to be dropped (`error` holds the text). A
 * server's own message with action `"error"` arrives here too, usually without `error`.
 */
export interface ErrorMessage extends Message {
  action: "error";
  error?: string;
}

/** A connection that had opened ended. */
export interface DisconnectedMessage extends Message {
  action: "disconnected";
  /** E.g. `closed by peer (1000)`, `closed locally (1000)`, `connection lost (1006)`. */
  reason: string;
  /** The WebSocket close code. */
  code: number;
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
}

export type ClientState = "idle" | "connecting" | "open" | "closing" | "closed";

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
   * Messages sent while connecting are queued. Throws on a value msgpack cannot encode.
   */
  send<T extends OutgoingMessage>(data: T): number;

  /** Closes the connection (1000); `disconnected` (or `error`, if it never opened) follows. */
  close(): void;

  /** Dispatches what arrived since the last call (pump mode); returns how many. */
  pump(): number;

  /** Routes an action to `handler`, replacing any previous one and any `Network_` method. */
  on(action: "socketConnect", handler: Handler<this, SocketConnectMessage>): this;
  on(action: "connected", handler: Handler<this, ConnectedMessage>): this;
  on(action: "error", handler: Handler<this, ErrorMessage>): this;
  on(action: "disconnected", handler: Handler<this, DisconnectedMessage>): this;
  on(action: string, handler: Handler<this, Message>): this;

  /** Removes the handler registered with `on` for this action. */
  off(action: string): this;

  /** The fallback for messages with no handler (overridable, or assign a function). */
  network_received(data: Message): void;

  /** Open or still opening (so `send` queues); false after `close()`. */
  readonly isConnected: boolean;
  readonly state: ClientState;
  /** The URL of the current or last connection. */
  readonly url: string | null;
  /** The latest heartbeat round trip in ms (with `heartbeatMs`), or null before the first. */
  readonly rtt: number | null;
  /** Bytes sent but not yet handed to the network (including those queued while opening). */
  readonly bufferedAmount: number;
  /** Messages waiting for `pump()`. */
  readonly pending: number;
}

/** Python repod's name for `Client`. */
export { Client as ConnectionListener };
