"""Training objectives: the saliency loss (KL + 1 - CC) and the caption / score objective."""

from __future__ import annotations

import torch
from torch import nn

# ----------------------------------------------------------------------------------------------------------
# losses and the objective


def saliency_loss(logits: torch.Tensor, target: torch.Tensor,
                  mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """KL(target || softmax(logits)) and 1 - CC(softmax(logits), target), averaged over the masked samples.

    logits, target: (B, h, w); target rows sum to 1. Without any labelled sample both are 0 but stay in the
    graph, so every trained parameter gets a (zero) gradient and DDP stays in step.
    """
    logp = logits.float().flatten(1).log_softmax(-1)
    t = target.float().flatten(1)
    kl = (t * (torch.log(t.clamp_min(1e-12)) - logp)).sum(-1)
    p = logp.exp()
    pc, tc = p - p.mean(-1, keepdim=True), t - t.mean(-1, keepdim=True)
    cc = (pc * tc).sum(-1) / (pc.norm(dim=-1) * tc.norm(dim=-1)).clamp_min(1e-12)
    m = torch.ones_like(kl) if mask is None else mask.to(kl.dtype)
    n = m.sum().clamp_min(1.0)
    return {"kl": (kl * m).sum() / n, "cc_loss": ((1 - cc) * m).sum() / n}


class SaliencyObjective(nn.Module):
    """The saliency stage: IASM on its own (the tower and the LLM are never run).

    Like CaptionObjective, forward returns (loss, parts, counts): `parts` holds the mean of each of `part_names`
    over the samples it applies to and `counts` how many those were, so logs average them correctly across
    micro-batches and processes (every process reports the same parts, as collectives need).
    """

    part_names = ("loss", "kl", "cc_loss")

    def __init__(self, iasm: nn.Module):
        super().__init__()
        self.iasm = iasm

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, logits, _ = self.iasm(batch["pixel_values"], batch.get("saliency_prior"))
        sal = saliency_loss(logits, batch["saliency_target"], batch["saliency_mask"])
        loss = sal["kl"] + sal["cc_loss"]
        n = batch["saliency_mask"].sum().float()
        return loss, torch.stack([loss, sal["kl"], sal["cc_loss"]]).detach(), torch.stack([n, n, n])


class CaptionObjective(nn.Module):
    """The align and finetune stages: the whole model, so that DDP/FSDP see every forward.

    loss = LM loss + score weight * MSE(score / max) where scores exist + saliency weight * (KL + 1 - CC) where
    labels exist. Absent parts still enter the graph with weight 0 (DDP needs every trained parameter used).
    """

    part_names = ("loss", "lm", "score", "kl", "cc_loss")

    def __init__(self, model: nn.Module, score_weight: float, saliency_weight: float, score_max: float):
        super().__init__()
        self.model = model
        self.score_weight, self.saliency_weight, self.score_max = score_weight, saliency_weight, score_max

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"],
            labels=batch["labels"],
            saliency_prior=batch.get("saliency_prior"),
            use_cache=False,
        )
        scored = batch["score_mask"].float()
        err = ((out.score.float() - batch["score"].float()) / self.score_max) ** 2
        score = (err * scored).sum() / scored.sum().clamp_min(1.0)
        if "saliency_target" in batch:
            sal = saliency_loss(out.saliency_logits, batch["saliency_target"], batch["saliency_mask"])
            kl, cc_loss, labelled = sal["kl"], sal["cc_loss"], batch["saliency_mask"].sum().float()
        else:  # zero, but IASM's map head stays in the graph
            kl = cc_loss = 0.0 * out.saliency_logits.float().sum()
            labelled = torch.zeros((), device=kl.device)
        loss = out.loss + self.score_weight * score + self.saliency_weight * (kl + cc_loss)
        one = torch.ones((), device=loss.device)
        parts = torch.stack([loss, out.loss.float(), score, kl, cc_loss]).detach()
        return loss, parts, torch.stack([one, one, scored.sum(), labelled, labelled])


