"""A TLS client of tests/tls.rs that misbehaves below TLS: Python's ``ssl`` runs over memory BIOs
on a plain socket, so after a real handshake (and the server's greeting, read through TLS) the
script can write bytes that are no TLS record on the socket itself.

Usage::

    tls_raw.py HOST PORT CA.pem MODE

``MODE``:

- ``truncated``: a record header announcing 100 bytes of application data, then only 10, then
  the end of the stream from this side (``shutdown(SHUT_WR)``);
- ``garbage``: 280 bytes that are no TLS record (their first byte is no record type), the
  socket left open;
- ``bad_mac``: a well-formed application-data record of 64 random bytes, which cannot decrypt
  (its authentication tag is wrong), the socket left open.

It prints ``greeted <TLS version>`` once the handshake and the greeting are through, then
``bad <mode> <bytes written>``, then waits for the server to end the connection and prints
``closed <eof|reset> <ms> <bytes received> <their first bytes in hex or -> <what>`` (the
milliseconds counted from the bad bytes; ``what`` is those bytes decrypted: ``close_notify``,
``alert:<reason>``, ``nothing``..., see :func:`what_came`). ``fail <why>`` (exit status 1) if anything else happens, and
``fail still open`` if the server has not closed within 20 s. Exits when its stdin closes.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import sys
import threading
import time

import msgpack

WAIT = 60
CLOSE_WAIT = 20


def say(word: str, text: object = "") -> None:
    print(f"{word} {text}".rstrip(), flush=True)


def fail(why: str) -> None:
    say("fail", why.replace("\n", " | "))
    os._exit(1)


def exit_when_stdin_closes() -> None:
    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except Exception:
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


class BioTls:
    """``ssl`` over memory BIOs, moving the bytes over ``sock`` by hand."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, name: str) -> None:
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=name)

    def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def pump_in(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            fail("the server closed during the handshake or the greeting")
        self.incoming.write(data)

    def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                self.pump_in()

    def read_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            try:
                out += self.obj.read(n - len(out))
            except ssl.SSLWantReadError:
                self.flush()
                self.pump_in()
        return bytes(out)


def main() -> None:
    host, port, ca, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    exit_when_stdin_closes()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=ca)
    sock = socket.create_connection((host, port), timeout=WAIT)
    tls = BioTls(sock, ctx, "localhost")
    try:
        tls.handshake()
        (n,) = struct.unpack(">I", tls.read_exact(4))
        greeting = msgpack.unpackb(tls.read_exact(n), raw=False)
    except (OSError, ssl.SSLError) as e:
        fail(f"handshake or greeting: {type(e).__name__}: {e}")
    if greeting != {"action": "connected"}:
        fail(f"greeting {greeting!r}")
    say("greeted", tls.obj.version())
    # Anything the server sent after the greeting (TLS 1.3 session tickets) is left unread in
    # the socket or the BIO: only what comes after the bad bytes is counted below.
    sock.setblocking(False)
    try:
        while sock.recv(1 << 16):
            pass
    except BlockingIOError:
        pass
    sock.setblocking(True)
    sock.settimeout(CLOSE_WAIT)
    if mode == "truncated":
        bad = bytes([0x17, 0x03, 0x03, 0x00, 100]) + os.urandom(10)
    elif mode == "garbage":
        bad = b"GARBAGE, NOT TLS " * 16 + b"\x00" * 8
    elif mode == "bad_mac":
        bad = bytes([0x17, 0x03, 0x03, 0x00, 64]) + os.urandom(64)
    else:
        fail(f"unknown mode {mode!r}")
    start = time.monotonic()
    sock.sendall(bad)
    if mode == "truncated":
        sock.shutdown(socket.SHUT_WR)
    say("bad", f"{mode} {len(bad)}")
    got = bytearray()
    how = "eof"
    try:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                break
            got += data
    except ConnectionResetError:
        how = "reset"
    except socket.timeout:
        fail(f"still open {CLOSE_WAIT} s after the {mode} bytes ({len(got)} bytes received)")
    ms = int((time.monotonic() - start) * 1000)
    say("closed", f"{how} {ms} {len(got)} {got[:8].hex() or '-'} {what_came(tls, bytes(got))}")


def what_came(tls: BioTls, got: bytes) -> str:
    """What the server's last bytes were, decrypted: ``close_notify``, ``alert:<reason>``,
    ``data:<n>`` (application data, which should not come), ``nothing`` or ``partial``. The bad
    bytes went around the TLS object, so its reading side is still in step with the server."""
    if not got:
        return "nothing"
    tls.incoming.write(got)
    tls.incoming.write_eof()
    data = b""
    try:
        while True:
            chunk = tls.obj.read(1 << 16)
            if not chunk:
                return f"data:{len(data)}+close_notify" if data else "close_notify"
            data += chunk
    except ssl.SSLZeroReturnError:
        return f"data:{len(data)}+close_notify" if data else "close_notify"
    except ssl.SSLWantReadError:
        return f"data:{len(data)}+partial" if data else "partial"
    except ssl.SSLEOFError:
        return f"data:{len(data)}" if data else "nothing"
    except ssl.SSLError as e:
        reason = (e.reason or str(e)).lower().replace(" ", "_")
        return f"data:{len(data)}+alert:{reason}" if data else f"alert:{reason}"


if __name__ == "__main__":
    main()
