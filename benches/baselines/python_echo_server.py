"""Echo-protocol baseline on Python repod (PyPI ``repodnet==0.1.2``).

Uses only the library's public API: a :class:`repod.Channel` subclass with
``Network_echo`` / ``Network_broadcast`` handlers, ``Channel.send`` and
``Server.send_to_all``.  The greeting ``{"action": "connected"}`` is sent by
the library itself on accept.

Usage::

    python python_echo_server.py HOST PORT

Prints ``listening on HOST:PORT`` (flushed) once the socket is bound.
``Server.launch()`` blocks before we could print, so this drives the
documented ``await server.start()`` / ``await server.run()`` pair directly.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from repod import Channel, Server


class EchoChannel(Channel):
    """Answers echo to the sender and broadcast to everyone."""

    def Network_echo(self, data: dict[str, Any]) -> None:
        data["action"] = "echo_reply"
        self.send(data)

    def Network_broadcast(self, data: dict[str, Any]) -> None:
        data["action"] = "broadcast_reply"
        self.server.send_to_all(data)


class EchoServer(Server):
    channel_class = EchoChannel


async def main(host: str, port: int) -> None:
    server = EchoServer(host=host, port=port)
    await server.start()
    print(f"listening on {host}:{port}", flush=True)
    try:
        await server.run()
    except asyncio.CancelledError:
        pass
    finally:
        await server.stop()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python python_echo_server.py HOST PORT", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    except KeyboardInterrupt:
        pass
