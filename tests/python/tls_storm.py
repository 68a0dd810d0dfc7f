"""Many TLS handshakes at once against repod's ``echo_server`` (tests/tls.rs), with asyncio and
Python's ``ssl``.

Usage::

    tls_storm.py HOST PORT CA.pem N

Opens ``N`` connections at once, each doing its TLS handshake (checking the certificate against
``CA.pem`` and the name ``localhost``) and reading the greeting, ``{"action": "connected"}``.
Every connection stays open until all ``N`` are through, so the server holds them all at the same
time; then they close. Prints one line::

    storm greeted=G refused=R timeout=T other=O seconds=S

``refused`` counts clean refusals (connection refused or reset, or the server ending the stream
during the handshake), ``timeout`` connections still not greeted after 90 s, ``other`` anything
else (a bad certificate, a wrong greeting); then, for each kind of failure, one ``error <kind>
<count> <example>`` line. Exits 0 (the Rust side judges the counts), or when stdin closes.
"""

from __future__ import annotations

import asyncio
import collections
import os
import ssl
import struct
import sys
import threading
import time

import msgpack

#: Bound on one connection's handshake and greeting, in seconds.
EACH = 90


def exit_when_stdin_closes() -> None:
    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except Exception:
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


class Through:
    """How many connections are through their handshake and greeting (or failed), and an event
    set when all are."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.all = asyncio.Event()

    def one_more(self) -> None:
        self.count += 1
        if self.count >= self.n:
            self.all.set()


async def one(host: str, port: int, ctx: ssl.SSLContext, through: Through) -> tuple[str, str]:
    writer = None

    async def greet() -> None:
        nonlocal writer
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname="localhost", ssl_handshake_timeout=EACH
        )
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        m = msgpack.unpackb(await reader.readexactly(n), raw=False)
        if m != {"action": "connected"}:
            raise ValueError(f"greeting {m!r}")

    try:
        await asyncio.wait_for(greet(), EACH)
        result = ("greeted", "")
    except asyncio.TimeoutError:
        result = ("timeout", "")
    except (ConnectionRefusedError, ConnectionResetError, asyncio.IncompleteReadError, ssl.SSLEOFError) as e:
        result = ("refused", f"{type(e).__name__}: {e}")
    except ssl.SSLError as e:
        # A handshake the server broke off with an alert is a refusal too; a certificate that
        # does not verify is not.
        kind = "other" if isinstance(e, ssl.SSLCertVerificationError) else "refused"
        result = (kind, f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - counted and shown
        result = ("other", f"{type(e).__name__}: {e}")
    through.one_more()
    # Held open until every connection is through: the server holds them all at once.
    try:
        await asyncio.wait_for(through.all.wait(), EACH * 2)
    except asyncio.TimeoutError:
        pass
    if writer is not None:
        writer.close()
    return result


async def storm(host: str, port: int, ca: str, n: int) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=ca)
    through = Through(n)
    start = time.monotonic()
    results = await asyncio.gather(*(one(host, port, ctx, through) for _ in range(n)))
    seconds = time.monotonic() - start
    counts: collections.Counter[str] = collections.Counter(kind for kind, _ in results)
    errors: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    for kind, detail in results:
        if detail:
            key = f"{kind}:{detail.split(':')[0]}"
            errors[key] += 1
            examples.setdefault(key, detail)
    print(
        f"storm greeted={counts['greeted']} refused={counts['refused']} "
        f"timeout={counts['timeout']} other={counts['other']} seconds={seconds:.1f}",
        flush=True,
    )
    for key, count in errors.most_common():
        print(f"error {key} {count} {examples[key][:200]}", flush=True)


def main() -> None:
    host, port, ca, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    exit_when_stdin_closes()
    asyncio.run(storm(host, port, ca, n))


if __name__ == "__main__":
    main()
