"""The WebSocket side of tests/ws_interop.rs: an independent client, written with the
``websockets`` package (its sync client) and ``msgpack``, against repod's ``echo_server --ws``.

Usage: ``ws_client.py ws://HOST:PORT/PATH [--expect-reject]``. With ``--expect-reject`` it
only checks that the upgrade is refused, printing ``rejected <HTTP status>``. Else it connects, checks the greeting
(``{"action": "connected"}`` as one binary message), prints ``connected <local port>
<Sec-WebSocket-Extensions or ->``, then runs one command per line read from stdin:

- ``echo_all``: sends ``echo`` maps carrying every msgpack type (see :func:`echo_cases`), each
  checked against its ``echo_reply``: the same values (NaN equal to NaN, ``-0.0`` distinct
  from ``0.0``, ``1`` from ``1.0`` from ``True``, ``bytes`` from ``str``) and the same encoding of
  every field (the server copies fields as raw bytes). Prints ``echo_ok <name> <bytes>`` per
  case, then ``echo_all_ok <count>``;
- ``burst <n>``: sends ``n`` ``echo`` maps back to back, then reads the ``n`` replies and checks
  their order; prints ``burst_ok <n>``;
- ``send <hex>``: sends the bytes as one binary message; prints ``sent``;
- ``recv``: waits for the next message and prints ``recv <hex>`` (``recv_text <text>`` for a
  text message);
- ``ping``: pings and waits for the pong; prints ``pong``;
- ``text``: sends a text message (which the server refuses) and waits for the server to close;
  prints ``closed <code> <reason>``;
- ``close``: closes normally; prints ``closed <code> <reason>`` (what the server answered).

A check that fails prints ``fail <why>`` and exits with status 1. The process exits when its
stdin closes, so it never outlives the test. Every wait is bounded.
"""

from __future__ import annotations

import math
import os
import random
import struct
import sys
import threading
from typing import Any

import msgpack
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

#: Bound on any single wait, in seconds.
WAIT = 60


def say(word: str, text: Any = "") -> None:
    """Print one report line for the Rust side and flush it."""
    print(f"{word} {text}".rstrip(), flush=True)


def fail(why: str) -> None:
    say("fail", why.replace("\n", " | "))
    sys.stdout.flush()
    os._exit(1)


def exit_when_stdin_closes(lines: list[str], ready: threading.Condition) -> None:
    """Read stdin on a thread: commands go to ``lines``; at EOF the process exits."""

    def watch() -> None:
        try:
            for line in sys.stdin:
                with ready:
                    lines.append(line.strip())
                    ready.notify()
        except Exception:
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def unpack(payload: bytes) -> Any:
    return msgpack.unpackb(payload, raw=False, strict_map_key=False, use_list=True)


class Raw:
    """A value given as its msgpack encoding, for encodings msgpack-python never produces
    (float32, integers and lengths wider than needed)."""

    def __init__(self, encoded: bytes) -> None:
        self.encoded = encoded


def pack_entry(packer: msgpack.Packer, v: Any) -> bytes:
    return v.encoded if isinstance(v, Raw) else packer.pack(v)


def pack_map(entries: list[tuple[Any, Any]]) -> bytes:
    """A msgpack map with the entries in this order (keys may repeat), values possibly Raw."""
    p = msgpack.Packer()
    out = bytearray(p.pack_map_header(len(entries)))
    for k, v in entries:
        out += pack_entry(p, k)
        out += pack_entry(p, v)
    return bytes(out)


def map_entries(payload: bytes) -> list[tuple[bytes, bytes, Any]]:
    """The top-level map's entries as (raw key, raw value, key), in wire order."""
    u = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=0)
    u.feed(payload)
    n = u.read_map_header()
    out = []
    for _ in range(n):
        a = u.tell()
        key = u.unpack()
        b = u.tell()
        u.skip()
        c = u.tell()
        out.append((payload[a:b], payload[b:c], key))
    if u.tell() != len(payload):
        fail(f"{len(payload) - u.tell()} bytes after the map")
    return out


def same(a: Any, b: Any) -> bool:
    """Value equality that tells types apart and treats NaN as equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        for k, v in a.items():
            # Keys: NaN keys are not used, so plain lookup works; the key's type is checked too.
            match = [k2 for k2 in b if same(k, k2)]
            if len(match) != 1 or not same(v, b[match[0]]):
                return False
        return True
    return a == b


def short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 300 else text[:300] + f"... ({len(text)} chars)"


def echo_cases() -> list[tuple[str, bytes]]:
    """(name, payload) for every ``echo`` message sent: every msgpack type and width.
    ``ECHO_CASES`` in tests/ws_interop.rs lists the names: keep the two in step."""
    rnd = random.Random(6455)
    nan = float("nan")
    ints = [
        -(2**63), -(2**63) + 1, -(2**32), -(2**31) - 1, -(2**31), -32769, -32768, -129, -128,
        -33, -32, -1, 0, 1, 127, 128, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1,
        2**32, 2**63 - 1, 2**63, 2**64 - 1,
    ]
    floats = [0.0, -0.0, 1.5, -2.25, nan, float("inf"), float("-inf"), 5e-324,
              2.2250738585072014e-308, 1.7976931348623157e308, 0.1]
    text = "héllo wörld ✓ 日本語 🎮 \u0000 \U0010ffff"
    long_text = "".join(rnd.choice("aé✓日🎮 ") for _ in range(100_000))
    kib100 = rnd.randbytes(100 * 1024)
    nested: Any = "bottom"
    for depth in range(10):  # 21 levels with the top map: under repod's default limit of 32
        nested = {"level": depth, "inner": [nested]}
    cases: list[tuple[str, list[tuple[Any, Any]]]] = [
        ("nil_and_bools", [("nil", None), ("t", True), ("f", False)]),
        ("int_edges", [("ints", ints), ("i64_min", -(2**63)), ("u64_max", 2**64 - 1),
                       ("zero", 0), ("minus_one", -1), ("u32", 2**32)]),
        ("int_fields", [(f"i{n}", v) for n, v in enumerate(ints)]),
        ("floats", [("floats", floats), ("nan", nan), ("inf", float("inf")),
                    ("ninf", float("-inf")), ("neg_zero", -0.0)]),
        ("float32", [("f32", Raw(b"\xca" + struct.pack(">f", 1.25))),
                     ("f32_nan", Raw(b"\xca\x7f\xc0\x00\x00")),
                     ("f32_neg_zero", Raw(b"\xca\x80\x00\x00\x00")),
                     ("f32_list", Raw(b"\x92\xca" + struct.pack(">f", -0.5) + b"\xca"
                                      + struct.pack(">f", float("inf"))))]),
        ("wide_encodings", [
            ("u8_5", Raw(b"\xcc\x05")), ("u16_5", Raw(b"\xcd\x00\x05")),
            ("u32_5", Raw(b"\xce\x00\x00\x00\x05")), ("u64_5", Raw(b"\xcf" + (5).to_bytes(8, "big"))),
            ("i8_m1", Raw(b"\xd0\xff")), ("i16_m1", Raw(b"\xd1\xff\xff")),
            ("i32_m1", Raw(b"\xd2\xff\xff\xff\xff")), ("i64_m1", Raw(b"\xd3" + b"\xff" * 8)),
            ("i64_7", Raw(b"\xd3" + (7).to_bytes(8, "big"))),
            ("str8_abc", Raw(b"\xd9\x03abc")), ("str16_abc", Raw(b"\xda\x00\x03abc")),
            ("str32_abc", Raw(b"\xdb\x00\x00\x00\x03abc")),
            ("bin16_3", Raw(b"\xc5\x00\x03\x01\x02\x03")), ("bin32_0", Raw(b"\xc6\x00\x00\x00\x00")),
            ("array16_2", Raw(b"\xdc\x00\x02\x01\x02")), ("array32_0", Raw(b"\xdd\x00\x00\x00\x00")),
            ("map16_1", Raw(b"\xde\x00\x01\xa1k\x01")), ("map32_0", Raw(b"\xdf\x00\x00\x00\x00")),
        ]),
        ("strings", [("empty", ""), ("a", "a"), ("unicode", text), ("fix31", "x" * 31),
                     ("str8", "y" * 32), ("str8_max", "z" * 255), ("str16", "w" * 256),
                     ("str16_max", "v" * 65535), ("str32", "u" * 65536)]),
        ("long_string", [("long", long_text)]),
        ("bytes", [("empty_bin", b""), ("all_bytes", bytes(range(256))),
                   ("bin16", bytes(256)), ("bin32", b"\xff" * 65536), ("kib100", kib100)]),
        ("bytes_2mib", [("mib2", rnd.randbytes(2 << 20))]),
        ("arrays", [("empty_list", []), ("mixed", [1, "two", [3.0, None], {"four": 4}, b"5"]),
                    ("fix15", list(range(15))), ("array16", list(range(16))),
                    ("array32", list(range(70_000)))]),
        ("maps", [("empty_map", {}), ("nested", nested),
                  ("fix15", {f"k{i}": i for i in range(15)}),
                  ("map16", {f"k{i}": i for i in range(16)}),
                  ("int_keys", {1: "one", -2: "minus two", 2**64 - 1: "max", -(2**63): "min"}),
                  ("bytes_keys", {b"": "empty", b"\x00\xff": "two bytes"}),
                  ("odd_keys", {None: "nil", False: "false", 1.5: "float", "": "empty str"})]),
        # Types 0 to 127 (msgpack-python refuses other negative types than the timestamp's).
        ("ext", [("fixext1", msgpack.ExtType(1, b"\x01")),
                 ("fixext2", msgpack.ExtType(2, b"\x01\x02")),
                 ("fixext4", msgpack.ExtType(4, b"abcd")),
                 ("fixext8", msgpack.ExtType(127, bytes(8))),
                 ("fixext16", msgpack.ExtType(0, bytes(range(16)))),
                 ("ext8_empty", msgpack.ExtType(5, b"")),
                 ("ext8", msgpack.ExtType(6, b"xyz")),
                 ("ext16", msgpack.ExtType(7, bytes(300))),
                 ("ext32", msgpack.ExtType(8, bytes(70_000))),
                 ("timestamp32", msgpack.Timestamp(1_700_000_000)),
                 ("timestamp64", msgpack.Timestamp(1_700_000_000, 123_456_789)),
                 ("timestamp96", msgpack.Timestamp(-1, 5)),
                 ("in_list", [msgpack.ExtType(9, b"in a list")])]),
        ("top_level_odd_keys", [(1, "int key"), (b"k", "bytes key"), (None, "nil key"),
                                (-5, [None]), (2**64 - 1, {})]),
        ("action_not_first", [("before", 1), ("action", "echo"), ("after", 2)]),
        ("action_only", []),
    ]
    out = []
    for name, entries in cases:
        if not any(k == "action" for k, _ in entries):
            entries = [("action", "echo")] + entries
        out.append((name, pack_map(entries)))
    # Everything above in one message.
    merged: list[tuple[Any, Any]] = [("action", "echo")]
    for name, entries in cases:
        if name in ("top_level_odd_keys", "bytes_2mib"):
            continue
        merged += [(f"{name}.{k}", v) for k, v in entries if k != "action"]
    out.append(("everything", pack_map(merged)))
    return out


def check_reply(name: str, sent: bytes, got: bytes, action: str) -> None:
    """``got`` is ``sent`` with its action replaced by ``action``: the same fields, as values and
    as encodings (in any order)."""
    if not isinstance(got, bytes):
        fail(f"{name}: a text message came back: {short(got)}")
    try:
        value = unpack(got)
    except Exception as e:
        fail(f"{name}: the reply is not msgpack ({e}): {got[:64].hex()}...")
    if not isinstance(value, dict):
        fail(f"{name}: the reply is not a map: {short(value)}")
    if value.get("action") != action:
        fail(f"{name}: reply action {short(value.get('action'))}, expected {action!r}")
    expected = {k: v for k, v in unpack(sent).items() if k != "action"}
    del value["action"]
    if not same(expected, value):
        for k in set(expected) | set(value):
            if k not in value:
                fail(f"{name}: field {short(k)} missing from the reply")
            if k not in expected:
                fail(f"{name}: unexpected field {short(k)} in the reply: {short(value[k])}")
            if not same(expected[k], value[k]):
                fail(f"{name}: field {short(k)}: sent {short(expected[k])}, got {short(value[k])}")
        fail(f"{name}: sent {short(expected)}, got {short(value)}")
    sent_raw = sorted((k, v) for k, v, key in map_entries(sent) if key != "action")
    got_raw = sorted((k, v) for k, v, key in map_entries(got) if key != "action")
    if sent_raw != got_raw:
        diff = [(k.hex(), v[:32].hex()) for k, v in set(sent_raw) ^ set(got_raw)]
        fail(f"{name}: same values, but fields re-encoded (key, value prefix): {diff[:6]}")


def recv(ws: Any) -> bytes | str:
    try:
        return ws.recv(timeout=WAIT)
    except TimeoutError:
        fail(f"no message within {WAIT} s")
    except ConnectionClosed as e:
        fail(f"the connection closed: {e}")
    raise AssertionError("unreachable")


def recv_action(ws: Any, action: str) -> bytes:
    """The next message, which must be a binary map with this action."""
    got = recv(ws)
    if not isinstance(got, bytes):
        fail(f"expected {action}, got a text message {short(got)}")
    value = unpack(got)
    if not isinstance(value, dict) or value.get("action") != action:
        fail(f"expected {action}, got {short(value)}")
    return got


def closed_line(ws: Any) -> str:
    code = ws.close_code
    reason = ws.close_reason or "-"
    return f"{code} {reason}"


def open_connection(url: str) -> Any:
    return connect(
        url,
        open_timeout=WAIT,
        close_timeout=WAIT,
        ping_interval=None,  # pings only when asked, so every test sees the same traffic
        max_size=64 << 20,
        max_queue=None,  # a burst's replies are buffered while it is still sending
        proxy=None,
    )


def main() -> None:
    url = sys.argv[1]
    if sys.argv[2:] == ["--expect-reject"]:
        try:
            with open_connection(url):
                pass
        except InvalidStatus as e:
            say("rejected", e.response.status_code)
            return
        fail(f"the upgrade to {url} was accepted")
    lines: list[str] = []
    ready = threading.Condition()
    exit_when_stdin_closes(lines, ready)
    with open_connection(url) as ws:
        serve_commands(ws, lines, ready)


def serve_commands(ws: Any, lines: list[str], ready: threading.Condition) -> None:
    greeting = recv(ws)
    if not isinstance(greeting, bytes) or unpack(greeting) != {"action": "connected"}:
        fail(f"greeting: {short(greeting)}")
    extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or "-"
    say("connected", f"{ws.local_address[1]} {extensions}")

    while True:
        with ready:
            while not lines:
                ready.wait()
            command = lines.pop(0)
        word, _, arg = command.partition(" ")
        if word == "echo_all":
            cases = echo_cases()
            for name, payload in cases:
                ws.send(payload)
                check_reply(name, payload, recv_action(ws, "echo_reply"), "echo_reply")
                say("echo_ok", f"{name} {len(payload)}")
            say("echo_all_ok", len(cases))
        elif word == "burst":
            n = int(arg)
            for i in range(n):
                ws.send(msgpack.packb({"action": "echo", "n": i, "pad": "p" * (i % 100)}))
            for i in range(n):
                got = unpack(recv_action(ws, "echo_reply"))
                if got.get("n") != i:
                    fail(f"burst: reply {i} carries n={short(got.get('n'))}")
            say("burst_ok", n)
        elif word == "send":
            ws.send(bytes.fromhex(arg))
            say("sent")
        elif word == "recv":
            got = recv(ws)
            if isinstance(got, str):
                say("recv_text", got)
            else:
                say("recv", got.hex())
        elif word == "ping":
            pong = ws.ping(b"repod ping")
            if not pong.wait(WAIT):
                fail(f"no pong within {WAIT} s")
            say("pong")
        elif word == "text":
            ws.send("a text message")
            try:
                extra = ws.recv(timeout=WAIT)
                fail(f"expected the server to close, got {short(extra)}")
            except ConnectionClosed:
                say("closed", closed_line(ws))
            except TimeoutError:
                fail(f"the server did not close within {WAIT} s")
        elif word == "close":
            ws.close()
            say("closed", closed_line(ws))
        else:
            fail(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
