// Helpers for the tests in ../test/: the echo server as a child process, bounded waits, a
// mailbox for replies, structural equality, throwaway TLS certificates.
//
// This file lives outside test/ on purpose: `node --test test/` runs every .mjs under test/ as
// a test file.
//
// The echo server (examples/echo_server.rs) is, in order of preference:
// - $REPOD_ECHO_SERVER, a path to the binary;
// - $CARGO_TARGET_DIR/debug/examples/echo_server (target/ at the repository root by default),
//   when it exists: web/ci.sh builds it first (`cargo build --example echo_server`), so it is
//   current there; run that build yourself after changing the server;
// - otherwise `cargo run --quiet --example echo_server --`, from the repository root (the first
//   build can take minutes: SERVER_START_MS bounds it).

import { spawn, execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

/** web/ */
export const WEB = fileURLToPath(new URL("..", import.meta.url));
/** The repository root. */
export const ROOT = path.resolve(WEB, "..");

/** Bound on the server's start, a cargo build included when there is no binary yet. */
const SERVER_START_MS = Number(process.env.REPOD_SERVER_START_MS ?? 600_000);
/** Bound on one wait for the network in a test: generous, for a loaded 2-core machine. */
export const WAIT_MS = 10_000;

/** Rejects with `what` in the message when `promise` takes longer than `ms`. */
export function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 10 ms until it is true; rejects after `ms`. */
export async function until(cond, ms, what) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * Values keyed by a label, taken in any order relative to their arrival: a reply that comes
 * before the test waits for it is kept. Every take is bounded.
 */
export class Mailbox {
  #box = new Map();
  #waiters = new Map();
  put(key, value) {
    const w = this.#waiters.get(key);
    if (w) {
      this.#waiters.delete(key);
      w(value);
    } else {
      if (!this.#box.has(key)) this.#box.set(key, []);
      this.#box.get(key).push(value);
    }
  }
  /** How many are waiting under `key`, not yet taken. */
  count(key) {
    return this.#box.get(key)?.length ?? 0;
  }
  take(key, ms = WAIT_MS) {
    const queued = this.#box.get(key);
    if (queued && queued.length) return Promise.resolve(queued.shift());
    return within(ms, new Promise((resolve) => this.#waiters.set(key, resolve)), JSON.stringify(key))
      .finally(() => this.#waiters.delete(key));
  }
}

/** Structural equality for decoded msgpack values: NaN equals NaN, bytes by content. */
export function same(a, b) {
  if (Object.is(a, b)) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && a.length === b.length && a.every((x, i) => x === b[i]);
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && same(a[k], b[k]));
}

/** Short text of a value for failure messages, bigint and bytes included. */
export function show(v) {
  try {
    return JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `${x}n`
      : x instanceof Uint8Array ? `bytes(${x.length})`
        : typeof x === "number" && !Number.isFinite(x) ? String(x) : x)).slice(0, 300);
  } catch {
    return String(v);
  }
}

/** The echo server's command line: [file, args before the server's own]. */
function serverCommand() {
  if (process.env.REPOD_ECHO_SERVER) return [process.env.REPOD_ECHO_SERVER, []];
  const target = process.env.CARGO_TARGET_DIR
    ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR)
    : path.join(ROOT, "target");
  const built = path.join(target, "debug", "examples", "echo_server");
  if (existsSync(built)) return [built, []];
  return ["cargo", ["run", "--quiet", "--example", "echo_server", "--"]];
}

/** Every server started here, killed when the test process exits, whatever the outcome. */
const running = new Set();
process.on("exit", () => {
  for (const child of running) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

/**
 * Starts the echo server on 127.0.0.1 with free ports (`--ws 0`) and `extra` flags; resolves
 * once it printed both ports. `stop()` ends it (SIGINT: at once, no drain) and resolves when it
 * has exited; `kill()` ends it with SIGKILL, as a crash would; `pause()` and `resume()` freeze
 * and thaw it (SIGSTOP, SIGCONT), as a hung process or a dead network would look.
 * @param {string[]} extra
 */
export async function startEcho(extra = []) {
  const [file, pre] = serverCommand();
  const args = [...pre, "127.0.0.1", "0", "--ws", "0", ...extra];
  // In our process group, so a Ctrl-C reaches it too. (`cargo run` execs the server on Unix:
  // the child's pid is the server's.)
  const child = spawn(file, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let stdout = "";
  let stderr = "";
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => {
    running.delete(child);
    resolve({ code, signal });
  }));
  child.stderr.setEncoding("utf8").on("data", (s) => { stderr += s; });
  const ports = new Promise((resolve, reject) => {
    child.once("error", (e) => reject(new Error(`cannot start ${file}: ${e.message}`)));
    child.stdout.setEncoding("utf8").on("data", (s) => {
      stdout += s;
      const tcp = /^listening on (\S+)$/m.exec(stdout);
      const ws = /^websocket on (\S+)$/m.exec(stdout);
      if (tcp && ws) resolve({ tcp: tcp[1], ws: ws[1] });
    });
    exited.then(({ code, signal }) => reject(new Error(
      `${file} ${args.join(" ")} exited (${code ?? signal}) before it listened:\n${stdout}${stderr}`)));
  });
  const sendSignal = (sig) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
  };
  let addr;
  try {
    addr = await within(SERVER_START_MS, ports, `${path.basename(file)} to print its ports`);
  } catch (e) {
    sendSignal("SIGKILL");
    throw e;
  }
  const [, wsPort] = /:(\d+)$/.exec(addr.ws);
  return {
    tcp: addr.tcp,
    ws: addr.ws,
    wsPort: Number(wsPort),
    url: `ws://${addr.ws}/`,
    get output() { return stdout + stderr; },
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      sendSignal("SIGINT");
      try {
        await within(5000, exited, "the echo server to stop");
      } catch {
        sendSignal("SIGKILL");
        await within(5000, exited, "the echo server to die");
      }
    },
    /** Freezes it (SIGSTOP): connections stay open, nothing is answered. */
    pause() {
      sendSignal("SIGSTOP");
    },
    /** Thaws it (SIGCONT). */
    resume() {
      sendSignal("SIGCONT");
    },
    async kill() {
      sendSignal("SIGKILL");
      await within(5000, exited, "the echo server to die");
    },
  };
}

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then closed). */
export function deadPort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const execFileP = promisify(execFile);

/**
 * A throwaway CA and a leaf certificate for `localhost` and 127.0.0.1 signed by it (ECDSA
 * P-256), made with the openssl CLI in a fresh temporary directory: nothing secret is
 * committed. Returns the paths and the CA's PEM; `remove()` deletes the directory.
 */
export async function makeCerts() {
  const dir = mkdtempSync(path.join(tmpdir(), "repod-web-tls-"));
  const f = (name) => path.join(dir, name);
  writeFileSync(f("ext.cnf"), [
    "[ca]",
    "basicConstraints = critical, CA:TRUE",
    "keyUsage = critical, keyCertSign, cRLSign",
    "subjectKeyIdentifier = hash",
    "[leaf]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature",
    "extendedKeyUsage = serverAuth",
    "subjectAltName = DNS:localhost, IP:127.0.0.1",
    "subjectKeyIdentifier = hash",
    "authorityKeyIdentifier = keyid",
    "",
  ].join("\n"));
  const openssl = (...args) => within(30_000, execFileP(process.env.REPOD_OPENSSL ?? "openssl", args, { cwd: dir }),
    `openssl ${args[0]}`);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
    "-subj", "/CN=repod web test CA", "-config", "ext.cnf", "-extensions", "ca");
  await openssl("req", "-new", ...ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost");
  await openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf", "-extensions", "leaf");
  return {
    dir,
    cert: f("leaf.pem"),
    key: f("leaf.key"),
    ca: readFileSync(f("ca.pem"), "utf8"),
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
