"""`ase-mllm cull DIR|FILES... [--json] [--apply] [--recursive]`: group bursts, pick the best of each, flag rejects.

It runs the model locally (as `ase-mllm critique` does) but shares the daemon's store: a photo whose critique the
daemon (or an earlier cull) stored under the same model fingerprint is not critiqued again, and every new critique
and culling measurement is stored, so re-culling a folder after adding photos only critiques the new ones. A photo
culled before needs no decoding at all. `--apply` writes each decision into the photo's XMP sidecar (xmp_cull.py).
`--profile NAME` ranks by a personal profile's score (daemon/personal.py computes it; docs/culling.md).

It lives in the daemon package because `--apply` needs the XMP writer and the store (ase_model never imports
ase_daemon); `ase-mllm cull` forwards here (mllm_cli.py). Exit codes: 0 the cull ran (unreadable files are reported
one by one and left out; an empty folder says so), 1 nothing could be read or a sidecar could not be written,
2 a usage error (a bad option, a file or folder that does not exist).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from . import contract as P

__all__ = ["build_parser", "main", "print_table"]

_MARK = {"pick": "PICK", "keep": "keep", "reject": "REJECT"}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"ase-mllm {P.OP_CULL}", description=__doc__.splitlines()[0].split(": ", 1)[1])
    ap.add_argument("targets", nargs="+", metavar="DIR|FILE", help="folders (their photo files) and photo files")
    ap.add_argument("--json", action="store_true", help="one JSON record per photo: path, group, decision, reason, ...")
    ap.add_argument("--apply", action="store_true", help="write the decisions into the photos' XMP sidecars")
    ap.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    ap.add_argument("--pick-rating", type=int, choices=range(1, 6), metavar="1..5",
                    help="with --apply: raise each pick to this many stars (default: the pick's rating is left)")
    ap.add_argument("--overwrite-rating", action="store_true",
                    help="with --apply: replace ratings you set yourself too (default: only empty, 0, or ours)")
    ap.add_argument("--model", metavar="DIR", help="model folder (default: the daemon's, else the starter model)")
    ap.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best there is)")
    ap.add_argument("--db", metavar="FILE", help="the store (default: the daemon's, from its config)")
    ap.add_argument("--no-store", action="store_true", help="keep nothing: critique every photo, store nothing")
    ap.add_argument("--config", metavar="FILE", help="the daemon's config file (model, store, critique length)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="critique length (default: the daemon's)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-gap", type=float, default=None, metavar="S",
                    help="longest pause inside a burst, seconds (default 5)")
    ap.add_argument("--min-similarity", type=float, default=None, metavar="X",
                    help="lowest descriptor similarity to join a group, 0..1 (default 0.80)")
    ap.add_argument("--profile", metavar="NAME",
                    help="rank by this personal profile's score (ase-mllm learn) instead of the critic's; the records "
                    "get personal_score")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return ap


def print_table(decisions, out=None) -> None:
    """The readable listing: one block per group, its pick first, then keeps and rejects, each with its reason.

    Args:
        decisions: CullDecision.to_dict() records (with "sidecar"/"rating" after --apply).
        out: where to print (default: stdout).
    """
    out = out or sys.stdout
    groups: dict[int, list[dict]] = defaultdict(list)
    for d in decisions:
        groups[d["group"]].append(d)
    width = max((len(Path(d["path"]).name) for d in decisions), default=10)
    for g in sorted(groups):
        members = sorted(groups[g], key=lambda d: (d["rank"], d["path"]))
        n = members[0]["group_size"]
        print(f"group {g + 1}: {n} frame{'s' if n != 1 else ''}", file=out)
        for d in members:
            rating = f"  [rating {d['rating']}]" if d.get("rating") else ""
            print(f"  {_MARK[d['decision']]:6s} {Path(d['path']).name:{width}s}  {d['reason']}{rating}", file=out)
    counts = {k: sum(d["decision"] == k for d in decisions) for k in _MARK}
    print(f"\n{len(decisions)} photos in {len(groups)} groups: {counts['pick']} picks, {counts['keep']} kept, "
          f"{counts['reject']} rejects", file=out)


def _critic_loader(args, cfg):
    """critic(): the local Critic, loaded on first use (a cull of known photos never loads it)."""
    holder = {}

    def critic():
        if "critic" not in holder:
            from ase_model.critic import Critic

            if not args.no_progress:
                print("ase-mllm cull: loading the model ...", file=sys.stderr)
            holder["critic"] = Critic.from_pretrained(args.model or cfg.model, device=args.device)
        return holder["critic"]

    return critic


def _local_critique(args, critic, store, model_id: str, mnt: int, personal=None):
    """critique(items) for CullSource with the local `critic()`; each critique is stored as the daemon stores its
    own (same key, same form), so the daemon answers these photos from the store. With `personal` (a profile's
    PersonalScores and name) the batch's personal features are computed from the same decoded photos and cached."""
    import hashlib

    def run(items):
        from ase_model.saliency import summary

        try:
            found = critic().critique([im for _, im, _ in items], max_new_tokens=mnt,
                                      names=[str(p) for p, _, _ in items])
        except Exception as e:  # one bad photo must not fail its batch: run each alone
            if len(items) > 1:
                return [run([item])[0] for item in items]
            return [ValueError(f"{items[0][0]}: the model failed on it ({type(e).__name__}: {e})")]
        if store is not None:
            for (_, _, data), c in zip(items, found):
                h = hashlib.sha256(data).hexdigest()
                result = P.CritiqueResult(text=c.text, attributes=c.attributes, score=c.score, tags=c.tags,
                                          saliency=summary(c.saliency), timings=c.timings, model=model_id, hash=h,
                                          cached=False)
                store.put_critique(h, model_id, mnt, result, P.encode_saliency(c.saliency))
        if personal is not None:
            scores, name = personal
            try:  # cached for personal_scores; a failure here is tried (and reported) once more there
                scores.compute(critic(), name, [im for _, im, _ in items],
                               [hashlib.sha256(data).hexdigest() for _, _, data in items])
            except Exception as e:
                print(f"ase-mllm cull: personal features: {type(e).__name__}: {e}", file=sys.stderr)
        return found

    return run


def _personal_compute(critic, scores, name: str, budget=None):
    """compute([(path, hash)]) for cull_run.personal_scores: decode each photo and run the image side once."""
    from ase_model.imageio import load_image

    from .cull_run import DECODE_SIDE, _read

    def compute(items):
        out: list = [None] * len(items)
        images, keys, idx = [], [], []
        for k, (path, h) in enumerate(items):
            try:
                images.append(load_image(_read(Path(path)), name=path, max_side=DECODE_SIDE, budget=budget))
                keys.append(h)
                idx.append(k)
            except (OSError, ValueError) as e:
                out[k] = e
        if images:
            try:
                got = scores.compute(critic(), name, images, keys)
            except Exception as e:  # e.g. the profile was relearnt meanwhile: these photos go by the critic's score
                got = [e] * len(images)
            for k, s in zip(idx, got):
                out[k] = s
        return out

    return compute


def _model_id(args, cfg) -> str:
    from ase_model.model_id import default_model_dir, fingerprint

    model_dir = Path(args.model or cfg.model or default_model_dir()).expanduser()
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir}: no model there (no config.json)")
    return fingerprint(model_dir)


def main(argv: list[str] | None = None) -> int:
    """Runs `ase-mllm cull`.

    Args:
        argv: the arguments after `cull` (default: sys.argv[1:]).
    """
    args = build_parser().parse_args(argv)
    from .config import ConfigError, load_config
    from .cull_run import CullSource, list_photos

    prog = f"ase-mllm {P.OP_CULL}"
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    files, missing = list_photos(args.targets, recursive=args.recursive)
    for message in missing.values():
        print(f"{prog}: {message}", file=sys.stderr)
    if missing:
        return 2
    if not files:
        where = ", ".join(args.targets)
        print(f"{prog}: no photos in {where}" + ("" if args.recursive else " (sub-folders need --recursive)"),
              file=sys.stderr)
        return 0
    try:
        model_id = _model_id(args, cfg)
    except (FileNotFoundError, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    mnt = args.max_new_tokens or cfg.limits.max_new_tokens
    store = None
    if not args.no_store:
        from .store import Store

        store = Store(Path(args.db).expanduser() if args.db else cfg.db_path)
    try:
        return _cull(args, cfg, files, store, model_id, mnt, prog, CullSource)
    finally:
        if store is not None:
            store.close()


def _cull(args, cfg, files, store, model_id, mnt, prog, CullSource) -> int:
    from tqdm import tqdm

    from ase_model.culling import CullConfig, GroupingConfig, cull

    critic = _critic_loader(args, cfg)
    personal = None
    if args.profile:
        from .errors import DaemonFault
        from .personal import PersonalScores

        personal = (PersonalScores(), args.profile)
        try:  # no such profile, a bad name, or learnt with another model (the message says to learn it again)
            personal[0].profile(args.profile, model_id)
        except DaemonFault as e:
            print(f"{prog}: {e}", file=sys.stderr)
            return 2
    source = CullSource(store, model_id, _local_critique(args, critic, store, model_id, mnt, personal),
                        max_new_tokens=mnt, batch_size=args.batch_size)
    errors: dict[str, str] = {}
    with tqdm(total=len(files), desc="culling", unit="photo", file=sys.stderr,
              disable=True if args.no_progress else None) as bar:
        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        feats = source.features(files, progress=progress, errors=errors)
    for message in errors.values():
        print(f"{prog}: {message}", file=sys.stderr)
    grouping = GroupingConfig()
    if args.max_gap is not None:
        grouping.max_gap_s = args.max_gap
    if args.min_similarity is not None:
        grouping.min_similarity = args.min_similarity
    mine = None
    if personal is not None:
        from .cull_run import personal_scores

        scores, name = personal
        unscored: dict[str, str] = {}  # culled all the same, by the critic's score (their group too)
        mine = personal_scores(feats, source.hashes, lambda h: scores.from_cache(name, model_id, h),
                               _personal_compute(critic, scores, name), unscored)
        for message in unscored.values():
            print(f"{prog}: {message}", file=sys.stderr)
    decisions = [d.to_dict() for d in cull(feats, CullConfig(grouping=grouping), personal=mine)]
    failed = 0
    if args.apply and decisions:
        from .xmp_cull import CullSidecarOptions, apply_decisions

        options = CullSidecarOptions(pick_rating=args.pick_rating, overwrite_rating=args.overwrite_rating)
        sidecar_errors: dict[str, str] = {}
        failed = apply_decisions(decisions, options, sidecar_errors)
        for message in sidecar_errors.values():
            print(f"{prog}: {message}", file=sys.stderr)
    if args.json:
        for d in decisions:
            print(json.dumps(d, ensure_ascii=False))
        for path, message in errors.items():
            print(json.dumps({"path": path, "error": {"code": P.BAD_IMAGE, "message": message}}, ensure_ascii=False))
    elif decisions:
        print_table(decisions)
    c = source.counts
    print(f"{prog}: {len(decisions)} culled, {len(errors)} unreadable; {c['known']} known to the store, "
          f"{c['from_critique']} from stored critiques, {c['critiqued']} critiqued now", file=sys.stderr)
    if len(files) == 1 and decisions:
        print(f"{prog}: one photo is a group of its own: nothing to compare it with", file=sys.stderr)
    return 1 if failed or not decisions else 0


if __name__ == "__main__":
    sys.exit(main())
