// wss: the echo server with --tls-cert/--tls-key (its WebSocket port speaks TLS), a throwaway CA
// and localhost certificate made with the openssl CLI for this run, and repod.js connecting to
// wss://localhost:PORT/ through a ws subclass that trusts that CA: the constructor option is how
// a Node client passes TLS settings (ca, cert/key for client auth, servername...).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Client } from "../repod.js";
import { CASES } from "../test-support/cases.mjs";
import { Mailbox, makeCerts, same, show, sleep, startEcho } from "../test-support/echo.mjs";

let certs;
let server;
let url;
before(async () => {
  certs = await makeCerts();
  server = await startEcho(["--heartbeat-ms", "100", "--tls-cert", certs.cert, "--tls-key", certs.key]);
  url = `wss://localhost:${server.wsPort}/`;
}, { timeout: 700_000 });
after(async () => {
  await server?.stop();
  certs?.remove();
});

function recorder(WebSocketClass) {
  const c = new Client({ WebSocket: WebSocketClass });
  const log = [];
  const box = new Mailbox();
  c.network_received = (d) => {
    log.push(d.action);
    box.put(d.action === "echo_reply" ? `echo_reply:${d.id}` : d.action, d);
  };
  return { c, log, box };
}

test("wss: trusting the test CA, the client connects, is greeted, and every type round-trips", async (t) => {
  const ca = certs.ca;
  let socket = null;
  let tls = null;
  class TrustingWebSocket extends WebSocket {
    constructor(address, protocols) {
      super(address, protocols, { ca });
      socket = this;
      this.once("upgrade", (res) => {
        tls = { peer: res.socket.getPeerCertificate(), authorized: res.socket.authorized, proto: res.socket.getProtocol() };
      });
    }
  }
  const { c, log, box } = recorder(TrustingWebSocket);
  c.connect(url);
  await box.take("connected");
  assert.deepEqual(log, ["socketConnect", "connected"]);
  assert.equal(socket.url, url, "the URL reached ws as given");
  // The TLS session is real: the peer certificate is the one made for this run.
  assert.ok(tls, "an upgrade response arrived over TLS");
  assert.equal(tls.authorized, true);
  assert.match(tls.peer.subjectaltname, /DNS:localhost/);
  assert.equal(tls.peer.issuer.CN, "repod web test CA");
  assert.match(tls.proto, /^TLSv1\.[23]$/);
  for (const [name, value] of CASES) c.send({ action: "echo", id: name, v: value });
  for (const [name, value] of CASES) {
    await t.test(name, async () => {
      const d = await box.take(`echo_reply:${name}`);
      assert.ok(same(d.v, value), `sent ${show(value)}, got ${show(d.v)}`);
    });
  }
  // The server pings every 100 ms over TLS as well: still connected after a while.
  await sleep(500);
  assert.equal(c.state, "open");
  c.close();
  const bye = await box.take("disconnected");
  assert.equal(bye.reason, "closed locally (1000)");
});

test("wss: without the CA the certificate is refused: one error event, never connected", async () => {
  const { c, log, box } = recorder(WebSocket);
  c.connect(url);
  const err = await box.take("error");
  assert.match(err.error, new RegExp(`^cannot connect to wss://localhost:${server.wsPort}/ \\(1006\\)$`));
  await sleep(100);
  assert.deepEqual(log, ["error"]);
  assert.equal(c.state, "closed");
});

test("wss: plain ws:// to the TLS port does not connect", async () => {
  const { c, log, box } = recorder(WebSocket);
  c.connect(`ws://localhost:${server.wsPort}/`);
  await box.take("error");
  await sleep(100);
  assert.deepEqual(log, ["error"]);
});
