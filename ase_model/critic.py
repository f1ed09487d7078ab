"""The Critic: the API the daemon, the CLI and scripts use to critique photos with an ASE-MLLM.

    critic = Critic.from_pretrained()                  # the built-in starter model
    [c] = critic.critique(["IMG_0001.jpg"])
    c.text, c.attributes, c.score, c.tags, c.saliency  # saliency: float32 (h, w) in [0, 1], photo's aspect

One batched pass serves many images: IAS-ViT, projector and score head run once for the batch, then greedy
decoding (left-padded, so a batched critique equals one-by-one critiques). On CUDA the decoder uses a static
KV cache, which transformers compiles (CUDA graphs); `warmup()` pays that cost up front. By default (`engine=True`)
greedy decoding runs through ase_model.engine's DecodeEngine instead (the same tokens; docs/engine.md); a model
the engine cannot decode exactly keeps `generate`, with the reason logged. `prepare` (load + the image side for a
group) and `finish` (text, repair, tags, saliency from one image's tokens) split a critique around its decoding:
the daemon's streaming worker decodes each image as its own engine request between them.

A model with an attribute head (the starter model) has its verdicts checked against its words: the decoded
text is read back sentence by sentence (ase_model.starter.checker) and every sentence that contradicts the
head's verdicts or the score is replaced, garbled ones dropped, missing verdicts stated; the head's verdict
wins. `text`, `attributes` and `tags` are the repaired critique's; streamed tokens are the decoder's own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .attributes import parse_critique
from .critic_stream import BatchStreamer, StreamCallback
from .imageio import load_image
from .model_id import default_model_dir, fingerprint  # noqa: F401  (torch-free; re-exported here)
from .modeling_ase import ASEForConditionalGeneration
from .processing_ase import ASEProcessor, pad_box

__all__ = ["Critic", "Critique", "Prepared", "DEFAULT_MAX_NEW_TOKENS", "crop_saliency", "pick_device", "pick_dtype",
           "fingerprint", "default_model_dir", "StreamCallback"]

DEFAULT_MAX_NEW_TOKENS = 160
log = logging.getLogger("ase_model.critic")
# transformers' loading patches process-wide state while it builds a model (parameters created on the meta
# device); two threads loading at once (one worker per device) can leave it patched for every later model.
_LOAD_LOCK = threading.Lock()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in (None, "auto"):
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@dataclass
class Critique:
    text: str
    attributes: dict[str, str]
    score: float
    tags: list[str]
    saliency: np.ndarray  # float32 (h, w) in [0, 1], the photo's aspect ratio
    model: str
    image: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # With an attribute head: its verdicts, the decoder's own text and how many sentences the repair replaced,
    # dropped and added (not part of to_dict(): the daemon's results keep their form).
    verdicts: dict[str, str] | None = None
    raw_text: str | None = None
    repairs: dict[str, int] | None = None

    def to_dict(self, saliency: bool = False) -> dict:
        out = {
            "image": self.image,
            "text": self.text,
            "attributes": self.attributes,
            "score": round(self.score, 3),
            "tags": self.tags,
            "model": self.model,
            "timings": self.timings,
        }
        if saliency:
            out["saliency"] = self.saliency.tolist()
        return out


@dataclass
class Prepared:
    """One image after the model's image side, ready for decoding (`Critic.prepare`) and finishing
    (`Critic.finish`).

    Args:
        name: the image's name (reported with its critique).
        size: the decoded photo's (width, height).
        input_ids: 1-D prompt ids without padding (image tokens included), on the model's device.
        image_features: [1, n, hidden] image features for the prompt's image tokens.
        score: the score head's score.
        saliency: the model's saliency map over the padded square (float32, uncropped).
        verdicts: the attribute head's verdicts (None without a head).
        timings: load_ms, vision_ms and batch (the group the image side ran in).
    """

    name: str | None
    size: tuple[int, int]
    input_ids: torch.Tensor
    image_features: torch.Tensor
    score: float
    saliency: np.ndarray
    verdicts: dict[str, str] | None
    timings: dict[str, float] = field(default_factory=dict)


class Critic:
    """Critiques photos with an ASE-MLLM (module docstring).

    Args:
        model: the ASE-MLLM.
        processor: its processor.
        model_id: the model's fingerprint (reported with every critique).
        tag_root: the root of the suggested tags.
        static_cache: `generate` with a static KV cache (default: on CUDA only).
        repair: make the text agree with the attribute head's verdicts (when the model has one).
        engine: decode through ase_model.engine's DecodeEngine instead of `generate` (default; greedy,
            Llama-style decoders); anything it cannot decode exactly falls back to `generate` with the reason
            logged. False: always `generate`.
        engine_slots: the engine's slots (requests decoded at once).
    """

    def __init__(self, model: ASEForConditionalGeneration, processor: ASEProcessor, model_id: str,
                 tag_root: str = "aesthetics", static_cache: bool | None = None, repair: bool = True,
                 engine: bool = True, engine_slots: int = 8):
        self.model = model.eval()
        self.repair = repair  # make the text agree with the attribute head's verdicts (when the model has one)
        self.processor = processor
        self.model_id = model_id
        self.tag_root = tag_root
        self.device = model.device
        self.dtype = model.dtype
        # A static cache lets transformers compile the decode step (CUDA graphs); on CPU it only costs.
        self.static_cache = self.device.type == "cuda" if static_cache is None else static_cache
        self._lock = threading.Lock()  # one forward at a time: generate() is not re-entrant
        processor.tokenizer.padding_side = "left"
        self.engine = None  # an EngineDecoder when decoding goes through the decode engine
        self.engine_fallback: str | None = None  # why engine=True still uses generate
        if engine:
            from .engine.greedy import EngineDecoder, engine_unsupported

            self.engine_fallback = engine_unsupported(self.model)
            if self.engine_fallback:
                log.warning("decode engine not used, falling back to generate: %s", self.engine_fallback)
            else:
                self.engine = EngineDecoder(self.model, processor.tokenizer.eos_token_id, slots=engine_slots,
                                            reserve_new_tokens=DEFAULT_MAX_NEW_TOKENS)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, device=None, dtype=None,
                        tag_root: str = "aesthetics", static_cache: bool | None = None,
                        repair: bool = True, engine: bool = True, engine_slots: int = 8) -> Critic:
        """Load a model folder (default: the built-in starter model); the other Args are the constructor's."""
        model_dir = Path(path) if path is not None else default_model_dir()
        if not (model_dir / "config.json").exists():
            raise FileNotFoundError(
                f"no ASE-MLLM model at {model_dir} (config.json missing); build one with `ase-mllm build` or "
                "train the starter model (docs/starter-model.md)"
            )
        dev = pick_device(device)
        with _LOAD_LOCK:
            model = ASEForConditionalGeneration.from_pretrained(model_dir, dtype=pick_dtype(dev, dtype)).to(dev)
            processor = ASEProcessor.from_pretrained(model_dir)
        return cls(model, processor, fingerprint(model_dir), tag_root=tag_root, static_cache=static_cache,
                   repair=repair, engine=engine, engine_slots=engine_slots)

    # ---- the API ------------------------------------------------------------------------------------------
    def load(self, source) -> Image.Image:
        return source if isinstance(source, Image.Image) else load_image(source)

    @torch.inference_mode()
    def critique(self, images: Sequence, max_new_tokens: int | None = None, stream: StreamCallback | None = None,
                 prompt: str | None = None, names: Sequence[str | None] | None = None) -> list[Critique]:
        """Critique one or many images (paths, bytes or PIL images) in one batched pass: `prepare`, greedy
        decoding of the whole group, `finish` per image.

        Args:
            images: paths, bytes or PIL images.
            max_new_tokens: stop each critique after this many tokens (default DEFAULT_MAX_NEW_TOKENS).
            stream: called with (index in `images`, new text) as tokens arrive.
            prompt: the instruction (default: the processor's).
            names: the images' names (default: the paths' strings).
        """
        t0 = time.perf_counter()
        with self._lock:
            inputs, image_out, prepared = self._prepare_batch(images, names, prompt, t0)
            t_vision = time.perf_counter()
            n_new = max_new_tokens or DEFAULT_MAX_NEW_TOKENS
            if self.engine is not None:
                new_tokens = self._engine_decode(inputs, image_out, n_new, stream, len(prepared))
            else:
                new_tokens = self._generate(inputs, image_out, n_new, stream, len(prepared))
            t_gen = time.perf_counter()
        pad = self.processor.tokenizer.pad_token_id
        first = prepared[0].timings if prepared else {}
        timings = {  # one dict for the group, as before the split
            "load_ms": first.get("load_ms", 0.0),
            "vision_ms": first.get("vision_ms", 0.0),
            "generate_ms": round(1000 * (t_gen - t_vision), 2),
            "total_ms": round(1000 * (time.perf_counter() - t0), 2),
            "batch": len(prepared),
            "new_tokens": sum(sum(t != pad for t in row) for row in new_tokens),
        }
        return [self.finish(p, tokens, timings=timings) for p, tokens in zip(prepared, new_tokens)]

    @torch.inference_mode()
    def prepare(self, images: Sequence, names: Sequence[str | None] | None = None,
                prompt: str | None = None) -> list[Prepared]:
        """Load the images and run the model's image side ONCE for the group; each image's prompt and features
        then decode on their own (the daemon's streaming worker feeds them to a DecodeEngine).

        Args:
            images: paths, bytes or PIL images.
            names: the images' names (default: the paths' strings).
            prompt: the instruction (default: the processor's).
        """
        with self._lock:
            return self._prepare_batch(images, names, prompt, time.perf_counter())[2]

    def _prepare_batch(self, images: Sequence, names, prompt: str | None, t0: float):
        """(processor inputs, image-side output, one Prepared per image); the caller holds the lock."""
        pil = [self.load(im) for im in images]
        if names is None:
            names = [str(im) if isinstance(im, (str, os.PathLike)) else None for im in images]
        t_load = time.perf_counter()
        text_prompt = self.processor.build_prompt(prompt)
        inputs = self.processor(images=pil, text=[text_prompt] * len(pil)).to(self.device)
        t_prep = time.perf_counter()
        image_out = self.model.get_image_features(inputs["pixel_values"].to(self.dtype), inputs.get("saliency_prior"))
        t_vision = time.perf_counter()
        timings = {"load_ms": round(1000 * (t_load - t0), 2), "vision_ms": round(1000 * (t_vision - t_prep), 2),
                   "batch": len(pil)}
        saliency = image_out.saliency.float().cpu().numpy()
        scores = image_out.score.float().cpu().tolist()
        head = self.model.model.attribute_head
        verdicts = [None] * len(pil)
        if head is not None and image_out.attribute_logits is not None:
            verdicts = head.predict(image_out.attribute_logits.float())
        mask = inputs["attention_mask"].bool()
        prepared = [
            Prepared(name=name, size=im.size, input_ids=inputs["input_ids"][i][mask[i]],
                     image_features=image_out.image_features[i:i + 1], score=float(scores[i]), saliency=saliency[i],
                     verdicts=verdicts[i], timings=dict(timings))
            for i, (im, name) in enumerate(zip(pil, names))
        ]
        return inputs, image_out, prepared

    def finish(self, prepared: Prepared, token_ids: Sequence[int], timings: dict | None = None) -> Critique:
        """The critique of a prepared image from its new token ids: text, repair, attributes, tags, saliency.

        Args:
            prepared: the image's `prepare` output.
            token_ids: its new tokens (the stop token and any padding after it are skipped).
            timings: the critique's timings (default: the image's own, with new_tokens).
        """
        from .tags import suggest_tags

        raw = self.processor.decode(list(token_ids), skip_special_tokens=True).strip()
        if timings is None:
            pad = self.processor.tokenizer.pad_token_id
            timings = dict(prepared.timings, new_tokens=sum(t != pad for t in token_ids))
        v = prepared.verdicts
        text, repairs = raw, None
        if v is not None and self.repair:
            text, repairs = self._repair(raw, v, prepared.score)
        return Critique(
            text=text,
            attributes=parse_critique(text),
            score=prepared.score,
            tags=suggest_tags(text, root=self.tag_root),
            saliency=crop_saliency(prepared.saliency, prepared.size),
            model=self.model_id,
            image=prepared.name,
            timings=timings,
            verdicts=v,
            raw_text=raw if v is not None else None,
            repairs=repairs,
        )

    def _generate(self, inputs, image_out, max_new_tokens: int, stream: StreamCallback | None,
                  batch: int) -> list[list[int]]:
        """New token ids per image from transformers' greedy `generate` (left-padded batch)."""
        gen_kwargs = dict(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            mm_encoder_outputs={"image": image_out},
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.processor.tokenizer.pad_token_id,
            eos_token_id=self.processor.tokenizer.eos_token_id,
        )
        if self.static_cache:
            gen_kwargs["cache_implementation"] = "static"
        if stream is not None:
            gen_kwargs["streamer"] = BatchStreamer(self.processor.tokenizer, batch, stream)
        out = self.model.generate(**gen_kwargs)
        return out[:, inputs["input_ids"].shape[1]:].tolist()

    def _engine_decode(self, inputs, image_out, max_new_tokens: int, stream: StreamCallback | None,
                       batch: int) -> list[list[int]]:
        """New token ids per image from the decode engine (the same tokens as `_generate`)."""
        streamer = BatchStreamer(self.processor.tokenizer, batch, stream) if stream is not None else None
        tokens = self.engine.decode(inputs["input_ids"], inputs["attention_mask"], image_out.image_features,
                                    max_new_tokens, stream=None if streamer is None else streamer.token)
        if streamer is not None:
            streamer.end()
        return tokens

    @staticmethod
    def _repair(text: str, verdicts: dict[str, str], score: float) -> tuple[str, dict[str, int]]:
        """The text made to agree with the head's verdicts and the score (wording seeded by the text itself, so
        the same critique always gets the same repair)."""
        from .starter.checker import repair

        fixed, report = repair(text, verdicts, score, seed=zlib.crc32(text.encode("utf-8")))
        return fixed, report.changes()

    def warmup(self, batch_sizes: Sequence[int] = (1,), max_new_tokens: int | None = None) -> float:
        """Run dummy critiques so that compilation and allocator growth happen before the first user request."""
        t0 = time.perf_counter()
        size = self.processor.image_size()
        rng = np.random.default_rng(0)
        for n in batch_sizes:
            dummy = [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]
            self.critique(dummy, max_new_tokens=max_new_tokens)
        return time.perf_counter() - t0

    def info(self) -> dict:
        return {
            "model": self.model_id,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "gates": self.model.model.vision_tower.gates(),
            "static_cache": self.static_cache,
            "engine": self.engine is not None,
        }


def crop_saliency(sal: np.ndarray, image_size: tuple[int, int], long_side: int | None = None) -> np.ndarray:
    """The model's map over the padded square, cut back to the photo (exact fractional box), resampled at the
    photo's aspect ratio (long side: twice the map's, at least 64 px) and scaled to [0, 1]."""
    width, height = image_size
    h, w = sal.shape
    left, top, right, bottom = pad_box(width, height)
    long_side = long_side or max(64, 2 * max(h, w))
    scale = long_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    box = (left * w, top * h, right * w, bottom * h)
    out = np.asarray(Image.fromarray(np.asarray(sal, dtype=np.float32), mode="F").resize(size, Image.BILINEAR, box=box))
    out = np.clip(out, 0, None)
    peak = float(out.max())
    return (out / peak if peak > 0 else out).astype(np.float32)
