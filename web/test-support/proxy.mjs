// A TCP proxy for the tests, in front of a WebSocket port, that breaks links the way a network
// does: `cut()` resets both sides of every open link (each side sees a reset, not a clean
// close), `down` refuses new links (accepts, then resets), `blackhole` swallows new links (no
// answer at all), `freeze()` stops the traffic of the open links without closing them.

import { createServer, connect as tcpConnect } from "node:net";

/**
 * A TCP proxy on 127.0.0.1 in front of a WebSocket port. Resolves once it listens.
 * @param {number} targetPort
 */
export function startProxy(targetPort) {
  const pairs = new Set();
  let target = targetPort;
  let accepted = 0;
  const reset = (s) => {
    if (!s.destroyed) s.resetAndDestroy();
  };
  const proxy = {
    /** Accept, then reset at once: the server looks unreachable. */
    down: false,
    /** Accept, read and discard, never answer: a connect that hangs. */
    blackhole: false,
    get accepted() {
      return accepted;
    },
    /** Open links (client side and server side both still there). */
    get links() {
      return pairs.size;
    },
    /** New links go to this port from now on (open ones stay where they are). */
    retarget(port) {
      target = port;
    },
    /** Resets both sides of every open link; returns how many links there were. */
    cut() {
      const n = pairs.size;
      for (const { client, upstream } of pairs) {
        reset(client);
        reset(upstream);
      }
      pairs.clear();
      return n;
    },
    /** Open links stop carrying anything, both ways, without closing. */
    freeze() {
      for (const { client, upstream } of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.on("data", () => {});
        upstream.on("data", () => {});
      }
    },
  };
  const srv = createServer((client) => {
    accepted += 1;
    client.on("error", () => {});
    if (proxy.down) {
      reset(client);
      return;
    }
    if (proxy.blackhole) {
      client.on("data", () => {});
      pairs.add({ client, upstream: client });
      return;
    }
    const upstream = tcpConnect(target, "127.0.0.1");
    const pair = { client, upstream };
    pairs.add(pair);
    upstream.on("error", () => reset(client));
    client.on("error", () => reset(upstream));
    // One side gone (a FIN after freeze(), say): the other sees a reset, as on a dead network.
    const gone = () => {
      if (!pairs.delete(pair)) return;
      reset(client);
      reset(upstream);
    };
    client.on("end", gone);
    upstream.on("end", gone);
    client.on("close", gone);
    upstream.on("close", gone);
    client.pipe(upstream, { end: false });
    upstream.pipe(client, { end: false });
  });
  return new Promise((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      proxy.port = port;
      proxy.url = `ws://127.0.0.1:${port}/`;
      proxy.close = () => {
        proxy.cut();
        return new Promise((r) => srv.close(() => r()));
      };
      resolve(proxy);
    });
  });
}
