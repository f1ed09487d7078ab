"""`ase-mllm critique IMAGE|DIR... [--recursive] [--format ...] [--write-xmp]`: the installed command.

ase_model.cli runs the critique (folders, RAW+JPEG pairs, progress, ranked summary, Ctrl-C); this front adds what
needs the daemon's package, which ase_model never imports:

* **resume through the daemon's store**: every new critique is stored as the daemon stores its own (content hash,
  model fingerprint, critique length), and a photo whose critique is stored is answered from it with no model run.
  So a rerun after Ctrl-C skips what is done, the daemon answers these photos from the store, and `ase-mllm cull`
  reuses them. `--no-store` critiques everything and keeps nothing; `--db FILE` names another store.
* `--write-xmp`: the sidecars, with the watcher's writer (folder_sidecars.py);
* `--format lines`: the darktable plugin's line format (docs/protocol.md);
* `--distributed [--shards DIR]`: under `accelerate launch`, each process critiques its share into a shard file
  and process 0 merges them into the store (critique_distributed.py).

Exit codes: 0 all critiqued, 1 a photo (or a sidecar) failed, 2 a usage error, 130 interrupted (what was done is
printed, stored and summarised).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from ase_model import cli as model_cli
from ase_model.folder_critique import FORMATS

from . import contract as P

__all__ = ["build_parser", "main"]

PROG = "ase-mllm critique"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description="Critique photos and folders of photos: RAW+JPEG pairs "
                                 "once, a progress bar, a ranked summary; a rerun skips what the store knows.")
    model_cli.add_critique_arguments(ap, formats=(*FORMATS, "lines"))
    ap.add_argument("--db", metavar="FILE", help="the store (default: the daemon's, from its config)")
    ap.add_argument("--no-store", action="store_true", help="keep nothing: critique every photo, store nothing")
    ap.add_argument("--config", metavar="FILE", help="the daemon's config file (store, critique length, [watch])")
    from .folder_sidecars import add_sidecar_arguments

    add_sidecar_arguments(ap)
    from .critique_distributed import add_distributed_arguments

    add_distributed_arguments(ap)
    return ap


def _lines(record: dict) -> str:
    if "error" in record:
        e = record["error"]
        return P.format_lines(record["image"], error=(e["code"], e["message"]))
    try:
        rating = P.rating_from_score(record["score"])
    except ValueError:
        rating = None
    sal = record["saliency"] if isinstance(record.get("saliency"), str) else None
    result = {**record, "saliency": record.get("saliency_summary")}
    return P.format_lines(record["image"], result, saliency_path=sal, rating=rating)


def main(argv: list[str] | None = None) -> int:
    """Runs `ase-mllm critique`.

    Args:
        argv: the arguments after `critique` (default: sys.argv[1:]).
    """
    args = build_parser().parse_args(argv)
    from ase_model.model_id import default_model_dir, fingerprint

    from .config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    args.model = args.model or cfg.model
    model_dir = Path(args.model or default_model_dir()).expanduser()
    if not (model_dir / "config.json").exists():
        print(f"{PROG}: {model_dir}: no model there (no config.json)", file=sys.stderr)
        return 2
    model_id = fingerprint(model_dir)
    # the store's key includes the critique length: the daemon's default, so both answer each other's photos
    args.max_new_tokens = mnt = args.max_new_tokens or cfg.limits.max_new_tokens
    db_path = Path(args.db).expanduser() if args.db else cfg.db_path
    options = None
    if args.write_xmp:
        from .folder_sidecars import sidecar_options

        options = sidecar_options(cfg, args, tag_root=args.tag_root)
    if args.distributed:  # under accelerate launch: shards per rank, merged by rank 0 (critique_distributed.py)
        from .critique_distributed import run_distributed

        try:
            return run_distributed(args, db_path, model_id, mnt, options, prog=PROG)
        except KeyboardInterrupt:
            return 130
    store = None
    if not args.no_store:
        from .store import Store

        store = Store(db_path)
    try:
        return _run(args, store, model_id, mnt, options)
    except KeyboardInterrupt:
        return 130
    finally:
        if store is not None:
            store.close()


def _run(args, store, model_id: str, mnt: int, options) -> int:
    from ase_model.saliency import summary

    sal_dir = Path(args.saliency_dir) if args.saliency_dir else None
    failed_sidecars = []

    def lookup(frame, data):
        stored = store.get_critique(hashlib.sha256(data).hexdigest(), model_id, mnt)
        if stored is None:
            return None
        record = stored.result.to_dict()
        record["saliency_summary"] = record.pop("saliency", None)
        record["cached"] = True
        if sal_dir and stored.saliency_png:
            path = sal_dir / (frame.master.name + ".saliency.png")
            path.write_bytes(stored.saliency_png)
            record["saliency"] = str(path)
        return record

    def on_new(frame, data, c, record):
        h = hashlib.sha256(data).hexdigest()
        result = P.CritiqueResult(text=c.text, attributes=c.attributes, score=c.score, tags=c.tags,
                                  saliency=summary(c.saliency), timings=c.timings, model=model_id, hash=h,
                                  cached=False)
        if store is not None:
            store.put_critique(h, model_id, mnt, result, P.encode_saliency(c.saliency))
        record.update(model=model_id, hash=h, cached=False, saliency_summary=result.saliency)

    def on_record(record):
        if options is None:
            return
        from .folder_sidecars import write_frame_sidecars

        written, error = write_frame_sidecars(record, options, record.get("saliency_summary"))
        record["sidecars"] = written
        if error:
            failed_sidecars.append(error)
            print(f"{PROG}: {error}", file=sys.stderr)

    status = model_cli.critique_targets(args, PROG, lookup=lookup if store is not None else None, on_new=on_new,
                                        on_record=on_record, extra_formats={"lines": _lines})
    if failed_sidecars and status == 0:
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
