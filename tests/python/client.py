"""A Python repod client for tests/interop.rs, driven by the server it connects to.

    python client.py HOST PORT

Prints ``event <action>`` for every connection event it sees (``connected``,
``socketConnect``, ``error``, ``disconnected``), in order, plus the report lines of
:mod:`puppet`. Besides the puppet actions it obeys ``close`` (close the connection from this
side). Exits 0 once disconnected, 2 on a connection error, 3 if nothing ended it within 120 s.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from puppet import Puppet, exit_when_stdin_closes, say
from repod import ConnectionListener


class TestClient(Puppet, ConnectionListener):
    def __init__(self) -> None:
        self.running = True
        self.status = 0

    def Network_connected(self, data: dict[str, Any]) -> None:
        say("event", "connected")

    def Network_socketConnect(self, data: dict[str, Any]) -> None:
        say("event", "socketConnect")

    def Network_error(self, data: dict[str, Any]) -> None:
        say("event", f"error {data.get('error')}")
        self.status = 2
        self.running = False

    def Network_disconnected(self, data: dict[str, Any]) -> None:
        say("event", "disconnected")
        self.running = False

    def Network_close(self, data: dict[str, Any]) -> None:
        self.connection.close()


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    exit_when_stdin_closes()
    client = TestClient()
    client.connect(host, port)
    deadline = time.monotonic() + 120
    while client.running:
        client.pump()
        if time.monotonic() > deadline:
            say("timeout")
            return 3
        time.sleep(0.002)
    return client.status


if __name__ == "__main__":
    sys.exit(main())
