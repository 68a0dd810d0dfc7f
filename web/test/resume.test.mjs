// Sessions: repod.js in Node, with the ws package, against a real echo server started with
// --resume-secs (a session survives a dropped link for that long), through a TCP proxy
// (`test-support/proxy.mjs`) that can break the link the way a network does: `cut()` resets both sides of every open
// link (each side sees a reset, not a clean close), `down` refuses new links (accepts, then
// resets), `blackhole` swallows new links (no answer at all), `freeze()` stops the traffic of
// the open links without closing them. The client must resume: every message delivered once, in
// order, in both directions; the app sees `reconnecting` and `resumed`, or `resume_failed` then
// `connected` when the server cannot resume, or `disconnected` when the client gives up.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Decoder } from "@msgpack/msgpack";
import WebSocket from "ws";
import { Client } from "../repod.js";
import { Mailbox, WAIT_MS, show, sleep, startEcho, until, within } from "../test-support/echo.mjs";
import { startProxy } from "../test-support/proxy.mjs";

let server;
before(async () => {
  server = await startEcho(["--resume-secs", "30"]);
}, { timeout: 700_000 });
after(async () => {
  await server?.stop();
});

const TOKEN = /^[0-9a-f]{32}$/;

/**
 * A ws subclass that records, per socket, every message sent (`out`) and received (`in`),
 * decoded: `sockets` has one entry per socket the client made, in order.
 */
function recordingWebSocket() {
  const sockets = [];
  const decoder = new Decoder();
  const decode = (data) => decoder.decode(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
  class Recording extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { perMessageDeflate: false });
      const rec = { out: [], in: [] };
      this.rec = rec;
      sockets.push(rec);
      // Registered before repod.js sets onmessage, so it runs first.
      this.addEventListener("message", (ev) => {
        if (typeof ev.data !== "string") rec.in.push(decode(ev.data));
      });
    }
    send(data, ...rest) {
      if (typeof data !== "string") this.rec.out.push(decode(data));
      super.send(data, ...rest);
    }
  }
  return { Recording, sockets };
}

/**
 * A client that records every event and reply: `log` has the actions in order, `box` the
 * messages by action (echo_reply by `echo_reply:<id>`), `replies` the ids of the echo replies in
 * order of arrival; `sockets` what crossed each socket.
 */
function recorder(options = {}) {
  const { Recording, sockets } = recordingWebSocket();
  const c = new Client({ WebSocket: Recording, ...options });
  const log = [];
  const replies = [];
  const box = new Mailbox();
  c.network_received = (d) => {
    log.push(d.action);
    if (d.action === "echo_reply") replies.push(d.id);
    box.put(d.action === "echo_reply" ? `${d.action}:${d.id}` : d.action, d);
  };
  const loop = options.dispatch === "pump" ? setInterval(() => c.pump(), 5) : undefined;
  return { c, log, box, replies, sockets, stop: () => clearInterval(loop) };
}

const count = (log, action) => log.filter((a) => a === action).length;

/**
 * One echo round trip after the greeting: the client's opt-in `_ack` left before it on the same
 * stream, so the server has read it. A link cut before that cannot be resumed (the server had no
 * reason to hold the session yet): it ends in `resume_failed`, which is not what most tests here
 * are about.
 */
async function optedIn(c, box) {
  c.send({ action: "echo", id: "opted-in" });
  await box.take("echo_reply:opted-in");
}

/** Actions a handler may see in these tests: never a control message. */
const SHOWN = new Set(["socketConnect", "connected", "echo_reply", "reconnecting", "resumed", "resume_failed",
  "disconnected"]);

test("opting in: the greeting's token is answered with _ack 0 at once; acks after 32 messages or 200 ms", async () => {
  const { c, log, box, sockets } = recorder();
  c.connect(server.url);
  const hello = await box.take("connected");
  assert.match(hello.session, TOKEN, "the greeting carries a session token");
  const [s] = sockets;
  assert.deepEqual(s.out[0], { action: "_ack", received: 0 }, "the opt-in is the first message sent");
  for (let i = 0; i < 40; i += 1) c.send({ action: "echo", id: i });
  await box.take("echo_reply:39");
  // 32 replies: an ack at once; the other 8 within 200 ms.
  await until(() => s.out.some((m) => m.action === "_ack" && m.received === 40), 2000, "an ack of all 40 replies");
  const acks = s.out.filter((m) => m.action === "_ack").map((m) => m.received);
  assert.ok(acks.includes(32), `an ack at 32: ${acks}`);
  assert.deepEqual(acks, [...acks].sort((a, b) => a - b), "cumulative");
  // The server acknowledges ours too, and nobody sees any of it.
  await until(() => s.in.some((m) => m.action === "_ack" && m.received === 40), 2000, "the server's ack of our 40");
  assert.deepEqual(log, ["socketConnect", "connected", ...Array(40).fill("echo_reply")]);
  c.close();
  const bye = await box.take("disconnected");
  assert.equal(bye.reason, "closed locally (1000)");
  assert.equal(count(log, "reconnecting"), 0, "a local close does not reconnect");
});

for (const dispatch of ["immediate", "pump"]) {
  test(`${dispatch} mode: 2000 pipelined echoes while the link is cut 20 times: every reply once, in order`, async () => {
    const proxy = await startProxy(server.wsPort);
    const N = 2000;
    const { c, log, box, replies, sockets, stop } = recorder({ dispatch, reconnect: { initialMs: 30, maxMs: 300 } });
    let sending;
    try {
      c.connect(proxy.url);
      const hello = await box.take("connected");
      await optedIn(c, box);
      replies.length = 0;
      const events = [];
      for (const a of ["reconnecting", "resumed", "resume_failed", "disconnected"]) {
        c.on(a, (d) => {
          events.push(d);
          c.network_received(d);
        });
      }
      let next = 0;
      sending = setInterval(() => {
        for (let k = 0; k < 8 && next < N; k += 1) {
          const size = c.send({ action: "echo", id: next, pad: "x".repeat(next % 50) });
          assert.ok(size > 0, `send ${next} returned ${size} in state ${c.state}`);
          next += 1;
        }
        if (next >= N) clearInterval(sending);
      }, 10);
      let effective = 0;
      for (let i = 0; i < 20; i += 1) {
        // Half the cuts hit a resumed, open link; the others fall anywhere (the backoff wait, the
        // resume handshake, a link still connecting).
        if (i % 2 === 0) await until(() => c.state === "open", WAIT_MS, `the link back before cut ${i}`);
        await sleep(Math.random() * 80);
        if (proxy.cut() > 0) effective += 1;
      }
      await until(() => replies.length >= N && c.state === "open", 30_000, `${N} replies`).catch((e) => {
        const seen = events.map((d) => (d.action === "reconnecting" ? `reconnecting ${d.attempt}` : d.action === "resume_failed"
          ? `resume_failed (${d.reason}, ${d.dropped} dropped)` : d.action));
        throw new Error(`${e.message}: got ${replies.length}, state ${c.state}; events: ${seen.join(", ")}`);
      });
      await sleep(300); // anything twice would come now
      if (dispatch === "pump") c.pump();
      assert.equal(replies.length, N, "no reply twice");
      assert.equal(box.count("echo_reply:opted-in"), 0);
      const wrong = replies.findIndex((id, i) => id !== i);
      assert.equal(wrong, -1, `in order: at ${wrong}, ${show(replies.slice(Math.max(0, wrong - 3), wrong + 3))}`);
      const reconnecting = count(log, "reconnecting");
      const resumed = count(log, "resumed");
      assert.ok(effective >= 10, `${effective} cuts hit a link`);
      assert.ok(resumed >= 10, `resumed ${resumed} times (at least the 10 cuts of an open link)`);
      assert.ok(reconnecting >= resumed, `reconnecting ${reconnecting} >= resumed ${resumed}`);
      assert.equal(count(log, "connected"), 1, "the greeting once: a resume is not a new connection");
      assert.equal(count(log, "socketConnect"), 1);
      for (const a of ["resume_failed", "disconnected", "error"]) assert.equal(count(log, a), 0, `no ${a}: ${log.filter((x) => x !== "echo_reply")}`);
      assert.deepEqual(log.filter((a) => !SHOWN.has(a)), [], "no control message reached a handler");
      // The wire: every later socket opened with `resume` first, with the latest token.
      let token = hello.session;
      for (const [k, s] of sockets.entries()) {
        if (k > 0 && s.out.length > 0) {
          const r = s.out[0];
          assert.equal(r.action, "resume", `socket ${k} starts with ${show(r)}`);
          assert.equal(r.session, token, `socket ${k} resumes with the latest token`);
          assert.ok(Number.isInteger(r.received) && r.received >= 0 && r.received <= N, show(r));
        }
        const ok = s.in.find((m) => m.action === "resumed");
        if (ok) {
          assert.match(ok.session, TOKEN);
          token = ok.session;
        }
      }
      c.close();
      await box.take("disconnected");
    } finally {
      clearInterval(sending);
      stop();
      c.close();
      await proxy.close();
    }
  });
}

test("sends during the outage are queued (state reconnecting, bufferedAmount), delivered after the resume in order", async () => {
  const proxy = await startProxy(server.wsPort);
  const { c, log, box, replies } = recorder({ reconnect: { initialMs: 20, maxMs: 100 } });
  try {
    c.connect(proxy.url);
    await box.take("connected");
    c.send({ action: "echo", id: "before" });
    await box.take("echo_reply:before");
    proxy.down = true;
    proxy.cut();
    const r = await box.take("reconnecting");
    assert.equal(r.attempt, 1);
    assert.match(r.reason, /^connection lost \(1006/);
    assert.ok(Number.isInteger(r.delayMs) && r.delayMs >= 0, show(r));
    assert.equal(c.state, "reconnecting");
    assert.equal(c.isConnected, true);
    let bytes = 0;
    for (let i = 0; i < 10; i += 1) bytes += c.send({ action: "echo", id: i });
    assert.equal(c.bufferedAmount, bytes, "the queued bytes count in bufferedAmount");
    await until(() => count(log, "reconnecting") >= 3, WAIT_MS, "a few failed attempts");
    const attempts = log.filter((a) => a === "reconnecting").length;
    proxy.down = false;
    await box.take("resumed");
    for (let i = 0; i < 10; i += 1) await box.take(`echo_reply:${i}`);
    assert.deepEqual(replies, ["before", 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(c.state, "open");
    assert.ok(attempts >= 3);
    assert.equal(count(log, "connected"), 1);
  } finally {
    c.close();
    await proxy.close();
  }
});

test("resume_failed: the server restarted (the proxy leads to a new one): resume_failed, then connected, a new session", async () => {
  const other = await startEcho(["--resume-secs", "30"]);
  const proxy = await startProxy(server.wsPort);
  const { c, log, box, sockets } = recorder({ reconnect: { initialMs: 20, maxMs: 100 } });
  try {
    c.connect(proxy.url);
    const first = await box.take("connected");
    c.send({ action: "echo", id: "a" });
    await box.take("echo_reply:a");
    proxy.retarget(other.wsPort);
    proxy.down = true;
    proxy.cut();
    await box.take("reconnecting");
    assert.ok(c.send({ action: "echo", id: "lost" }) > 0, "queued during the outage");
    proxy.down = false;
    const failed = await box.take("resume_failed");
    assert.equal(typeof failed.reason, "string");
    assert.ok(failed.reason.length > 0);
    assert.ok(failed.dropped >= 1, `dropped ${failed.dropped}: at least the one queued`);
    const hello = await box.take("connected");
    assert.match(hello.session, TOKEN);
    assert.notEqual(hello.session, first.session);
    const after = log.slice(log.lastIndexOf("resume_failed"));
    assert.deepEqual(after.slice(0, 2), ["resume_failed", "connected"], `order: ${after}`);
    assert.equal(count(log, "resumed"), 0);
    assert.equal(count(log, "socketConnect"), 1);
    // The new link: `resume` first; then, after the answer, the opt-in for the new session.
    const s = sockets.at(-1);
    assert.equal(s.out[0].action, "resume");
    assert.equal(s.out[0].session, first.session);
    assert.deepEqual(s.out[1], { action: "_ack", received: 0 }, show(s.out.slice(0, 3)));
    assert.deepEqual(s.in.slice(0, 2).map((m) => m.action), ["connected", "resume_failed"]);
    // The session "lost" was sent in is gone; the new one works, and survives a cut of its own.
    c.send({ action: "echo", id: "b" });
    await box.take("echo_reply:b");
    proxy.cut();
    await box.take("resumed");
    c.send({ action: "echo", id: "c" });
    await box.take("echo_reply:c");
    assert.equal(box.count("echo_reply:lost"), 0, "the queued message went nowhere");
    assert.equal(c.state, "open");
  } finally {
    c.close();
    await proxy.close();
    await other.stop();
  }
});

test("resume_failed: the server was unreachable longer than --resume-secs: the session expired", async () => {
  const own = await startEcho(["--resume-secs", "1"]);
  const proxy = await startProxy(own.wsPort);
  const { c, log, box } = recorder({ reconnect: { initialMs: 50, maxMs: 200 } });
  try {
    c.connect(proxy.url);
    await box.take("connected");
    await optedIn(c, box);
    proxy.down = true;
    proxy.cut();
    await box.take("reconnecting");
    await sleep(2500);
    assert.equal(c.state, "reconnecting");
    proxy.down = false;
    const failed = await box.take("resume_failed");
    assert.equal(typeof failed.reason, "string");
    await box.take("connected");
    assert.deepEqual(log.slice(-2), ["resume_failed", "connected"]);
    c.send({ action: "echo", id: "new" });
    await box.take("echo_reply:new");
  } finally {
    c.close();
    await proxy.close();
    await own.stop();
  }
});

test("giving up: no attempt succeeds within giveUpMs: disconnected, then nothing", async () => {
  const proxy = await startProxy(server.wsPort);
  const { c, log, box } = recorder({ reconnect: { initialMs: 20, maxMs: 50, giveUpMs: 400 } });
  try {
    c.connect(proxy.url);
    await box.take("connected");
    proxy.down = true;
    const cutAt = Date.now();
    proxy.cut();
    const bye = await box.take("disconnected");
    const took = Date.now() - cutAt;
    assert.match(bye.reason, /^gave up resuming after \d+ attempts in \d+\.\d s: cannot connect to /);
    assert.equal(bye.code, 1006);
    assert.ok(took >= 350 && took < 3000, `gave up after ${took} ms`);
    assert.equal(c.state, "closed");
    assert.equal(c.isConnected, false);
    assert.equal(c.send({ action: "echo", id: "late" }), 0);
    const tries = proxy.accepted;
    await sleep(300);
    assert.equal(proxy.accepted, tries, "no attempt after giving up");
    assert.equal(count(log, "disconnected"), 1);
    assert.equal(log.at(-1), "disconnected");
  } finally {
    c.close();
    await proxy.close();
  }
});

test("maxQueuedMessages overflowing during the outage: disconnected at once, that send returns 0", async () => {
  const proxy = await startProxy(server.wsPort);
  const { c, log, box } = recorder({ maxQueuedMessages: 5, reconnect: { initialMs: 5000 } });
  try {
    c.connect(proxy.url);
    await box.take("connected");
    c.send({ action: "echo", id: "acked" });
    await box.take("echo_reply:acked");
    await sleep(400); // the server's ack of it
    proxy.cut();
    await box.take("reconnecting");
    for (let i = 0; i < 5; i += 1) assert.ok(c.send({ action: "echo", id: i }) > 0, `send ${i}`);
    assert.equal(c.send({ action: "echo", id: 5 }), 0, "the 6th does not fit");
    const bye = await box.take("disconnected");
    assert.match(bye.reason, /^gave up resuming: 6 messages \(\d+ bytes\) to hold while the link is down/);
    assert.equal(c.state, "closed");
    assert.equal(count(log, "resumed"), 0);
  } finally {
    c.close();
    await proxy.close();
  }
});

test("a connect that hangs is bounded by connectTimeoutMs: the next attempt follows", async () => {
  const proxy = await startProxy(server.wsPort);
  const { c, box } = recorder({ connectTimeoutMs: 300, reconnect: { initialMs: 20, maxMs: 50 } });
  try {
    c.connect(proxy.url);
    await box.take("connected");
    await optedIn(c, box);
    proxy.blackhole = true;
    proxy.cut();
    const first = await box.take("reconnecting");
    assert.equal(first.attempt, 1);
    const second = await box.take("reconnecting");
    assert.equal(second.attempt, 2);
    assert.match(second.reason, /^cannot connect to ws:\/\/127\.0\.0\.1:\d+\/ within 0\.3 s$/);
    proxy.blackhole = false;
    proxy.cut();
    await box.take("resumed");
    c.send({ action: "echo", id: "x" });
    await box.take("echo_reply:x");
  } finally {
    c.close();
    await proxy.close();
  }
});

test("heartbeatMs: a link that goes silent (frozen, not closed) is a drop: the session resumes", async () => {
  const proxy = await startProxy(server.wsPort);
  const { c, log, box } = recorder({ heartbeatMs: 50, heartbeatTimeoutMs: 300, reconnect: { initialMs: 20 } });
  try {
    c.connect(proxy.url);
    await box.take("connected");
    c.send({ action: "echo", id: 1 });
    await box.take("echo_reply:1");
    proxy.freeze();
    c.send({ action: "echo", id: 2 }); // swallowed by the frozen link: the resume sends it again
    const r = await box.take("reconnecting");
    assert.match(r.reason, /^no answer to heartbeats for \d+\.\d s$/);
    await box.take("resumed");
    await box.take("echo_reply:2");
    assert.equal(count(log, "echo_reply"), 2);
    assert.equal(count(log, "disconnected"), 0);
  } finally {
    c.close();
    await proxy.close();
  }
});

test("heartbeatMs: a server that stalls (SIGSTOP) then comes back: resumed (the stalled link is not closed first)", async () => {
  // The server takes the end of a stream (a FIN) for the end of the session: the client must
  // not close a link that may be alive before the session has moved to the new one.
  const own = await startEcho(["--resume-secs", "30"]);
  const { c, log, box, replies } = recorder({ heartbeatMs: 50, heartbeatTimeoutMs: 300, reconnect: { initialMs: 20, maxMs: 100 } });
  try {
    c.connect(own.url);
    await box.take("connected");
    await optedIn(c, box);
    own.pause();
    c.send({ action: "echo", id: "during" });
    const r = await box.take("reconnecting");
    assert.match(r.reason, /^no answer to heartbeats for \d+\.\d s$/);
    await sleep(300); // an attempt waits in the frozen server's backlog
    own.resume();
    await box.take("resumed");
    await box.take("echo_reply:during");
    c.send({ action: "echo", id: "after" });
    await box.take("echo_reply:after");
    await sleep(300);
    assert.deepEqual(replies, ["opted-in", "during", "after"]);
    assert.equal(count(log, "resume_failed"), 0, `no resume_failed: ${log.filter((a) => a !== "echo_reply")}`);
    assert.equal(count(log, "connected"), 1);
  } finally {
    own.resume();
    c.close();
    await own.stop();
  }
});

test("in a browser, coming back online or visible skips the rest of the backoff wait", async () => {
  const proxy = await startProxy(server.wsPort);
  const g = globalThis;
  const win = new EventTarget();
  const doc = Object.assign(new EventTarget(), { visibilityState: "hidden" });
  g.window = win;
  g.document = doc;
  const { c, box } = recorder({ reconnect: { initialMs: 20_000, maxMs: 20_000 } });
  try {
    c.connect(proxy.url);
    await box.take("connected");
    await optedIn(c, box);
    proxy.cut();
    let r = await box.take("reconnecting");
    assert.ok(r.delayMs >= 10_000, `waits ${r.delayMs} ms`);
    win.dispatchEvent(new Event("online"));
    await box.take("resumed", 3000);

    proxy.cut();
    r = await box.take("reconnecting");
    doc.dispatchEvent(new Event("visibilitychange")); // still hidden: nothing
    await sleep(200);
    assert.equal(c.state, "reconnecting");
    doc.visibilityState = "visible";
    doc.dispatchEvent(new Event("visibilitychange"));
    await box.take("resumed", 3000);
    c.send({ action: "echo", id: "back" });
    await box.take("echo_reply:back");
  } finally {
    c.close();
    delete g.window;
    delete g.document;
    await proxy.close();
  }
});

test("a clean close by the server (1003 after a text message) ends the session: disconnected, no reconnect", async () => {
  let socket;
  class Grab extends WebSocket {
    constructor(...args) {
      super(...args);
      socket = this;
    }
  }
  const c = new Client({ WebSocket: Grab });
  const log = [];
  const box = new Mailbox();
  c.network_received = (d) => {
    log.push(d.action);
    box.put(d.action, d);
  };
  c.connect(server.url);
  const hello = await box.take("connected");
  assert.match(hello.session, TOKEN);
  socket.send("not binary");
  const bye = await box.take("disconnected");
  assert.equal(bye.code, 1003);
  assert.match(bye.reason, /^closed by peer \(1003/);
  await sleep(300);
  assert.deepEqual(log, ["socketConnect", "connected", "disconnected"]);
  assert.equal(c.state, "closed");
});

test("a server that offers no session: no _ack, and a drop is disconnected 'connection lost (1006)' as before", async () => {
  const plain = await startEcho();
  const proxy = await startProxy(plain.wsPort);
  const { c, log, box, sockets } = recorder();
  try {
    c.connect(proxy.url);
    const hello = await box.take("connected");
    assert.equal(hello.session, undefined);
    c.send({ action: "echo", id: 1 });
    await box.take("echo_reply:1");
    await sleep(300);
    assert.deepEqual(sockets[0].out.map((m) => m.action), ["echo"], "nothing but the app's message");
    proxy.cut();
    const bye = await box.take("disconnected");
    assert.equal(bye.reason, "connection lost (1006)");
    await sleep(200);
    assert.deepEqual(log, ["socketConnect", "connected", "echo_reply", "disconnected"]);
    assert.equal(sockets.length, 1, "no second socket");
  } finally {
    c.close();
    await proxy.close();
    await plain.stop();
  }
});

test("reconnect: false: the client does not opt in, and a drop ends in disconnected", async () => {
  const proxy = await startProxy(server.wsPort);
  const { c, log, box, sockets } = recorder({ reconnect: false });
  try {
    c.connect(proxy.url);
    await box.take("connected");
    c.send({ action: "echo", id: 1 });
    await box.take("echo_reply:1");
    await sleep(300);
    assert.deepEqual(sockets[0].out.map((m) => m.action), ["echo"], "no _ack");
    proxy.cut();
    const bye = await box.take("disconnected");
    assert.equal(bye.reason, "connection lost (1006)");
    await sleep(200);
    assert.deepEqual(log, ["socketConnect", "connected", "echo_reply", "disconnected"]);
  } finally {
    c.close();
    await proxy.close();
  }
});

test("close() while reconnecting: reconnecting stops, one disconnected 'closed locally (1000)'", async () => {
  const proxy = await startProxy(server.wsPort);
  const { c, log, box } = recorder({ reconnect: { initialMs: 200 } });
  try {
    c.connect(proxy.url);
    await box.take("connected");
    await optedIn(c, box);
    proxy.cut();
    await box.take("reconnecting");
    c.send({ action: "echo", id: "dropped" });
    c.close();
    assert.equal(c.state, "closed");
    assert.equal(c.send({ action: "echo", id: "after" }), 0);
    const bye = await box.take("disconnected");
    assert.equal(bye.reason, "closed locally (1000)");
    assert.equal(bye.code, 1000);
    const tries = proxy.accepted;
    await sleep(500);
    assert.equal(proxy.accepted, tries, "no attempt after close()");
    assert.deepEqual(log, ["socketConnect", "connected", "echo_reply", "reconnecting", "disconnected"]);
  } finally {
    c.close();
    await proxy.close();
  }
});

test("sends before the greeting count in the session: replayed after a drop, never lost nor doubled", async () => {
  const proxy = await startProxy(server.wsPort);
  const { c, box, replies, sockets } = recorder({ reconnect: { initialMs: 20 } });
  try {
    c.connect(proxy.url);
    for (let i = 0; i < 5; i += 1) c.send({ action: "echo", id: i }); // queued while connecting
    await box.take("connected");
    // They count as the session's messages 1 to 5: one more, and the server's ack says 6.
    c.send({ action: "echo", id: "sync" });
    await box.take("echo_reply:sync");
    await until(() => sockets[0].in.some((m) => m.action === "_ack"), WAIT_MS, "the server's first _ack");
    assert.equal(sockets[0].in.find((m) => m.action === "_ack").received, 6);
    // Five more into a link that carries nothing any more, then the cut: the resume must send
    // exactly those again (the server has 5), and their replies must come once.
    proxy.freeze();
    for (let i = 5; i < 10; i += 1) c.send({ action: "echo", id: i });
    await sleep(50);
    proxy.cut();
    await box.take("resumed");
    const resume = sockets[1].out[0];
    assert.equal(resume.action, "resume");
    await within(WAIT_MS, (async () => {
      for (let i = 0; i < 10; i += 1) await box.take(`echo_reply:${i}`);
    })(), "the ten replies");
    await sleep(300);
    assert.deepEqual(replies, [0, 1, 2, 3, 4, "sync", 5, 6, 7, 8, 9]);
    assert.deepEqual(sockets[1].out.slice(1, 6).map((m) => m.id), [5, 6, 7, 8, 9], "sent again: the five the server missed");
  } finally {
    c.close();
    await proxy.close();
  }
});

test("a drop before the server read the opt-in cannot be resumed: resume_failed, then connected", async () => {
  // The server holds a session only for a client that opted in. Cut at once after the greeting,
  // with the opt-in possibly still in flight: either outcome must be reported, nothing silent.
  const proxy = await startProxy(server.wsPort);
  const { c, log, box } = recorder({ reconnect: { initialMs: 20 } });
  try {
    c.connect(proxy.url);
    c.send({ action: "echo", id: "early" });
    await box.take("connected");
    proxy.cut();
    await until(() => log.includes("resumed") || log.includes("resume_failed"), WAIT_MS, "the resume's outcome");
    if (log.includes("resume_failed")) {
      await box.take("connected");
      assert.deepEqual(log.filter((a) => a !== "echo_reply").slice(-3), ["reconnecting", "resume_failed", "connected"]);
    } else {
      await box.take("echo_reply:early");
    }
    c.send({ action: "echo", id: "after" });
    await box.take("echo_reply:after");
    assert.ok(count(log, "echo_reply") <= 2, "nothing twice");
  } finally {
    c.close();
    await proxy.close();
  }
});
