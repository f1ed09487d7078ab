"""`ase-client`: talk to ase-daemon from the shell (and from the darktable plugin, through `--format lines`).

    ase-client [--endpoint URL] [--timeout S] [--start] ping | status | load | unload | shutdown
    ase-client critique IMAGE|DIR… [--recursive] [--format text|json|jsonl|csv|lines] [--write-xmp] [--stream]
                        [--saliency-out DIR] [--max-new-tokens N] [--force]
    ase-client submit IMAGE… | job ID [--saliency-out DIR] | cancel ID
    ase-client watch add DIR [--recursive] [--polling] | remove DIR | list | retry [PATH] | files [PATH]
    ase-client profiles [--json]       (personal profiles on this machine; needs no daemon)
    ase-client search [--tag TAG]… [--min-score X] [--max-score X] [--folder DIR] [--text WORDS] [--json]

Exit status: 0 all ok, 1 some images (or the op) failed, 2 usage error, 3 daemon unavailable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import contract as P
from .client import Client, DaemonError, DaemonUnavailable, start_daemon
from .client_critique import CLIENT_FORMATS, add_folder_arguments
from .config import ConfigError, is_local, load_config, names_paths, resolve_endpoint

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
BUSY_RETRIES = 20


class PhotoUnreadable(Exception):
    """A local photo that cannot be sent: `code` is the protocol's error code, `message` names the file."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def read_photo(image: str) -> bytes:
    """A photo's bytes to send to the daemon, read as a regular file only (a FIFO or a device never blocks or
    floods the client) with the daemon's default file-size cap."""
    from ase_model.imagesafety import ImageLoadError, ImageNotFound, ImageTooLarge, read_regular

    try:
        return read_regular(image)
    except ImageNotFound as e:
        raise PhotoUnreadable(P.NOT_FOUND, str(e)) from None
    except ImageTooLarge as e:
        raise PhotoUnreadable(P.TOO_LARGE, str(e)) from None
    except ImageLoadError as e:
        raise PhotoUnreadable(P.BAD_IMAGE, str(e)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ase-client", description="Client of the ASE-MLLM daemon (docs/protocol.md).")
    p.add_argument("--endpoint", help="daemon endpoint (default: $ASE_ENDPOINT, the config file, the ipc socket)")
    p.add_argument("--config", help="config file (endpoint and CURVE keys)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for a silent daemon before giving up (default %(default)s)")
    p.add_argument("--start", action="store_true", help="start the daemon in the background if it is not running")
    p.add_argument("--start-timeout", type=float, default=180.0, help="seconds to wait for a started daemon's model")
    p.add_argument("--server-key", help="CURVE: the daemon's public key file (remote endpoints)")
    p.add_argument("--client-key", help="CURVE: this client's .key_secret file")
    p.add_argument("--send-bytes", action="store_true", help="send image bytes even to a local daemon")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(P.OP_PING, help="is the daemon there; its state")
    st = sub.add_parser(P.OP_STATUS, help="queue, batches, memory, counters, watched folders")
    st.add_argument("--format", choices=("json", "text"), default="json",
                    help="json (default, for scripts) or text (a summary for people)")
    c = sub.add_parser(P.OP_CRITIQUE, help="critique photos and folders (--recursive, --write-xmp); print the results")
    c.add_argument("images", nargs="+", metavar="IMAGE|DIR")
    c.add_argument("--format", choices=CLIENT_FORMATS, default="text",
                   help="text (default; a ranked summary at the end), json = jsonl (one object a line), csv, lines "
                   "(the darktable plugin's)")
    add_folder_arguments(c)
    c.add_argument("--stream", action="store_true", help="print the critique as it is written (one image at a time)")
    c.add_argument("--saliency-out", metavar="DIR", help="write each saliency map as DIR/<name>.saliency.png")
    c.add_argument("--max-new-tokens", type=int)
    c.add_argument("--force", action="store_true", help="ignore the daemon's stored critique")
    c.add_argument("--profile", metavar="NAME", help="also a personal_score by this profile (ase-mllm learn)")
    c.add_argument("--parallel", type=int, default=8, help="requests in flight at once (default %(default)s)")
    c.add_argument("--wait-ready", type=float, default=300.0, help="seconds to wait for a loading model")
    s = sub.add_parser(P.OP_SUBMIT, help="queue background critiques; prints the job ids")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.add_argument("--priority", type=int, default=0)
    s.add_argument("--max-new-tokens", type=int)
    s.add_argument("--profile", metavar="NAME", help="the result also gets this profile's personal_score")
    j = sub.add_parser(P.OP_JOB, help="a background job's state and result")
    j.add_argument("id")
    j.add_argument("--saliency-out", metavar="DIR")
    k = sub.add_parser(P.OP_CANCEL, help="cancel a background job")
    k.add_argument("id")
    ld = sub.add_parser(P.OP_LOAD, help="load the model and wait until it is ready")
    ld.add_argument("--no-wait", action="store_true")
    sub.add_parser(P.OP_UNLOAD, help="free the model (the next request loads it again)")
    sub.add_parser(P.OP_SHUTDOWN, help="stop the daemon")
    cu = sub.add_parser(P.OP_CULL, help="group bursts, pick the best frame of each, flag rejects (docs/culling.md)")
    cu.add_argument("paths", nargs="+", metavar="DIR|FILE")
    cu.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    cu.add_argument("--apply", action="store_true", help="write the decisions into the photos' XMP sidecars")
    cu.add_argument("--pick-rating", type=int, choices=range(1, 6), metavar="1..5", help="with --apply: raise picks")
    cu.add_argument("--json", action="store_true", help="one JSON record per photo")
    cu.add_argument("--profile", metavar="NAME", help="rank by this personal profile's score (ase-mllm learn)")
    cu.add_argument("--progress", action="store_true",
                    help='with --json: each progress event as a line {"event": "progress", "stage", "job", ...} first')
    w = sub.add_parser("watch", help="folders whose new photos are critiqued into XMP sidecars (docs/watcher.md)")
    wsub = w.add_subparsers(dest="watch_command", required=True, metavar="ACTION")
    wa = wsub.add_parser("add", help="watch a folder (remembered across restarts)")
    wa.add_argument("folder")
    wa.add_argument("--recursive", action="store_true", default=None, help="include subfolders")
    wa.add_argument("--polling", action="store_true", default=None,
                    help="poll instead of change events (network shares)")
    for flag, key in (("description", "write_description"), ("tags", "write_tags"), ("rating", "write_rating")):
        wa.add_argument(f"--{flag}", dest=key, action=argparse.BooleanOptionalAction, default=None,
                        help=f"write the standard {flag} key into sidecars (default: the daemon's [watch] setting)")
    wa.add_argument("--overwrite-description", action="store_true", default=None,
                    help="replace a description the user wrote")
    wa.add_argument("--overwrite-rating", action="store_true", default=None, help="replace a rating the user set")
    wa.add_argument("--flat-keywords", dest="flat_keywords", action=argparse.BooleanOptionalAction, default=None,
                    help="also put the tags' leaves that read alone ('golden hour') in the flat keyword list "
                    "(dc:subject); default: the daemon's [watch] setting (off)")
    wa.add_argument("--profile", metavar="NAME", help="the folder's critiques also get this personal profile's "
                    "personal_score (ase-mllm learn); '' takes it away")
    wa.add_argument("--personal-rating", dest="personal_rating", action=argparse.BooleanOptionalAction, default=None,
                    help="with --rating and --profile: stars from the personal score, not the critic's score")
    wr = wsub.add_parser("remove", help="stop watching a folder")
    wr.add_argument("folder")
    wl = wsub.add_parser("list", help="watched folders and their progress")
    wl.add_argument("--json", action="store_true")
    wt = wsub.add_parser("retry", help="try failed files again (all folders, one folder or one file)")
    wt.add_argument("path", nargs="?")
    wf = wsub.add_parser("files", help="per-file state (queued/done/failed, error, sidecar) as JSON lines")
    wf.add_argument("path", nargs="?")
    wf.add_argument("--state", choices=P.WATCH_FILE_STATES)
    pr = sub.add_parser("profiles", help="personal profiles (ase-mllm learn): size, date, agreement with the ratings")
    pr.add_argument("--json", action="store_true", help="a JSON list")
    _search_parser(sub)
    return p


def _err(msg: str) -> None:
    print(f"ase-client: {msg}", file=sys.stderr, flush=True)


def _rating(score: float) -> int | None:
    try:  # the contract owns the score -> stars mapping (the XMP sidecars and the plugin use the same)
        return P.rating_from_score(score)
    except ValueError:
        return None


class App:
    def __init__(self, args):
        self.args = args
        try:
            self.config = load_config(args.config)
        except ConfigError as e:
            _err(str(e))
            raise SystemExit(EXIT_USAGE) from None
        self.endpoint = resolve_endpoint(args.endpoint, self.config)
        self.local = names_paths(self.endpoint, self.config) and not args.server_key  # else send the bytes

    def client(self, timeout: float | None = None, retries: int = 2) -> Client:
        return Client(self.endpoint, timeout=timeout or self.args.timeout, retries=retries,
                      server_key=self.args.server_key, client_keys=self.args.client_key, config=self.config)

    def check(self) -> dict:
        """One ping within --timeout in total (so `daemon down` is reported in time); --start starts it."""
        try:
            with self.client(timeout=self.args.timeout / 2, retries=1) as c:
                return c.ping()
        except DaemonUnavailable:
            if not self.args.start:
                raise
        return self.start_daemon()

    def start_daemon(self) -> dict:
        if not is_local(self.endpoint):
            _err(f"--start only starts a daemon on this machine, not at {self.endpoint}")
            raise SystemExit(EXIT_USAGE)
        explicit = bool(self.args.endpoint or os.environ.get("ASE_ENDPOINT"))
        return start_daemon(self.endpoint, self.config, config_path=self.args.config, explicit_endpoint=explicit,
                            timeout=self.args.start_timeout, say=_err)

    # ---- commands ----------------------------------------------------------------------------------------------
    def simple(self, op: str) -> int:
        with self.client() as c:
            result = c.request(op).result
            if op == P.OP_LOAD and not self.args.no_wait:
                result = c.wait_ready(self.args.start_timeout)
        if op == P.OP_STATUS and self.args.format == "text":
            print(_status_text(result), end="")
        else:
            print(json.dumps(result, indent=2 if op == P.OP_STATUS else None))
        return EXIT_OK

    def watch(self) -> int:
        a = self.args
        if not self.local:
            _err("watched folders are managed on the daemon's own machine (local endpoints only)")
            return EXIT_USAGE
        cmd = a.watch_command
        with self.client(timeout=max(self.args.timeout, 30.0)) as c:
            if cmd == "add":
                args = {"path": os.path.abspath(a.folder)}
                for key in P.WATCH_OPTIONS:
                    if getattr(a, key) is not None:
                        args[key] = getattr(a, key)
                if a.profile is not None:
                    args["profile"] = a.profile
                r = c.request(P.OP_WATCH_ADD, args).result
                said = ("watching" if r.get("added") else
                        "already watching (options changed)" if r.get("changed") else "already watching")
                print(f"{said} {r['path']}  ({_folder_flags(r)})")
                if not r.get("write_rating"):  # say it: a photographer expects stars from a critic
                    print("note: no star ratings are written into sidecars (--rating turns them on)")
            elif cmd == "remove":
                r = c.request(P.OP_WATCH_REMOVE, {"path": os.path.abspath(a.folder)}).result
                print(f"stopped watching {r['path']}" + (f"; {r['cancelled']} queued critique(s) cancelled"
                                                         if r.get("cancelled") else ""))
                if r.get("note"):
                    print(f"note: {r['note']}")
            elif cmd == "list":
                r = c.request(P.OP_WATCH_LIST).result
                if a.json:
                    print(json.dumps(r, indent=2))
                else:
                    print(_folders_text(r["folders"]), end="")
            elif cmd == "retry":
                args = {"path": os.path.abspath(a.path)} if a.path else {}
                r = c.request(P.OP_WATCH_RETRY, args).result
                print(f"{r['retried']} failed file(s) queued again")
            elif cmd == "files":
                args = {"path": os.path.abspath(a.path)} if a.path else {}
                if a.state:
                    args["state"] = a.state
                for f in c.request(P.OP_WATCH_FILES, args).result["files"]:
                    print(json.dumps(f, ensure_ascii=False))
        return EXIT_OK

    def critique(self) -> int:  # photos and folders: client_critique.py
        from .client_critique import CritiqueCommand

        return CritiqueCommand(self).run()

    def submit(self) -> int:
        failures = 0
        with self.client() as c:
            for image in self.args.images:
                try:
                    if self.local and not self.args.send_bytes:
                        r = c.submit(path=image, priority=self.args.priority, max_new_tokens=self.args.max_new_tokens,
                                     profile=self.args.profile)
                    else:
                        r = c.submit(data=read_photo(image), name=Path(image).name, priority=self.args.priority,
                                     max_new_tokens=self.args.max_new_tokens, profile=self.args.profile)
                    print(json.dumps({"image": image, **r}))
                except (DaemonError, PhotoUnreadable) as e:
                    failures += 1
                    print(json.dumps({"image": image, "error": {"code": e.code, "message": e.message}}))
        return EXIT_FAILED if failures else EXIT_OK

    def _saliency_path(self, image: str) -> Path:
        """DIR/<name>.saliency.png; a second image of the same name in this call gets <name>-2.saliency.png, so
        two photos from different folders never overwrite each other's map."""
        used = self.__dict__.setdefault("_saliency_names", set())
        base, n = Path(image).name, 1
        name = base
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        return Path(self.args.saliency_out) / f"{name}.saliency.png"

    def job(self) -> int:
        with self.client() as c:
            info, png = c.job(self.args.id, saliency=bool(self.args.saliency_out))
        if png and self.args.saliency_out:
            out = Path(self.args.saliency_out)
            out.mkdir(parents=True, exist_ok=True)
            info["saliency_png"] = str(out / f"{Path(info.get('image') or info['job']).name}.saliency.png")
            Path(info["saliency_png"]).write_bytes(png)
        print(json.dumps(info, ensure_ascii=False))
        return EXIT_FAILED if info["state"] == P.FAILED else EXIT_OK

    def cull(self) -> int:
        """`ase-client cull`: the daemon's `cull` op, progress on stderr, the same listing as `ase-mllm cull`."""
        from .cull_cli import print_table

        a = self.args
        if not self.local:
            _err("cull names files on the daemon's machine (local endpoints only)")
            return EXIT_USAGE

        def progress(data: dict) -> None:
            if a.progress and a.json:  # for programs (the darktable plugin): the job's id, for cancel, and done/total
                print(json.dumps({"event": "progress", **data}, ensure_ascii=False), flush=True)
            elif "total" in data and sys.stderr.isatty():
                print(f"\rculling {data.get('done', 0)}/{data['total']}", end="", file=sys.stderr, flush=True)

        with self.client() as c:
            result = c.cull(a.paths, recursive=a.recursive, apply=a.apply, pick_rating=a.pick_rating,
                            on_progress=progress, profile=a.profile)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        for e in result.get("errors", []):
            _err(e["message"])
        for d in result["decisions"]:
            if a.json:
                print(json.dumps(d, ensure_ascii=False))
        if not a.json and result["decisions"]:
            print_table(result["decisions"])
        return EXIT_OK

    def cancel(self) -> int:
        with self.client() as c:
            print(json.dumps(c.cancel(self.args.id)))
        return EXIT_OK

    def search(self) -> int:
        return _search(self)


# ---- search (issue 18) -------------------------------------------------------------------------------------------
def _search_parser(sub) -> None:
    s = sub.add_parser(P.OP_SEARCH, help="photos of the daemon's library by tag, score, folder, text (best first)",
                       description="Print the paths of the critiqued photos that match every filter, best score "
                       "first, one a line (pipe them on), or JSON records with --json.")
    s.add_argument("--tag", action="append", default=[], metavar="TAG", dest="tags",
                   help="a tag every match carries, e.g. 'exposure|underexposed' or 'exposure' (repeatable: all must "
                   "match; with or without the tag root)")
    s.add_argument("--min-score", type=float, metavar="X", help="score at least X (0..10)")
    s.add_argument("--max-score", type=float, metavar="X", help="score at most X (0..10)")
    s.add_argument("--folder", metavar="DIR", help="only photos in DIR or below")
    s.add_argument("--text", metavar="WORDS", help="words that must all occur in the critique")
    s.add_argument("--limit", type=int, default=P.SEARCH_MAX_LIMIT, metavar="N",
                   help="at most N photos (default %(default)s)")
    s.add_argument("--json", action="store_true", help="JSON records (path, score, tags, text, model, hash) one a line")


def _search(app: App) -> int:
    a = app.args
    if not app.local:
        _err("the library names paths on the daemon's machine: search works on local endpoints only")
        return EXIT_USAGE
    with app.client(timeout=max(a.timeout, 30.0)) as c:
        r = c.search(tags=a.tags, min_score=a.min_score, max_score=a.max_score, folder=a.folder, text=a.text,
                     limit=a.limit, details=a.json)
    out = sys.stdout
    for photo in r["photos"]:
        out.write((json.dumps(photo, ensure_ascii=False) if a.json else photo["path"]) + "\n")
    out.flush()
    if r.get("truncated"):
        _err(f"more than {a.limit} photos match; only the best {a.limit} are printed (--limit)")
    return EXIT_OK


def _folder_flags(f: dict) -> str:
    flags = [k for k in ("recursive", "polling") if f.get(k)]
    writes = [k[6:] for k in ("write_tags", "write_description", "write_rating") if f.get(k)]
    writes += ["flat keywords"] if f.get("write_tags") and f.get("flat_keywords") else []
    flags.append("writes " + ("+".join(writes) if writes else "only our namespace"))
    flags += [f"overwrites the user's {k[10:]}" for k in ("overwrite_description", "overwrite_rating") if f.get(k)]
    if f.get("profile"):  # a personal profile: its score in the results (and the stars, with personal_rating)
        flags.append(f"profile {f['profile']}" + (" (stars from it)" if f.get("personal_rating") else ""))
    return ", ".join(flags)


def _folders_text(folders: list[dict]) -> str:
    if not folders:
        return "no watched folders (ase-client watch add DIR)\n"
    lines = [f"{'pending':>8} {'done':>7} {'failed':>7}  folder"]
    for f in folders:
        state = "" if f.get("state") == "watching" else f"  [{f.get('state')}]"
        if f.get("error"):
            state += f"  ({f['error']})"
        lines.append(f"{f['pending']:>8} {f['done']:>7} {f['failed']:>7}  {f['path']}  "
                     f"({f.get('observer') or '-'}{', recursive' if f.get('recursive') else ''}){state}")
        lines.append(f"{'':>26}{_folder_flags({**f, 'recursive': False, 'polling': False})}")
    return "\n".join(lines) + "\n"


def _status_text(st: dict) -> str:
    """`ase-client status --format text`: the daemon at a glance."""
    c, q, b, j = st.get("counts", {}), st.get("queue", {}), st.get("batches", {}), st.get("jobs", {})
    out = [
        (f"ase-daemon pid {st.get('pid')}  {st.get('state')}  model {st.get('model')}  on {st.get('device')}  "
         f"up {st.get('uptime_s', 0):.0f} s"),
        (f"queue: {q.get('interactive', 0)} interactive, {q.get('background', 0)} background in the worker, "
         f"{q.get('jobs_queued', 0)} jobs queued"),
        (f"model passes: {b.get('count', 0)} batches, {b.get('images', 0)} images, mean batch "
         f"{b.get('mean_size', 0)}, {b.get('mean_ms', 0)} ms each"),
        (f"counts: {c.get('critiques', 0)} critiques run, {c.get('cache_hits', 0)} from the store, "
         f"{c.get('failed_images', 0)} failed images, {c.get('errors', 0)} error replies"),
        "jobs: " + ", ".join(f"{n} {k}" for k, n in j.items()),
        f"memory: {st.get('memory', {}).get('rss_mb')} MB RSS",
    ]
    for r in st.get("replicas", []):  # one worker per device (`devices`)
        rb = r.get("batches", {})
        out.append(f"  replica {r.get('index')} on {r.get('device')}: {r.get('state')}, {rb.get('images', 0)} images "
                   f"in {rb.get('count', 0)} batches, {r.get('jobs_done', 0)} jobs done, "
                   f"{r.get('queue', {}).get('interactive', 0)} interactive in flight")
    w = st.get("watch")
    if w is not None:
        out.append(f"watched folders: {w.get('pending', 0)} pending, {w.get('done', 0)} done, "
                   f"{w.get('failed', 0)} failed")
        out.append(_folders_text(w.get("folders", [])).rstrip("\n"))
    return "\n".join(out) + "\n"


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} kB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MB"


def profiles(as_json: bool = False) -> int:
    """`ase-client profiles`: the personal profiles in this user's data folder, read from disk (no daemon; the
    profiles module is torch-free).

    Args:
        as_json: print a JSON list instead of a table.
    """
    from ase_model.personal.profiles import list_profiles, profiles_dir

    infos = list_profiles()
    if as_json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return EXIT_OK
    base = profiles_dir()
    if not infos:
        print(f"no profiles in {base} (learn one: ase-mllm learn --from-xmp DIR... | --from-darktable LIBRARY.db)")
        return EXIT_OK
    width = max(4, *(len(i.name) for i in infos))
    print(f"{'name':{width}s} {'ratings':>7s} {'personal':>8s} {'generic':>8s} {'size':>8s}  {'learnt':24s}  model")
    for i in infos:
        print(f"{i.name:{width}s} {i.n_ratings:7d} {i.personal_srcc:+8.3f} {i.generic_srcc:+8.3f} "
              f"{_size(i.size):>8s}  {i.created:24s}  {i.model}")
    print(f"(personal / generic: cross-validated Spearman agreement with the ratings)\n"
          f"profiles live in {base}; delete one with: rm -r {base}/NAME")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # exits 2 on a usage error
    if args.command == "profiles":  # files on this machine: no daemon to reach
        return profiles(args.json)
    if getattr(args, "max_new_tokens", None) is not None and args.max_new_tokens < 1:
        _err("--max-new-tokens must be >= 1")
        return EXIT_USAGE
    try:
        app = App(args)
        info = app.check()
        if args.command == P.OP_PING:
            print(json.dumps(info))
            return EXIT_OK
        if args.command in (P.OP_STATUS, P.OP_LOAD, P.OP_UNLOAD, P.OP_SHUTDOWN):
            return app.simple(args.command)
        return getattr(app, args.command)()
    except DaemonUnavailable as e:
        _err(str(e))
        return EXIT_UNAVAILABLE
    except DaemonError as e:
        _err(f"{e.code}: {e.message}")
        return EXIT_FAILED
    except (ValueError, OSError) as e:
        _err(str(e))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
