"""Tiny, real ASE-MLLM models built from configs, for tests and benchmarks (no downloads).

`build_tiny(out_dir)` writes a complete model folder (config, safetensors weights, tokenizer, image processor,
processor config) that `ASEForConditionalGeneration.from_pretrained`, `ASEProcessor.from_pretrained` and
`Critic.from_pretrained` load through the same code paths as a real checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

TINY_CORPUS = [
    "Composition: The subject sits on a third line and the frame feels balanced.",
    "Colour and lighting: Colours are muted and a cool cast tints the scene.",
    "Exposure: The photo is underexposed, with deep shadows hiding detail.",
    "Focus: The image is sharp and detail is crisp throughout.",
    "Overall: A pleasing photograph with good light and a clear subject.",
    "Critique this photograph: composition, colour and lighting, exposure, focus, subject, depth of field "
    "and your overall impression.",
    "USER: ASSISTANT: the a an is are and with of in on to",
]
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]

VISION = {
    "clip": dict(model_type="clip_vision_model", projection_dim=16),
    "siglip": dict(model_type="siglip_vision_model"),
}
LLM = {
    "llama": dict(model_type="llama"),
    "qwen2": dict(model_type="qwen2"),
    "mistral": dict(model_type="mistral", sliding_window=None),
}


def train_tokenizer(corpus=TINY_CORPUS, vocab_size: int = 320):
    """A small byte-level BPE tokenizer trained on `corpus`, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )


def tiny_config(vision: str = "clip", llm: str = "llama", image_size: int = 32, patch_size: int = 8, hidden: int = 32,
                vocab_size: int = 320, image_token_index: int = 4, layers: int = 2, **ase_kwargs):
    from .configuration_ase import ASEConfig
    from .processing_ase import num_image_tokens

    vision_config = dict(
        VISION[vision], hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers + 1,
        num_attention_heads=2, image_size=image_size, patch_size=patch_size,
    )
    text_config = dict(
        LLM[llm], hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=2,
        num_key_value_heads=1, vocab_size=vocab_size, max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
        pad_token_id=0, tie_word_embeddings=False,
    )
    strategy = "default" if vision == "clip" else "full"
    ase_kwargs.setdefault("iasm_channels", [8, 16, 16])
    ase_kwargs.setdefault("iasm_num_tokens", 4)
    ase_kwargs.setdefault("score_head_hidden", 16)
    config = ASEConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=image_token_index,
        vision_feature_layer=-2,
        vision_feature_select_strategy=strategy,
        **ase_kwargs,
    )
    config.image_seq_length = num_image_tokens(config)
    return config


def build_processor(config, tokenizer=None, **kwargs):
    from .processing_ase import ASEProcessor, make_image_processor, num_image_tokens

    tokenizer = tokenizer or train_tokenizer(vocab_size=config.text_config.vocab_size)
    vc = config.vision_config
    return ASEProcessor(
        image_processor=make_image_processor(vc.image_size, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD),
        tokenizer=tokenizer,
        num_image_tokens=num_image_tokens(config),
        use_saliency_prior=config.iasm_use_prior,
        **kwargs,
    )


def build_tiny(out_dir, vision: str = "clip", llm: str = "llama", seed: int = 0, open_gates: float | None = None,
               **config_kwargs) -> Path:
    """Write a tiny random-weight ASE-MLLM model folder and return its path.

    open_gates: set every fusion gate to this value (0 keeps the model equal to its LLaVA base).
    """
    from .modeling_ase import ASEForConditionalGeneration

    out = Path(out_dir)
    torch.manual_seed(seed)
    config = tiny_config(vision, llm, **config_kwargs)
    model = ASEForConditionalGeneration(config).eval()
    if open_gates is not None:
        with torch.no_grad():
            for block in model.model.vision_tower.fusion.values():
                block.gate.fill_(open_gates)
    processor = build_processor(config)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# ---- a tiny captioning set: 8 real photo crops, each with its own critique (trainer/evaluation tests) -------
TINY_CRITIQUES = [
    "Composition: The subject sits on a third line and the frame feels balanced.",
    "Colour and lighting: Colours are muted and a cool cast tints the scene.",
    "Exposure: The photo is underexposed, with deep shadows hiding detail.",
    "Focus: The image is sharp and detail is crisp throughout.",
    "Overall: A pleasing photograph with good light and a clear subject.",
    "Subject: The cat stares at the lens and fills the frame.",
    "Depth of field: A shallow focus isolates the cup from the table.",
    "Composition: A strong diagonal leads the eye to the rocket.",
]
TINY_PROMPT = "Critique."


def write_caption_set(root: Path, with_saliency: bool = False) -> Path:
    """8 real photo crops at 40x32 (not square: exercises the padding), each with its own critique and score;
    optionally a JSONL `saliency` pseudo-label PNG for half of them (as the starter dataset writes)."""
    import skimage.data as data

    from ase_model.saliency import spectral_residual, to_png

    (root / "images").mkdir(parents=True, exist_ok=True)
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    with open(root / "train.jsonl", "w") as f:
        for i, critique in enumerate(TINY_CRITIQUES):
            a = sources[i % 4]
            h, w = a.shape[:2]
            crop = a[: h // 2, : w // 2] if i < 4 else a[h // 2:, w // 2:]
            im = Image.fromarray(crop).resize((40, 32))
            im.save(root / "images" / f"{i}.png")
            rec = {"id": str(i), "image": f"images/{i}.png", "critique": critique, "score": float(i + 1)}
            if with_saliency and i % 2 == 0:
                (root / "saliency").mkdir(exist_ok=True)
                (root / "saliency" / f"{i}.png").write_bytes(to_png(spectral_residual(im)))
                rec["saliency"] = f"saliency/{i}.png"
            f.write(json.dumps(rec) + "\n")
    return root


def build_caption_model(out: Path, hidden: int = 32, seed: int = 0) -> Path:
    """A tiny CLIP+Llama ASE-MLLM whose tokenizer knows the critiques (short sequences) and a short prompt."""
    from ase_model.modeling_ase import ASEForConditionalGeneration
    from ase_model.testing import build_processor, tiny_config, train_tokenizer

    tokenizer = train_tokenizer(TINY_CRITIQUES + [TINY_PROMPT, "USER: ASSISTANT:"], vocab_size=512)
    torch.manual_seed(seed)
    config = tiny_config(hidden=hidden, vocab_size=512)
    model = ASEForConditionalGeneration(config)
    processor = build_processor(config, tokenizer=tokenizer, prompt=TINY_PROMPT)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
