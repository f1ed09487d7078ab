"""ASE-MLLM configuration: a LLaVA configuration plus the IASM and the fusion blocks of IAS-ViT."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


@strict
class ASEConfig(PreTrainedConfig):
    r"""
    Configuration of [`ASEForConditionalGeneration`].

    The fields shared with [`~transformers.LlavaConfig`] mean the same thing there (vision tower, text model,
    image token, projector, vision feature layer and selection), so that a LLaVA checkpoint maps onto an
    ASE-MLLM one field for field. The ASE-specific fields:

    fusion_layers (`list[int]`, *optional*):
        Indices (0-based) of vision encoder layers that are followed by a gated cross-attention block in which
        the patch tokens attend to the IASM's saliency tokens. Defaults to four layers spread over the part of
        the tower that the vision feature layer uses.
    fusion_num_heads (`int`, *optional*):
        Attention heads of the fusion blocks (defaults to the vision tower's).
    iasm_channels (`list[int]`, *optional*):
        Channels of IASM's three stride-2 convolution stages (the map comes out at 1/8 of the input).
    iasm_num_tokens (`int`):
        How many saliency feature tokens IASM hands to the fusion blocks.
    iasm_use_prior (`bool`):
        Whether IASM takes a fourth input channel: a classic (spectral residual) saliency prior.
    iasm_photo_statistics (`bool`):
        Whether IASM adds one more token: an MLP embedding of the photo's global tone, colour and detail
        statistics (luminance percentiles and clipping, colourfulness, CIELAB chroma, gray-edge illuminant,
        edge sharpness, noise; see `ase_model.photo_statistics`), computed from the pixels with
        `iasm_pixel_mean` / `iasm_pixel_std` (the image processor's normalisation, CLIP's by default). The fusion
        blocks attend to it and the LLM gets it as one more image token after the patches.
    attribute_labels (`dict[str, list[str]]`, *optional*):
        Aesthetic attributes the model gives a verdict on, each with its labels (e.g. `{"saturation": ["muted",
        "natural", "vivid"]}`). With them, an attribute head classifies each attribute from the photo statistics
        (`ase_model.photo_statistics`) and where the IASM saliency map puts the visual weight, and the LLM gets
        one more image token per attribute after the patches: a learned embedding of the predicted label.
        The head lays attributes out in name order, each one's labels in the order given.
    attribute_head_hidden (`int`):
        Hidden width of the attribute head's MLP.
    attribute_scene_statistics (`bool`):
        Whether the attribute head also reads where the photo's weight lies, how its lines run and where it is
        sharp (`ase_model.scene_statistics`: spectral-residual saliency geometry and border contact, a histogram
        of line angles, subject and background sharpness), for verdicts on tilt, framing and composition.
    score_from_attributes (`bool`):
        Whether the score head reads the attribute head's (standardised) inputs instead of the fused patch
        features: measurable qualities of the photo carry over to photos the model never saw, where the patch
        features of a small encoder recall its training photos. Needs `attribute_labels`.
    score_head_hidden (`int`):
        Hidden width of the aesthetic score regression head; with `score_from_attributes`, 0 makes the score
        linear in the attribute head's inputs (before squashing into [0, score_max]).
    score_max (`float`):
        Scores are predicted in [0, score_max].
    score_calibration (`list[list[float]]`, *optional*):
        Knots `[[raw, calibrated], ...]` (raw increasing) of a monotone piecewise-linear map applied to the score
        head's output, fitted after training so that the scores (and so the stars) use the whole range.
    """

    model_type = "ase_mllm"
    attribute_map = {"image_token_id": "image_token_index"}

    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="clip_vision_model",
            init_kwargs={
                "intermediate_size": 4096,
                "hidden_size": 1024,
                "patch_size": 14,
                "image_size": 336,
                "num_hidden_layers": 24,
                "num_attention_heads": 16,
                "vocab_size": 32000,
                "projection_dim": 768,
            },
        ),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_index: int = 32000
    image_seq_length: int = 576
    projector_hidden_act: str = "gelu"
    vision_feature_select_strategy: Literal["default", "full"] = "default"
    vision_feature_layer: int | list[int] = -2
    multimodal_projector_bias: bool = True
    tie_word_embeddings: bool = False
    fusion_layers: list[int] | None = None
    fusion_num_heads: int | None = None
    iasm_channels: list[int] | None = None
    iasm_num_tokens: int = 8
    iasm_use_prior: bool = False
    iasm_photo_statistics: bool = False
    iasm_pixel_mean: list[float] | None = None
    iasm_pixel_std: list[float] | None = None
    attribute_labels: dict[str, list[str]] | None = None
    attribute_head_hidden: int = 128
    attribute_scene_statistics: bool = False
    score_from_attributes: bool = False
    score_head_hidden: int = 256
    score_max: float = 10.0
    score_calibration: list[list[float]] | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # LLaVA keeps this on the text config in older checkpoints; forward it as LlavaConfig does.
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = self.text_config.tie_word_embeddings
        if self.iasm_channels is None:
            self.iasm_channels = [16, 32, 64]
        if self.iasm_pixel_mean is None:  # CLIP's, as LLaVA's image processors
            self.iasm_pixel_mean = list(OPENAI_CLIP_MEAN)
        if self.iasm_pixel_std is None:
            self.iasm_pixel_std = list(OPENAI_CLIP_STD)
        if self.fusion_num_heads is None:
            self.fusion_num_heads = self.vision_config.num_attention_heads
        if self.fusion_layers is None:
            depth = self.vision_layers_used
            self.fusion_layers = sorted({max(0, round(depth * k / 4) - 1) for k in (1, 2, 3, 4)})
        self.fusion_layers = sorted(int(i) for i in self.fusion_layers)
        if self.attribute_labels is not None:
            self.attribute_labels = {str(k): [str(v) for v in labels] for k, labels in self.attribute_labels.items()}
            if not self.attribute_labels or any(len(v) < 2 for v in self.attribute_labels.values()):
                raise ValueError("attribute_labels: every attribute needs at least two labels")
        if self.score_from_attributes and not self.attribute_labels:
            raise ValueError(
                "score_from_attributes needs attribute_labels (the score reads the attribute head's inputs)")
        if self.score_calibration is not None:
            knots = [[float(a), float(b)] for a, b in self.score_calibration]
            if len(knots) < 2 or any(b[0] <= a[0] or b[1] < a[1] for a, b in zip(knots, knots[1:])):
                raise ValueError("score_calibration: at least two [raw, calibrated] knots, both increasing")
            self.score_calibration = knots

    @property
    def vision_layers_used(self) -> int:
        """How many encoder layers the selected vision feature layer(s) depend on."""
        n = self.vision_config.num_hidden_layers
        layers = self.vision_feature_layer
        layers = [layers] if isinstance(layers, int) else layers
        # hidden_states has n + 1 entries: the embeddings, then each layer's output.
        return max((i if i >= 0 else n + 1 + i) for i in layers)

    def validate_layers(self):
        """Raise on fusion layers the vision tower does not have or whose output is never used."""
        used = self.vision_layers_used
        bad = [i for i in self.fusion_layers if not 0 <= i < used]
        if bad:
            raise ValueError(
                f"fusion_layers {bad} are outside the {used} vision layers that vision_feature_layer="
                f"{self.vision_feature_layer} uses (valid: 0..{used - 1})"
            )


# registered on import, so `from_pretrained` through AutoConfig knows "ase_mllm" (see ase_model/__init__.py)
AutoConfig.register("ase_mllm", ASEConfig, exist_ok=True)

__all__ = ["ASEConfig"]
