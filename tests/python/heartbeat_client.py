"""A Python repod client for tests/heartbeat.rs: how Python peers live with repod heartbeats.

    python heartbeat_client.py HOST PORT [answer]

Prints ``event <action>`` for its connection events and ``ping <t>`` for every heartbeat ping
it sees. Without ``answer`` it is a stock ConnectionListener: the pings reach
``network_received`` (its fallback for actions it has no handler for). With ``answer`` it has
the two-line handler documented in ``repod::heartbeat`` and answers every ping with a pong.
Exits 0 once disconnected, 3 if nothing ended it within 120 s.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from puppet import exit_when_stdin_closes, say
from repod import ConnectionListener


class Tolerant(ConnectionListener):
    """Knows nothing of heartbeats: a ping is just an unknown action."""

    def __init__(self) -> None:
        self.running = True

    def Network_connected(self, data: dict[str, Any]) -> None:
        say("event", "connected")

    def Network_disconnected(self, data: dict[str, Any]) -> None:
        say("event", "disconnected")
        self.running = False

    def network_received(self, data: dict[str, Any]) -> None:
        if data.get("action") == "_ping":
            say("ping", data.get("t"))


class Answering(Tolerant):
    """Answers pings, as repod::heartbeat documents for Python peers."""

    def Network__ping(self, data: dict[str, Any]) -> None:
        self.send({"action": "_pong", "t": data["t"]})
        say("ping", data.get("t"))


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    exit_when_stdin_closes()
    client = Answering() if sys.argv[3:] == ["answer"] else Tolerant()
    client.connect(host, port)
    deadline = time.monotonic() + 120
    while client.running:
        client.pump()
        if time.monotonic() > deadline:
            say("timeout")
            return 3
        time.sleep(0.005)
    return 0


if __name__ == "__main__":
    sys.exit(main())
