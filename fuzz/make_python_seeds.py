"""Writes the Python-produced seeds of the fuzz corpus, packed as Python repod 0.1.2 packs.

Run with a Python that has msgpack (repodnet depends on it):

    python fuzz/make_python_seeds.py

The seeds made with repod's own encoder come from `cargo test --lib -- --ignored
regenerate_seed_corpus`.
"""

import os
import struct

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))


def pack(obj):
    # What repod.protocol does: use_bin_type=True.
    return msgpack.packb(obj, use_bin_type=True)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


MESSAGES = [
    {"action": "connected"},
    {"action": "echo", "seq": 1, "text": "héllo wörld ✓", "blob": b"\x00\x01\xff"},
    {"action": "join", "name": "Alice", "team": 3, "ready": True},
    {"action": "move", "x": 3.5, "y": -2, "dx": -(2**31), "dy": 2**63 - 1},
    {"action": "chat", "text": "x" * 300, "blob": b"\xc1" * 70},
    {"action": "state", "nested": {"a": [1, [2, [3, {"b": None}]]], 7: -1.25}},
    {"action": "walk", "big": 2**64 - 1, "neg": -(2**63), "f": 1e300, "l": list(range(20))},
    {"no_action": True, 1: 2, None: False},
    {},
]

WRITES = {
    "message": [(f"py_{i}", pack(m)) for i, m in enumerate(MESSAGES)],
}
stream = b"".join(frame(pack(m)) for m in MESSAGES)
# Settings bytes first (chunking, depth, frame limit / 64; see repod::fuzzing::Settings).
WRITES["frame_decoder"] = [("py_stream", b"\x00\x1f\x00" + stream),
                           ("py_stream_chunked", b"\x0b\x1f\x00" + stream)]
WRITES["receive_path"] = [("py_stream", b"\x00\x1f\x00" + stream),
                          ("py_stream_bytewise", b"\x01\x1f\x00" + stream),
                          ("py_quit", b"\x05\x1f\x00" + frame(pack({"action": "quit"})) + stream)]

for target, seeds in WRITES.items():
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds:
        with open(os.path.join(d, name + ".bin"), "wb") as f:
            f.write(data)
