"""Protocol v1 (frames, validation, the `lines` format) and endpoint/config resolution. No daemon needed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ase_daemon import protocol as P
from ase_daemon.config import (
    Config,
    ConfigError,
    endpoint_kind,
    is_local,
    load_config,
    names_paths,
    resolve_endpoint,
    runtime_dir,
)


def test_request_round_trip():
    frames = P.encode_request("abc", "critique", {"max_new_tokens": 8, "stream": True}, [b"\x89PNG"])
    req = P.decode_request(frames)
    assert (req.id, req.op, req.args, req.frames) == ("abc", "critique", {"max_new_tokens": 8, "stream": True},
                                                      [b"\x89PNG"])
    assert json.loads(frames[0]) == {"v": 1, "id": "abc", "op": "critique",
                                     "args": {"max_new_tokens": 8, "stream": True}}


def test_reply_event_error_round_trip():
    r = P.decode_reply(P.encode_result("x", {"state": "ready"}, [b"png"]))
    assert r.ok and r.final and r.result == {"state": "ready"} and r.frames == [b"png"]
    e = P.decode_reply(P.encode_error("x", P.BUSY, "full", retry_after=0.5))
    assert not e.ok and e.error == {"code": "busy", "message": "full", "retry_after": 0.5}
    ev = P.decode_reply(P.encode_event("x", P.TOKEN, {"text": "Com"}))
    assert ev.event == "token" and ev.data == {"text": "Com"} and not ev.final
    assert json.loads(P.encode_error(None, P.BAD_JSON, "?")[0])["id"] is None


@pytest.mark.parametrize("frames, code, rid", [
    ([], P.BAD_JSON, None),
    ([b"nope"], P.BAD_JSON, None),
    ([b"\xc3\x28"], P.BAD_JSON, None),
    ([b"42"], P.BAD_JSON, None),
    ([b'{"v": 1, "op": "ping"}'], P.BAD_REQUEST, None),
    ([b'{"v": 1, "id": "", "op": "ping"}'], P.BAD_REQUEST, None),
    ([b'{"v": 9, "id": "a", "op": "ping"}'], P.BAD_VERSION, "a"),
    ([b'{"v": "1", "id": "a", "op": "ping"}'], P.BAD_VERSION, "a"),
    ([b'{"v": 1, "id": "a", "op": 3}'], P.BAD_REQUEST, "a"),
    ([b'{"v": 1, "id": "a", "op": "nap"}'], P.UNKNOWN_OP, "a"),
    ([b'{"v": 1, "id": "a", "op": "ping", "args": "x"}'], P.BAD_REQUEST, "a"),
    ([b'{"v": 1, "id": "a", "op": "ping", "args": {"x": 1}}'], P.BAD_REQUEST, "a"),
    ([b'{"v": 1, "id": "a", "op": "critique", "args": {"max_new_tokens": 1.5}}'], P.BAD_REQUEST, "a"),
    ([b'{"v": 1, "id": "a", "op": "critique", "args": {"force": 1}}'], P.BAD_REQUEST, "a"),
    ([b'{"v": 1, "id": "a", "op": "submit", "args": {"priority": true}}'], P.BAD_REQUEST, "a"),
    ([b'{"v": 1, "id": "a", "op": "job"}'], P.BAD_REQUEST, "a"),
    ([b'{"v": 1, "id": "a", "op": "critique"}', b"1", b"2"], P.BAD_REQUEST, "a"),
    ([b" " * (P.MAX_HEADER_BYTES + 1)], P.TOO_LARGE, None),
])
def test_bad_requests_have_stable_codes(frames, code, rid):
    with pytest.raises(P.ProtocolError) as e:
        P.decode_request(frames)
    assert e.value.code == code and e.value.id == rid and e.value.message
    assert code in P.ERROR_CODES


def _deep(depth: int):
    value: object = 1
    for _ in range(depth - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize("text, code, rid", [
    ('{"v": 1, "id": "\\ud800", "op": "ping"}', P.BAD_REQUEST, None),  # an id that cannot be echoed
    ('{"v": 1, "id": "a", "op": "critique", "args": {"name": "\\udc80x.jpg"}}', P.BAD_REQUEST, "a"),
    ('{"v": 1, "id": "a", "op": "ping", "\\udfff": 1}', P.BAD_REQUEST, "a"),
    ('{"v": 1, "id": "a", "op": "\\ud800"}', P.BAD_REQUEST, "a"),
    ('{"v": true, "id": "a", "op": "ping"}', P.BAD_VERSION, "a"),
    ('{"v": 1.0, "id": "a", "op": "ping"}', P.BAD_VERSION, "a"),
    ('{"v": 1, "id": "a", "op": "ping", "args": {"x": NaN}}', P.BAD_JSON, None),
    ('{"v": 1, "id": "a", "op": "submit", "args": {"priority": Infinity}}', P.BAD_JSON, None),
    ('{"v": 1, "id": "a", "op": "submit", "args": {"priority": %s}}' % ("9" * 5000), P.BAD_JSON, None),
    ('{"v": 1, "id": "a", "op": "ping", "args": %s}' % ("[" * 3000 + "]" * 3000), P.BAD_JSON, None),
    ('{"v": 1, "id": "a", "op": "submit", "args": {"meta": %s}}' % json.dumps(_deep(P.MAX_DEPTH)), P.BAD_JSON, "a"),
    ('{"v": 1, "id": "a", "op": "submit", "args": {"priority": %d}}' % 2**63, P.BAD_REQUEST, "a"),
    ('{"v": 1, "id": "a", "op": "submit", "args": {"priority": %d}}' % -(2**63 + 1), P.BAD_REQUEST, "a"),
    ('{"v": 1, "id": "a", "op": "critique", "args": {"path": "/tmp/x\\u0000.jpg"}}', P.BAD_REQUEST, "a"),
])
def test_door_refuses_what_cannot_be_answered_or_stored(text, code, rid):
    """Surrogates, strictness, depth, bool versions, 64-bit ints and NUL paths: clear codes, never an exception."""
    with pytest.raises(P.ProtocolError) as e:
        P.decode_request([text.encode()])
    assert (e.value.code, e.value.id) == (code, rid), e.value.message
    P.encode_error(e.value.id, e.value.code, e.value.message)  # the refusal itself is encodable


def test_door_accepts_the_edges():
    meta = _deep(P.MAX_DEPTH - 2)  # header -> args -> meta: exactly at the limit
    for args in ({"priority": 2**63 - 1, "meta": meta}, {"priority": -(2**63)}, {"name": "naïve \x00 é.jpg"}):
        req = P.decode_request(P.encode_request("a", "submit", args, [b"img"]))
        assert req.args == args
    assert P.OPS["load"].local_only and P.OPS["unload"].local_only and P.OPS["shutdown"].local_only
    assert not P.OPS["critique"].local_only


def test_replies_are_always_encodable():
    """A string that is not valid Unicode (a file name from disk) is escaped in a reply, never an exception."""
    frames = P.encode_result("x", {"image": "/photos/\udc80x.jpg", "tags": ["\ud800"]})
    reply = P.decode_reply(frames)
    assert reply.ok and reply.result["image"] == "/photos/\udc80x.jpg"
    assert json.loads(P.encode_error("\udfff", P.NOT_FOUND, "no \udc80")[0])["error"]["message"] == "no \udc80"
    assert P.encode_result("x", {"image": "é"})[0] == '{"v":1,"id":"x","ok":true,"result":{"image":"é"}}'.encode()


def test_every_error_code_is_documented():
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "protocol.md")).read()
    for code in P.ERROR_CODES:
        assert f"`{code}`" in doc, code
    for op in P.OPS:
        assert f"`{op}`" in doc, op


@pytest.mark.parametrize("value", ["plain", "two\nlines", "tab\there", "back\\slash\\n literal", "\r\n\t\\", "",
                                   "ünïcødé ✓"])
def test_escape_round_trip(value):
    escaped = P.escape(value)
    assert "\n" not in escaped and "\t" not in escaped
    assert P.unescape(escaped) == value


def test_lines_format_round_trip():
    result = {"text": "Composition: strong.\nLight:\tsoft \\ warm", "score": 7.25, "tags": ["aesthetics|light|soft",
              "aesthetics|composition|strong"], "attributes": {"composition": "strong", "light": "soft\nwarm"},
              "cached": True, "model": "tiny@abc"}
    text = P.format_lines("/p/a b.jpg", result, saliency_path="/out/a b.jpg.saliency.png", rating=4)
    text += P.format_lines("/p/bad.jpg", error=("bad_image", "/p/bad.jpg: cannot\tdecode"))
    lines = text.splitlines()
    assert lines[0] == "image\t/p/a b.jpg" and lines[1] == "score\t7.250" and lines[2] == "rating\t4"
    assert all(len(line.split("\t")) == 2 for line in lines if not line.startswith(("end", "error")))
    assert lines.count("end") == 2
    a, b = P.parse_lines(text)
    assert a["image"] == "/p/a b.jpg" and a["score"] == 7.25 and a["rating"] == 4 and a["cached"] is True
    assert a["tags"] == result["tags"] and a["attributes"] == result["attributes"] and a["text"] == result["text"]
    assert a["saliency"] == "/out/a b.jpg.saliency.png" and a["model"] == "tiny@abc"
    assert b == {"image": "/p/bad.jpg", "tags": [], "attributes": {},
                 "error": {"code": "bad_image", "message": "/p/bad.jpg: cannot\tdecode"}}


# ---- endpoints and config -------------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint, local", [
    ("ipc:///run/user/1000/ase-mllm/daemon.sock", True), ("tcp://127.0.0.1:5599", True),
    ("tcp://127.0.0.2:5599", True), ("tcp://localhost:5599", True), ("tcp://[::1]:5599", True),
    ("tcp://0.0.0.0:5599", False), ("tcp://*:5599", False), ("tcp://192.168.1.4:5599", False),
    ("tcp://eth0:5599", False), ("tcp://[::]:5599", False), ("pgm://x", False),
])
def test_is_local(endpoint, local):
    assert is_local(endpoint) is local


def test_endpoint_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("ASE_ENDPOINT", raising=False)
    assert resolve_endpoint() == f"ipc://{tmp_path}/run/ase-mllm/daemon.sock"
    (tmp_path / "cfg" / "ase-mllm").mkdir(parents=True)
    (tmp_path / "cfg" / "ase-mllm" / "config.toml").write_text('endpoints = ["tcp://127.0.0.1:7000"]\n')
    assert resolve_endpoint() == "tcp://127.0.0.1:7000"
    monkeypatch.setenv("ASE_ENDPOINT", "tcp://127.0.0.1:7001")
    assert resolve_endpoint() == "tcp://127.0.0.1:7001"
    assert resolve_endpoint("ipc:///x.sock") == "ipc:///x.sock"


def test_config_file_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    path = tmp_path / "c.toml"
    path.write_text('model = "/m"\nidle_unload_s = 300\n[limits]\nmax_batch = 4\n[watch]\nfolders = ["/p"]\n')
    cfg = load_config(path, max_queue=3, endpoints=None, curve_endpoints=["tcp://127.0.0.1:9"])
    assert cfg.model == "/m" and cfg.idle_unload_s == 300 and cfg.limits.max_batch == 4 and cfg.limits.max_queue == 3
    assert cfg.watch == {"folders": ["/p"]} and cfg.curve.endpoints == ["tcp://127.0.0.1:9"]
    assert cfg.db_path == tmp_path / "data" / "ase-mllm" / "store.sqlite3"
    assert cfg.all_endpoints()[1] == "tcp://127.0.0.1:5599"
    path.write_text("[limits]\nmax_batchh = 4\n")
    with pytest.raises(ConfigError, match="max_batchh"):
        load_config(path)
    path.write_text("[limits]\nmax_batch = 0\n")
    with pytest.raises(ConfigError, match="max_batch"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("endpoint, kind", [
    ("ipc:///run/user/1000/ase-mllm/daemon.sock", "ipc"), ("inproc://x", "ipc"), ("tcp://127.0.0.1:5599", "loopback"),
    ("tcp://[::1]:5599", "loopback"), ("tcp://localhost:1", "loopback"), ("tcp://0.0.0.0:5600", "curve"),
    ("tcp://192.168.1.4:5600", "curve"),
])
def test_endpoint_kinds(endpoint, kind):
    assert endpoint_kind(endpoint) == kind
    assert endpoint_kind(endpoint, [endpoint]) == "curve"  # listed in [curve] endpoints: CURVE even on loopback


def test_trust_loopback_and_ipc_endpoint_checks(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("trust_loopback = true\n")
    cfg = load_config(path)
    assert cfg.trust_loopback is True
    assert names_paths("tcp://127.0.0.1:5599", cfg) and not names_paths("tcp://127.0.0.1:5599", Config())
    assert names_paths("ipc:///x.sock", Config()) and not names_paths("tcp://10.0.0.1:5600", cfg)
    path.write_text('trust_loopback = "yes"\n')
    with pytest.raises(ConfigError, match="trust_loopback"):
        load_config(path)
    for bad, why in (("ipc://@ase", "abstract"), ("ipc://relative.sock", "absolute")):
        path.write_text(f'endpoints = ["{bad}"]\n')
        with pytest.raises(ConfigError, match=why):
            load_config(path)
        with pytest.raises(ConfigError, match=why):
            load_config(None, endpoints=[bad])


def test_runtime_dir_private_under_umask_000(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    old = os.umask(0)
    try:
        path = runtime_dir()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_runtime_dir_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "ase-mllm").mkdir(mode=0o755)
    os.chmod(tmp_path / "ase-mllm", 0o755)
    d = runtime_dir()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_lines_golden_fixture_parses_to_its_blocks_and_ratings():
    """tests/fixtures/lines_golden.txt is shared with the Lua plugin's tests: both parsers must agree with it."""
    from ase_daemon.contract import rating_from_score

    fixtures = Path(__file__).parent / "fixtures"
    golden = json.loads((fixtures / "lines_golden.json").read_text(encoding="utf-8"))
    text = (fixtures / "lines_golden.txt").read_text(encoding="utf-8")
    assert P.parse_lines(text) == golden["blocks"]
    assert "".join(P.format_lines(b["image"], error=(b["error"]["code"], b["error"]["message"]))
                   for b in golden["blocks"] if "error" in b) in text
    for score, stars in golden["ratings_from_score"]:
        assert rating_from_score(score) == stars, score
    # token lines are written by the contract's formatter, exactly as the fixture has them
    tokens = [line + "\n" for line in text.splitlines() if line.startswith(P.TOKEN_KEY + "\t")]
    assert tokens and [P.format_token(P.unescape(t[len(P.TOKEN_KEY) + 1:-1])) for t in tokens] == tokens


def test_contract_imports_only_the_standard_library():
    code = ("import sys; import ase_daemon.contract, ase_daemon.protocol; "
            "bad = [m for m in ('numpy', 'PIL', 'zmq', 'torch', 'ase_model') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_contract_is_the_one_home_of_ops_codes_and_rating():
    from ase_daemon import xmp
    from ase_daemon.config import WATCH_FOLDER_OPTIONS
    from ase_daemon.contract import rating_from_score

    assert xmp.rating_from_score is rating_from_score  # the sidecars' stars are the contract's
    assert set(P.WATCH_OPTIONS) == set(WATCH_FOLDER_OPTIONS)  # every folder option is a watch_add argument
    assert set(P.ALL_OPS) == set(P.OPS) | set(P.WATCH_OPS) | set(P.CULL_OPS)
    assert len(P.ALL_OPS) == len(P.OPS) + len(P.WATCH_OPS) + len(P.CULL_OPS)  # no name in two tables
    assert all(spec.local_only for spec in (*P.WATCH_OPS.values(), *P.CULL_OPS.values()))
    from ase_model.culling import DECISIONS

    assert P.CULL_DECISIONS == DECISIONS  # the wire's decisions are the core's
    assert set(P.ERROR_FIELDS) <= set(P.ERROR_CODES) and not set(P.CLIENT_CODES) & set(P.ERROR_CODES)


def test_wire_error_record_and_the_edge_mapping():
    from ase_daemon.errors import BadImage, Busy, DaemonFault, NotReady, TooLarge, wire_error

    e = P.WireError.from_dict({"code": P.BUSY, "message": "full", "retry_after": 0.5})
    assert e.retry_after == 0.5 and e.to_dict() == {"code": P.BUSY, "message": "full", "retry_after": 0.5}
    assert P.WireError.from_dict(None).code == P.INTERNAL
    assert wire_error(Busy("full", 1.234)).to_dict() == {"code": P.BUSY, "message": "full", "retry_after": 1.23}
    assert wire_error(NotReady("loading")).to_dict() == {"code": P.NOT_READY, "message": "loading"}
    assert wire_error(TooLarge("big", needed_mb=3.0, limit_mb=1.0)).extra == {"needed_mb": 3.0, "limit_mb": 1.0}
    assert wire_error(BadImage("x")).code == P.BAD_IMAGE and wire_error(DaemonFault("bug")).code == P.INTERNAL
    assert wire_error(P.ProtocolError(P.NOT_FOUND, "gone")).code == P.NOT_FOUND
    assert wire_error(KeyError("k")).code == P.INTERNAL  # anything unexpected is a bug: internal
    reply = P.decode_reply(P.encode_error("r1", **wire_error(Busy("full", 2)).to_dict()))
    assert P.WireError.from_dict(reply.error) == P.WireError(P.BUSY, "full", 2.0)


def test_peek_id_and_saliency_frame_codec():
    import numpy as np

    from ase_model.saliency import from_png, to_png

    assert P.peek_id(b'{"id": "abc", "v": 1}') == "abc" and P.peek_id(b"not json") is None
    assert P.peek_id(b'{"id": 5}') is None and P.peek_id(b" " * (P.MAX_HEADER_BYTES + 1)) is None
    sal = np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)
    frame = P.encode_saliency(sal)
    back = P.decode_saliency(frame)
    assert back.shape == (48, 64) and back.dtype == np.float32 and np.abs(back - sal).max() <= 0.5 / 255 + 1e-6
    assert P.decode_saliency(None) is None and P.decode_saliency(b"") is None
    # the model's own PNG form (ase-mllm's --saliency-out) is the same bytes: one format, two writers
    assert to_png(sal) == frame and np.array_equal(from_png(frame), back)
