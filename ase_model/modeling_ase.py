"""ASE-MLLM: a LLaVA-style MLLM whose image encoder (IAS-ViT) fuses aesthetic-saliency tokens from an IASM.

Layout of the weights (names as saved):

    model.vision_tower.vision_model.*   the pretrained ViT (CLIP or SigLIP vision), untouched
    model.vision_tower.iasm.*           Image Aesthetic Saliency Module: pixels -> saliency map + tokens
    model.vision_tower.fusion.<i>.*     gated cross-attention after vision layer i (gate starts at 0)
    model.multi_modal_projector.*       LLaVA's two-layer MLP projector
    model.language_model.*              the decoder LLM (any AutoModelForCausalLM base)
    model.score_head.*                  aesthetic score regression
    model.attribute_head.*              optional: attribute verdicts, and their embeddings as image tokens
    lm_head.*

With every gate at 0 the model computes exactly what LlavaForConditionalGeneration computes on the same
weights; training opens the gates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoModelForImageTextToText, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_outputs import ModelOutput
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_ase import ASEConfig
from .photo_statistics import GEOMETRY_NAMES, NUM_STATISTICS, photo_statistics, saliency_geometry
from .scene_statistics import NUM_SCENE_STATISTICS, scene_statistics


@dataclass
class ASEImageOutput(ModelOutput):
    """What IAS-ViT, the projector and the score head make of a batch of images.

    image_features: (batch, image tokens, text hidden) — what replaces the image tokens in the prompt.
    saliency: (batch, h, w) — a probability map over the (square, padded) model input, at 1/8 resolution.
    saliency_logits: (batch, h, w) — the map before the spatial softmax (for training losses).
    score: (batch,) — aesthetic score in [0, config.score_max].
    attribute_logits: (batch, all labels) — with `config.attribute_labels`: each attribute's label logits, one
        attribute after the other in name order (`ASEAttributeHead.labels`).
    """

    image_features: torch.Tensor | None = None
    saliency: torch.Tensor | None = None
    saliency_logits: torch.Tensor | None = None
    score: torch.Tensor | None = None
    attribute_logits: torch.Tensor | None = None


@dataclass
class ASECausalLMOutputWithPast(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    saliency: torch.Tensor | None = None
    saliency_logits: torch.Tensor | None = None
    score: torch.Tensor | None = None
    attribute_logits: torch.Tensor | None = None


def _conv_stage(c_in: int, c_out: int, stride: int = 2, dilation: int = 1) -> nn.Sequential:
    groups = next(g for g in (8, 4, 2, 1) if c_out % g == 0)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.GroupNorm(groups, c_out),  # batch-independent, so a batched critique equals single ones
        nn.GELU(),
    )


class PhotoStatisticsEmbedding(nn.Module):
    """The photo's global statistics (fixed, computed from the pixels) embedded by an MLP into one token."""

    def __init__(self, config: ASEConfig):
        super().__init__()
        dim = config.vision_config.hidden_size
        self.mean, self.std = list(config.iasm_pixel_mean), list(config.iasm_pixel_std)
        self.mlp = nn.Sequential(nn.Linear(NUM_STATISTICS, dim), nn.GELU(), nn.Linear(dim, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        stats = photo_statistics(pixel_values, self.mean, self.std).to(self.mlp[0].weight.dtype)
        return self.norm(self.mlp(stats))


class IASM(nn.Module):
    """Image Aesthetic Saliency Module.

    Three stride-2 convolution stages take the normalised pixels (and optionally a classic saliency prior as a
    fourth channel) to a 1/8-resolution feature map, a dilated residual stage widens its context, then:
      * the saliency head gives one logit per cell; a softmax over all cells makes it a probability map;
      * the token head gives `iasm_num_tokens` spatial attention maps; pooling the features with them, plus one
        pooling with the saliency map itself, gives the saliency tokens the fusion blocks attend to;
      * with `iasm_photo_statistics`, one more token embeds the photo's global tone and colour statistics.
    """

    def __init__(self, config: ASEConfig):
        super().__init__()
        c1, c2, c3 = config.iasm_channels
        self.use_prior = config.iasm_use_prior
        self.stages = nn.Sequential(_conv_stage(3 + int(self.use_prior), c1), _conv_stage(c1, c2), _conv_stage(c2, c3))
        self.context = _conv_stage(c3, c3, stride=1, dilation=2)
        self.saliency_head = nn.Conv2d(c3, 1, 1)
        self.token_head = nn.Conv2d(c3, config.iasm_num_tokens, 1)
        self.token_proj = nn.Linear(c3, config.vision_config.hidden_size)
        self.token_norm = nn.LayerNorm(config.vision_config.hidden_size)
        self.statistics = PhotoStatisticsEmbedding(config) if config.iasm_photo_statistics else None

    def forward(self, pixel_values: torch.Tensor, saliency_prior: torch.Tensor | None = None):
        x = pixel_values
        if self.use_prior:
            if saliency_prior is None:
                saliency_prior = torch.zeros_like(x[:, :1])
            elif saliency_prior.shape[-2:] != x.shape[-2:]:
                saliency_prior = F.interpolate(saliency_prior, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = torch.cat([x, saliency_prior.to(x.dtype)], dim=1)
        feats = self.stages(x)
        feats = feats + self.context(feats)
        batch, _, h, w = feats.shape

        logits = self.saliency_head(feats).flatten(1)  # (B, h*w)
        saliency = logits.float().softmax(-1).to(feats.dtype)
        cells = feats.flatten(2).transpose(1, 2)  # (B, h*w, C)
        pools = self.token_head(feats).flatten(2).float().softmax(-1).to(feats.dtype)  # (B, K, h*w)
        pools = torch.cat([saliency[:, None, :], pools], dim=1)
        tokens = self.token_norm(self.token_proj(pools @ cells))  # (B, K+1, D_vision)
        if self.statistics is not None:
            tokens = torch.cat([tokens, self.statistics(pixel_values).to(tokens.dtype)[:, None]], dim=1)
        return saliency.view(batch, h, w), logits.view(batch, h, w), tokens


class GatedCrossAttention(nn.Module):
    """x + tanh(gate) * attention(norm(x) -> saliency tokens); the gate starts at 0 (identity), as in mllama."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-5):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"fusion: hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.o_proj = nn.Linear(dim, dim)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        batch, n, dim = x.shape
        heads = lambda t: t.view(batch, t.shape[1], self.num_heads, dim // self.num_heads).transpose(1, 2)  # noqa: E731
        q = heads(self.q_proj(self.norm(x)))
        k, v = heads(self.k_proj(tokens)), heads(self.v_proj(tokens))
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, n, dim)
        return x + torch.tanh(self.gate).to(x.dtype) * self.o_proj(attn)


class IASViT(nn.Module):
    """The pretrained vision tower with a gated cross-attention block after each fusion layer.

    Runs the tower's own embeddings and encoder layers (CLIP or SigLIP vision), stopping at the deepest layer the
    vision feature layer needs; after each layer listed in `config.fusion_layers` the patch tokens (not CLIP's
    class token) attend to IASM's saliency tokens.
    """

    def __init__(self, config: ASEConfig):
        super().__init__()
        config.validate_layers()
        self.vision_model = AutoModel.from_config(config.vision_config)
        self.iasm = IASM(config)
        eps = getattr(config.vision_config, "layer_norm_eps", 1e-5)
        self.fusion = nn.ModuleDict(
            {str(i): GatedCrossAttention(config.vision_config.hidden_size, config.fusion_num_heads, eps)
             for i in config.fusion_layers}
        )
        self.num_layers = config.vision_layers_used

    @property
    def _core(self) -> nn.Module:
        # transformers 5.24 flattened CLIPVisionModel/SiglipVisionModel; older releases nest `vision_model`.
        return getattr(self.vision_model, "vision_model", self.vision_model)

    @property
    def num_prefix_tokens(self) -> int:
        return 1 if hasattr(self._core.embeddings, "class_embedding") else 0

    def forward(self, pixel_values: torch.Tensor, saliency_prior: torch.Tensor | None = None):
        """Returns (hidden_states, saliency, saliency_logits, statistics_token): hidden_states[0] is the embedding
        output and hidden_states[i + 1] the (fused) output of layer i, as in transformers'
        `output_hidden_states`; statistics_token (B, D) is IASM's photo-statistics token, or None."""
        core = self._core
        saliency, saliency_logits, tokens = self.iasm(pixel_values, saliency_prior)
        hidden = core.embeddings(pixel_values)
        if hasattr(core, "pre_layrnorm"):
            hidden = core.pre_layrnorm(hidden)
        hidden_states = [hidden]
        prefix = self.num_prefix_tokens
        for i, layer in enumerate(core.encoder.layers[: self.num_layers]):
            hidden = layer(hidden, None)
            if isinstance(hidden, tuple):  # older transformers return (hidden_states, ...)
                hidden = hidden[0]
            block = self.fusion[str(i)] if str(i) in self.fusion else None
            if block is not None:
                fused = block(hidden[:, prefix:], tokens.to(hidden.dtype))
                hidden = torch.cat([hidden[:, :prefix], fused], dim=1) if prefix else fused
            hidden_states.append(hidden)
        statistics_token = tokens[:, -1] if self.iasm.statistics is not None else None
        return tuple(hidden_states), saliency, saliency_logits, statistics_token

    def gates(self) -> dict[int, float]:
        return {int(i): float(torch.tanh(b.gate).item()) for i, b in self.fusion.items()}


class ASEScoreHead(nn.Module):
    """Aesthetic score from the fused features: mean pooling and saliency-weighted pooling, then an MLP."""

    def __init__(self, config: ASEConfig):
        super().__init__()
        layers = 1 if isinstance(config.vision_feature_layer, int) else len(config.vision_feature_layer)
        dim = 2 * config.vision_config.hidden_size * layers
        self.score_max = config.score_max
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, config.score_head_hidden), nn.GELU(),
                                 nn.Linear(config.score_head_hidden, 1))

    def forward(self, features: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
        batch, n, _ = features.shape
        side = int(round(n**0.5))
        if side * side == n:  # weight each patch by the saliency mass over it
            weights = F.adaptive_avg_pool2d(saliency[:, None].float(), (side, side)).flatten(1)
            weights = (weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)).to(features.dtype)
        else:
            weights = features.new_full((batch, n), 1.0 / n)
        pooled = torch.cat([features.mean(1), (weights[:, :, None] * features).sum(1)], dim=-1)
        return self.score_max * torch.sigmoid(self.mlp(self.norm(pooled)).squeeze(-1).float())


class ASEAttributeScoreHead(nn.Module):
    """Aesthetic score from the attribute head's standardised inputs (config `score_from_attributes`): the photo's
    measurable qualities, which carry over to photos the model never saw. `score_head_hidden = 0` makes it
    linear in them (before the squashing): a defect edit moves the same measurements the same way on any photo,
    so a linear read ranks an unseen photo's edits as it ranks the training photos' (an MLP learns interactions
    that hold only near its training photos)."""

    def __init__(self, config: ASEConfig):
        super().__init__()
        self.score_max = config.score_max
        n_in, hidden = attribute_input_size(config), config.score_head_hidden
        if hidden:
            self.mlp = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                     nn.Linear(hidden, 1))
        else:
            self.mlp = nn.Sequential(nn.Linear(n_in, 1))

    def forward(self, standardized: torch.Tensor) -> torch.Tensor:
        x = standardized.to(self.mlp[0].weight.dtype)
        return self.score_max * torch.sigmoid(self.mlp(x).squeeze(-1).float())


def calibrate_score(score: torch.Tensor, knots: list[list[float]] | None) -> torch.Tensor:
    """The monotone piecewise-linear map of `config.score_calibration` (identity without knots; flat beyond the
    outer knots)."""
    if not knots:
        return score
    k = torch.tensor(knots, dtype=torch.float32, device=score.device)
    x = score.float().clamp(k[0, 0], k[-1, 0])
    i = torch.searchsorted(k[:, 0].contiguous(), x.contiguous()).clamp(1, len(k) - 1)
    x0, x1, y0, y1 = k[i - 1, 0], k[i, 0], k[i - 1, 1], k[i, 1]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def attribute_input_size(config: ASEConfig) -> int:
    """How many raw inputs the attribute head reads: photo statistics, IASM geometry, optional scene statistics."""
    return NUM_STATISTICS + len(GEOMETRY_NAMES) + (NUM_SCENE_STATISTICS if config.attribute_scene_statistics else 0)


class ASEAttributeHead(nn.Module):
    """Verdicts on aesthetic attributes (`config.attribute_labels`) and their tokens for the LLM.

    An MLP classifies every attribute from the photo's global statistics and the geometry of IASM's saliency map
    (inputs standardised by the `input_mean` / `input_std` buffers, set from training data); the LLM then gets
    one token per attribute: the learned embedding of its predicted label. The argmax passes no gradient, so
    the caption loss trains the embeddings, not the classifier (the starter recipe trains it on verdicts).
    """

    def __init__(self, config: ASEConfig):
        super().__init__()
        # In name order: config.json is written with sorted keys, and the logits and embeddings are laid out
        # attribute after attribute, so the layout must not depend on how the dict was made.
        self.labels = {k: list(config.attribute_labels[k]) for k in sorted(config.attribute_labels)}
        self.mean, self.std = list(config.iasm_pixel_mean), list(config.iasm_pixel_std)
        sizes = [len(v) for v in self.labels.values()]
        n_in, hidden = attribute_input_size(config), config.attribute_head_hidden
        self.scene = config.attribute_scene_statistics
        self.register_buffer("input_mean", torch.zeros(n_in))
        self.register_buffer("input_std", torch.ones(n_in))
        self.sizes = sizes
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]  # a list: from_pretrained leaves no stray buffer
        self.mlp = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, sum(sizes)))
        self.embeddings = nn.Embedding(sum(sizes), config.text_config.hidden_size)

    def features(self, pixel_values: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
        """(B, statistics + geometry [+ scene statistics]) raw inputs, before standardisation."""
        parts = [photo_statistics(pixel_values, self.mean, self.std),
                 saliency_geometry(saliency, pixel_values, self.mean, self.std)]
        if self.scene:
            parts.append(scene_statistics(pixel_values, self.mean, self.std))
        return torch.cat(parts, dim=-1)

    def standardize(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.input_mean) / self.input_std

    def classify(self, features: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
        """Logits from raw features; `dropout` on the hidden activations is for training the classifier (a
        training choice, not part of the model: the caption stages must see its plain predictions)."""
        x = self.standardize(features).to(self.mlp[0].weight.dtype)
        for layer in self.mlp:
            x = layer(x)
            if dropout and isinstance(layer, nn.GELU):
                x = F.dropout(x, dropout, training=True)
        return x

    def label_indices(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, attributes): each attribute's predicted label, as an index into its labels."""
        return torch.stack([part.argmax(-1) for part in logits.split(self.sizes, dim=-1)], dim=1)

    def predict(self, logits: torch.Tensor) -> list[dict[str, str]]:
        """Label names from logits (B, all labels)."""
        return [{name: self.labels[name][i] for name, i in zip(self.labels, row)}
                for row in self.label_indices(logits).tolist()]

    def tokens(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, attributes, text hidden): the embeddings of the predicted labels."""
        picks = self.label_indices(logits)
        return self.embeddings(picks + torch.tensor(self.offsets, device=picks.device))

    def forward(self, pixel_values: torch.Tensor, saliency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, all labels), tokens (B, attributes, text hidden))."""
        logits = self.classify(self.features(pixel_values, saliency))
        return logits, self.tokens(logits)


class ASEPreTrainedModel(PreTrainedModel):
    config: ASEConfig
    config_class = ASEConfig
    base_model_prefix = "model"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["IASViT"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _can_compile_fullgraph = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, GatedCrossAttention):
            init.zeros_(module.gate)
        if isinstance(module, ASEAttributeHead):
            init.zeros_(module.input_mean)
            init.ones_(module.input_std)


class ASEModel(ASEPreTrainedModel):
    """IAS-ViT -> projector -> decoder, without the LM head."""

    def __init__(self, config: ASEConfig):
        super().__init__(config)
        self.vision_tower = IASViT(config)
        self.multi_modal_projector = LlavaMultiModalProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.score_head = ASEAttributeScoreHead(config) if config.score_from_attributes else ASEScoreHead(config)
        self.attribute_head = ASEAttributeHead(config) if config.attribute_labels else None
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        saliency_prior: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs,  # generate() passes return_dict=True; the output is always an ASEImageOutput
    ) -> ASEImageOutput:
        layer = self.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        strategy = vision_feature_select_strategy or self.config.vision_feature_select_strategy
        pixel_values = pixel_values.to(self.dtype)
        hidden_states, saliency, saliency_logits, statistics_token = self.vision_tower(pixel_values, saliency_prior)
        # IAS-ViT stops at the deepest layer needed, so count negative indices from the full tower's depth.
        depth = self.config.vision_config.num_hidden_layers + 1
        layers = [layer] if isinstance(layer, int) else layer
        selected = [hidden_states[i if i >= 0 else depth + i] for i in layers]
        if strategy == "default":  # drop CLIP's class token, as LLaVA does
            selected = [h[:, 1:] for h in selected]
        selected = torch.cat(selected, dim=-1)
        attribute_features = None
        if self.attribute_head is not None:  # computed once: the verdicts and (optionally) the score read them
            attribute_features = self.attribute_head.features(pixel_values, saliency)
        if self.config.score_from_attributes:
            score = self.score_head(self.attribute_head.standardize(attribute_features))
        else:
            score = self.score_head(selected, saliency)
        score = calibrate_score(score, self.config.score_calibration)
        if statistics_token is not None:
            # The photo's global statistics also reach the LLM directly, as one more image token after the
            # patches: mixed into the patch tokens they carry the photo's content along (one copy per layer).
            token = statistics_token.to(selected.dtype).repeat(1, len(layers))
            selected = torch.cat([selected, token[:, None]], dim=1)
        image_features, attribute_logits = self.multi_modal_projector(selected), None
        if self.attribute_head is not None:  # the attribute verdicts' tokens come last
            attribute_logits = self.attribute_head.classify(attribute_features)
            tokens = self.attribute_head.tokens(attribute_logits)
            image_features = torch.cat([image_features, tokens.to(image_features.dtype)], dim=1)
        return ASEImageOutput(
            image_features=image_features,
            saliency=saliency,
            saliency_logits=saliency_logits,
            score=score,
            attribute_logits=attribute_logits,
        )

    def merge_image_features(self, input_ids, inputs_embeds, image_features):
        """Place the image features at the image-token positions, as LLaVA does."""
        mask = (input_ids == self.config.image_token_index).unsqueeze(-1)
        n_tokens, n_features = int(mask.sum()), image_features.shape[0] * image_features.shape[1]
        if n_tokens != n_features:
            raise ValueError(f"Image features and image tokens do not match: tokens {n_tokens}, features {n_features}")
        return inputs_embeds.masked_scatter(mask.to(inputs_embeds.device), image_features.to(inputs_embeds))

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        saliency_prior: torch.Tensor | None = None,
        mm_encoder_outputs: dict[str, ASEImageOutput] | None = None,
        **kwargs,
    ):
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        image = (mm_encoder_outputs or {}).get("image")
        if image is None and pixel_values is not None:
            image = self.get_image_features(pixel_values, saliency_prior)
        if image is not None:
            if input_ids is None:
                raise ValueError("image features need input_ids to find the image tokens")
            inputs_embeds = self.merge_image_features(input_ids, inputs_embeds, image.image_features)
        outputs = self.language_model(
            attention_mask=attention_mask, position_ids=position_ids, cache=cache, inputs_embeds=inputs_embeds, **kwargs
        )
        return outputs, image


class ASEForConditionalGeneration(ASEPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: ASEConfig):
        super().__init__(config)
        self.model = ASEModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def get_image_features(self, pixel_values, saliency_prior=None, **kwargs) -> ASEImageOutput:
        return self.model.get_image_features(pixel_values, saliency_prior, **kwargs)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        saliency_prior: torch.Tensor | None = None,
        mm_encoder_outputs: dict[str, ASEImageOutput] | None = None,
        **kwargs,
    ) -> ASECausalLMOutputWithPast:
        outputs, image = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            saliency_prior=saliency_prior,
            mm_encoder_outputs=mm_encoder_outputs,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size,
                                      **kwargs)
        return ASECausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=getattr(outputs, "cache", None),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            saliency=None if image is None else image.saliency,
            saliency_logits=None if image is None else image.saliency_logits,
            score=None if image is None else image.score,
            attribute_logits=None if image is None else image.attribute_logits,
        )

    # ---- builders -------------------------------------------------------------------------------------------
    @classmethod
    def from_llava(cls, src, fusion_layers: list[int] | None = None, torch_dtype=None,
                   **ase_kwargs) -> ASEForConditionalGeneration:
        """Wrap a LLaVA-1.5-family checkpoint (folder, hub id or LlavaForConditionalGeneration object).

        The result computes exactly what the LLaVA model computes (all gates are 0) until it is trained.
        """
        from .builders import from_llava

        return from_llava(cls, src, fusion_layers=fusion_layers, torch_dtype=torch_dtype, **ase_kwargs)

    @classmethod
    def from_parts(cls, vision, llm, torch_dtype=None, **ase_kwargs) -> ASEForConditionalGeneration:
        """Compose from a vision checkpoint (CLIP/SigLIP, full or vision-only) and a causal LM; fresh projector."""
        from .builders import from_parts

        return from_parts(cls, vision, llm, torch_dtype=torch_dtype, **ase_kwargs)


# registered on import (see ase_model/__init__.py)
AutoModel.register(ASEConfig, ASEModel, exist_ok=True)
AutoModelForImageTextToText.register(ASEConfig, ASEForConditionalGeneration, exist_ok=True)

__all__ = ["ASEAttributeHead", "ASEAttributeScoreHead", "calibrate_score", "ASEForConditionalGeneration", "ASEModel",
           "ASEPreTrainedModel", "IASM", "IASViT", "GatedCrossAttention", "ASEImageOutput"]
