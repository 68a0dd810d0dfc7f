// A server that is not repod's may negotiate permessage-deflate with Node's `ws`, which then
// compresses a message after send() has returned. repod.js encodes into a buffer it reuses, so
// it must hand such a socket a copy: five quick sends arrive as five different messages.

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket, { WebSocketServer } from "ws";
import { decode, encode } from "@msgpack/msgpack";
import { Client } from "../repod.js";

test("quick sends over a compressing ws link arrive intact", async () => {
  const seen = [];
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: { threshold: 0 } });
  await new Promise((resolve) => server.once("listening", resolve));
  let extensions = "";
  server.on("connection", (socket, request) => {
    extensions = request.headers["sec-websocket-extensions"] ?? "";
    socket.send(encode({ action: "connected" }));
    socket.on("message", (data) => seen.push(decode(data).n));
  });
  const client = new Client({ WebSocket });
  const greeted = new Promise((resolve) => client.on("connected", resolve));
  client.connect(`ws://127.0.0.1:${server.address().port}/`);
  let timer;
  const late = new Promise((_, no) => {
    timer = setTimeout(() => no(new Error("no greeting")), 10_000);
  });
  await Promise.race([greeted, late]).finally(() => clearTimeout(timer));
  for (let n = 0; n < 5; n++) client.send({ action: "count", n });
  const until = Date.now() + 10_000;
  while (seen.length < 5 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  client.close();
  server.close();
  assert.match(extensions, /permessage-deflate/, "the link did negotiate compression");
  assert.deepEqual(seen, [0, 1, 2, 3, 4]);
});
