"""The worker's model lifecycle: loading (with warm-up), unloading, and what to answer while there is no model.

`_ModelLife` is a part of `Worker` (worker.py), split out along this seam; it runs on the model thread.
"""

from __future__ import annotations

import gc
import logging
import time

from .contract import ERROR, LOADING, READY, UNLOADED
from .errors import NotReady

__all__ = []

log = logging.getLogger("ase_daemon.worker")


class _ModelLife:
    """Worker's model: load, unload, not_ready answers."""

    def _not_ready(self) -> NotReady:
        if self.state == LOADING:
            elapsed = time.monotonic() - self._load_started
            eta = max(1.0, (self._last_load_s or 5.0) - elapsed)
            return NotReady(f"the model is loading ({elapsed:.0f} s so far); retry in about {eta:.0f} s", eta)
        if self.state == ERROR:
            return NotReady(f"the model failed to load: {self.load_error}; fix it and send `load`")
        eta = self._last_load_s or 5.0
        return NotReady(f"the model is unloaded; it is loading again now because of this request, retry in about "
                        f"{eta:.0f} s", eta)

    # ---- loading ---------------------------------------------------------------------------------------------
    def _load(self) -> None:
        with self._cv:
            self.state, self.load_error = LOADING, None
            self._load_started = time.monotonic()
        log.info("loading the model from %s", self.model_path or "the built-in starter model")
        try:
            import torch
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a daemon's log is not a terminal
            hf_logging.set_verbosity_error()
            from ase_model.critic import Critic, default_model_dir, fingerprint, pick_device

            device = pick_device(self.device)
            if self.threads:
                torch.set_num_threads(self.threads)
            elif device.type == "cpu":
                # one thread per worker: torch's default (all cores) made a critique 4.7x slower when other work
                # used the cores, and was no faster on an idle machine (issue 17)
                torch.set_num_threads(1)

            if self.critic_factory is not None:
                critic = self.critic_factory()
            else:
                model_dir = self.model_path or default_model_dir()
                if (model_dir / "config.json").exists():
                    self.model_id = fingerprint(model_dir)  # cache hits can be answered while the weights load
                # "auto": the engine on CPU; on CUDA its graphs are unmeasured (bench/gpu_check.py), so generate's
                # compiled static cache stays until they are
                engine = self.engine if isinstance(self.engine, bool) else device.type != "cuda"
                critic = Critic.from_pretrained(model_dir, device=self.device, dtype=self.dtype, tag_root=self.tag_root,
                                                engine=engine, engine_slots=self.slots)
            cuda = critic.device.type == "cuda"
            sizes = self.warmup_batch_sizes or ([1, self.max_batch] if cuda else [1])
            warm = critic.warmup(sorted(set(sizes)), max_new_tokens=self.max_new_tokens if cuda else 8)
        except Exception as e:
            log.exception("loading the model failed")
            with self._cv:
                self.state, self.load_error = ERROR, f"{type(e).__name__}: {e}"
                self._cv.notify_all()
            return
        # The model sees `image_size` pixels: decoding (in the pool, in parallel) straight to twice that keeps the
        # processor's resize, which runs in the model thread, cheap. 24 MP photos would otherwise cost more there
        # than the model itself on a small model. The saliency prior wants >= 256 px.
        prior = getattr(critic.processor, "use_saliency_prior", False)
        decode_side = max(2 * critic.processor.image_size(), 256 if prior else 64)
        with self._cv:
            self.critic, self.model_id, self.decode_side = critic, critic.model_id, decode_side
            self._last_load_s = time.monotonic() - self._load_started
            self.state, self._last_work, self._jobs_hint = READY, time.monotonic(), True
            self._cv.notify_all()
        log.info("model %s ready on %s in %.1f s (warm-up %.1f s)", critic.model_id, critic.device,
                 self._last_load_s, warm)

    def _unload(self) -> None:
        with self._cv:
            critic, self.critic = self.critic, None
            if self.state == READY:
                self.state = UNLOADED
        if critic is not None:
            cuda = critic.device.type == "cuda"
            del critic
            gc.collect()
            if cuda:  # the caching allocator keeps blocks; only a process restart frees everything
                import torch

                torch.cuda.empty_cache()
            log.info("model unloaded")
        with self._cv:
            self._want_unload = False
            self._cv.notify_all()
