"""Seed 003's nickname-validating chat server, completed with the ``system`` and ``players``
messages that seed 000's chat client displays. It speaks exactly the protocol of
``examples/chat_server.rs``, so tests/interop.rs runs the same conversation through both.

    python chat_server.py [HOST] [PORT]

Prints ``listening on HOST:PORT`` once it accepts connections. Stops on Ctrl-C, or, when the
environment has ``REPOD_EXIT_ON_STDIN_EOF=1`` (tests set it, so a server never outlives its
test), when its stdin is closed.

Protocol (client to server):
- ``nickname`` ``{nickname}``: trimmed, 1 to 20 characters, else ``error``
  ``{"message": "Invalid nickname"}`` to the sender. Broadcasts ``name_changed``
  ``{old_name, new_name}``, a ``system`` text (``NAME joined`` the first time,
  ``OLD is now known as NEW`` after) and ``players``.
- ``message`` ``{text}``: trimmed, 1 to 500 characters, else ``error``
  ``{"message": "Invalid message"}``. Broadcasts ``message`` ``{text, nickname}``.

When a player who chose a nickname leaves, the others get ``system`` ``NAME left`` and
``players``. ``players`` ``{list}`` holds the chosen nicknames, sorted.
"""

from __future__ import annotations

import os
import sys
import threading

from repod import Channel, Server


class GameChannel(Channel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nickname = "Anonymous"
        self.named = False

    def Network_nickname(self, data: dict) -> None:
        # Validate nickname
        nickname = data.get("nickname", "").strip()
        if not nickname or len(nickname) > 20:
            self.send({"action": "error", "message": "Invalid nickname"})
            return

        old_name = self.nickname
        was_named = self.named
        self.nickname = nickname
        self.named = True

        # Notify all clients
        self.server.send_to_all({
            "action": "name_changed",
            "old_name": old_name,
            "new_name": nickname
        })
        if was_named:
            text = f"{old_name} is now known as {nickname}"
        else:
            text = f"{nickname} joined"
        self.server.send_to_all({"action": "system", "text": text})
        self.server.send_players()

    def Network_message(self, data: dict) -> None:
        # Validate message
        text = data.get("text", "").strip()
        if not text or len(text) > 500:
            self.send({"action": "error", "message": "Invalid message"})
            return

        # Broadcast to all
        self.server.send_to_all({
            "action": "message",
            "text": text,
            "nickname": self.nickname
        })


class GameServer(Server):
    channel_class = GameChannel

    async def start(self) -> None:
        await super().start()
        print(f"listening on {self.host}:{self.port}", flush=True)

    def on_disconnect(self, channel: GameChannel) -> None:
        if channel.named:
            self.send_to_all({"action": "system", "text": f"{channel.nickname} left"})
            self.send_players()

    def send_players(self) -> None:
        names = sorted(ch.nickname for ch in self.channels if ch.named)
        self.send_to_all({"action": "players", "list": names})


def exit_when_stdin_closes() -> None:
    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except Exception:
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


if __name__ == "__main__":
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 5071
    if os.environ.get("REPOD_EXIT_ON_STDIN_EOF") == "1":
        exit_when_stdin_closes()
    GameServer(host=host, port=port).launch()
