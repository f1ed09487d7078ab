"""`ase-daemon`: run the critic daemon; `ase-daemon keys`; `ase-daemon install-service`.

    ase-daemon [--config FILE] [--model DIR] [--endpoint URL]… [--db FILE] [--watch DIR…] [limits…]
    ase-daemon keys [--dir DIR] [--force]
    ase-daemon install-service [--print] [--force]

Exit status: 0 clean stop, 1 could not start (the message says why), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import sys
from pathlib import Path

from .config import ConfigError, config_dir, load_config

log = logging.getLogger("ase_daemon")


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ase-daemon", description="Serve ASE-MLLM critiques over ZeroMQ "
                                "(subcommands: keys, install-service; see docs/daemon.md).")
    p.add_argument("--config", help="TOML config file (default $XDG_CONFIG_HOME/ase-mllm/config.toml)")
    p.add_argument("--model", help="model folder (default: the built-in starter model)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--dtype", help="auto | float32 | bfloat16 | float16")
    p.add_argument("--threads", type=int, help="torch CPU threads (0 = one per worker on CPU)")
    p.add_argument("--endpoint", action="append", dest="endpoints", metavar="URL",
                   help="bind this endpoint (repeatable; replaces the configured/default ones)")
    p.add_argument("--curve-endpoint", action="append", dest="curve_endpoints", metavar="URL",
                   help="bind this endpoint with CurveZMQ even if it is loopback (repeatable)")
    p.add_argument("--tcp-port", type=int, help="port of the default tcp://127.0.0.1 endpoint (default 5599)")
    p.add_argument("--trust-loopback", action="store_true", default=None,
                   help="loopback tcp clients count as you: they may name paths and manage the daemon. Any local "
                        "user can connect to loopback tcp; see docs/daemon.md, 'Security'")
    p.add_argument("--db", help="SQLite store (default $XDG_DATA_HOME/ase-mllm/store.sqlite3)")
    p.add_argument("--max-queue", type=int)
    p.add_argument("--max-batch", type=int)
    p.add_argument("--batch-window-ms", type=float)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--max-message-mb", type=float)
    p.add_argument("--idle-unload-s", type=float, help="unload the model after this long idle (0 = never)")
    p.add_argument("--log-level", help="debug | info | warning")
    p.add_argument("--watch", action="append", dest="watch_dirs", metavar="DIR",
                   help="critique photos arriving in DIR and write XMP sidecars (repeatable; adds to [watch] folders)")
    p.add_argument("--watch-recursive", action="store_true", default=None,
                   help="the --watch folders include their subfolders")
    p.add_argument("--watch-polling", action="store_true", default=None,
                   help="the --watch folders are polled (network shares: SMB/NFS send no change events)")
    return p


def make_worker(cfg, store):
    """The model worker the daemon runs, from its configuration: a Worker, or with several `devices` a Replicas
    holding one Worker per device (replicas.py).

    Args:
        cfg: the loaded Config (model, device, devices, dtype, threads, engine, [limits], ...).
        store: the daemon's Store.
    """
    from .replicas import Replicas, resolve_devices
    from .worker import Worker

    lim = cfg.limits
    devices = resolve_devices(cfg.devices, None if cfg.device == "auto" else cfg.device)
    create = Worker if len(devices) == 1 else functools.partial(Replicas, devices=devices)  # one per device
    return create(cfg.model, store, device=devices[0], dtype=cfg.dtype,
                  threads=cfg.threads, max_queue=lim.max_queue, max_batch=lim.max_batch,
                  batch_window_ms=lim.batch_window_ms, max_new_tokens=lim.max_new_tokens,
                  decode_threads=lim.decode_threads, idle_unload_s=cfg.idle_unload_s,
                  warmup_batch_sizes=cfg.warmup_batch_sizes, max_file_mb=lim.max_file_mb,
                  decode_budget_mb=lim.decode_budget_mb, engine=cfg.engine, slots=lim.slots)


def run(argv: list[str]) -> int:
    args = _run_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "config"}
    try:
        cfg = load_config(args.config, **overrides)
    except ConfigError as e:
        print(f"ase-daemon: {e}", file=sys.stderr)
        return 2
    missing = [f["path"] for f in cfg.watch_settings.folders if f["source"] == "cli" and not os.path.isdir(f["path"])]
    if missing:  # a typo on the command line; a configured folder may be a share that mounts later
        print(f"ase-daemon: --watch {missing[0]}: no such folder", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from .server import Server, StartupError
    from .store import Store

    lim = cfg.limits
    store = Store(cfg.db_path)
    worker = make_worker(cfg, store)
    server = Server(cfg, worker, store)
    from .watcher import Watcher

    # always installed: folders can be added at run time (`ase-client watch add`) even if none is configured
    Watcher(cfg.watch_settings, store, worker, tag_root=worker.tag_root, max_queued=lim.max_jobs).install(server)
    from .cull_ops import Culler

    Culler(store, worker, heartbeat_s=cfg.heartbeat_s).install(server)  # the `cull` op (docs/culling.md)
    log.info("ase-daemon pid %d, store %s%s", os.getpid(), cfg.db_path, f", config {cfg.source}" if cfg.source else "")
    try:
        asyncio.run(server.serve())
    except StartupError as e:
        print(f"ase-daemon: {e}", file=sys.stderr)
        return 1
    return 0


def keys(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ase-daemon keys", description="Create CurveZMQ keys: a server pair, one client "
                                "pair, and the authorized_clients folder holding the client's public key.")
    p.add_argument("--dir", default=str(config_dir() / "curve"), help="where to write them (default %(default)s)")
    p.add_argument("--client", default="client", help="name of the client key pair (default %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing server key pair")
    args = p.parse_args(argv)
    import zmq.auth

    folder = Path(args.dir).expanduser()
    authorized = folder / "authorized_clients"
    authorized.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    server_secret = folder / "server.key_secret"
    if server_secret.exists() and not args.force:
        print(f"ase-daemon keys: {server_secret} exists; keeping it (--force replaces it)", file=sys.stderr)
    else:
        zmq.auth.create_certificates(folder, "server")
    zmq.auth.create_certificates(folder, args.client)
    for secret in folder.glob("*.key_secret"):
        os.chmod(secret, 0o600)
    client_public = folder / f"{args.client}.key"
    (authorized / client_public.name).write_bytes(client_public.read_bytes())
    print(f"""wrote CurveZMQ keys to {folder}
  server.key, server.key_secret       the daemon's pair (keep the secret on the daemon's machine)
  {args.client}.key, {args.client}.key_secret   a client pair (copy both to the client machine)
  authorized_clients/{client_public.name}         clients allowed in (add more *.key files; SIGHUP reloads)

daemon's config.toml:
  endpoints = ["ipc://…", "tcp://127.0.0.1:5599", "tcp://0.0.0.0:5600"]   # the last one needs CURVE
  [curve]
  server_secret_key = "{server_secret}"
  authorized_keys = "{authorized}"

client's config.toml (or ase-client --server-key/--client-key):
  [curve]
  server_public_key = "{folder / 'server.key'}"
  client_secret_key = "{folder / (args.client + '.key_secret')}\"""")
    return 0


def install_service(argv: list[str]) -> int:
    from .service import install, unit_text

    p = argparse.ArgumentParser(prog="ase-daemon install-service",
                                description="Write a systemd user unit that runs ase-daemon.")
    p.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    p.add_argument("--force", action="store_true", help="replace an existing unit file")
    p.add_argument("--config", help="pass this --config to the daemon")
    args = p.parse_args(argv)
    extra = ["--config", str(Path(args.config).expanduser().resolve())] if args.config else []
    if args.print:
        print(unit_text(extra), end="")
        return 0
    try:
        path = install(extra, force=args.force)
    except FileExistsError as e:
        print(f"ase-daemon install-service: {e} exists (--force replaces it)", file=sys.stderr)
        return 1
    print(f"""wrote {path}
enable and start it with:
  systemctl --user daemon-reload
  systemctl --user enable --now ase-daemon
logs: journalctl --user -u ase-daemon -f""")
    return 0


COMMANDS = {"keys": keys, "install-service": install_service, "run": run}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
