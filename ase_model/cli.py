"""`ase-mllm`: build, critique (photos and folders), info, train, eval, learn.

The installed `ase-mllm` script is ase_daemon.mllm_cli, which adds `demo` (it drives the daemon, so it lives
there: ase_model never imports ase_daemon). Nothing here imports torch until a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _quiet_transformers():
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def _layers(text: str | None):
    return None if not text else [int(x) for x in text.split(",") if x.strip()]


# ---- build ---------------------------------------------------------------------------------------------------
def cmd_build(args) -> int:
    from . import register_auto_classes

    register_auto_classes()
    from .modeling_ase import ASEForConditionalGeneration
    from .processing_ase import ASEProcessor, make_image_processor, num_image_tokens

    out = Path(args.out)
    if args.tiny:
        from .testing import build_tiny

        build_tiny(out, vision=args.tiny_vision, llm=args.tiny_llm, seed=args.seed)
        print(f"built a tiny random ASE-MLLM in {out}")
        return 0
    if args.from_llava:
        from transformers import AutoProcessor

        model = ASEForConditionalGeneration.from_llava(args.from_llava, fusion_layers=_layers(args.fusion_layers))
        src_proc = AutoProcessor.from_pretrained(args.from_llava)
        tokenizer, src_images = src_proc.tokenizer, src_proc.image_processor
    elif args.vision and args.llm:
        from transformers import AutoImageProcessor, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.llm)
        src_images = AutoImageProcessor.from_pretrained(args.vision)
        model = ASEForConditionalGeneration.from_parts(args.vision, args.llm, tokenizer=tokenizer,
                                                       fusion_layers=_layers(args.fusion_layers))
    else:
        print("ase-mllm build: give --from-llava SRC, or --vision V and --llm L, or --tiny", file=sys.stderr)
        return 2
    vc = model.config.vision_config
    processor = ASEProcessor(
        image_processor=make_image_processor(vc.image_size, src_images.image_mean, src_images.image_std),
        tokenizer=tokenizer,
        num_image_tokens=num_image_tokens(model.config),
        use_saliency_prior=model.config.iasm_use_prior,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    print(f"built ASE-MLLM in {out} (fusion after vision layers {model.config.fusion_layers})")
    return 0


# ---- critique ------------------------------------------------------------------------------------------------
def _personal_scorer(critic, name: str):
    """A function (content hash, image) pairs -> personal scores with profile `name` (ProfileError, naming the fix,
    when it was learnt with another model). Features are cached beside `ase-mllm learn`'s, by the file's content
    (its sha256, `personal.content_hash`: the callers hold the bytes already, the file is not read again)."""
    from .personal import FeatureCache, features_dir, load_profile, personal_score, photo_features

    profile = load_profile(name, model=critic.model_id)
    cache = FeatureCache(features_dir(), critic.model_id)

    def score(pending: list[tuple[str, object]]) -> list[float]:
        feats = photo_features(critic, [im for _, im in pending], cache=cache, keys=[key for key, _ in pending])
        return [round(float(s), 3) for s in personal_score(profile, feats)]

    return score


def _progress_bar(args, total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="critiquing", unit="photo", file=sys.stderr,
                disable=True if getattr(args, "no_progress", False) else None)


def critique_targets(args, prog: str = "ase-mllm critique", lookup=None, on_new=None, on_record=None,
                     extra_formats=None) -> int:
    """`ase-mllm critique` over files and folders (ase_model.folders, ase_model.folder_critique): RAW+JPEG pairs
    once (the JPEG is critiqued), a progress bar, results as they come, a ranked summary, Ctrl-C keeps what is done.

    Args:
        args: the parsed `critique` arguments.
        prog: the name messages start with.
        lookup: lookup(frame, data) -> a stored record or None (the installed ase-mllm's store: resume).
        on_new: on_new(frame, data, critique, record) after each new critique (to store it).
        on_record: on_record(record) before each record is printed (to write its sidecar).
        extra_formats: more --format choices, {name: record -> text}.

    Returns the exit status: 0, 1 when a photo failed, 2 on a usage error, 130 when interrupted.
    """
    from .critic import Critic
    from .folder_critique import RecordWriter, critique_frames
    from .folders import list_photos, pair_frames
    from .saliency import to_png

    fmt = "jsonl" if args.json else args.format
    files, missing = list_photos(args.images, recursive=args.recursive)
    frames = pair_frames(files, master="jpeg")
    if not frames and not missing:
        print(f"{prog}: no photos in {', '.join(args.images)}"
              + ("" if args.recursive else " (sub-folders need --recursive)"), file=sys.stderr)
        return 0
    writer = RecordWriter(fmt, prog, extra=extra_formats, summary=len(frames) + len(missing) > 1)
    loaded = {}

    def critic():  # loaded on first use: a rerun whose photos are all stored needs no model
        if "critic" not in loaded:
            loaded["critic"] = Critic.from_pretrained(args.model, device=args.device, tag_root=args.tag_root)
        return loaded["critic"]

    personal = None
    if args.profile:
        from .personal import ProfileError, content_hash

        try:
            personal = _personal_scorer(critic(), args.profile)
        except ProfileError as e:  # no such profile, or learnt with another model: says to learn it again
            print(f"ase-mllm: {e}", file=sys.stderr)
            return 2
    sal_dir = Path(args.saliency_dir) if args.saliency_dir else None
    if sal_dir:
        sal_dir.mkdir(parents=True, exist_ok=True)

    def critique(items):
        results = critic().critique([im for _, _, im in items], max_new_tokens=args.max_new_tokens,
                                  names=[str(f.master) for f, _, _ in items])
        mine = personal([(content_hash(data), im) for _, data, im in items]) if personal else [None] * len(results)
        out = []
        for (frame, data, _), c, personal_score in zip(items, results, mine):
            record = c.to_dict()
            if on_new is not None:
                on_new(frame, data, c, record)
            if personal_score is not None:
                record["personal_score"] = personal_score
            if sal_dir:
                path = sal_dir / (frame.master.name + ".saliency.png")
                path.write_bytes(to_png(c.saliency))
                record["saliency"] = str(path)
            out.append(record)
        return out

    def stored(frame, data):
        record = lookup(frame, data) if lookup is not None else None
        if record is not None and personal is not None:  # its features are cached by content: no model run
            from .imageio import load_image

            image = load_image(data, name=str(frame.master))
            record["personal_score"] = personal([(content_hash(data), image)])[0]
        return record

    def emit(record):
        if on_record is not None and "error" not in record:
            on_record(record)
        with bar.external_write_mode(file=sys.stdout):
            writer.write(record)

    with _progress_bar(args, len(frames)) as bar:
        gone = [{"image": t, "error": {"code": "not_found", "message": m}} for t, m in missing.items()]
        for record in gone:
            emit(record)
        run = critique_frames(frames, critique, batch_size=args.batch_size, lookup=stored if lookup else None,
                              on_record=emit, progress=bar.update)
    run.records[:0] = gone
    run.total += len(gone)
    run.counts["failed"] += len(gone)
    return writer.finish(run)


def cmd_critique(args) -> int:
    return critique_targets(args)


# ---- info ----------------------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    """What the model is first (name, version, size, sources, quality table from its card), its internals after."""
    from .model_card import describe, format_card
    from .model_id import default_model_dir

    model_dir = Path(args.model).expanduser() if args.model else default_model_dir()
    card = describe(model_dir)  # FileNotFoundError (no config.json) is reported by main
    from .flops import vision_flops
    from .modeling_ase import ASEForConditionalGeneration

    model = ASEForConditionalGeneration.from_pretrained(model_dir)
    c = model.config
    parts = {
        "vision tower": model.model.vision_tower.vision_model,
        "IASM": model.model.vision_tower.iasm,
        "fusion blocks": model.model.vision_tower.fusion,
        "projector": model.model.multi_modal_projector,
        "language model": model.model.language_model,
        "score head": model.model.score_head,
    }
    internals = {
        "model": card["fingerprint"],
        "vision": f"{c.vision_config.model_type} {c.vision_config.num_hidden_layers}x{c.vision_config.hidden_size} "
                  f"@{c.vision_config.image_size}px/{c.vision_config.patch_size}",
        "llm": f"{c.text_config.model_type} {c.text_config.num_hidden_layers}x{c.text_config.hidden_size}, "
               f"vocab {c.text_config.vocab_size}",
        "fusion_layers": c.fusion_layers,
        "gates (tanh)": model.model.vision_tower.gates(),
        "parameters": {k: sum(p.numel() for p in v.parameters()) for k, v in parts.items()},
        "flops": {k: round(v, 4) for k, v in vision_flops(c).items()},
    }
    if args.json:  # the card's keys first; the internals keep their old top-level keys
        print(json.dumps({**card, **internals}, indent=2, ensure_ascii=False))
    else:
        print(format_card(card), end="")
        print("\ninternals:")
        for key, value in internals.items():
            print(f"{key:15s} {value}")
    return 0


def _delegate(module: str, argv: list[str]) -> int:
    import importlib

    return int(importlib.import_module(module).main(argv) or 0)


# commands handed to another module's main(argv) untouched (their own parsers and --help)
DELEGATED = {"train": "ase_model.training", "eval": "ase_model.evaluation", "learn": "ase_model.personal.cli"}


def add_critique_arguments(c: argparse.ArgumentParser, formats=None) -> None:
    """The `critique` arguments (the installed ase-mllm's front adds its own to the same parser).

    Args:
        c: the subparser.
        formats: the --format choices (default: ase_model.folder_critique.FORMATS).
    """
    from .folder_critique import FORMATS

    c.add_argument("images", nargs="+", metavar="IMAGE|DIR", help="photos, and folders whose photos are taken")
    c.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    c.add_argument("--format", choices=formats or FORMATS, default="text",
                   help="text (default; a ranked summary at the end), json or jsonl (one JSON object a line), "
                   "csv" + (", lines (the darktable plugin's)" if formats and "lines" in formats else ""))
    c.add_argument("--json", action="store_true", help="the same as --format jsonl")
    c.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    c.add_argument("--model", metavar="DIR", help="model folder (default: the built-in starter model)")
    c.add_argument("--saliency-dir", metavar="DIR", help="write each saliency map as DIR/<image name>.saliency.png")
    c.add_argument("--max-new-tokens", type=int, default=None)
    c.add_argument("--batch-size", type=int, default=4)
    c.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best there is)")
    c.add_argument("--tag-root", default="aesthetics")
    c.add_argument("--profile", metavar="NAME", help="also give a personal_score from this profile (ase-mllm learn)")


def build_parser() -> argparse.ArgumentParser:
    """The `ase-mllm` parser (build, critique, info; train, eval and learn are listed and delegated)."""
    p = argparse.ArgumentParser(prog="ase-mllm",
                                description="ASE-MLLM aesthetic critic: build, critique, train, evaluate, learn")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build an ASE-MLLM from a LLaVA checkpoint or from a vision model + an LLM")
    b.add_argument("--from-llava", metavar="SRC", help="LLaVA-1.5-family folder or hub id")
    b.add_argument("--vision", metavar="V", help="CLIP/SigLIP checkpoint (with --llm)")
    b.add_argument("--llm", metavar="L", help="causal LM checkpoint (with --vision)")
    b.add_argument("--tiny", action="store_true", help="a tiny random model, for trying the pipeline")
    b.add_argument("--tiny-vision", default="clip", choices=["clip", "siglip"])
    b.add_argument("--tiny-llm", default="llama", choices=["llama", "qwen2", "mistral"])
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--fusion-layers", metavar="I,J,…", help="vision layers followed by a fusion block")
    b.add_argument("--out", required=True, metavar="DIR")
    b.set_defaults(func=cmd_build)

    c = sub.add_parser("critique", help="critique photos and folders of photos",
                       description="Critique photos and folders (docs/folders.md): RAW+JPEG pairs once, a progress "
                       "bar, results as they come and a ranked summary at the end; Ctrl-C keeps what is done.")
    add_critique_arguments(c)
    c.set_defaults(func=cmd_critique)

    i = sub.add_parser("info", help="describe a model: what it is, its quality, where it came from, its internals")
    i.add_argument("model", metavar="DIR", nargs="?", help="model folder (default: the model in use: $ASE_MODEL or "
                   "the built-in starter model)")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)
    for name, text in (
        ("train", "train (stages saliency, align, finetune); also under accelerate launch"),
        ("eval", "evaluate on a captioning benchmark"),
        ("learn", "learn your taste from your ratings into a personal profile (critique --profile NAME)"),
    ):
        sub.add_parser(name, help=text, add_help=False)
    return p


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None,
         delegated: dict[str, str] | None = None) -> int:
    """Runs `ase-mllm`.

    Args:
        argv: the arguments (default: sys.argv[1:]).
        parser: the parser to use (default: build_parser()); a front may add subcommands to it.
        delegated: subcommand -> module whose main(argv) runs it (default: DELEGATED).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    delegated = DELEGATED if delegated is None else delegated
    if argv and argv[0] in delegated:
        _quiet_transformers()
        return _delegate(delegated[argv[0]], argv[1:])
    args = (parser or build_parser()).parse_args(argv)
    _quiet_transformers()
    try:
        return args.func(args)
    except FileNotFoundError as e:
        print(f"ase-mllm: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while the model loads (a run in progress handles its own)
        return 130


__all__ = ["DELEGATED", "add_critique_arguments", "build_parser", "critique_targets", "main"]


if __name__ == "__main__":
    sys.exit(main())
