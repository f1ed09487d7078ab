"""Configuration of ase-daemon and its clients: one TOML file, defaults, and endpoint resolution.

    $XDG_CONFIG_HOME/ase-mllm/config.toml      (~/.config/ase-mllm/config.toml)

Precedence everywhere: command-line flag > environment (ASE_ENDPOINT) > config file > built-in default.
Every key is documented in docs/daemon.md; unknown keys are an error (a typo must not be silently ignored).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

import tomllib

DEFAULT_TCP_PORT = 5599
APP = "ase-mllm"


class ConfigError(ValueError):
    pass


@dataclass
class Limits:
    max_queue: int = 64  # interactive requests waiting (decoding or queued for the model); full -> `busy`
    max_batch: int = 8  # images per model forward
    batch_window_ms: float = 20.0  # how long a lone request waits for companions before its batch starts
    max_message_mb: float = 64.0  # largest request (all frames); libzmq drops frames over twice this
    max_new_tokens: int = 160  # default critique length; also the cap a request may ask for
    max_jobs: int = 10000  # queued background jobs in the store; more -> `busy`
    decode_threads: int = 2  # image decoding + hashing, in parallel with the model
    slots: int = 0  # requests the decode engine decodes at once (continuous batching); 0 = max_batch
    # ---- files and decoding (hostile input; docs/daemon.md "Files and sidecars") ----
    max_file_mb: float = 1024.0  # a photo file or image frame larger than this -> `too_large`, before it is read
    decode_budget_mb: float = 2048.0  # decoder memory (estimated from headers) shared by all decodes; more -> wait;
    #                                   one photo that alone needs more -> `too_large` with the figure


@dataclass
class Curve:
    endpoints: list[str] = field(default_factory=list)  # CURVE even on loopback (e.g. behind an ssh tunnel)
    server_secret_key: str | None = None  # the daemon's `server.key_secret` (from `ase-daemon keys`)
    authorized_keys: str | None = None  # folder of authorized clients' public `*.key` files
    # the client side (ase-client, the viewer) talking to a CURVE endpoint:
    server_public_key: str | None = None
    client_secret_key: str | None = None


# Per-folder options of the folder watcher (docs/watcher.md); the [watch] table gives defaults for all folders.
WATCH_FOLDER_OPTIONS = {
    "recursive": False,  # watch subfolders too
    "polling": False,  # watchdog's PollingObserver (network shares: SMB/NFS deliver no inotify events)
    "write_description": False,  # dc:description from the critique text
    "write_tags": True,  # lr:hierarchicalSubject (under the tag root); dc:subject only with flat_keywords
    "write_rating": False,  # xmp:Rating from the score (xmp.rating_from_score)
    "overwrite_description": False,  # replace a description the user wrote
    "overwrite_rating": False,  # replace a rating the user set
    "flat_keywords": False,  # also the tags' leaves that read alone ("golden hour") in dc:subject (keywords.py)
    "personal_rating": False,  # with a folder `profile`: xmp:Rating from its personal score, not the critic's score
}


@dataclass
class WatchSettings:
    """The parsed [watch] section plus the command line's --watch folders."""

    folders: list[dict] = field(default_factory=list)  # {"path": absolute str, **WATCH_FOLDER_OPTIONS, "source"}
    rescan_s: float = 300.0  # full rescan of every folder this often (events can be lost); 0 = only at start
    settle_s: float = 1.0  # size and mtime unchanged this long = the copy is finished (when no closed event says so)
    open_wait_s: float = 30.0  # native observer: how long a file that stopped growing may stay open before we go on
    poll_interval_s: float = 2.0  # PollingObserver's snapshot period
    incomplete_timeout_s: float = 300.0  # a file that never decodes is recorded as failed (bad_image) after this
    priority: int = -1  # job priority: below interactive requests and below clients' submits (0)
    defaults: dict = field(default_factory=lambda: dict(WATCH_FOLDER_OPTIONS))


@dataclass
class Config:
    model: str | None = None  # model folder; None = the built-in starter model (ASE_MODEL overrides)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    devices: str | list | None = None  # "all" | [ids]: one worker replica per device (replicas.py); None = `device`
    dtype: str = "auto"
    threads: int = 0  # torch intra-op threads; 0 = one per worker on CPU, torch's default on a GPU
    # decode through ase_model's DecodeEngine (continuous batching) instead of generate: true | false | "auto"
    # (on CPU; on CUDA generate's compiled static cache until bench/gpu_check.py has measured the engine there)
    engine: bool | str = "auto"
    endpoints: list[str] = field(default_factory=list)  # [] = the default ipc socket + tcp://127.0.0.1:<tcp_port>
    tcp_port: int = DEFAULT_TCP_PORT
    db: str | None = None  # None = $XDG_DATA_HOME/ase-mllm/store.sqlite3
    idle_unload_s: float = 0.0  # unload the model after this long without work; 0 = never
    warmup_batch_sizes: list[int] | None = None  # None = [1] on CPU, [1, max_batch] on CUDA
    heartbeat_s: float = 1.0  # progress events to clients that asked for them, while their request waits
    trust_loopback: bool = False  # loopback tcp clients count as this user (paths, admin ops); see docs/daemon.md
    log_level: str = "info"
    limits: Limits = field(default_factory=Limits)
    curve: Curve = field(default_factory=Curve)
    watch: dict = field(default_factory=dict)  # the [watch] table as written (parsed into watch_settings)
    source: Path | None = None  # the file this came from
    watch_settings: WatchSettings = field(default_factory=WatchSettings)  # parsed [watch] + --watch folders

    @property
    def db_path(self) -> Path:
        return Path(self.db).expanduser() if self.db else data_dir() / "store.sqlite3"

    def all_endpoints(self) -> list[str]:
        return list(self.endpoints) or default_endpoints(self.tcp_port)


# ---- places ----------------------------------------------------------------------------------------------
def config_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / APP


def data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / APP


def default_config_path() -> Path:
    return config_dir() / "config.toml"


def runtime_dir(create: bool = True) -> Path:
    """Per-user directory for the ipc socket and the daemon's log: $XDG_RUNTIME_DIR/ase-mllm, else /tmp/ase-mllm-$UID.

    Created 0700. An existing one must be ours and closed to others: in /tmp anyone could have made it first
    and would then see (or hijack) our socket.
    """
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(base) / APP if base else Path(f"/tmp/{APP}-{os.getuid()}")
    if not create:
        return path
    path.mkdir(mode=0o700, parents=bool(base), exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ConfigError(
            f"{path} is not a directory owned by you (uid {os.getuid()}); remove it or set XDG_RUNTIME_DIR")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours, but too open (e.g. an old umask): close it
    return path


def default_ipc_endpoint() -> str:
    return f"ipc://{runtime_dir(create=False) / 'daemon.sock'}"


def default_endpoints(tcp_port: int = DEFAULT_TCP_PORT) -> list[str]:
    return [default_ipc_endpoint(), f"tcp://127.0.0.1:{tcp_port}"]


# ---- endpoints ----------------------------------------------------------------------------------------------
def is_local(endpoint: str) -> bool:
    """ipc/inproc and tcp on a loopback address: reachable only from this machine."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = urlsplit(f"tcp://{rest}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name or a host name: assume the worst
        return False


def ipc_path(endpoint: str) -> Path | None:
    return Path(endpoint[len("ipc://"):]) if endpoint.startswith("ipc://") else None


# ---- identity (who may do what; docs/daemon.md, "Security") ---------------------------------------------------
def endpoint_kind(endpoint: str, curve_endpoints=()) -> str:
    """"ipc" (a socket file: the daemon's own user, by the file's permissions and the peer's uid), "loopback"
    (tcp on this machine: any local user can connect, so it is the owner's only with trust_loopback) or "curve"
    (CurveZMQ: everything not local, and endpoints listed in [curve] endpoints)."""
    if endpoint in curve_endpoints or not is_local(endpoint):
        return "curve"
    return "ipc" if endpoint.partition("://")[0] in ("ipc", "inproc") else "loopback"


def names_paths(endpoint: str, config: Config | None = None) -> bool:
    """Whether a client at `endpoint` may send paths instead of bytes: the ipc socket, or loopback tcp when this
    user's config (the daemon's too, normally) sets trust_loopback."""
    kind = endpoint_kind(endpoint, config.curve.endpoints if config else ())
    return kind == "ipc" or (kind == "loopback" and bool(config and config.trust_loopback))


def _check_ipc(endpoint: str) -> None:
    path = endpoint[len("ipc://"):]
    if path.startswith("@"):
        raise ConfigError(f"endpoint {endpoint!r}: abstract ipc sockets have no file permissions, so any local user "
                          "could connect; use a socket path (the default is in $XDG_RUNTIME_DIR)")
    if not os.path.isabs(os.path.expanduser(path)):
        raise ConfigError(f"endpoint {endpoint!r}: an ipc socket needs an absolute path")


def resolve_endpoint(cli: str | None = None, config: Config | None = None) -> str:
    """The endpoint a client talks to: --endpoint > $ASE_ENDPOINT > the config file's first endpoint > default ipc."""
    if cli:
        return cli
    if os.environ.get("ASE_ENDPOINT"):
        return os.environ["ASE_ENDPOINT"]
    if config is None:
        try:
            config = load_config()
        except ConfigError:
            config = Config()
    if config.endpoints:
        return config.endpoints[0]
    return default_ipc_endpoint()


# ---- loading ----------------------------------------------------------------------------------------------
def _fill(obj, table: dict, where: str):
    known = {f.name: f for f in fields(obj) if f.name not in ("source", "watch_settings")}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        current = getattr(obj, key)
        if isinstance(current, (Limits, Curve)):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            _fill(current, value, f"{where} [{key}]")
            continue
        setattr(obj, key, value)


def load_config(path: str | os.PathLike | None = None, **overrides) -> Config:
    """Read the TOML file (missing default file = defaults; a missing explicit --config file is an error),
    then apply `overrides` (command-line flags; None values are ignored; limits go by their own names)."""
    cfg = Config()
    explicit = path is not None
    path = Path(path).expanduser() if explicit else default_config_path()
    if path.exists():
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from None
        _fill(cfg, table, str(path))
        cfg.source = path
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    limit_names = {f.name for f in fields(Limits)}
    watch_cli = {k: overrides.pop(k, None) for k in ("watch_dirs", "watch_recursive", "watch_polling")}
    for key, value in overrides.items():
        if value is None or value == []:
            continue
        if key in limit_names:
            setattr(cfg.limits, key, value)
        elif key == "curve_endpoints":
            cfg.curve.endpoints = list(value)
        else:
            setattr(cfg, key, value)
    _validate(cfg)
    cfg.watch_settings = parse_watch(cfg.watch, f"{cfg.source or 'config'} [watch]", watch_cli["watch_dirs"] or (),
                                     recursive=watch_cli["watch_recursive"], polling=watch_cli["watch_polling"])
    return cfg


def _watch_folder(entry, defaults: dict, where: str, source: str) -> dict:
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"].strip():
        raise ConfigError(f"{where}: each folder is a path string or a table with a `path` string")
    folder = dict(defaults)
    for key, value in entry.items():
        if key == "path":
            continue
        if key == "profile":  # a personal profile (ase-mllm learn): the folder's critiques get its personal_score
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
                raise ConfigError(f"{where}: folder option profile must be a profile's name (letters, digits, . _ -)")
            folder[key] = value
            continue
        if key not in WATCH_FOLDER_OPTIONS:
            raise ConfigError(f"{where}: unknown folder option {key!r} (known: path, profile, "
                              f"{', '.join(sorted(WATCH_FOLDER_OPTIONS))})")
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: folder option {key} must be true or false")
        folder[key] = value
    # absolute and normalised, so that the same folder written two ways is one folder (not resolved: a
    # configured network mount may be absent at start)
    folder["path"] = os.path.abspath(os.path.expanduser(entry["path"]))
    folder["source"] = source
    return folder


def parse_watch(table: dict, where: str = "[watch]", cli_dirs=(), recursive: bool | None = None,
                polling: bool | None = None) -> WatchSettings:
    """[watch] (numbers, folder defaults, `folders` = paths or tables) and `ase-daemon --watch DIR` folders.

    Folders are not checked for existence here: a configured network share may mount after the daemon starts."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    ws = WatchSettings()
    numbers = {"rescan_s": 0.0, "settle_s": 0.0, "open_wait_s": 0.0, "poll_interval_s": 0.05,
               "incomplete_timeout_s": 0.0}
    for key, value in table.items():
        if key == "folders":
            continue
        if key in numbers:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < numbers[key]:
                raise ConfigError(f"{where}: {key} must be a number >= {numbers[key]:g}")
            setattr(ws, key, float(value))
        elif key == "priority":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where}: priority must be an integer")
            ws.priority = value
        elif key in WATCH_FOLDER_OPTIONS:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {key} must be true or false")
            ws.defaults[key] = value
        else:
            known = sorted([*numbers, "priority", "folders", *WATCH_FOLDER_OPTIONS])
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
    folders = table.get("folders", [])
    if not isinstance(folders, list):
        raise ConfigError(f"{where}: folders must be a list of paths or [[watch.folders]] tables")
    by_path: dict[str, dict] = {}
    for entry in folders:
        f = _watch_folder(entry, ws.defaults, where, "config")
        by_path[f["path"]] = f
    given = {k: bool(v) for k, v in (("recursive", recursive), ("polling", polling)) if v is not None}
    for d in cli_dirs:
        f = _watch_folder(d, {**ws.defaults, **given}, "--watch", "cli")
        if f["path"] in by_path:  # the same folder in the file: its options, with the command line's flags on top
            f = {**by_path[f["path"]], **given, "source": "cli"}
        by_path[f["path"]] = f
    ws.folders = list(by_path.values())
    return ws


_DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")


def parse_devices(value) -> str | list[str] | None:
    """The `devices` key: "all" (one replica per visible CUDA GPU, counted when the daemon starts), or a list of
    devices, one replica each: GPU indices (2 -> "cuda:2") or names ("cuda:0", "cpu", "mps"). Checked here, without
    torch. Returns None (unset: one worker on `device`), "all", or the list of device names.

    Args:
        value: the key as written in the config file (None when absent).
    """
    if value is None or value == "all":
        return value
    if isinstance(value, str):
        raise ConfigError(f'devices must be "all" or a list like ["cuda:0", "cuda:1"] or [0, 1], not {value!r}')
    if not isinstance(value, list) or not value:
        raise ConfigError(f'devices must be "all" or a non-empty list of devices, not {value!r}')
    names = []
    for entry in value:
        if isinstance(entry, int) and not isinstance(entry, bool) and entry >= 0:
            names.append(f"cuda:{entry}")
        elif isinstance(entry, str) and _DEVICE.fullmatch(entry.strip().lower()):
            name = entry.strip().lower()
            names.append("cuda:0" if name == "cuda" else name)
        else:
            raise ConfigError(f"devices: {entry!r} is not a device; use a GPU index (0, 1, ...) or a name like "
                              '"cuda:1", "cpu" or "mps"')
    gpus = [n for n in names if n != "cpu"]
    twice = sorted({n for n in gpus if gpus.count(n) > 1})
    if twice:  # two engines on one card share its memory and compute: no gain, and the slots would not fit
        raise ConfigError(f"devices: {', '.join(twice)} listed twice (one replica per GPU)")
    return names


def _validate(cfg: Config) -> None:
    lim = cfg.limits
    for name in ("max_queue", "max_batch", "max_new_tokens", "max_jobs", "decode_threads"):
        if not isinstance(getattr(lim, name), int) or getattr(lim, name) < 1:
            raise ConfigError(f"limits.{name} must be a positive integer, not {getattr(lim, name)!r}")
    if isinstance(lim.slots, bool) or not isinstance(lim.slots, int) or lim.slots < 0:
        raise ConfigError(f"limits.slots must be a non-negative integer (0 = max_batch), not {lim.slots!r}")
    for name in ("batch_window_ms", "max_message_mb"):
        if not isinstance(getattr(lim, name), (int, float)) or getattr(lim, name) < 0:
            raise ConfigError(f"limits.{name} must be a non-negative number")
    for name in ("max_file_mb", "decode_budget_mb"):  # files and decoding
        value = getattr(lim, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"limits.{name} must be a positive number of MiB, not {value!r}")
    if not isinstance(cfg.endpoints, list) or not all(isinstance(e, str) for e in cfg.endpoints):
        raise ConfigError("endpoints must be a list of strings like 'tcp://127.0.0.1:5599'")
    for ep in [*cfg.endpoints, *cfg.curve.endpoints]:
        if ep.partition("://")[0] not in ("ipc", "tcp", "inproc"):
            raise ConfigError(f"endpoint {ep!r}: use ipc://PATH or tcp://HOST:PORT")
        if ep.startswith("ipc://"):
            _check_ipc(ep)
    if not isinstance(cfg.trust_loopback, bool):
        raise ConfigError("trust_loopback must be true or false")
    if not isinstance(cfg.engine, bool) and cfg.engine != "auto":
        raise ConfigError(f'engine must be true, false or "auto", not {cfg.engine!r}')
    cfg.devices = parse_devices(cfg.devices)
    if not isinstance(cfg.tcp_port, int) or not 0 < cfg.tcp_port < 65536:
        raise ConfigError(f"tcp_port must be 1..65535, not {cfg.tcp_port!r}")
    if cfg.idle_unload_s < 0:
        raise ConfigError("idle_unload_s must be >= 0 (0 = never)")
