"""`ase-mllm critique --distributed DIR|FILES... [--shards DIR]`: an archive critiqued by many GPUs and machines.

Run under `accelerate launch` (as many processes, GPUs and machines as `accelerate config` or its flags say):

    accelerate launch --multi_gpu --num_processes 8 -m ase_daemon.mllm_cli critique --distributed /archive -r

1. Every rank lists the same frames (ase_model.folders: sorted, RAW+JPEG pairs once) and takes frames
   `rank, rank + world, ...`; it loads the Critic on its own device (accelerate's PartialState().device) only when
   something is left to critique.
2. A frame whose content is in a shard line already (any rank's, any earlier run's: a killed run) or in the store
   is not critiqued again. Each batch's lines go to the rank's shard file at once (critique_shards.py).
3. At the end (a barrier) rank 0 merges the shards: new critiques into the store under the keys the daemon and the
   plain `ase-mllm critique` use (so the daemon answers these photos), the records printed in --format in the
   order a single process prints them, the sidecars written (--write-xmp), the saliency maps (--saliency-dir).
   The default shards folder is removed once merged into the store; a named one (--shards) or a run with
   --no-store keeps it.

Launched as one process (no launcher, or one process) it works the same with world size 1. Records are printed at
the merge, not as they come; Ctrl-C (SIGINT to the launcher) stops every rank with what is done in the shards, and
the same command goes on from there. For several machines the shards folder must be on a filesystem they share
(--shards): rank 0 says so when it cannot see every rank's file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from ase_model.folder_critique import FolderRun, RecordWriter, critique_frames, error_record

from . import contract as P
from .critique_shards import (
    DONE_KINDS,
    KIND_CRITIQUE,
    KIND_ERROR,
    KIND_PERSONAL,
    KIND_SAME,
    KIND_STORED,
    ShardIndex,
    ShardWriter,
    decode_png,
    encode_png,
    read_shards,
    shard_path,
)

__all__ = ["add_distributed_arguments", "default_shards_dir", "run_distributed"]

# The ranks that finish their shard first wait at the final barrier for the slowest; on an archive that can be hours
# (the launcher ends every rank at once if one fails, so a long wait never hangs on a dead rank).
BARRIER_TIMEOUT = timedelta(hours=48)
STORE_CHUNK = 256  # critiques per store transaction at the merge


def add_distributed_arguments(ap) -> None:
    """--distributed and --shards.

    Args:
        ap: the critique command's parser.
    """
    ap.add_argument("--distributed", action="store_true",
                    help="under `accelerate launch`: each process critiques its share of the photos into a shard "
                    "file; process 0 merges them into the store and prints the results (docs/folders.md)")
    ap.add_argument("--shards", metavar="DIR", help="with --distributed: the shard files (default: a folder named "
                    "from the inputs beside the store; on several machines it must be a shared folder)")


def default_shards_dir(images, recursive: bool, db_path: str | os.PathLike) -> Path:
    """The shards folder of a set of inputs: `<store's folder>/shards/<first input's name>-<digest of all>`.

    Args:
        images: the command's photos and folders.
        recursive: --recursive (it changes the frames).
        db_path: the store's file.
    """
    names = sorted(os.path.abspath(os.path.expanduser(str(p))) for p in images)
    digest = hashlib.sha256("\0".join([*names, f"recursive={bool(recursive)}"]).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(names[0]).name or "root")[:40] if names else "none"
    return Path(db_path).expanduser().parent / "shards" / f"{stem}-{digest}"


def _state(args):
    """accelerate's PartialState: a gloo group on CPU when launched as several processes without GPUs (accelerate
    forms one only when asked for the CPU), NCCL on GPUs; no group at all for one process."""
    import torch
    from accelerate import PartialState

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cpu = world > 1 and (not torch.cuda.is_available() or str(args.device or "").startswith("cpu"))
    state = PartialState(cpu=cpu, timeout=BARRIER_TIMEOUT)
    if state.num_processes != world:
        raise RuntimeError(f"launched as {world} processes but accelerate formed a group of {state.num_processes}")
    return state


def _device(args, state):
    """The rank's device: accelerate's, unless --device names another kind (e.g. cpu on a GPU machine)."""
    import torch

    if args.device and torch.device(args.device).type != state.device.type:
        return args.device
    return state.device


def _run_id(state) -> str:
    from accelerate.utils import broadcast_object_list

    ids = [uuid.uuid4().hex[:16] if state.is_main_process else None]
    if state.use_distributed:
        broadcast_object_list(ids, from_process=0)
    return ids[0]


def run_distributed(args, db_path: Path, model_id: str, mnt: int, options, prog: str = "ase-mllm critique") -> int:
    """Runs this process's share of `ase-mllm critique --distributed`; on rank 0 also the merge.

    Args:
        args: the parsed critique arguments (critique_cli.build_parser).
        db_path: the store's file (also where the default shards folder goes).
        model_id: the model's fingerprint (the store's key).
        mnt: the critique length (the store's key).
        options: the SidecarOptions for --write-xmp, or None.
        prog: the name messages start with.

    Returns the exit status: rank 0's says what the whole run did (0, 1 when a photo or sidecar failed, 130 when
    interrupted); the other ranks return 0 unless interrupted.
    """
    profile = None
    if args.profile:  # checked before any rank starts work: no such profile, or learnt with another model
        from ase_model.personal import ProfileError, load_profile

        try:
            profile = load_profile(args.profile, model=model_id)
        except ProfileError as e:
            print(f"{prog}: {e}", file=sys.stderr)
            return 2
        digest = hashlib.sha256(repr(sorted(profile.meta.items())).encode()).hexdigest()[:16]
        profile = f"{profile.name}@{digest}"
    state = _state(args)
    try:
        return _run(args, state, db_path, model_id, mnt, options, prog, profile)
    finally:
        if state.use_distributed:
            state.destroy_process_group()


def _run(args, state, db_path: Path, model_id: str, mnt: int, options, prog: str, profile: str | None) -> int:
    """run_distributed inside accelerate's state: list, critique this rank's share, wait, merge on rank 0."""
    from ase_model.folders import list_photos, pair_frames

    rank, world, main = state.process_index, state.num_processes, state.is_main_process
    files, missing = list_photos(args.images, recursive=args.recursive)
    frames = pair_frames(files, master="jpeg")
    if not frames and not missing:
        if main:
            print(f"{prog}: no photos in {', '.join(args.images)}"
                  + ("" if args.recursive else " (sub-folders need --recursive)"), file=sys.stderr)
        return 0
    folder = Path(args.shards).expanduser() if args.shards else default_shards_dir(args.images, args.recursive,
                                                                                   db_path)
    run_id = _run_id(state)
    store = None
    if main and not args.no_store:
        from .store import Store

        store = Store(db_path)  # created here, before the others look for it
    state.wait_for_everyone()
    if not main and not args.no_store and Path(db_path).exists():  # another machine's own store, if it has one
        from .store import Store

        store = Store(db_path)
    try:
        shard = ShardWriter(folder, rank, run_id)
        try:
            run = _critique_share(args, state, frames[rank::world], ShardIndex(read_shards(folder), model_id, mnt),
                                  shard, store, model_id, mnt, profile)
        finally:
            shard.close()
        print(f"{prog}: rank {rank} of {world}: {len(frames[rank::world])} frames, {run.counts['critiqued']} "
              f"critiqued now, {run.counts['stored']} done before, {run.counts['failed']} failed", file=sys.stderr)
        if run.interrupted:  # every rank got the launcher's SIGINT; a lone one is ended by the launcher
            if main:
                print(f"{prog}: interrupted: what is done is in {folder}; run the same command again to go on",
                      file=sys.stderr)
            return 130
        state.wait_for_everyone()
        if not main:
            return 0
        absent = [r for r in range(world) if not shard_path(folder, r).exists()]
        if absent:
            print(f"{prog}: rank 0 cannot see the shard files of ranks {absent} in {folder}: on several machines "
                  "give --shards a folder they all share", file=sys.stderr)
            return 1
        status = _merge(args, folder, frames, missing, run_id, store, model_id, mnt, options, prog, profile)
        if store is not None and not args.shards and status in (0, 1):  # all of it is in the store now
            shutil.rmtree(folder, ignore_errors=True)
        return status
    finally:
        if store is not None:
            store.close()


def _critique_share(args, state, frames, index: ShardIndex, shard: ShardWriter, store, model_id: str,
                    mnt: int, profile: str | None) -> FolderRun:
    """Critiques this rank's frames into its shard: what a shard line or the store holds is not done again. With
    `profile` (its key), each frame's personal score too, in a line of its own unless a shard has it."""
    from tqdm import tqdm

    from ase_model.critic import Critic
    from ase_model.saliency import summary, to_png

    loaded = {}
    key = {"model": model_id, "max_new_tokens": mnt}

    def critic():  # on first use: a rerun with everything done loads no model
        if "critic" not in loaded:
            loaded["critic"] = Critic.from_pretrained(args.model, device=_device(args, state), tag_root=args.tag_root)
        return loaded["critic"]

    def personal(pending):  # [(content hash, image)] -> personal scores; features cached by content
        if "personal" not in loaded:
            from ase_model.cli import _personal_scorer

            loaded["personal"] = _personal_scorer(critic(), args.profile)
        return loaded["personal"](pending)

    def critique(items):
        results = critic().critique([im for _, _, im in items], max_new_tokens=mnt,
                                    names=[str(f.master) for f, _, _ in items])
        hashes = [hashlib.sha256(data).hexdigest() for _, data, _ in items]
        mine = personal([(h, im) for h, (_, _, im) in zip(hashes, items)]) if profile else [None] * len(results)
        out = []
        for h, c, personal_score in zip(hashes, results, mine):
            record = c.to_dict()
            if personal_score is not None:
                record["_personal"] = personal_score
            record.update(model=model_id, hash=h, cached=False, saliency_summary=summary(c.saliency))
            out.append({**record, "_line": {"kind": KIND_CRITIQUE, "score": c.score, "png": encode_png(
                to_png(c.saliency))}})
        return out

    def lookup(frame, data):
        record = _lookup(frame, data)
        if record is not None and profile and (record["hash"], profile) not in index.personal:
            from ase_model.imageio import load_image

            record["_personal"] = personal([(record["hash"], load_image(data, name=str(frame.master)))])[0]
        return record

    def _lookup(frame, data):
        h = hashlib.sha256(data).hexdigest()
        line = index.done(h)
        if line is not None:  # in a shard: a line for this name too unless the one there is it
            mine = index.by_image.get(str(frame.master))
            same = mine is not None and mine.get("hash") == h and mine["kind"] in (*DONE_KINDS, KIND_SAME)
            return {**line["record"], "_line": None if same else {"kind": KIND_SAME}, "hash": h}
        stored = store.get_critique(h, model_id, mnt) if store is not None else None
        if stored is None:
            return None
        record = stored.result.to_dict()
        record["saliency_summary"] = record.pop("saliency", None)
        record["cached"] = True
        return {**record, "hash": h, "_line": {"kind": KIND_STORED, "score": stored.result.score,
                                               "png": encode_png(stored.saliency_png)}}

    def on_record(record):
        personal_score = record.pop("_personal", None)
        extra = record.pop("_line", None) if "error" not in record else {"kind": KIND_ERROR}
        if extra is not None:
            line = {**key, "image": record["image"], "hash": record.get("hash"), **extra}
            if extra["kind"] != KIND_SAME:
                line["record"] = record
            shard.add(line)
        if personal_score is not None:
            shard.add({**key, "kind": KIND_PERSONAL, "image": record["image"], "hash": record["hash"],
                       "profile": profile, "personal_score": personal_score})

    with tqdm(total=len(frames), desc=f"critiquing (rank 0 of {state.num_processes})", unit="photo",
              file=sys.stderr, disable=True if args.no_progress or not state.is_main_process else None) as bar:
        def progress(n):
            shard.flush()  # after each batch (and each frame answered without the model)
            bar.update(n)

        return critique_frames(frames, critique, batch_size=args.batch_size, lookup=lookup, on_record=on_record,
                               progress=progress)


def _merge(args, folder: Path, frames, missing: dict, run_id: str, store, model_id: str, mnt: int, options,
           prog: str, profile: str | None = None) -> int:
    """Rank 0: the shards into the store, then the records printed in frame order (with `profile`, each one's
    personal score), sidecars and saliency maps."""
    index = ShardIndex(read_shards(folder), model_id, mnt)
    run = FolderRun(total=len(frames) + len(missing))
    gone = [{"image": t, "error": {"code": P.NOT_FOUND, "message": m}} for t, m in missing.items()]
    entries: list[tuple[dict, dict | None]] = [(record, None) for record in gone]
    run.counts["failed"] = len(gone)
    to_store: dict[str, tuple] = {}
    for frame in frames:
        line = index.resolve(str(frame.master))
        if line is None:
            record = error_record(frame.master, P.BAD_IMAGE, f"{frame.master}: in no shard of {folder}")
        elif line["kind"] == KIND_ERROR:
            record = dict(line["record"])
        else:
            record = dict(line["record"])
            new = line["kind"] == KIND_CRITIQUE and line.get("run") == run_id
            record["cached"] = not new
            run.counts["critiqued" if new else "stored"] += 1
            h = line["hash"]
            if store is not None and h not in to_store and (new or store.get_critique(h, model_id, mnt) is None):
                to_store[h] = (None, h, model_id, mnt, _result(record, line, model_id), decode_png(line.get("png")))
        if profile and "error" not in record:
            record["personal_score"] = index.personal.get((line["hash"], profile))
        record.pop("companions", None)
        if frame.companions:
            record["companions"] = [str(c) for c in frame.companions]
        record["image"] = str(frame.master)
        if "error" in record:
            run.counts["failed"] += 1
        entries.append((record, line))
    items = list(to_store.values())
    for i in range(0, len(items), STORE_CHUNK):
        store.save_batch(items[i:i + STORE_CHUNK])
    return _print(args, entries, run, options, prog)


def _result(record: dict, line: dict, model_id: str):
    """The store's form of a line's critique (what the plain `ase-mllm critique` stores)."""
    return P.CritiqueResult(text=record["text"], attributes=record.get("attributes") or {},
                            score=float(line.get("score", record["score"])), tags=record.get("tags") or [],
                            saliency=record.get("saliency_summary"), timings=record.get("timings") or {},
                            model=model_id, hash=line["hash"], cached=False, created=record.get("created"))


def _print(args, entries: list[tuple[dict, dict | None]], run: FolderRun, options, prog: str) -> int:
    """Rank 0: each record's sidecars and saliency map, the records in --format, the ranked summary.

    Args:
        entries: (record, the shard line it came from or None) in output order.
    """
    from .critique_cli import _lines
    from .folder_sidecars import write_frame_sidecars

    fmt = "jsonl" if args.json else args.format
    writer = RecordWriter(fmt, prog, extra={"lines": _lines}, summary=run.total > 1)
    sal_dir = Path(args.saliency_dir) if args.saliency_dir else None
    if sal_dir:
        sal_dir.mkdir(parents=True, exist_ok=True)
    failed_sidecars = []
    for record, line in entries:
        if "error" not in record:
            if sal_dir and line is not None and line.get("png"):
                path = sal_dir / (Path(record["image"]).name + ".saliency.png")
                path.write_bytes(decode_png(line["png"]))
                record["saliency"] = str(path)
            if options is not None:
                written, error = write_frame_sidecars(record, options, record.get("saliency_summary"))
                record["sidecars"] = written
                if error:
                    failed_sidecars.append(error)
                    print(f"{prog}: {error}", file=sys.stderr)
        writer.write(record)
        run.records.append(record)
    status = writer.finish(run)
    return 1 if failed_sidecars and status == 0 else status
