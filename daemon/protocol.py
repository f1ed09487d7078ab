"""Wire protocol v1 of ase-daemon: the one module the server and every client share.

A message is a list of ZeroMQ frames:

    request: [header JSON, binary frames…]   header = {"v": 1, "id": "<request id>", "op": "<op>", "args": {…}}
    reply:   [header JSON, binary frames…]   header = {"v": 1, "id": "<same id>", "ok": true, "result": {…}}
                                                    or {"v": 1, "id": …, "ok": false, "error": {"code", "message", …}}
    event:   [header JSON]                   header = {"v": 1, "id": …, "event": "token" | "progress", "data": {…}}

Events (streamed tokens, progress and heartbeats) precede the final reply of the same id; the final reply is the
one without an "event" key. docs/protocol.md is the contract; this module is its executable form. It imports
nothing but the standard library so that any client (the viewer, scripts, the GPU benchmark) can use it.
"""

from __future__ import annotations

import json
import reprlib
import uuid
from dataclasses import dataclass, field
from typing import Any

VERSION = 1
MAX_HEADER_BYTES = 64 * 1024  # a header is a few hundred bytes; anything bigger is a mistake or an attack
MAX_DEPTH = 64  # nesting of the header's JSON (args.meta is the only free-form part); deeper -> bad_json
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # integer args must fit SQLite's 64-bit INTEGER

# ---- error codes (stable: clients branch on them; the message is for humans) ----------------------------------
BAD_JSON = "bad_json"
BAD_VERSION = "bad_version"
BAD_REQUEST = "bad_request"
UNKNOWN_OP = "unknown_op"
TOO_LARGE = "too_large"
BUSY = "busy"
NOT_READY = "not_ready"
BAD_IMAGE = "bad_image"
NOT_FOUND = "not_found"
FORBIDDEN = "forbidden"
CANCELLED = "cancelled"
INTERNAL = "internal"

ERROR_CODES = {
    BAD_JSON: "the header frame is not a UTF-8 JSON object",
    BAD_VERSION: "the header's protocol version is missing or not one this daemon speaks",
    BAD_REQUEST: "missing or invalid id, args or frames for the op",
    UNKNOWN_OP: "no such op",
    TOO_LARGE: "the message, the photo file or its decoding is over the daemon's limits",
    BUSY: "the queue is full; retry after `retry_after` seconds",
    NOT_READY: "the model is not loaded (loading, unloaded or failed); `retry_after` says when to retry",
    BAD_IMAGE: "the image could not be read or decoded",
    NOT_FOUND: "no such file or job",
    FORBIDDEN: "not allowed for this client: only the daemon's own user (its ipc socket, or loopback tcp with "
               "trust_loopback) may name paths or manage the daemon; others send image bytes",
    CANCELLED: "the request or job was cancelled (by `cancel`, or by a shutdown)",
    INTERNAL: "a bug or an unexpected failure in the daemon; see its log",
}

# ---- states ------------------------------------------------------------------------------------------------
LOADING, READY, UNLOADED, ERROR = "loading", "ready", "unloaded", "error"
MODEL_STATES = (LOADING, READY, UNLOADED, ERROR)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
JOB_STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)

TOKEN, PROGRESS = "token", "progress"

# ---- ops and their arguments ----------------------------------------------------------------------------------
# name -> (type(s), required). Unknown args are refused, so a typo or a feature this daemon lacks is an error,
# not silently ignored. `frames` is how many binary frames the op accepts.
_IMAGE_ARGS = {"path": (str, False), "name": (str, False), "max_new_tokens": (int, False), "force": (bool, False)}


@dataclass(frozen=True)
class OpSpec:
    args: dict[str, tuple[type | tuple[type, ...], bool]] = field(default_factory=dict)
    frames: int = 0  # at most this many binary frames
    local_only: bool = False  # only for the daemon's own user (`forbidden` for everyone else)


OPS: dict[str, OpSpec] = {
    "ping": OpSpec(),
    "status": OpSpec(),
    "critique": OpSpec({**_IMAGE_ARGS, "stream": (bool, False), "saliency": (bool, False), "progress": (bool, False)},
                       frames=1),
    "submit": OpSpec({**_IMAGE_ARGS, "priority": (int, False), "meta": (dict, False)}, frames=1),
    "job": OpSpec({"job": (str, True), "saliency": (bool, False)}),
    "cancel": OpSpec({"job": (str, False), "request": (str, False)}),
    "load": OpSpec(local_only=True),
    "unload": OpSpec(local_only=True),
    "shutdown": OpSpec(local_only=True),
}


class ProtocolError(Exception):
    """A request or reply that breaks the protocol, or an error reply. `code` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str, id: str | None = None, **extra):
        super().__init__(message)
        self.code, self.message, self.id, self.extra = code, message, id, extra


@dataclass
class Request:
    id: str
    op: str
    args: dict[str, Any]
    frames: list[bytes]


@dataclass
class Reply:
    id: str | None
    ok: bool
    result: dict | None = None
    error: dict | None = None
    event: str | None = None
    data: dict | None = None
    frames: list[bytes] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.event is None


def new_id() -> str:
    """A request id unique across clients (the daemon treats a repeated id as a retry of the same request)."""
    return uuid.uuid4().hex


def _dump(obj: dict) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate (e.g. a file name that is not UTF-8): escape it, never fail a reply
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode()


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _check_tree(header: dict) -> tuple[str, str] | None:
    """(code, message) when the decoded header cannot be served (too deep, or a string that is not valid Unicode).

    Iterative, so a deep header cannot exhaust the stack here either."""
    stack = [(header, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return BAD_JSON, f"the header is nested deeper than {MAX_DEPTH} levels"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            for s in (key, item):
                if isinstance(s, str) and not _encodable(s):
                    return BAD_REQUEST, "a string in the header holds a lone surrogate (\\ud800-\\udfff): not Unicode"
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1))
    return None


def _encodable(s: str) -> bool:
    try:
        s.encode()
        return True
    except UnicodeEncodeError:
        return False


# ---- requests ------------------------------------------------------------------------------------------------
def encode_request(id: str, op: str, args: dict | None = None, frames=()) -> list[bytes]:
    return [_dump({"v": VERSION, "id": id, "op": op, "args": args or {}}), *frames]


def decode_request(frames: list[bytes], ops: dict[str, OpSpec] = OPS) -> Request:
    """Parse and validate a request; raises ProtocolError (with the id when it could be read)."""
    if not frames:
        raise ProtocolError(BAD_JSON, "empty message: the first frame must be the JSON header")
    raw = frames[0]
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(TOO_LARGE, f"header frame is {len(raw)} bytes; the limit is {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(raw).decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ProtocolError(BAD_JSON, "header frame is not UTF-8") from None
    except ValueError as e:
        raise ProtocolError(BAD_JSON, f"header frame is not JSON ({e})") from None
    except RecursionError:
        raise ProtocolError(BAD_JSON, f"the header is nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(header, dict):
        raise ProtocolError(BAD_JSON, f"header must be a JSON object, not {type(header).__name__}")
    rid = header.get("id")
    if not isinstance(rid, str) or not rid or len(rid) > 128 or not _encodable(rid):
        raise ProtocolError(BAD_REQUEST, "header needs an `id`: a non-empty string of at most 128 characters")
    problem = _check_tree(header)
    if problem is not None:
        raise ProtocolError(*problem, rid)
    v = header.get("v")
    if type(v) is not int or v != VERSION:  # JSON true is not version 1 (bool is an int in Python)
        raise ProtocolError(BAD_VERSION, f"protocol version {reprlib.repr(v)} is not supported; this daemon speaks "
                            f"v{VERSION}", rid)
    op = header.get("op")
    if not isinstance(op, str):
        raise ProtocolError(BAD_REQUEST, "header needs an `op` string", rid)
    spec = ops.get(op)
    if spec is None:
        raise ProtocolError(UNKNOWN_OP, f"unknown op {reprlib.repr(op)}; known: {', '.join(sorted(ops))}", rid)
    args = header.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(BAD_REQUEST, "`args` must be a JSON object", rid)
    check_args(op, spec, args, rid)
    data = list(frames[1:])
    if len(data) > spec.frames:
        raise ProtocolError(BAD_REQUEST, f"{op} takes at most {spec.frames} binary frame(s), got {len(data)}", rid)
    return Request(rid, op, args, data)


def check_args(op: str, spec: OpSpec, args: dict, rid: str | None = None) -> None:
    for name, value in args.items():
        if name not in spec.args:
            raise ProtocolError(BAD_REQUEST, f"{op}: unknown argument {name!r}", rid)
        types = spec.args[name][0]
        # bool is an int in Python; JSON true must not pass as a number
        if not isinstance(value, types) or (isinstance(value, bool) and types in (int, (int, float))):
            want = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
            raise ProtocolError(BAD_REQUEST, f"{op}: argument {name!r} must be {want}, got {type(value).__name__}", rid)
        if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
            raise ProtocolError(BAD_REQUEST, f"{op}: argument {name!r} is outside the 64-bit integer range", rid)
        if name == "path" and "\x00" in value:
            raise ProtocolError(BAD_REQUEST, f"{op}: a path cannot hold a NUL character", rid)
    for name, (_, required) in spec.args.items():
        if required and name not in args:
            raise ProtocolError(BAD_REQUEST, f"{op}: missing argument {name!r}", rid)


# ---- replies -------------------------------------------------------------------------------------------------
def encode_result(id: str | None, result: dict, frames=()) -> list[bytes]:
    return [_dump({"v": VERSION, "id": id, "ok": True, "result": result}), *frames]


def encode_error(id: str | None, code: str, message: str, **extra) -> list[bytes]:
    return [_dump({"v": VERSION, "id": id, "ok": False, "error": {"code": code, "message": message, **extra}})]


def encode_event(id: str, event: str, data: dict) -> list[bytes]:
    return [_dump({"v": VERSION, "id": id, "event": event, "data": data})]


def decode_reply(frames: list[bytes]) -> Reply:
    try:
        header = json.loads(frames[0].decode("utf-8"))
    except (IndexError, UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(BAD_JSON, f"unreadable reply from the daemon ({e})") from None
    if not isinstance(header, dict) or header.get("v") != VERSION:
        raise ProtocolError(BAD_VERSION, f"reply is not protocol v{VERSION}: {str(header)[:200]}")
    if "event" in header:
        return Reply(header.get("id"), True, event=header["event"], data=header.get("data") or {})
    return Reply(header.get("id"), bool(header.get("ok")), header.get("result"), header.get("error"), frames=list(frames[1:]))


# ---- the `lines` output format of `ase-client critique` (the darktable plugin's contract) ----------------------
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def escape(value: Any) -> str:
    """One-line form of a value: backslash, newline, tab and carriage return become \\\\ \\n \\t \\r."""
    return "".join(_ESCAPES.get(ch, ch) for ch in str(value))


def unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(_UNESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def format_lines(image: str, result: dict | None = None, error: tuple[str, str] | None = None,
                 saliency_path: str | None = None, rating: int | None = None) -> str:
    """One image's block in the `lines` format, ending with `end` (see docs/protocol.md)."""
    lines = [("image", image)]
    if error is not None:
        lines.append(("error", f"{escape(error[0])}\t{escape(error[1])}"))
        return "".join(f"{k}\t{v if k == 'error' else escape(v)}\n" for k, v in lines) + "end\n"
    assert result is not None
    lines.append(("score", f"{float(result['score']):.3f}"))
    if rating is not None:
        lines.append(("rating", str(int(rating))))
    lines += [("tag", t) for t in result.get("tags", [])]
    lines += [(f"attr.{k}", v) for k, v in result.get("attributes", {}).items()]
    lines.append(("text", result.get("text", "")))
    if saliency_path:
        lines.append(("saliency", saliency_path))
    lines.append(("cached", "true" if result.get("cached") else "false"))
    lines.append(("model", result.get("model", "")))
    return "".join(f"{k}\t{escape(v)}\n" for k, v in lines) + "end\n"


def parse_lines(text: str) -> list[dict]:
    """Parse `lines` output back into one dict per image (tags as a list, attributes as a dict)."""
    blocks, cur = [], None
    for line in text.splitlines():
        if not line:
            continue
        key, _, value = line.partition("\t")
        if key == "end":
            if cur is not None:
                blocks.append(cur)
            cur = None
            continue
        if key == "image":
            cur = {"image": unescape(value), "tags": [], "attributes": {}}
        elif cur is None:
            continue  # e.g. `token` lines of --stream before a block
        elif key == "tag":
            cur["tags"].append(unescape(value))
        elif key.startswith("attr."):
            cur["attributes"][key[5:]] = unescape(value)
        elif key == "error":
            code, _, message = value.partition("\t")
            cur["error"] = {"code": unescape(code), "message": unescape(message)}
        elif key == "score":
            cur["score"] = float(value)
        elif key == "rating":
            cur["rating"] = int(value)
        elif key == "cached":
            cur["cached"] = value == "true"
        else:
            cur[key] = unescape(value)
    return blocks
