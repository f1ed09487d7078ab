"""`ase-mllm`: build, critique, info, train, eval, learn.

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
    """A function (path, image) pairs -> personal scores with profile `name` (ProfileError, naming the fix, when it
    was learnt with another model). Features are cached beside `ase-mllm learn`'s, by the file's content."""
    from .personal import FeatureCache, content_hash, features_dir, load_profile, personal_score, photo_features

    profile = load_profile(name, model=critic.model_id)
    cache = FeatureCache(features_dir(), critic.model_id)

    def score(pending: list[tuple[str, object]]) -> list[float]:
        feats = photo_features(critic, [im for _, im in pending], cache=cache,
                               keys=[content_hash(path) for path, _ in pending])
        return [round(float(s), 3) for s in personal_score(profile, feats)]

    return score


def cmd_critique(args) -> int:
    from .critic import Critic
    from .imageio import ImageLoadError, load_image
    from .saliency import to_png

    critic = Critic.from_pretrained(args.model, device=args.device, tag_root=args.tag_root)
    personal = None
    if args.profile:
        from .personal import ProfileError

        try:
            personal = _personal_scorer(critic, args.profile)
        except ProfileError as e:  # no such profile, or learnt with another model: says to learn it again
            print(f"ase-mllm: {e}", file=sys.stderr)
            return 2
    sal_dir = Path(args.saliency_dir) if args.saliency_dir else None
    if sal_dir:
        sal_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    pending: list[tuple[str, object]] = []

    def flush():
        if not pending:
            return
        results = critic.critique([im for _, im in pending], max_new_tokens=args.max_new_tokens,
                                  names=[n for n, _ in pending])
        mine = personal(pending) if personal else [None] * len(results)
        for c, personal_score in zip(results, mine):
            record = c.to_dict()
            if personal_score is not None:
                record["personal_score"] = personal_score
            if sal_dir:
                path = sal_dir / (Path(c.image).name + ".saliency.png")
                path.write_bytes(to_png(c.saliency))
                record["saliency"] = str(path)
            if args.json:
                print(json.dumps(record, ensure_ascii=False), flush=True)
            else:
                print(f"== {c.image}  score {c.score:.1f}/10"
                      + (f"  personal {personal_score:.1f}/10" if personal_score is not None else ""))
                print(c.text)
                if c.tags:
                    print("tags: " + ", ".join(c.tags))
                print(flush=True)
        pending.clear()

    for name in args.images:
        try:
            pending.append((name, load_image(name)))
        except ImageLoadError as e:
            failures += 1
            if args.json:
                print(json.dumps({"image": name, "error": {"code": "bad_image", "message": str(e)}}), flush=True)
            else:
                print(f"ase-mllm: {e}", file=sys.stderr)
        if len(pending) >= args.batch_size:
            flush()
    flush()
    return 1 if failures else 0


# ---- info ----------------------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    from .critic import fingerprint
    from .flops import vision_flops
    from .modeling_ase import ASEForConditionalGeneration

    model_dir = Path(args.model)
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
    info = {
        "model": fingerprint(model_dir),
        "vision": f"{c.vision_config.model_type} {c.vision_config.num_hidden_layers}x{c.vision_config.hidden_size} "
                  f"@{c.vision_config.image_size}px/{c.vision_config.patch_size}",
        "llm": f"{c.text_config.model_type} {c.text_config.num_hidden_layers}x{c.text_config.hidden_size}, "
               f"vocab {c.text_config.vocab_size}",
        "fusion_layers": c.fusion_layers,
        "gates (tanh)": model.model.vision_tower.gates(),
        "parameters": {k: sum(p.numel() for p in v.parameters()) for k, v in parts.items()},
        "flops": {k: round(v, 4) for k, v in vision_flops(c).items()},
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:15s} {value}")
    return 0


def _delegate(module: str, argv: list[str]) -> int:
    import importlib

    return int(importlib.import_module(module).main(argv) or 0)


# commands handed to another module's main(argv) untouched (their own parsers and --help)
DELEGATED = {"train": "ase_model.training", "eval": "ase_model.evaluation", "learn": "ase_model.personal.cli"}


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

    c = sub.add_parser("critique", help="critique photos")
    c.add_argument("images", nargs="+", metavar="IMAGE")
    c.add_argument("--model", metavar="DIR", help="model folder (default: the built-in starter model)")
    c.add_argument("--json", action="store_true", help="one JSON line per image")
    c.add_argument("--saliency-dir", metavar="DIR", help="write each saliency map as DIR/<image name>.saliency.png")
    c.add_argument("--max-new-tokens", type=int, default=None)
    c.add_argument("--batch-size", type=int, default=4)
    c.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best there is)")
    c.add_argument("--tag-root", default="aesthetics")
    c.add_argument("--profile", metavar="NAME", help="also give a personal_score from this profile (ase-mllm learn)")
    c.set_defaults(func=cmd_critique)

    i = sub.add_parser("info", help="describe a model folder")
    i.add_argument("model", metavar="DIR")
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


__all__ = ["DELEGATED", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
