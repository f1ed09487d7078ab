"""Critiquing a shoot: frames in batches, results as they come, a ranked summary at the end, Ctrl-C keeps what is done.

    frames = pair_frames(list_photos(["/shoot"], recursive=True)[0])       # ase_model.folders
    run = critique_frames(frames, critique, lookup=stored, on_record=writer.write, progress=bar.update)
    writer.finish(run)                                                      # ranked, best first; exit 130 if cut

`critique(items)` is the only part that differs between the commands: `ase-mllm critique` runs a local Critic,
the installed `ase-mllm` also stores each critique in the daemon's store (ase_daemon.critique_cli), whose
`lookup` is how a rerun skips what is done. `ase-client critique` asks the daemon, whose store does the same.
Torch-free: the model is the caller's.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .folders import Frame

__all__ = ["FORMATS", "FolderRun", "RecordWriter", "critique_frames", "error_record", "main_remark", "ranked",
           "summary_text"]

FORMATS = ("text", "json", "jsonl", "csv")  # json is one object a line as it always was; jsonl says so outright
EXIT_INTERRUPTED = 130  # a shell's code for a command stopped by SIGINT
CSV_FIELDS = ("image", "score", "personal_score", "cached", "remark", "tags", "companions", "error")

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def error_record(image: str | Path, code: str, message: str, companions: Sequence = ()) -> dict:
    """The record of a photo that could not be critiqued.

    Args:
        image: the photo.
        code: the protocol's error code (bad_image, not_found, ...).
        message: what went wrong, naming the file.
        companions: the other files of its frame.
    """
    out = {"image": str(image), "error": {"code": code, "message": message}}
    if companions:
        out["companions"] = [str(c) for c in companions]
    return out


def main_remark(record: dict) -> str:
    """A critique's main remark: the first sentence of its overall impression, else of its text.

    Args:
        record: a critique record (text, attributes).
    """
    attrs = record.get("attributes") or {}
    text = (attrs.get("general_impression") or record.get("text") or "").strip()
    text = re.sub(r"^\s*Overall\s*:\s*", "", text)
    return _SENTENCE.split(text, maxsplit=1)[0].strip() if text else ""


def _rank_score(record: dict) -> float:
    mine = record.get("personal_score")
    return float(mine if mine is not None else record["score"])


def ranked(records: Sequence[dict]) -> list[dict]:
    """The critiqued records best first: by personal_score where a profile gave one, else by score; ties by name.

    Args:
        records: critique and error records (errors are left out).
    """
    good = [r for r in records if "error" not in r]
    return sorted(good, key=lambda r: (-_rank_score(r), r["image"]))


def summary_text(records: Sequence[dict], total: int | None = None, interrupted: bool = False,
                 counts: dict | None = None) -> str:
    """The ranked summary: one line per photo, best first, with its score and main remark; then the counts.

    Args:
        records: the records of this run.
        total: how many frames the run had (said when interrupted).
        interrupted: the run was cut short (Ctrl-C).
        counts: FolderRun.counts, to say how many came from the store.
    """
    best = ranked(records)
    failed = sum("error" in r for r in records)
    lines = []
    if best:
        width = min(48, max(len(_label(r)) for r in best))
        lines.append(f"ranked, best first ({len(best)} photo{'s' if len(best) != 1 else ''}):")
        for i, r in enumerate(best, 1):
            mine = r.get("personal_score")
            score = f"{r['score']:4.1f}" + (f" (personal {mine:4.1f})" if mine is not None else "")
            lines.append(f"{i:4d}. {score}  {_label(r):{width}s}  {main_remark(r)}")
    tail = f"{len(best)} critiqued" + (f", {failed} failed" if failed else "")
    if counts and counts.get("stored"):
        tail += f" ({counts['stored']} from the store, {counts.get('critiqued', 0)} by the model now)"
    if interrupted:
        tail = f"interrupted: {len(records)} of {total if total is not None else '?'} done ({tail}); " \
               "run the same command again to go on"
    lines.append(tail)
    return "\n".join(lines) + "\n"


def _label(record: dict) -> str:
    name = record["image"]
    extra = [Path(c).suffix.lstrip(".") for c in record.get("companions") or ()]
    return name + (f" (+{','.join(extra)})" if extra else "")


@dataclass
class FolderRun:
    """What a folder critique did.

    Args:
        records: one record per frame handled, in the order of the frames (critiques and errors).
        total: the frames asked for.
        interrupted: Ctrl-C stopped it; `records` holds what was done.
        counts: "stored" (answered by lookup), "critiqued" (by the model now), "failed".
    """

    records: list[dict] = field(default_factory=list)
    total: int = 0
    interrupted: bool = False
    counts: dict = field(default_factory=lambda: {"stored": 0, "critiqued": 0, "failed": 0})


def critique_frames(frames: Sequence[Frame], critique: Callable[[list[tuple]], list], *, batch_size: int = 4,
                    lookup: Callable[[Frame, bytes], dict | None] | None = None,
                    on_record: Callable[[dict], None] | None = None,
                    progress: Callable[[int], None] | None = None, decode: bool = True) -> FolderRun:
    """Critiques each frame's master once, in batches; a KeyboardInterrupt ends the run with what is done.

    Args:
        frames: the frames (ase_model.folders.pair_frames).
        critique: critique(items) for items of (frame, data, image); returns one record dict (the critique,
            "image" set) or Exception per item.
        batch_size: frames per critique call.
        lookup: lookup(frame, data) -> a stored record, or None; a frame it answers needs no model (resume).
        on_record: called with each record as soon as it is known (in frame order within a batch).
        progress: progress(n) after n more frames are handled.
        decode: decode each photo before critique (off: items carry image None, for a daemon that reads files).
    """
    from .imagesafety import ImageLoadError, ImageNotFound, read_regular

    run = FolderRun(total=len(frames))
    pending: list[tuple[Frame, bytes, object]] = []

    def emit(frame: Frame, record: dict) -> None:
        if frame.companions:
            record["companions"] = [str(c) for c in frame.companions]
        record["image"] = str(frame.master)
        run.records.append(record)
        if "error" in record:
            run.counts["failed"] += 1
        if on_record is not None:
            on_record(record)

    def flush() -> None:
        if not pending:
            return
        answers = critique(list(pending))
        for (frame, _, _), answer in zip(pending, answers):
            if isinstance(answer, Exception):
                emit(frame, error_record(frame.master, getattr(answer, "code", "bad_image"), str(answer)))
            else:
                run.counts["critiqued"] += 1
                emit(frame, dict(answer))
        if progress is not None:
            progress(len(pending))
        pending.clear()

    try:
        for frame in frames:
            try:
                data = read_regular(frame.master)
            except ImageNotFound as e:
                emit(frame, error_record(frame.master, "not_found", str(e)))
                _step(progress)
                continue
            except (ImageLoadError, OSError) as e:
                emit(frame, error_record(frame.master, "bad_image", str(e)))
                _step(progress)
                continue
            stored = lookup(frame, data) if lookup is not None else None
            if stored is not None:
                run.counts["stored"] += 1
                emit(frame, dict(stored))
                _step(progress)
                continue
            image = None
            if decode:
                from .imageio import load_image

                try:
                    image = load_image(data, name=str(frame.master))
                except (ImageLoadError, OSError, ValueError) as e:
                    emit(frame, error_record(frame.master, "bad_image", str(e)))
                    _step(progress)
                    continue
            pending.append((frame, data, image))
            if len(pending) >= batch_size:
                flush()
        flush()
    except KeyboardInterrupt:  # what is done stays done (and stored, by the caller's critique)
        run.interrupted = True
    return run


def _step(progress) -> None:
    if progress is not None:
        progress(1)


class RecordWriter:
    """Prints records in one of FORMATS (plus any `extra` ones) as they come, and the ranked summary at the end.

    text: a block per photo on stdout, then the ranked summary on stdout. json/jsonl: one JSON object a line;
    csv: a header and one row a photo (CSV_FIELDS); for these the summary goes to stderr, so stdout stays
    parseable. Errors: text prints them on stderr, the others as records.

    Args:
        fmt: the format.
        prog: the command's name for messages ("ase-mllm critique").
        out: stdout by default.
        err: stderr by default.
        extra: more formats, {name: record -> text} (the daemon's `lines` contract); their summary goes to stderr.
        summary: print the ranked summary at the end.
    """

    def __init__(self, fmt: str, prog: str, out: TextIO | None = None, err: TextIO | None = None,
                 extra: dict[str, Callable[[dict], str]] | None = None, summary: bool = True):
        self.fmt, self.prog, self.extra, self.summary = fmt, prog, extra or {}, summary
        self.out, self.err = out or sys.stdout, err or sys.stderr
        if fmt not in FORMATS and fmt not in self.extra:
            raise ValueError(f"unknown format {fmt!r}")
        self._csv = None

    def write(self, record: dict) -> None:
        """Prints one record.

        Args:
            record: a critique record or an error_record.
        """
        if self.fmt in self.extra:
            self.out.write(self.extra[self.fmt](record))
        elif self.fmt in ("json", "jsonl"):
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self.fmt == "csv":
            self._csv_row(record)
        elif "error" in record:
            self.err.write(f"{self.prog}: {record['error']['message']}\n")
            self.err.flush()
        else:
            self.out.write(_text_block(record))
        self.out.flush()

    def _csv_row(self, record: dict) -> None:
        if self._csv is None:
            self._csv = csv.DictWriter(self.out, fieldnames=CSV_FIELDS, lineterminator="\n")
            self._csv.writeheader()
        err = record.get("error")
        self._csv.writerow({
            "image": record["image"], "score": record.get("score", ""),
            "personal_score": record.get("personal_score", ""), "cached": record.get("cached", ""),
            "remark": "" if err else main_remark(record), "tags": ";".join(record.get("tags") or ()),
            "companions": ";".join(record.get("companions") or ()),
            "error": f"{err['code']}: {err['message']}" if err else "",
        })

    def finish(self, run: FolderRun) -> int:
        """Prints the ranked summary (and the interruption) and returns the exit status: 130 when interrupted,
        1 when a photo failed, else 0.

        Args:
            run: the finished (or interrupted) run.
        """
        if self.summary or run.interrupted:
            where = self.out if self.fmt == "text" else self.err
            text = summary_text(run.records, run.total, run.interrupted, run.counts)
            if not self.summary:  # only the line that says it was cut short
                text = text.splitlines()[-1] + "\n"
            elif self.fmt == "text":
                text = "\n" + text
            where.write(text)
            where.flush()
        if run.interrupted:
            return EXIT_INTERRUPTED
        return 1 if run.counts["failed"] else 0


def _text_block(record: dict) -> str:
    buf = io.StringIO()
    mine = record.get("personal_score")
    buf.write(f"== {_label(record)}  score {record['score']:.1f}/10"
              + (f"  personal {mine:.1f}/10" if mine is not None else "")
              + (" (cached)" if record.get("cached") else "") + "\n")
    buf.write(record["text"] + "\n")
    if record.get("tags"):
        buf.write("tags: " + ", ".join(record["tags"]) + "\n")
    if isinstance(record.get("saliency"), str) or record.get("saliency_png"):
        buf.write(f"saliency: {record.get('saliency_png') or record['saliency']}\n")
    if record.get("sidecars"):
        buf.write("sidecar: " + ", ".join(record["sidecars"]) + "\n")
    buf.write("\n")
    return buf.getvalue()
