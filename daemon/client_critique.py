"""`ase-client critique IMAGE|DIR... [--recursive] [--format text|json|jsonl|csv|lines] [--write-xmp]`.

Folders are walked as every command walks them (ase_model.folders: hidden files and sidecars left out, RAW+JPEG
pairs of one frame sent once, the JPEG); requests run `--parallel` at a time and results are printed in the order
given as soon as each is ready, with a progress bar on stderr (a terminal only). At the end, for more than one
photo, the ranked summary (best first, score, main remark: ase_model.folder_critique) goes to stdout after text,
to stderr after json/jsonl/csv, and nowhere after `lines` (the darktable plugin's contract stays as it was).

Ctrl-C prints what is done and the summary, and exits 130. Resume needs nothing more: the daemon stores every
critique it makes (content hash, model, length), the requests already sent finish and are stored too, so a rerun
is answered from the store for what was done (`cached`) and only the rest reaches the model. `--write-xmp` writes
the sidecars on this machine with the watcher's writer (folder_sidecars.py).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from ase_model.folder_critique import EXIT_INTERRUPTED, FolderRun, RecordWriter, error_record, summary_text

from . import contract as P
from .client import Client, DaemonError, DaemonUnavailable

__all__ = ["CLIENT_FORMATS", "CritiqueCommand", "add_folder_arguments", "expand_targets"]

# json is one object a line, as it always was; jsonl names that outright; lines is the plugin's contract
CLIENT_FORMATS = ("text", "json", "jsonl", "csv", "lines")


def add_folder_arguments(c) -> None:
    """--recursive, --no-progress and --write-xmp (with what it writes) on the critique parser.

    Args:
        c: the `critique` subparser.
    """
    from .folder_sidecars import add_sidecar_arguments

    c.add_argument("--recursive", "-r", action="store_true", help="descend into the folders' sub-folders")
    c.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_sidecar_arguments(c)


def expand_targets(targets: list[str], recursive: bool = False) -> list[tuple[str, list[str]]]:
    """(image, companions) to critique, in the order given: a folder's photo files (ase_model.folders.list_photos),
    files named as they were typed (a missing one too: the daemon says not_found), RAW+JPEG pairs once.

    Args:
        targets: files and folders.
        recursive: descend into sub-folders.
    """
    from ase_model.folders import list_photos, pair_frames

    names: dict[Path, str] = {}  # each file as the user typed it (or as its folder listing names it)
    files: list[Path] = []
    for t in targets:
        found = list_photos([t], recursive=recursive)[0] if Path(t).is_dir() else [Path(t)]
        for p in found:
            if p not in names:
                names[p] = t if p == Path(t) else str(p)
                files.append(p)
    return [(names[f.master], [names[c] for c in f.companions]) for f in pair_frames(files, master="jpeg")]


class CritiqueCommand:
    """The critique command of an ase_daemon.client_cli.App.

    Args:
        app: the App (its args, config, endpoint, client()).
    """

    def __init__(self, app):
        self.app, self.args = app, app.args
        self.fmt = "json" if self.args.format == "jsonl" else self.args.format
        self.writer = RecordWriter("csv", "ase-client") if self.fmt == "csv" else None
        self.sidecars = None
        if self.args.write_xmp:
            from .folder_sidecars import sidecar_options

            self.sidecars = sidecar_options(app.config, self.args)

    def _one(self, c: Client, image: str):
        """(result, png) or an error (code, message) for one image, retried while the daemon is busy."""
        from .client_cli import BUSY_RETRIES, PhotoUnreadable, _err, read_photo

        a, app = self.args, self.app
        stream = self._stream_printer(image) if a.stream else None
        data = None
        if not app.local or a.send_bytes:
            try:
                data = read_photo(image)
            except PhotoUnreadable as e:
                return None, (e.code, e.message)
        waited_ready = False
        for _ in range(BUSY_RETRIES):
            try:
                if data is None:
                    res, png = c.critique(path=image, stream=stream, saliency=bool(a.saliency_out),
                                          max_new_tokens=a.max_new_tokens, force=a.force, profile=a.profile)
                else:
                    res, png = c.critique(data=data, name=Path(image).name, stream=stream,
                                          saliency=bool(a.saliency_out), max_new_tokens=a.max_new_tokens,
                                          force=a.force, profile=a.profile)
                return (res, png), None
            except DaemonError as e:
                if e.code == P.BUSY:
                    time.sleep(e.retry_after or 0.5)
                elif e.code == P.NOT_READY and not waited_ready and e.retry_after is not None:
                    waited_ready = True
                    _err(f"waiting for the model: {e.message}")
                    c.wait_ready(a.wait_ready)
                else:
                    return None, (e.code, e.message)
        return None, (P.BUSY, "the daemon stayed busy")

    def run(self) -> int:
        """Critiques the targets; returns the exit status (0, 1 some failed, 130 interrupted)."""
        from tqdm import tqdm

        a = self.args
        if a.saliency_out:
            Path(a.saliency_out).mkdir(parents=True, exist_ok=True)
        jobs = expand_targets(a.images, recursive=a.recursive)
        if not jobs:
            from .client_cli import _err

            _err(f"no photos in {', '.join(a.images)}" + ("" if a.recursive else " (sub-folders need --recursive)"))
            return 0
        n = len(jobs)
        results: list = [None] * n
        done = [threading.Event() for _ in range(n)]
        unavailable: list[DaemonUnavailable] = []
        next_index = iter(range(n))
        lock = threading.Lock()

        def worker():
            with self.app.client() as c:
                while True:
                    with lock:
                        i = next(next_index, None)
                    if i is None or unavailable:
                        return
                    try:
                        results[i] = self._one(c, jobs[i][0])
                    except DaemonUnavailable as e:
                        unavailable.append(e)
                        results[i] = None
                    except Exception as e:  # report, never hang the caller
                        results[i] = (None, (P.INTERNAL, f"{type(e).__name__}: {e}"))
                    finally:
                        done[i].set()

        threads = [threading.Thread(target=worker, daemon=True)
                   for _ in range(1 if a.stream else max(1, min(a.parallel, n)))]
        for t in threads:
            t.start()
        run = FolderRun(total=n)
        bar = tqdm(total=n, desc="critiquing", unit="photo", file=sys.stderr,
                   disable=True if (a.no_progress or a.stream) else None)
        try:
            for i in range(n):  # print in the order given, as soon as each is ready
                while not done[i].wait(0.2):  # a timed wait lets Ctrl-C through at once
                    pass
                if unavailable:
                    break
                ok, error = results[i]
                record = self._record(jobs[i], ok, error, run)
                with bar.external_write_mode(file=sys.stdout):
                    self._print(jobs[i][0], ok, error, record)
                bar.update(1)
        except KeyboardInterrupt:  # the requests already sent finish in the daemon and are stored
            run.interrupted = True
        finally:
            bar.close()
        if unavailable:
            raise unavailable[0]
        return self._finish(run)

    def _record(self, job, ok, error, run: FolderRun) -> dict:
        image, companions = job
        if error is not None:
            run.counts["failed"] += 1
            record = error_record(image, *error, companions=companions)
        else:
            result, _ = ok
            run.counts["stored" if result.get("cached") else "critiqued"] += 1
            record = {**result, "image": image}
            if companions:
                record["companions"] = companions
            if self.sidecars is not None:
                from .client_cli import _err
                from .folder_sidecars import write_frame_sidecars

                record["sidecars"], problem = write_frame_sidecars(record, self.sidecars, result.get("saliency"))
                if problem:
                    run.counts["failed"] += 1
                    _err(problem)
        run.records.append(record)
        return record

    def _finish(self, run: FolderRun) -> int:
        a = self.args
        if run.interrupted or (run.total > 1 and self.fmt != "lines" and not a.stream):
            text = summary_text(run.records, run.total, run.interrupted, run.counts)
            if self.fmt == "lines" or a.stream:
                text = text.splitlines()[-1] + "\n"
            out = sys.stdout if self.fmt == "text" else sys.stderr
            out.write(("\n" if out is sys.stdout and not run.interrupted else "") + text)
            out.flush()
        if run.interrupted:
            return EXIT_INTERRUPTED
        return 1 if run.counts["failed"] else 0

    # ---- printing --------------------------------------------------------------------------------------------
    def _stream_printer(self, image: str):
        fmt = self.fmt

        def emit(text: str) -> None:
            if fmt == "lines":
                sys.stdout.write(P.format_token(text))
            elif fmt == "json":
                event = {"image": image, "event": P.TOKEN, "text": text}
                sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
            else:
                sys.stdout.write(text)
            sys.stdout.flush()

        return emit

    def _print(self, image: str, ok, error, record: dict) -> None:
        from .client_cli import _err, _rating

        fmt, out = self.fmt, sys.stdout
        sal_path = None
        if ok is not None:
            result, png = ok
            if png and self.args.saliency_out:
                sal_path = str(self.app._saliency_path(image))
                Path(sal_path).write_bytes(png)
                record["saliency_png"] = sal_path
        if self.writer is not None:
            self.writer.write(record)
            return
        if error is not None:
            code, message = error
            if fmt == "lines":
                out.write(P.format_lines(image, error=(code, message)))
            elif fmt == "json":
                out.write(json.dumps({"image": image, "error": {"code": code, "message": message}}) + "\n")
            else:
                _err(f"{image}: {code}: {message}")
            out.flush()
            return
        rating = _rating(result["score"])
        if fmt == "lines":
            out.write(P.format_lines(image, result, saliency_path=sal_path, rating=rating))
        elif fmt == "json":
            extra = {k: record[k] for k in ("companions", "sidecars") if k in record}
            out.write(json.dumps({**result, "image": image, **({"rating": rating} if rating is not None else {}),
                                  **({"saliency_png": sal_path} if sal_path else {}), **extra},
                                 ensure_ascii=False) + "\n")
        else:
            self._text(image, result, record, sal_path, out)
        out.flush()

    def _text(self, image: str, result: dict, record: dict, sal_path, out) -> None:
        if self.args.stream:
            out.write("\n")
        else:
            mine = result.get("personal_score")
            pair = "".join(f" (+{Path(c).suffix.lstrip('.')})" for c in record.get("companions") or ())
            out.write(f"== {image}{pair}  score {result['score']:.1f}/10"
                      + (f"  personal {mine:.1f}/10" if mine is not None else "")
                      + f"{' (cached)' if result.get('cached') else ''}\n")
            out.write(result["text"] + "\n")
        if result.get("tags"):
            out.write("tags: " + ", ".join(result["tags"]) + "\n")
        if sal_path:
            out.write(f"saliency: {sal_path}\n")
        if record.get("sidecars"):
            out.write("sidecar: " + ", ".join(record["sidecars"]) + "\n")
        out.write("\n")
