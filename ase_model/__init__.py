"""ASE-MLLM: Aesthetic Saliency Enhanced Multimodal LLM (arXiv 2509.04378) in Hugging Face conventions.

`import ase_model` registers the model with transformers' Auto classes (AutoConfig, AutoModel,
AutoModelForImageTextToText, AutoProcessor), so `from_pretrained` works on saved ASE-MLLM folders.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

from .configuration_ase import ASEConfig
from .modeling_ase import ASEForConditionalGeneration, ASEModel

AutoConfig.register("ase_mllm", ASEConfig)
AutoModel.register(ASEConfig, ASEModel)
AutoModelForImageTextToText.register(ASEConfig, ASEForConditionalGeneration)

__all__ = ["ASEConfig", "ASEModel", "ASEForConditionalGeneration"]
