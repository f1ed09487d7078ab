"""A seeded fuzzer over protocol v1, fired at a real daemon over real sockets: every message gets exactly one final
reply, and the daemon still answers and critiques afterwards.

The messages come from the protocol's grammar (ops, argument names and types, frames) with every part bent: wrong
types, huge and deep values, lone surrogates, NUL bytes, bools for numbers, extra and missing frames; plus raw JSON
oddities (NaN, 5,000-digit numbers, deep nesting, UTF-16) and random bytes in random frame counts. bench/hostile.py
runs the same fuzzer longer.
"""

from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from ase_daemon import protocol as P
from conftest import DaemonProcess
from PIL import Image

__all__ = ["hostile_messages", "fire", "SAFE_OWNER_OPS", "ALL_OPS"]

# over the owner's socket: ops that do not stop the daemon, unload its model or watch folders of the fuzzer's choice
SAFE_OWNER_OPS = ["ping", "status", "critique", "submit", "job", "cancel", "watch_list", "watch_files"]
ALL_OPS = [*SAFE_OWNER_OPS, "load", "unload", "shutdown", "watch_add", "watch_remove", "watch_retry"]
ARG_NAMES = ["path", "name", "max_new_tokens", "force", "stream", "saliency", "progress", "priority", "meta", "job",
             "request", "state", "recursive", "colour", ""]
BIG_FRAME = 3 << 19  # 1.5 MiB: over the test daemon's 1 MiB limit, under libzmq's hard cut (2 x the limit)


def _deep(depth: int, leaf=1):
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


class _Gen:
    def __init__(self, seed: int, image: bytes, paths: list[str], owner: bool):
        self.r = random.Random(seed)
        self.image, self.paths, self.owner = image, paths, owner
        self.ops = SAFE_OWNER_OPS if owner else ALL_OPS
        self.n = 0

    def rid(self) -> str:
        self.n += 1
        return f"f{self.n}-{self.r.getrandbits(40):x}"

    def value(self, name: str):
        r = self.r
        pick = r.random()
        if name == "path" and pick < 0.5:
            return r.choice(self.paths)
        if pick < 0.35:  # the right type, plausible
            return {"max_new_tokens": r.choice([1, 4, 8, 9, 0, -1]), "priority": r.choice([0, 5, -3, 2**63 - 1]),
                    "meta": {"k": r.random()}, "force": False}.get(name, r.choice([True, False, "x.jpg", 3]))
        choices = [
            lambda: None, lambda: True, lambda: 1.5, lambda: -(2**70), lambda: 2**64, lambda: 10**30,
            lambda: "", lambda: "\x00", lambda: "/tmp/a\x00b.jpg", lambda: "\udc80x.jpg", lambda: "\ud800",
            lambda: "é" * r.randint(1, 5000), lambda: "x" * r.randint(1000, 30000), lambda: [1, "2", None],
            lambda: {"a": {"b": [None]}}, lambda: _deep(r.randint(50, 80)), lambda: {"\ud800": 1},
            lambda: float("1e308"), lambda: r.getrandbits(64), lambda: "../../etc/passwd", lambda: "relative.jpg",
        ]
        return r.choice(choices)()

    def frames(self) -> list[bytes]:
        r = self.r
        count = r.choice([0, 0, 0, 1, 1, 1, 2, 3, 6])
        pool = [lambda: self.image, lambda: b"", lambda: b"not an image", lambda: bytes(r.getrandbits(8)
                for _ in range(r.randint(1, 200))), lambda: self.image[: len(self.image) // 2],
                lambda: b"\xff\xd8\xff" + b"\x00" * 3000]
        # one message in ~20 is over the size limit: enough to test `too_large`, not enough to make the run slow
        return [(b"x" * BIG_FRAME if r.random() < 0.02 else r.choice(pool)()) for _ in range(count)]

    def grammar(self) -> tuple[list[bytes], str | None]:
        r = self.r
        rid = self.rid()
        op = r.choice(self.ops) if r.random() < 0.9 else r.choice(["fly", "", "PING", "\ud800", "x" * 300])
        spec = P.OPS.get(op)
        names = list(spec.args) if spec else []
        args = {}
        for name in names:
            if r.random() < 0.5:
                args[name] = self.value(name)
        if r.random() < 0.2:
            args[r.choice(ARG_NAMES)] = self.value("x")
        header = {"v": 1, "id": rid, "op": op, "args": args}
        frames = [json.dumps(header).encode(), *self.frames()]
        return frames, rid

    def mutated(self) -> tuple[list[bytes], str | None]:
        r = self.r
        rid = self.rid()
        header = {"v": 1, "id": rid, "op": r.choice(self.ops), "args": {}}
        field = r.choice(["v", "id", "op", "args", "extra"])
        bad = r.choice([None, True, False, "1", 1.0, 2, 0, [], {}, "\ud800", _deep(70), "x" * 200, 10**20])
        if field == "extra":
            header[r.choice(["event", "ok", "result", "\udc80", "frames"])] = bad
        elif r.random() < 0.2:
            del header[field]
        else:
            header[field] = bad
        valid_id = isinstance(header.get("id"), str) and header["id"] == rid
        return [json.dumps(header).encode(), *self.frames()], (rid if valid_id else None)

    def raw_json(self) -> tuple[list[bytes], str | None]:
        r = self.r
        rid = self.rid()
        texts = [
            '{"v": 1, "id": "%s", "op": "ping", "args": {"x": NaN}}' % rid,
            '{"v": 1, "id": "%s", "op": "submit", "args": {"priority": Infinity}}' % rid,
            '{"v": 1, "id": "%s", "op": "submit", "args": {"priority": %s}}' % (rid, "9" * 5000),
            '{"v": 1, "id": "%s", "op": "ping"} trailing' % rid,
            '{"v": 1, "id": "%s", "op": "ping", "args": %s}' % (rid, "[" * 2000 + "]" * 2000),
            "[" * r.randint(900, 3000),
            '{"v": 1, "id": "\\ud800", "op": "ping"}',
            '{"v": 1, "id": "%s", "op": "critique", "args": {"name": "\\udc80x.jpg"}}' % rid,
            '{"v": 1, "id": "%s", "op": "ping", "\\udfff": 1}' % rid,
            '{"v": 1, "id": "%s", "id": 5, "op": "ping"}' % rid,
            '{"v": true, "id": "%s", "op": "ping"}' % rid,
            "null", "0", '""', "{}", "\ufeff{}",
        ]
        text = r.choice(texts)
        enc = r.choice(["utf-8", "utf-8", "utf-16", "latin-1"])
        try:
            raw = text.encode(enc, errors="surrogatepass")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", errors="surrogatepass")
        return [raw, *self.frames()[:1]], None

    def random_bytes(self) -> tuple[list[bytes], str | None]:
        r = self.r
        n = r.choice([1, 1, 2, 3, 5, 9])
        frames = [bytes(r.getrandbits(8) for _ in range(r.randint(0, 300))) for _ in range(n)]
        if r.random() < 0.1:
            frames[0] = b"{" + b" " * (P.MAX_HEADER_BYTES + 10) + b"}"
        return frames, None

    def message(self) -> tuple[list[bytes], str | None]:
        kind = self.r.random()
        if kind < 0.45:
            return self.grammar()
        if kind < 0.7:
            return self.mutated()
        if kind < 0.85:
            return self.raw_json()
        return self.random_bytes()


def hostile_messages(seed: int, n: int, image: bytes, paths: list[str], owner: bool):
    """n (frames, expected reply id or None) pairs, reproducible from `seed`. owner: the messages go to the owner's
    socket (no shutdown/unload/watch changes, paths from `paths`); else to a guest's (every op)."""
    g = _Gen(seed, image, paths, owner)
    for _ in range(n):
        yield g.message()


def fire(endpoint: str, messages, window: int = 64, timeout: float = 30.0, **curve) -> dict:
    """Send the messages on one DEALER, at most `window` unanswered at a time; count final replies.

    Returns {"sent", "answered", "unanswered", "mismatched", "codes"}: mismatched = a message with a valid id whose
    final reply did not come exactly once."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    for key, value in curve.items():
        setattr(sock, key, value)
    sock.connect(endpoint)
    pending: dict[str, int] = {}  # expected id -> replies still due
    anonymous = 0  # messages whose reply carries no id we can predict
    seen: dict[str, int] = {}
    stats = {"sent": 0, "answered": 0, "unanswered": 0, "mismatched": 0, "codes": {}}

    def outstanding() -> int:
        return sum(pending.values()) + anonymous

    def drain(until: int) -> bool:
        nonlocal anonymous
        deadline = time.monotonic() + timeout
        while outstanding() > until:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000) + 1):
                return False
            frames = sock.recv_multipart()
            if frames[0] == b"" and len(frames) > 1:  # the REQ-style delimiter a message began with, echoed
                frames = frames[1:]
            head = json.loads(frames[0])
            if "event" in head:
                deadline = time.monotonic() + timeout
                continue
            stats["answered"] += 1
            code = "ok" if head["ok"] else head["error"]["code"]
            stats["codes"][code] = stats["codes"].get(code, 0) + 1
            rid = head.get("id")
            if rid in pending and pending[rid] > 0:
                pending[rid] -= 1
                seen[rid] = seen.get(rid, 0) + 1
            elif anonymous > 0:
                anonymous -= 1
            else:
                stats["mismatched"] += 1
        return True

    try:
        for frames, rid in messages:
            if rid is not None:
                pending[rid] = pending.get(rid, 0) + 1
            else:
                anonymous += 1
            sock.send_multipart(frames)
            stats["sent"] += 1
            if outstanding() >= window and not drain(window // 2):
                break
        drain(0)
    finally:
        sock.close(0)
    stats["unanswered"] = outstanding()
    stats["mismatched"] += sum(1 for rid, n in seen.items() if n != 1)
    return stats


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory, tiny_model_dir):
    # one decode thread and fast heartbeats: test_gone_client_is_dropped queues a request behind a slow decode
    d = DaemonProcess(tmp_path_factory.mktemp("fuzz"), tiny_model_dir, "fuzz",
                      ["--max-message-mb", "1", "--max-new-tokens", "4", "--log-level", "warning"],
                      config="heartbeat_s = 0.1\n[limits]\ndecode_threads = 1\n")
    d.start()
    yield d
    d.stop()


def _paths(root: Path) -> list[str]:
    (root / "photo.jpg").write_bytes(_jpeg(1))
    (root / "notes.txt").write_text("not a photo")
    return [str(root / "photo.jpg"), str(root / "notes.txt"), str(root), str(root / "missing.jpg"), "relative.jpg",
            str(root / "nul\x00.jpg"), str(root / "\udc80.jpg"), ""]


@pytest.mark.parametrize("owner", [True, False], ids=["ipc-owner", "tcp-guest"])
def test_every_hostile_message_is_answered(fuzz_daemon, tmp_path, owner):
    """5,000 messages on the owner's ipc socket and 5,000 on the loopback guest socket (>= 10,000 in all)."""
    endpoint = fuzz_daemon.ipc if owner else fuzz_daemon.tcp
    with fuzz_daemon.client() as c:
        rss0 = c.status()["memory"]["rss_mb"]
    stats = fire(endpoint, hostile_messages(15 + owner, 5000, _jpeg(2), _paths(tmp_path), owner))
    assert stats["sent"] == 5000 and stats["unanswered"] == 0 and stats["mismatched"] == 0, stats
    assert stats["answered"] == stats["sent"], stats
    assert "internal" not in stats["codes"], stats["codes"]
    assert {"bad_json", "bad_request", "bad_version", "unknown_op", "too_large"} <= set(stats["codes"]), stats
    if not owner:
        assert stats["codes"].get("forbidden", 0) > 100, stats["codes"]
    # the daemon is whole: it answers, critiques, holds no request, and its memory came back within a bound
    with fuzz_daemon.client(timeout=30) as c:
        assert c.ping()["state"] == "ready"
        result, png = c.critique(path=tmp_path / "photo.jpg", force=True)
        assert result["text"] is not None and png
        deadline = time.monotonic() + 30
        while c.status()["queue"]["interactive"]:
            assert time.monotonic() < deadline, "requests still held after the fuzz"
            time.sleep(0.1)
        assert c.status()["memory"]["rss_mb"] - rss0 < 400
    assert fuzz_daemon.proc.poll() is None


def test_surrogates_and_door_checks_answered(fuzz_daemon):
    """The issue's cases, one by one: each gets its own clear code, never `internal` and never silence."""
    image = _jpeg(3)
    cases = [
        ('{"v":1,"id":"s1","op":"critique","args":{"name":"\\udc80x.jpg"}}', [image], "bad_request", "s1"),
        ('{"v":1,"id":"\\ud800","op":"ping"}', [], "bad_request", None),
        ('{"v":1,"id":"s3","op":"submit","args":{"priority":%d}}' % 2**64, [image], "bad_request", "s3"),
        ('{"v":1,"id":"s4","op":"ping","args":%s}' % ("[" * 1500 + "]" * 1500), [], "bad_json", None),
        ('{"v":1,"id":"s5","op":"submit","args":{"meta":%s}}' % json.dumps(_deep(200)), [image], "bad_json", "s5"),
        ('{"v":true,"id":"s6","op":"ping"}', [], "bad_version", "s6"),
        ('{"v":1,"id":"s7","op":"critique","args":{"path":"/tmp/a\\u0000.jpg"}}', [], "bad_request", "s7"),
        ('{"v":1,"id":"s8","op":"ping","args":{"x":NaN}}', [], "bad_json", None),
    ]
    ctx = zmq.Context.instance()
    with ctx.socket(zmq.DEALER) as s:
        s.linger = 0
        s.connect(fuzz_daemon.ipc)
        for text, frames, code, rid in cases:
            s.send_multipart([text.encode(), *frames])
            assert s.poll(10_000), f"no reply to {text[:60]}"
            head = json.loads(s.recv_multipart()[0])
            assert head["ok"] is False and head["error"]["code"] == code, (text[:60], head)
            assert head["id"] == rid, (text[:60], head)
    with fuzz_daemon.client() as c:
        assert c.ping()["state"] == "ready"


def _zeros_png(path: Path, w: int, h: int) -> None:
    """A valid RGB PNG of zeros: a few hundred KB on disk, w*h*3 bytes and some seconds to decode."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    z, row = zlib.compressobj(9), b"\0" * (1 + 3 * w)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_gone_client_is_dropped_and_heartbeats_stop(fuzz_daemon, tmp_path):
    """A client that asked for progress and went away: its request stops getting heartbeats and is dropped before
    the model runs it (it waited behind a 100 MP decode on the daemon's one decode thread)."""
    big = tmp_path / "big.png"
    _zeros_png(big, 10_000, 10_000)
    ctx = zmq.Context.instance()

    def accepted(sock, rid: str, args: dict) -> None:
        sock.send_multipart(P.encode_request(rid, "critique", {"progress": True, "saliency": False, "force": True,
                                                               **args}, [] if "path" in args else [_jpeg(77)]))
        assert sock.poll(10_000)
        event = P.decode_reply(sock.recv_multipart())
        assert event.event == P.PROGRESS and event.data["stage"] == "accepted", event

    with fuzz_daemon.client() as c:
        before = c.status()["counts"]
    with ctx.socket(zmq.DEALER) as slow, ctx.socket(zmq.DEALER) as gone:
        for s in (slow, gone):
            s.linger = 0
            s.connect(fuzz_daemon.ipc)
        accepted(slow, "slow-" + P.new_id(), {"path": str(big)})
        accepted(gone, "gone-" + P.new_id(), {})
        gone.close(0)  # the client goes away while its request waits for the decode thread
        while True:  # the slow one still gets its heartbeats and its answer
            assert slow.poll(120_000), "the slow request got no answer"
            if P.decode_reply(slow.recv_multipart()).event is None:
                break
    with fuzz_daemon.client() as c:
        deadline = time.monotonic() + 30
        while c.status()["queue"]["interactive"]:
            assert time.monotonic() < deadline, "the gone client's request is still held"
            time.sleep(0.1)
        after = c.status()["counts"]
    assert after["dropped"] == before["dropped"] + 1, (before, after)
    assert after["critiques"] - before["critiques"] <= 1, (before, after)  # only the slow one reached the model
