// repod.js in Node, with the ws package, against a real echo server (examples/echo_server.rs,
// started here with --heartbeat-ms 100 as tests/browser.rs does: every client below must answer
// the server's pings by itself, or be dropped). See ../test-support/echo.mjs.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Client, ConnectionListener } from "../repod.js";
import { CASES } from "../test-support/cases.mjs";
import { Mailbox, WAIT_MS, deadPort, same, show, sleep, startEcho, until } from "../test-support/echo.mjs";

let server;
before(async () => {
  server = await startEcho(["--heartbeat-ms", "100"]);
}, { timeout: 700_000 });
after(async () => {
  await server?.stop();
});

/**
 * A client that records every event and reply: `log` has the actions in order, `box` the
 * messages by action (echo_reply by `echo_reply:<id>`).
 */
function recorder(options = {}) {
  const c = new Client({ WebSocket, ...options });
  const log = [];
  const box = new Mailbox();
  c.network_received = (d) => {
    log.push(d.action);
    box.put(d.action === "echo_reply" || d.action === "broadcast_reply" ? `${d.action}:${d.id}` : d.action, d);
  };
  return { c, log, box };
}

test("greeting: socketConnect, then the server's connected, once each; state follows", async () => {
  const { c, log, box } = recorder();
  assert.equal(c.state, "idle");
  assert.equal(c.url, null);
  c.connect(server.url);
  assert.equal(c.state, "connecting");
  assert.equal(c.isConnected, true);
  assert.equal(c.url, server.url);
  assert.deepEqual(log, [], "no handler runs inside connect()");
  await box.take("connected");
  assert.deepEqual(log, ["socketConnect", "connected"]);
  assert.equal(c.state, "open");
  assert.equal(c.isConnected, true);
  // A second greeting would be a bug: wait a little and look again.
  await sleep(150);
  assert.deepEqual(log, ["socketConnect", "connected"]);
  c.close();
  await box.take("disconnected");
});

test("a send made while connecting is queued, then delivered once the socket opens", async () => {
  const { c, box } = recorder();
  c.connect(server.url);
  const size = c.send({ action: "echo", id: "early", text: "sent before open" });
  assert.ok(size > 0, `send returned ${size}`);
  assert.equal(c.bufferedAmount, size, "the queued bytes count in bufferedAmount");
  const reply = await box.take("echo_reply:early");
  assert.equal(reply.text, "sent before open");
  c.close();
  await box.take("disconnected");
});

test("routing: on() > Network_<action> method > network_received; off() gives the method back", async () => {
  const got = [];
  const box = new Mailbox();
  class Routed extends Client {
    Network_connected() { box.put("connected", true); }
    Network_echo_reply(d) {
      got.push(`method:${d.id}:${this === c}`);
      box.put(d.id, d);
    }
    Network_disconnected(d) { box.put("disconnected", d); }
    network_received(d) {
      got.push(`fallback:${d.action}:${d.id ?? ""}`);
      if (d.id) box.put(d.id, d);
    }
  }
  const c = new Routed({ WebSocket });
  assert.equal(ConnectionListener, Client, "ConnectionListener is Python repod's name for Client");
  assert.ok(c instanceof ConnectionListener);
  c.connect(server.url);
  await box.take("connected");

  c.send({ action: "echo", id: "1" });
  await box.take("1");
  c.on("echo_reply", function (d, client) {
    got.push(`on:${d.id}:${this === c}:${client === c}`);
    box.put(d.id, d);
  });
  c.send({ action: "echo", id: "2" });
  await box.take("2");
  c.off("echo_reply");
  c.send({ action: "echo", id: "3" });
  await box.take("3");
  // No handler and no method for broadcast_reply: the fallback takes it.
  c.send({ action: "broadcast", id: "4" });
  await box.take("4");
  // on() also takes precedence over the fallback, for any action.
  c.on("broadcast_reply", (d) => { got.push(`on:${d.id}`); box.put(d.id, d); });
  c.send({ action: "broadcast", id: "5" });
  await box.take("5");

  assert.deepEqual(got, [
    "fallback:socketConnect:",
    "method:1:true",
    "on:2:true:true",
    "method:3:true",
    "fallback:broadcast_reply:4",
    "on:5",
  ]);
  c.close();
  await box.take("disconnected");
});

test("every msgpack type round-trips through echo", async (t) => {
  const { c, box } = recorder();
  c.connect(server.url);
  await box.take("connected");
  const sizes = CASES.map(([name, value]) => c.send({ action: "echo", id: name, v: value }));
  assert.ok(sizes.every((n) => n > 0), `send returns the encoded size: ${show(sizes)}`);
  for (const [name, value] of CASES) {
    await t.test(name, async () => {
      const d = await box.take(`echo_reply:${name}`);
      assert.ok(same(d.v, value), `sent ${show(value)}, got ${show(d.v)}`);
      if (value instanceof Uint8Array) assert.ok(d.v instanceof Uint8Array, "bin decodes to a Uint8Array");
    });
  }
  await t.test("every type in one map", async () => {
    const all = Object.fromEntries(CASES.map(([, value], i) => [`f${i}`, value]));
    c.send({ action: "echo", id: "all", ...all });
    const { action, id, ...back } = await box.take("echo_reply:all");
    assert.equal(action, "echo_reply");
    assert.equal(id, "all");
    assert.ok(same(back, all), `fields differ: ${show(back)}`);
  });
  await t.test("a number that is an integer leaves as an integer (1.0, -0)", async () => {
    c.send({ action: "echo", id: "ints", one: 1.0, negzero: -0 });
    const d = await box.take("echo_reply:ints");
    assert.ok(Object.is(d.one, 1) && Object.is(d.negzero, 0), show(d));
  });
  c.close();
  await box.take("disconnected");
});

test("useBigInt64: u64::MAX and i64::MIN round-trip as bigint, small integers stay numbers", async () => {
  const { c, box } = recorder({ useBigInt64: true });
  c.connect(server.url);
  const sent = { action: "echo", id: "big", max: 2n ** 64n - 1n, min: -(2n ** 63n), small: 5, mid: 2n ** 40n };
  c.send(sent);
  const d = await box.take("echo_reply:big");
  assert.equal(d.max, sent.max);
  assert.equal(d.min, sent.min);
  assert.equal(d.small, 5);
  assert.equal(d.mid, 2n ** 40n);
  c.close();
  await box.take("disconnected");
  // Without the option a bigint cannot be sent (while connecting: the message is encoded then).
  const plain = recorder();
  plain.c.connect(server.url);
  assert.throws(() => plain.c.send({ action: "echo", n: 1n }));
  plain.c.close();
  await plain.box.take("error");
});

test("pump mode: messages and events wait in the queue, handlers run only inside pump()", async () => {
  let inside = false;
  const calls = [];
  const c = new Client({ WebSocket, dispatch: "pump" });
  c.network_received = (d) => calls.push([d.action, inside]);
  c.on("echo_reply", (d) => calls.push([`echo_reply:${d.id}`, inside]));
  const pump = () => {
    inside = true;
    try {
      return c.pump();
    } finally {
      inside = false;
    }
  };
  c.connect(server.url);
  c.send({ action: "echo", id: "1" });
  c.send({ action: "echo", id: "2" });
  await until(() => c.pending >= 4, WAIT_MS, "socketConnect, connected and two echo replies to be queued");
  // Three server pings (100 ms apart) come and go meanwhile: answered, never queued.
  await sleep(350);
  assert.equal(c.pending, 4, "the queue holds exactly the 4 messages (no heartbeats)");
  assert.deepEqual(calls, [], "no handler ran outside pump()");
  assert.equal(c.state, "open", "the server's pings were answered without pump()");
  assert.equal(pump(), 4);
  assert.deepEqual(calls, [["socketConnect", true], ["connected", true], ["echo_reply:1", true], ["echo_reply:2", true]]);
  assert.equal(c.pending, 0);
  assert.equal(pump(), 0, "nothing left to pump");

  c.close();
  await until(() => c.pending === 1, WAIT_MS, "disconnected to be queued");
  assert.equal(calls.length, 4, "disconnected waits for pump() too");
  assert.equal(pump(), 1);
  assert.deepEqual(calls.at(-1), ["disconnected", true]);
  assert.equal(c.state, "closed");
});

test("immediate mode: handlers never run inside connect(), send() or close()", async () => {
  const calls = [];
  const Throwing = class {
    constructor() {
      throw new Error("refused by the test");
    }
  };
  const c = new Client({ WebSocket: Throwing });
  c.network_received = (d) => calls.push(d);
  c.connect(server.url);
  assert.deepEqual(calls, [], "the error is delivered a microtask later, not inside connect()");
  await sleep(0);
  assert.deepEqual(calls, [{ action: "error", error: `cannot connect to ${server.url}: refused by the test` }]);

  const { c: d, log, box } = recorder();
  d.connect(server.url);
  await box.take("connected");
  d.close();
  assert.deepEqual(log, ["socketConnect", "connected"], "nothing runs inside close()");
  await box.take("disconnected");
});

test("no WebSocket class (Node before 22, no option): an error event that says so", async () => {
  const saved = Object.getOwnPropertyDescriptor(globalThis, "WebSocket");
  Object.defineProperty(globalThis, "WebSocket", { value: undefined, configurable: true, writable: true });
  let c;
  try {
    c = new Client();
  } finally {
    if (saved) Object.defineProperty(globalThis, "WebSocket", saved);
    else delete globalThis.WebSocket;
  }
  const box = new Mailbox();
  c.network_received = (m) => box.put(m.action, m);
  c.connect(server.url);
  const err = await box.take("error");
  assert.match(err.error, /^cannot connect to .*: no WebSocket class: pass one as the WebSocket option/);
  assert.equal(c.state, "closed");
});

test("close(): send returns 0 at once, then one disconnected 'closed locally (1000)'", async () => {
  const { c, log, box } = recorder();
  c.connect(server.url);
  await box.take("connected");
  assert.throws(() => c.send(null), TypeError);
  assert.throws(() => c.send([1, 2]), TypeError);
  c.close();
  assert.equal(c.state, "closing");
  assert.equal(c.isConnected, false);
  assert.equal(c.send({ action: "echo", id: "late" }), 0);
  const bye = await box.take("disconnected");
  assert.equal(bye.reason, "closed locally (1000)");
  assert.equal(bye.code, 1000);
  assert.equal(c.state, "closed");
  assert.equal(c.send({ action: "echo" }), 0);
  c.close(); // nothing more
  await sleep(100);
  assert.deepEqual(log, ["socketConnect", "connected", "disconnected"], "each event exactly once");
});

test("error: connecting to a dead port gives one error event, never disconnected", async () => {
  const port = await deadPort();
  const { c, log, box } = recorder();
  c.connect(`ws://127.0.0.1:${port}/`);
  const err = await box.take("error");
  assert.match(err.error, new RegExp(`^cannot connect to ws://127\\.0\\.0\\.1:${port}/ \\(1006\\)$`));
  assert.equal(c.state, "closed");
  assert.equal(c.isConnected, false);
  await sleep(100);
  assert.deepEqual(log, ["error"]);
});

test("close() while connecting abandons the attempt: one error event, the queued send dropped", async () => {
  const { c, log, box } = recorder();
  c.connect(server.url);
  assert.ok(c.send({ action: "echo", id: "dropped" }) > 0);
  c.close();
  const err = await box.take("error");
  assert.equal(err.error, "closed locally before the connection was established");
  // ws reports the abandoned handshake as an "error" a tick later: it must not throw.
  await sleep(200);
  assert.deepEqual(log, ["error"]);
  assert.equal(box.count("echo_reply:dropped"), 0);
});

test("connect() again: the old connection ends first ('closed locally'), the new one greets", async () => {
  const { c, log, box } = recorder();
  c.connect(server.url);
  await box.take("connected");
  c.connect(server.url);
  const first = await box.take("disconnected");
  assert.equal(first.reason, "closed locally (1000)");
  await box.take("connected");
  assert.deepEqual(log, ["socketConnect", "connected", "disconnected", "socketConnect", "connected"]);
  c.close();
  await box.take("disconnected");
});

test("the server closes (a text message is a protocol error): disconnected 'closed by peer (1003)'", async () => {
  let socket = null;
  class Capturing extends WebSocket {
    constructor(...args) {
      super(...args);
      socket = this;
    }
  }
  const { c, box } = recorder({ WebSocket: Capturing });
  c.connect(server.url);
  await box.take("connected");
  socket.send("not msgpack: a text frame");
  const bye = await box.take("disconnected");
  assert.equal(bye.code, 1003);
  assert.match(bye.reason, /^closed by peer \(1003/);
  assert.equal(c.state, "closed");
});

test("the server dies: disconnected 'connection lost (1006)'", async () => {
  const own = await startEcho();
  try {
    const { c, box } = recorder();
    c.connect(own.url);
    await box.take("connected");
    await own.kill();
    const bye = await box.take("disconnected");
    assert.equal(bye.reason, "connection lost (1006)");
    assert.equal(bye.code, 1006);
  } finally {
    await own.stop();
  }
});

test("a broadcast reaches the sender and another client (pump mode)", async () => {
  const a = recorder();
  const b = recorder({ dispatch: "pump" });
  a.c.connect(server.url);
  b.c.connect(server.url);
  const loop = setInterval(() => b.c.pump(), 10);
  try {
    await Promise.all([a.box.take("connected"), b.box.take("connected")]);
    a.c.send({ action: "broadcast", id: "b1", text: "to everyone ✓", blob: new Uint8Array([1, 2, 3]) });
    const [toA, toB] = await Promise.all([a.box.take("broadcast_reply:b1"), b.box.take("broadcast_reply:b1")]);
    assert.equal(toA.text, "to everyone ✓");
    assert.ok(same(toB.blob, new Uint8Array([1, 2, 3])), show(toB));
    a.c.send({ action: "whoami" });
    const w = await a.box.take("whoami_reply");
    assert.match(w.addr, /^127\.0\.0\.1:\d+$/);
    assert.ok(Number.isInteger(w.pid) && w.pid > 0, show(w));
    a.c.close();
    b.c.close();
    await Promise.all([a.box.take("disconnected"), b.box.take("disconnected")]);
  } finally {
    clearInterval(loop);
  }
});
