"""A Python repod server for tests/interop.rs, driven by the clients that connect to it.

    python server.py HOST PORT

Prints ``ready`` once it listens, then one line per hook: ``channel_on_connect HOST``,
``server_on_connect HOST``, ``channel_on_close``, ``channel_on_error TEXT``,
``server_on_disconnect``, plus the report lines of :mod:`puppet`. Besides the puppet actions it
obeys ``shutdown``: stop as on Ctrl-C (``launch()`` catches the interrupt, stops the server,
which closes every channel), then print ``stopped`` and exit 0.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from puppet import Puppet, exit_when_stdin_closes, say
from repod import Channel, Server


class TestChannel(Puppet, Channel):
    def on_connect(self) -> None:
        say("channel_on_connect", self.addr[0])

    def on_close(self) -> None:
        say("channel_on_close")

    def on_error(self, error: Exception) -> None:
        say("channel_on_error", error)

    def Network_shutdown(self, data: dict[str, Any]) -> None:
        signal.raise_signal(signal.SIGINT)


class TestServer(Server):
    channel_class = TestChannel

    async def start(self) -> None:
        await super().start()
        say("ready")

    def on_connect(self, channel: TestChannel, addr: tuple[str, int]) -> None:
        say("server_on_connect", addr[0])

    def on_disconnect(self, channel: TestChannel) -> None:
        say("server_on_disconnect")


if __name__ == "__main__":
    exit_when_stdin_closes()
    # Ctrl-C semantics even when started with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    TestServer(host=sys.argv[1], port=int(sys.argv[2])).launch()
    say("stopped")
