// A page that comes back online resumes at once, in a real browser: headless Chromium runs
// repod.js against the echo server with sessions on (`--resume-secs 30`), through a proxy that
// resets the page's link. The page's next attempt is 30 s or more away (its backoff); the test
// then takes the page offline and back online with DevTools' network emulation, which fires the
// page's `offline` and `online` events as a phone's radio would, and the page must reconnect and
// resume within seconds, its session whole: one `connected`, one `resumed`, echoes before and
// after.
//
// Chromium is `REPOD_CHROMIUM`, else /usr/bin/chromium or /usr/bin/chromium-browser (`.ci/run`
// installs it). Without it the test is skipped with a notice; with `CI` set it fails.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import WebSocket from "ws";
import { WAIT_MS, WEB, sleep, startEcho, within } from "../test-support/echo.mjs";
import { startProxy } from "../test-support/proxy.mjs";

/** Polls the async `cond` every 50 ms until it is true; rejects after `ms`. */
async function eventually(cond, ms, what) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

const CHROMIUM = [process.env.REPOD_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"]
  .find((p) => p && existsSync(p));
if (!CHROMIUM && process.env.CI) {
  throw new Error("CI is set and Chromium is missing: apt-get install chromium (or set REPOD_CHROMIUM)");
}
if (!CHROMIUM) console.error("\n*** browser-online.test.mjs: NO CHROMIUM, TEST SKIPPED (apt-get install chromium) ***\n");

/** The test page: repod.js with a backoff of 30 s or more, every event in `window.events`. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<script type="importmap">{ "imports": { "@msgpack/msgpack": "./vendor/msgpack/index.mjs" } }</script>
<script type="module">
import { Client } from "./repod.js";
const events = [];
window.events = events;
const note = (what, extra = {}) => events.push({ what, at: Math.round(performance.now()), ...extra });
addEventListener("online", () => note("window online"));
addEventListener("offline", () => note("window offline"));
const c = new Client({ reconnect: { initialMs: 60000, maxMs: 60000, giveUpMs: 300000 } });
for (const action of ["connected", "reconnecting", "resumed", "resume_failed", "disconnected", "error"]) {
  c.on(action, (d) => note(action, { attempt: d.attempt, reason: d.reason ?? d.error }));
}
c.on("echo_reply", (d) => note("echo_reply", { n: d.n }));
window.echo = (n) => c.send({ action: "echo", n });
window.clientState = () => c.state;
c.connect(new URLSearchParams(location.search).get("ws"));
</script>`;

const TYPES = { ".js": "text/javascript", ".mjs": "text/javascript", ".html": "text/html" };

/** Serves the page, repod.js and the vendored msgpack from web/. */
async function serveWeb() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/online.html") {
      res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
      return;
    }
    const file = path.join(WEB, path.normalize(url.pathname));
    if (!file.startsWith(WEB) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" })
      .end(readFileSync(file));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, base: `http://127.0.0.1:${server.address().port}` };
}

/** Headless Chromium with a DevTools connection: `send(method, params)` on the page's session. */
async function chromium(url) {
  const profile = mkdtempSync(path.join(os.tmpdir(), "repod-online-"));
  const child = spawn(CHROMIUM, [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-port=0", `--user-data-dir=${profile}`, "about:blank",
  ], { stdio: ["ignore", "ignore", "pipe"], detached: true }); // its own group: all of it ends
  let stderr = "";
  const endpoint = await within(60_000, new Promise((resolve, reject) => {
    child.stderr.setEncoding("utf8").on("data", (s) => {
      stderr += s;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    child.once("exit", (code) => reject(new Error(`chromium exited (${code}):\n${stderr}`)));
  }), "Chromium's DevTools endpoint");
  const ws = new WebSocket(endpoint, { perMessageDeflate: false });
  await within(WAIT_MS, new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject)), "DevTools");
  let next = 0;
  const waiting = new Map();
  ws.on("message", (data) => {
    const m = JSON.parse(String(data));
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    if (m.error) w.reject(new Error(`${w.method}: ${JSON.stringify(m.error)}`));
    else w.resolve(m.result);
  });
  const call = (method, params = {}, sessionId = undefined) => {
    const id = ++next;
    ws.send(JSON.stringify({ id, method, params, sessionId }));
    return within(WAIT_MS, new Promise((resolve, reject) => waiting.set(id, { resolve, reject, method })), method);
  };
  const { targetId } = await call("Target.createTarget", { url });
  const { sessionId } = await call("Target.attachToTarget", { targetId, flatten: true });
  const send = (method, params) => call(method, params, sessionId);
  await send("Network.enable");
  return {
    send,
    /** Evaluates `expression` in the page; its value. */
    async eval(expression) {
      const r = await send("Runtime.evaluate", { expression, returnByValue: true });
      return r.result.value;
    },
    async close() {
      ws.close();
      const exited = new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once("exit", resolve)));
      try {
        process.kill(-child.pid, "SIGKILL"); // the browser and its helper processes
      } catch {
        // already gone
      }
      await exited;
      // A helper may still be closing files in the profile for a moment.
      rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    },
  };
}

let echo;
let web;
let proxy;
before(async () => {
  if (!CHROMIUM) return;
  echo = await startEcho(["--resume-secs", "30"]);
  web = await serveWeb();
  proxy = await startProxy(echo.wsPort);
}, { timeout: 700_000 });
after(async () => {
  await proxy?.close();
  web?.server.close();
  await echo?.stop();
});

test("a page that comes back online resumes at once, not after its backoff", { skip: !CHROMIUM && "no Chromium", timeout: 120_000 }, async () => {
  const page = await chromium(`${web.base}/online.html?ws=${proxy.url}`);
  const events = () => page.eval("JSON.stringify(window.events ?? [])").then((s) => JSON.parse(s ?? "[]"));
  const has = (list, what) => list.filter((e) => e.what === what);
  try {
    await eventually(async () => has(await events(), "connected").length === 1, 60_000, "the page's greeting");
    // An echo answered: the server has read the page's opt-in to the session, which goes first.
    await page.eval("window.echo(1)");
    await eventually(async () => has(await events(), "echo_reply").length === 1, WAIT_MS, "echo 1");

    assert.equal(proxy.cut(), 1, "one link to cut");
    await eventually(async () => has(await events(), "reconnecting").length === 1, WAIT_MS, "reconnecting");
    // The first attempt waits 30 s or more: nothing happens for now.
    await sleep(1500);
    let seen = await events();
    assert.equal(has(seen, "resumed").length, 0, JSON.stringify(seen));
    assert.equal(await page.eval("window.clientState()"), "reconnecting");

    // The radio drops and comes back.
    const offline = { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1 };
    await page.send("Network.emulateNetworkConditions", offline);
    await sleep(300);
    await page.send("Network.emulateNetworkConditions", { ...offline, offline: false });
    const back = Date.now();
    await eventually(async () => has(await events(), "resumed").length === 1, WAIT_MS, "resumed after the online event");
    const took = Date.now() - back;

    await page.eval("window.echo(2)");
    await eventually(async () => has(await events(), "echo_reply").length === 2, WAIT_MS, "echo 2");
    seen = await events();
    assert.ok(took < 10_000, `resumed ${took} ms after coming online (the backoff was 30 s or more)`);
    assert.deepEqual(seen.map((e) => e.what).filter((w) => w !== "echo_reply"), [
      "connected", "reconnecting", "window offline", "window online", "resumed",
    ], JSON.stringify(seen));
    assert.equal(has(seen, "reconnecting")[0].attempt, 1);
    assert.deepEqual(has(seen, "echo_reply").map((e) => e.n), [1, 2]);
    assert.equal(await page.eval("window.clientState()"), "open");
  } finally {
    await page.close();
  }
});
