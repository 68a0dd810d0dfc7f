// Heartbeats (repod::heartbeat) between repod.js in Node and a real echo server started with
// --heartbeat-ms 100: the server pings every 100 ms and closes a client silent for three
// intervals. repod.js answers `_ping` with `_pong` and the same `t` at once, in both dispatch
// modes, and no handler sees either; with `heartbeatMs` it pings too and measures `rtt`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Decoder, encode } from "@msgpack/msgpack";
import WebSocket, { WebSocketServer } from "ws";
import { Client } from "../repod.js";
import { Mailbox, WAIT_MS, sleep, startEcho, until, within } from "../test-support/echo.mjs";

let server;
before(async () => {
  server = await startEcho(["--heartbeat-ms", "100"]);
}, { timeout: 700_000 });
after(async () => {
  await server?.stop();
});

/**
 * A ws subclass that records the heartbeats crossing the socket: `wire.in` and `wire.out`
 * get every decoded message with action `_ping` or `_pong`.
 */
function countingWebSocket() {
  const wire = { in: [], out: [] };
  const decoder = new Decoder();
  const beat = (m) => m && (m.action === "_ping" || m.action === "_pong");
  class Counting extends WebSocket {
    constructor(...args) {
      super(...args);
      // Registered before repod.js sets onmessage, so it runs first.
      this.addEventListener("message", (ev) => {
        if (typeof ev.data === "string") return;
        const m = decoder.decode(new Uint8Array(ev.data));
        if (beat(m)) wire.in.push(m);
      });
    }
    send(data, ...rest) {
      const m = decoder.decode(data);
      if (beat(m)) wire.out.push(m);
      super.send(data, ...rest);
    }
  }
  return { Counting, wire };
}

for (const dispatch of ["immediate", "pump"]) {
  test(`${dispatch} mode: the client answers the server's pings by itself and stays connected for 1 s`, async () => {
    const { Counting, wire } = countingWebSocket();
    const c = new Client({ WebSocket: Counting, dispatch });
    const seen = [];
    const box = new Mailbox();
    c.network_received = (d) => {
      seen.push(d.action);
      box.put(d.action, d);
    };
    // A game loop that pumps rarely: the answers must not depend on it.
    const loop = dispatch === "pump" ? setInterval(() => c.pump(), 250) : undefined;
    try {
      c.connect(server.url);
      await box.take("connected");
      await sleep(1000);
      assert.equal(c.state, "open", `dropped: ${seen.join(", ")}`);
      const pings = wire.in.filter((m) => m.action === "_ping");
      const pongs = wire.out.filter((m) => m.action === "_pong");
      assert.ok(pings.length >= 5, `the server pinged ${pings.length} times in 1 s (expected about 10)`);
      assert.deepEqual(pongs.map((m) => m.t), pings.map((m) => m.t), "every ping answered, with its own t");
      assert.ok(pings.every((m) => m.t !== undefined), "the server's pings carry t");
      assert.equal(wire.out.filter((m) => m.action === "_ping").length, 0, "no pings of its own without heartbeatMs");
      assert.equal(c.rtt, null, "no rtt without heartbeatMs");
      // Still served: an echo comes back.
      c.send({ action: "echo", id: "after" });
      const d = await box.take("echo_reply");
      assert.equal(d.id, "after");
      if (dispatch === "pump") c.pump();
      assert.deepEqual(seen, ["socketConnect", "connected", "echo_reply"], "no handler sees pings or pongs");
      c.close();
      await box.take("disconnected");
    } finally {
      clearInterval(loop);
    }
  });
}

test("control: a WebSocket client that does not answer pings is dropped by this server", async () => {
  // Shows that the test above means something: at --heartbeat-ms 100, silence is not tolerated.
  const ws = new WebSocket(server.url);
  ws.binaryType = "arraybuffer";
  let pings = 0;
  const decoder = new Decoder();
  ws.on("message", (data) => {
    if (decoder.decode(new Uint8Array(data)).action === "_ping") pings += 1;
  });
  ws.on("error", () => {});
  const opened = Date.now();
  const code = await within(WAIT_MS, new Promise((resolve) => ws.on("close", (c) => resolve(c))),
    "the server to drop a silent client");
  const after = Date.now() - opened;
  assert.ok(pings >= 1, `it was pinged (${pings})`);
  assert.ok(after < 2000, `dropped after ${after} ms (three intervals: about 300)`);
  assert.notEqual(code, 1000, `closed with ${code}`);
});

test("heartbeatMs: the client pings the server too, and measures rtt", async () => {
  const { Counting, wire } = countingWebSocket();
  const c = new Client({ WebSocket: Counting, heartbeatMs: 50 });
  const box = new Mailbox();
  c.network_received = (d) => box.put(d.action, d);
  c.connect(server.url);
  await box.take("connected");
  await until(() => c.rtt !== null, WAIT_MS, "a first rtt");
  assert.equal(typeof c.rtt, "number");
  assert.ok(c.rtt >= 0 && c.rtt < 1000, `rtt ${c.rtt} ms`);
  const mine = wire.out.filter((m) => m.action === "_ping");
  assert.ok(mine.length >= 1 && mine.every((m) => Number.isInteger(m.t) && m.t > 0), JSON.stringify(mine));
  assert.ok(wire.in.some((m) => m.action === "_pong" && m.t === mine[0].t), "the server's pong carries our t");
  c.close();
  await box.take("disconnected");
});

test("heartbeatMs: a server that freezes (SIGSTOP) is found: disconnected 'no answer to heartbeats'", async () => {
  const own = await startEcho();
  try {
    const c = new Client({ WebSocket, heartbeatMs: 50, heartbeatTimeoutMs: 300 });
    const box = new Mailbox();
    c.network_received = (d) => box.put(d.action, d);
    c.connect(own.url);
    await box.take("connected");
    await until(() => c.rtt !== null, WAIT_MS, "a first rtt");
    const frozen = Date.now();
    own.pause();
    const bye = await box.take("disconnected");
    const took = Date.now() - frozen;
    assert.match(bye.reason, /^no answer to heartbeats for \d+\.\d s$/);
    assert.equal(bye.code, 1006);
    assert.equal(c.state, "closed");
    assert.ok(took >= 250 && took < 3000, `found after ${took} ms (timeout 300 ms)`);
  } finally {
    own.resume();
    await own.stop();
  }
});

test("heartbeatMs: a server that talks but never answers pings is not silent, whatever it sends", async () => {
  // Not a repod server: Node's ws, sending a text message, a broken msgpack and a non-map in
  // turn every 40 ms, and never a pong. Each is reported as an error; none is silence.
  const sent = [Buffer.from([0xc1]), encode([1, 2]), "text"];
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => server.once("listening", resolve));
  const timers = [];
  server.on("connection", (socket) => {
    socket.send(encode({ action: "connected" }));
    let k = 0;
    timers.push(setInterval(() => socket.send(sent[k++ % sent.length]), 40));
  });
  try {
    const c = new Client({ WebSocket, heartbeatMs: 50, heartbeatTimeoutMs: 300 });
    const box = new Mailbox();
    const errors = [];
    c.network_received = (d) => (d.action === "error" ? errors.push(d.error) : box.put(d.action, d));
    c.connect(`ws://127.0.0.1:${server.address().port}/`);
    await box.take("connected");
    await sleep(1200); // four timeouts
    assert.equal(c.state, "open", `ended: ${JSON.stringify(box)}`);
    assert.equal(c.rtt, null, "no pong ever came");
    assert.ok(errors.some((e) => e.startsWith("invalid msgpack")), JSON.stringify(errors));
    assert.ok(errors.includes("message is not a msgpack map"), JSON.stringify(errors));
    assert.ok(errors.some((e) => e.startsWith("received a text message")), JSON.stringify(errors));
    c.close();
  } finally {
    for (const t of timers) clearInterval(t);
    for (const ws of server.clients) ws.terminate();
    server.close();
  }
});
