"""Shared by the Python sides of tests/interop.rs: handlers that let the Rust side drive a
Python repod peer, and a small line protocol on stdout to report what the peer saw.

Everything here uses repod's public API only: ``Network_{action}`` methods and ``send()``,
which ``Channel`` (server side) and ``ConnectionListener`` (client side) both have. So the
same mixin makes a Python server's channel and a Python client do the same things:

- ``echo``: send the message back unchanged, with action ``echo_reply``;
- ``send_values``: send :func:`python_values` (a message built in Python);
- ``send_no_action``: send a map with no ``"action"`` key, then ``after_no_action``;
- ``send_odd_actions``: send maps whose ``"action"`` is not a string, then
  ``after_odd_actions``;
- ``send_big`` ``{n}``: send ``big`` with ``n`` bytes of data;
- ``send_burst`` ``{n}``: send ``seq`` 0..n-1, then ``seq_end``;
- ``seq`` / ``seq_end``: count and check the order of a burst, answer ``seq_report``;
- ``broadcast``: print ``broadcast <text>``;
- ``check_typed``, ``check_move``, ``check_ping``: compare a message a Rust peer sent as a
  typed value (``repod::Typed``) byte for byte with the dict Python code would write, and answer
  ``typed_verdict`` ``{what, ok}``;
- ``send_typed``: send what the Rust peer decodes into types: :func:`typed_values`, a ``move``
  and a ``ping`` (variants of one tagged enum), a ``move`` that does not fit, a last ``ping``.

Report lines on stdout are ``<word> <text>``, one per line, flushed at once.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import msgpack


def say(word: str, text: Any = "") -> None:
    """Print one report line for the Rust side and flush it."""
    print(f"{word} {text}".rstrip(), flush=True)


def exit_when_stdin_closes() -> None:
    """Exit the process when stdin reaches EOF: the Rust test holds the other end, so the
    peer never outlives the test, even one that was killed."""

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except Exception:
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def python_values() -> dict[str, Any]:
    """A message built in Python. tests/interop.rs has the same value as
    ``python_values()``: keep the two in step (keys and order)."""
    return {
        "action": "py_values",
        "nil": None,
        "t": True,
        "f": False,
        "uints": [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1],
        "ints": [-1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)],
        "floats": [1.5, -2.25, float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 5e-324],
        "text": "héllo wörld ✓ 日本語 🎮",
        "empty": "",
        "bin": bytes(range(256)),
        "empty_bin": b"",
        "list": [1, "two", [3.0, None], {"four": 4}],
        "empty_list": [],
        "empty_map": {},
        "nested": {"a": {"b": {"c": [1, {"d": "deep"}]}}},
        "int_keys": {1: "one", -2: "minus two", 2**64 - 1: "max"},
        "big": "x" * (1 << 20),
    }


def typed_values(action: str) -> dict[str, Any]:
    """The message tests/interop.rs has as the struct ``TypedValues``: keep the two in step
    (keys, order and values)."""
    return {
        "action": action,
        "text": "héllo ✓",
        "raw": b"\x00\x01\xff",
        "n": 2**64 - 1,
        "hp": -3,
        "pos": [1.5, -0.25],
        "tags": ["red", "blue"],
        "note": None,
    }


def same_map(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Equal as msgpack bytes: same keys in the same order, same values, same types
    (``bytes`` as bin, ``str`` as str)."""
    return msgpack.packb(got, use_bin_type=True) == msgpack.packb(want, use_bin_type=True)


class Puppet:
    """Mixin for a ``Channel`` or ``ConnectionListener`` subclass."""

    _seq_next = 0
    _seq_in_order = True

    def Network_echo(self, data: dict[str, Any]) -> None:
        say("echo")
        data["action"] = "echo_reply"
        self.send(data)

    def Network_send_values(self, data: dict[str, Any]) -> None:
        self.send(python_values())

    def Network_send_no_action(self, data: dict[str, Any]) -> None:
        self.send({"text": "no action here", "n": 1})
        self.send({"action": "after_no_action"})

    def Network_send_odd_actions(self, data: dict[str, Any]) -> None:
        self.send({"action": 5})
        self.send({"action": b"chat"})
        self.send({"action": None})
        self.send({"action": "after_odd_actions"})

    def Network_send_big(self, data: dict[str, Any]) -> None:
        self.send({"action": "big", "data": bytes(data["n"])})

    def Network_send_burst(self, data: dict[str, Any]) -> None:
        n = data["n"]
        for i in range(n):
            self.send({"action": "seq", "n": i})
        self.send({"action": "seq_end", "count": n})

    def Network_seq(self, data: dict[str, Any]) -> None:
        if data.get("n") != self._seq_next:
            self._seq_in_order = False
        self._seq_next += 1

    def Network_seq_end(self, data: dict[str, Any]) -> None:
        report = {"action": "seq_report", "count": self._seq_next, "in_order": self._seq_in_order}
        say("seq_report", f"{self._seq_next} {self._seq_in_order}")
        self._seq_next = 0
        self._seq_in_order = True
        self.send(report)

    def Network_broadcast(self, data: dict[str, Any]) -> None:
        say("broadcast", data["text"])

    def _verdict(self, what: str, got: dict[str, Any], want: dict[str, Any]) -> None:
        ok = same_map(got, want)
        if not ok:
            say("typed_mismatch", f"{what}: got {got!r}, want {want!r}")
        self.send({"action": "typed_verdict", "what": what, "ok": ok})

    def Network_check_typed(self, data: dict[str, Any]) -> None:
        self._verdict("struct", data, typed_values("check_typed"))

    def Network_check_move(self, data: dict[str, Any]) -> None:
        want = {"action": "check_move", "x": 1.5, "y": -2.0, "who": "rust", "raw": b"\x07"}
        self._verdict("move", data, want)

    def Network_check_ping(self, data: dict[str, Any]) -> None:
        self._verdict("ping", data, {"action": "check_ping"})

    def Network_send_typed(self, data: dict[str, Any]) -> None:
        self.send(typed_values("typed_values"))
        self.send({"action": "move", "x": 1.5, "y": -2.0, "who": "python", "raw": b"\x08"})
        self.send({"action": "ping"})
        self.send({"action": "move", "x": "left", "y": -2.0, "who": "python", "raw": b""})
        self.send({"action": "ping"})

    def network_received(self, data: dict[str, Any]) -> None:
        say("fallback", repr(data.get("action")))
