"""The TLS client of tests/tls.rs: repod's protocol (a 4-byte big-endian length, then a msgpack
map with an ``"action"``) inside TLS, with Python's ``ssl`` module (OpenSSL) verifying the
server against the test CA, so nothing of repod's own code is on this side.

Usage::

    tls_client.py HOST PORT --ca CA.pem [--server-name NAME] [--source IP] [--rcvbuf BYTES]

It connects (from ``IP``, any port, with ``--source``; with a receive buffer of ``BYTES``, so
that little waits in the kernel, with ``--rcvbuf``), does the TLS handshake checking the
certificate against ``CA.pem`` and the name ``NAME`` (default ``localhost``), reads the greeting,
which must be ``{"action": "connected"}``, and prints::

    connected <local ip:port> <TLS version> <certificate serial> <certificate subject CN>

then runs one command per line read from stdin:

- ``echo N``: sends ``N`` ``echo`` maps back to back (a sequence number, text, bytes), then reads
  the ``N`` replies and checks each (``echo_reply``, same fields, in order); prints
  ``echo_ok N``;
- ``whoami``: prints ``whoami <addr>`` (the address the server has for this client);
- ``cert``: prints ``cert <serial> <subject CN>`` of this connection's server certificate;
- ``send_big N SIZE``: sends ``N`` ``echo`` maps with ``SIZE`` bytes each, reading nothing;
  prints ``sent N``;
- ``recv_big N SIZE``: reads the ``N`` replies to ``send_big``, checking them, then waits for the
  server to close; prints ``closed close_notify fin`` when the stream ended with a TLS
  close_notify, then a TCP FIN (``closed close_notify reset`` for a reset after the
  close_notify; ``fail ragged eof ...`` when the TCP stream ended without a close_notify);
- ``wait_close``: waits for the server to close, as above;
- ``sleep SECONDS``: sleeps, then prints ``slept``.

A check that fails prints ``fail <why>`` and exits with status 1. The process exits when its
stdin closes, so it never outlives the test. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import ssl
import struct
import sys
import threading
import time
from typing import Any

import msgpack

#: Bound on any single wait, in seconds.
WAIT = 60


def say(word: str, text: Any = "") -> None:
    """Print one report line for the Rust side and flush it."""
    print(f"{word} {text}".rstrip(), flush=True)


def fail(why: str) -> None:
    say("fail", why.replace("\n", " | "))
    sys.stdout.flush()
    os._exit(1)


def commands() -> "queue.Queue[str]":
    """Stdin's lines, read on a thread; at EOF the process exits."""
    q: queue.Queue[str] = queue.Queue()

    def watch() -> None:
        try:
            for line in sys.stdin:
                q.put(line.strip())
        except Exception:
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    return q


def context(ca: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name
    ctx.load_verify_locations(cafile=ca)
    return ctx


def cert_id(tls: ssl.SSLSocket) -> str:
    cert = tls.getpeercert()
    if not cert:
        fail("no peer certificate")
    cn = "?"
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
    return f"{cert.get('serialNumber')} {cn}"


class Conn:
    """A repod connection over an ``ssl.SSLSocket``."""

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self.tls = tls
        self.buf = bytearray()

    def send(self, m: dict[str, Any]) -> None:
        payload = msgpack.packb(m, use_bin_type=True)
        self.tls.sendall(struct.pack(">I", len(payload)) + payload)

    def send_many(self, ms: list[dict[str, Any]]) -> None:
        out = bytearray()
        for m in ms:
            payload = msgpack.packb(m, use_bin_type=True)
            out += struct.pack(">I", len(payload)) + payload
        self.tls.sendall(out)

    def _fill(self) -> bool:
        """Reads more into the buffer; False at a clean end of stream (close_notify)."""
        data = self.tls.recv(1 << 16)
        if not data:
            return False
        self.buf += data
        return True

    def recv(self) -> dict[str, Any]:
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    payload = bytes(self.buf[4 : 4 + n])
                    del self.buf[: 4 + n]
                    m = msgpack.unpackb(payload, raw=False, strict_map_key=False)
                    if not isinstance(m, dict):
                        fail(f"not a map: {m!r}")
                    return m
            if not self._fill():
                fail(f"the server closed with {len(self.buf)} bytes of a frame unread")

    def wait_close(self) -> str:
        """Waits for the end of the stream; what ended it, or fails."""
        try:
            while self._fill():
                pass
        except ssl.SSLZeroReturnError:
            pass  # a close_notify (Python 3.12's recv() returns b"" for it instead)
        except ssl.SSLEOFError as e:
            fail(f"ragged eof (no close_notify): {e}")
        except ConnectionResetError as e:
            fail(f"reset (no close_notify): {e}")
        except socket.timeout:
            fail(f"the server did not close within {WAIT} s")
        if self.buf:
            fail(f"{len(self.buf)} unexpected bytes before the close: {bytes(self.buf[:64])!r}")
        # recv() returned b"" with suppress_ragged_eofs=False: a close_notify came. Then the TCP
        # stream itself, read under the TLS object: a FIN, or a reset.
        try:
            rest = socket.socket.recv(self.tls, 1 << 16)
        except ConnectionResetError:
            return "close_notify reset"
        except socket.timeout:
            return "close_notify open"
        return "close_notify fin" if not rest else f"close_notify {len(rest)}_bytes_after"


def echo_msg(i: int, size: int = 0) -> dict[str, Any]:
    return {
        "action": "echo",
        "seq": i,
        "text": f"héllo {i} ✓",
        "bin": bytes((i + k) % 256 for k in range(size or 16)),
    }


def check_reply(m: dict[str, Any], i: int, size: int = 0) -> None:
    want = dict(echo_msg(i, size), action="echo_reply")
    if m != want:
        got = {k: (v if not isinstance(v, bytes) or len(v) < 40 else f"<{len(v)} bytes>") for k, v in m.items()}
        fail(f"reply {i}: got {got!r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--server-name", default="localhost")
    ap.add_argument("--source")
    ap.add_argument("--rcvbuf", type=int, help="SO_RCVBUF, set before connecting")
    args = ap.parse_args()
    cmds = commands()
    ctx = context(args.ca)
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(WAIT)
        if args.rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
        if args.source:
            raw.bind((args.source, 0))
        raw.connect((args.host, args.port))
        local = raw.getsockname()
        tls = ctx.wrap_socket(raw, server_hostname=args.server_name, suppress_ragged_eofs=False)
    except (OSError, ssl.SSLError) as e:
        fail(f"handshake: {type(e).__name__}: {e}")
    conn = Conn(tls)
    greeting = conn.recv()
    if greeting != {"action": "connected"}:
        fail(f"greeting {greeting!r}")
    say("connected", f"{local[0]}:{local[1]} {tls.version()} {cert_id(tls)}")
    while True:
        try:
            line = cmds.get(timeout=600)
        except queue.Empty:
            fail("no command for 600 s")
        words = line.split()
        if not words:
            continue
        cmd, rest = words[0], words[1:]
        try:
            if cmd == "echo":
                n = int(rest[0])
                conn.send_many([echo_msg(i) for i in range(n)])
                for i in range(n):
                    check_reply(conn.recv(), i)
                say("echo_ok", n)
            elif cmd == "whoami":
                conn.send({"action": "whoami"})
                m = conn.recv()
                if m.get("action") != "whoami_reply":
                    fail(f"whoami: {m!r}")
                say("whoami", m.get("addr"))
            elif cmd == "cert":
                say("cert", cert_id(tls))
            elif cmd == "send_big":
                n, size = int(rest[0]), int(rest[1])
                for i in range(n):
                    conn.send(echo_msg(i, size))
                say("sent", n)
            elif cmd == "recv_big":
                n, size = int(rest[0]), int(rest[1])
                for i in range(n):
                    check_reply(conn.recv(), i, size)
                say("closed", conn.wait_close())
            elif cmd == "wait_close":
                say("closed", conn.wait_close())
            elif cmd == "sleep":
                time.sleep(float(rest[0]))
                say("slept")
            else:
                fail(f"unknown command {line!r}")
        except socket.timeout:
            fail(f"{line}: timed out after {WAIT} s")
        except (OSError, ssl.SSLError) as e:
            fail(f"{line}: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
