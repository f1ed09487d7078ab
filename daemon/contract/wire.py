"""Wire protocol v1 of ase-daemon: frames, headers, error codes, ops and their argument specs.

A message is a list of ZeroMQ frames:

    request: [header JSON, binary frames…]   header = {"v": 1, "id": "<request id>", "op": "<op>", "args": {…}}
    reply:   [header JSON, binary frames…]   header = {"v": 1, "id": "<same id>", "ok": true, "result": {…}}
                                                    or {"v": 1, "id": …, "ok": false, "error": {"code", "message", …}}
    event:   [header JSON]                   header = {"v": 1, "id": …, "event": "token" | "progress", "data": {…}}

Events (streamed tokens, progress and heartbeats) precede the final reply of the same id; the final reply is the
one without an "event" key. docs/protocol.md is the contract; this module (with the rest of `ase_daemon.contract`)
is its executable form. It imports nothing but the standard library so that any client (the viewer, scripts, the
GPU benchmark) can use it.
"""

from __future__ import annotations

import json
import reprlib
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "VERSION", "MAX_HEADER_BYTES", "MAX_DEPTH", "INT_MIN", "INT_MAX",
    "BAD_JSON", "BAD_VERSION", "BAD_REQUEST", "UNKNOWN_OP", "TOO_LARGE", "BUSY", "NOT_READY", "BAD_IMAGE",
    "NOT_FOUND", "FORBIDDEN", "CANCELLED", "INTERNAL", "ERROR_CODES", "ERROR_FIELDS", "DOWN", "UNREADABLE",
    "CLIENT_CODES", "LOADING", "READY", "UNLOADED", "ERROR", "MODEL_STATES", "QUEUED", "RUNNING", "DONE", "FAILED",
    "JOB_STATES", "TOKEN", "PROGRESS", "OpSpec", "OP_PING", "OP_STATUS", "OP_CRITIQUE", "OP_SUBMIT", "OP_JOB",
    "OP_CANCEL", "OP_LOAD", "OP_UNLOAD", "OP_SHUTDOWN", "OP_WATCH_ADD", "OP_WATCH_REMOVE", "OP_WATCH_LIST",
    "OP_WATCH_RETRY", "OP_WATCH_FILES", "KIND_CRITIQUE", "OPS", "WATCH_OPTIONS", "WATCH_FILE_STATES", "WATCH_OPS",
    "OP_CULL", "KIND_CULL", "CULL_DECISIONS", "CULL_OPS", "ALL_OPS", "ProtocolError", "WireError", "Request", "Reply",
    "new_id", "encode_request", "decode_request",
    "check_args", "peek_id", "encode_result", "encode_error", "encode_event", "decode_reply",
]
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
    NOT_FOUND: "no such file, job or personal profile",
    FORBIDDEN: "not allowed for this client: only the daemon's own user (its ipc socket, or loopback tcp with "
               "trust_loopback) may name paths or manage the daemon; others send image bytes",
    CANCELLED: "the request or job was cancelled (by `cancel`, or by a shutdown)",
    INTERNAL: "a bug or an unexpected failure in the daemon; see its log",
}

# Extra fields an error reply may carry beside code and message (docs/protocol.md, "Errors").
ERROR_FIELDS: dict[str, tuple[str, ...]] = {
    BUSY: ("retry_after",),
    NOT_READY: ("retry_after",),
    TOO_LARGE: ("needed_mb", "limit_mb", "pixels", "limit_pixels"),
}

# ---- client-side codes: never sent by the daemon; clients report their own failures with them -------------------
DOWN = "down"  # no daemon answered (the client's DaemonUnavailable); also the viewer's state for it
UNREADABLE = "unreadable"  # the client could not read the photo it was to send (its own disk: OSError)
CLIENT_CODES = {
    DOWN: "no ase-daemon answered at the endpoint (not running, or not reachable)",
    UNREADABLE: "the client could not read the photo file it was asked to send",
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
_IMAGE_ARGS = {"path": (str, False), "name": (str, False), "max_new_tokens": (int, False), "force": (bool, False),
               "profile": (str, False)}  # profile: a personal profile's name (results get personal_score)


@dataclass(frozen=True)
class OpSpec:
    """An op's arguments (name -> (type(s), required)), how many binary frames it takes, and who may send it."""

    args: dict[str, tuple[type | tuple[type, ...], bool]] = field(default_factory=dict)
    frames: int = 0  # at most this many binary frames
    local_only: bool = False  # only for the daemon's own user (`forbidden` for everyone else)


# op names (the header's "op"); the watch ops are served only while the folder watcher runs
OP_PING, OP_STATUS, OP_CRITIQUE, OP_SUBMIT, OP_JOB, OP_CANCEL = "ping", "status", "critique", "submit", "job", "cancel"
OP_LOAD, OP_UNLOAD, OP_SHUTDOWN = "load", "unload", "shutdown"
OP_WATCH_ADD, OP_WATCH_REMOVE, OP_WATCH_LIST = "watch_add", "watch_remove", "watch_list"
OP_WATCH_RETRY, OP_WATCH_FILES = "watch_retry", "watch_files"
KIND_CRITIQUE = "critique"  # a job's `kind` (the only kind of background work so far)

OPS: dict[str, OpSpec] = {
    OP_PING: OpSpec(),
    OP_STATUS: OpSpec(),
    OP_CRITIQUE: OpSpec({**_IMAGE_ARGS, "stream": (bool, False), "saliency": (bool, False),
                         "progress": (bool, False)}, frames=1),
    OP_SUBMIT: OpSpec({**_IMAGE_ARGS, "priority": (int, False), "meta": (dict, False)}, frames=1),
    OP_JOB: OpSpec({"job": (str, True), "saliency": (bool, False)}),
    OP_CANCEL: OpSpec({"job": (str, False), "request": (str, False)}),
    OP_LOAD: OpSpec(local_only=True),
    OP_UNLOAD: OpSpec(local_only=True),
    OP_SHUTDOWN: OpSpec(local_only=True),
}

# the per-folder options of `watch_add` (their defaults are the daemon's [watch] settings, config.py)
WATCH_OPTIONS = ("recursive", "polling", "write_description", "write_tags", "write_rating", "overwrite_description",
                 "overwrite_rating", "flat_keywords", "personal_rating")
WATCH_FILE_STATES = (QUEUED, DONE, FAILED)

WATCH_OPS: dict[str, OpSpec] = {
    # profile: a personal profile's name for the folder's jobs ("" = none); personal_rating: stars from its score
    OP_WATCH_ADD: OpSpec({"path": (str, True), **{k: (bool, False) for k in WATCH_OPTIONS}, "profile": (str, False)},
                         local_only=True),
    OP_WATCH_REMOVE: OpSpec({"path": (str, True)}, local_only=True),
    OP_WATCH_LIST: OpSpec(local_only=True),
    OP_WATCH_RETRY: OpSpec({"path": (str, False)}, local_only=True),
    OP_WATCH_FILES: OpSpec({"path": (str, False), "state": (str, False)}, local_only=True),
}
# culling a shoot (docs/culling.md): a background job of kind KIND_CULL whose progress events and decisions come back
# to the request; `job` and `cancel` take its id like any job's
OP_CULL = "cull"
KIND_CULL = OP_CULL
CULL_DECISIONS = ("pick", "keep", "reject")
CULL_OPS: dict[str, OpSpec] = {
    OP_CULL: OpSpec({"paths": (list, True), "recursive": (bool, False), "apply": (bool, False),
                     "pick_rating": (int, False), "overwrite_rating": (bool, False),
                     "max_gap_s": ((int, float), False), "min_similarity": ((int, float), False),
                     "profile": (str, False), "progress": (bool, False), "wait": (bool, False)}, local_only=True),
}
ALL_OPS: dict[str, OpSpec] = {**OPS, **WATCH_OPS, **CULL_OPS}

# ---- library search (issue 18): photos on the daemon's disk by tag, score, folder and critique text -------------
# The library holds paths, so only the daemon's own user may search it (a guest never sees a path). A folder is
# matched as text against the stored paths and never opened. Bad filters (an empty tag, min > max, a relative
# folder, a limit outside 1..SEARCH_MAX_LIMIT) are `bad_request`.
OP_SEARCH = "search"
SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT = 1000, 100_000
OPS[OP_SEARCH] = ALL_OPS[OP_SEARCH] = OpSpec({
    "tags": (list, False), "min_score": ((int, float), False), "max_score": ((int, float), False),
    "folder": (str, False), "text": (str, False), "limit": (int, False), "details": (bool, False)}, local_only=True)
__all__ += ["OP_SEARCH", "SEARCH_DEFAULT_LIMIT", "SEARCH_MAX_LIMIT"]


class ProtocolError(Exception):
    """A request or reply that breaks the protocol, or an error reply. `code` is one of ERROR_CODES.

    Raised where messages are read and written (decode_request, the server's request handlers, decode_reply);
    the daemon's inner parts raise ordinary exceptions (`ase_daemon.errors`) that the server maps to a code.

    Args:
        code: one of ERROR_CODES.
        message: for people.
        id: the request's id, when it could be read.
        **extra: the code's extra fields (ERROR_FIELDS), e.g. retry_after.
    """

    def __init__(self, code: str, message: str, id: str | None = None, **extra):
        super().__init__(message)
        self.code, self.message, self.id, self.extra = code, message, id, extra


@dataclass(frozen=True)
class WireError:
    """An error reply's `error` object: code, message and the code's extra fields (retry_after, sizes).

    Args:
        code: one of ERROR_CODES (or CLIENT_CODES, for failures a client reports itself).
        message: for people.
        retry_after: seconds to wait before retrying (busy, not_ready).
        extra: the other fields of ERROR_FIELDS (too_large: needed_mb, limit_mb, pixels, limit_pixels).
    """

    code: str
    message: str
    retry_after: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"code": self.code, "message": self.message, **self.extra}
        if self.retry_after is not None:
            out["retry_after"] = round(self.retry_after, 2)
        return out

    @classmethod
    def from_dict(cls, error: dict | None) -> WireError:
        """An error object as it arrived (tolerant: a reply without code is `internal`)."""
        err = dict(error or {})
        code, message = err.pop("code", INTERNAL), err.pop("message", "")
        retry = err.pop("retry_after", None)
        return cls(str(code), str(message), float(retry) if isinstance(retry, (int, float)) else None, err)


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
    """A request message: the JSON header, then the binary frames (an image's bytes)."""
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
    """Refuse unknown, mistyped or missing arguments of `op` (ProtocolError bad_request)."""
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


def peek_id(header: bytes) -> str | None:
    """The id of a message refused before parsing (too large, forbidden), so the client can match the reply."""
    if len(header) > MAX_HEADER_BYTES:
        return None
    try:
        rid = json.loads(header).get("id")
        return rid if isinstance(rid, str) else None
    except Exception:
        return None


# ---- replies -------------------------------------------------------------------------------------------------
def encode_result(id: str | None, result: dict, frames=()) -> list[bytes]:
    """A successful final reply: `result` is the op's result object, `frames` its binary frames (a saliency PNG)."""
    return [_dump({"v": VERSION, "id": id, "ok": True, "result": result}), *frames]


def encode_error(id: str | None, code: str, message: str, **extra) -> list[bytes]:
    """An error reply; `extra` holds the code's fields (ERROR_FIELDS), e.g. retry_after."""
    return [_dump({"v": VERSION, "id": id, "ok": False, "error": {"code": code, "message": message, **extra}})]


def encode_event(id: str, event: str, data: dict) -> list[bytes]:
    return [_dump({"v": VERSION, "id": id, "event": event, "data": data})]


def decode_reply(frames: list[bytes]) -> Reply:
    """Parse a reply or event (a client's side); raises ProtocolError when it is not protocol v1."""
    try:
        header = json.loads(frames[0].decode("utf-8"))
    except (IndexError, UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(BAD_JSON, f"unreadable reply from the daemon ({e})") from None
    if not isinstance(header, dict) or header.get("v") != VERSION:
        raise ProtocolError(BAD_VERSION, f"reply is not protocol v{VERSION}: {str(header)[:200]}")
    if "event" in header:
        return Reply(header.get("id"), True, event=header["event"], data=header.get("data") or {})
    return Reply(header.get("id"), bool(header.get("ok")), header.get("result"), header.get("error"),
                 frames=list(frames[1:]))
