"""ASE-MLLM: Aesthetic Saliency Enhanced Multimodal LLM (arXiv 2509.04378) in Hugging Face conventions.

`import ase_model` registers the model with transformers' Auto classes (AutoConfig, AutoModel,
AutoModelForImageTextToText, AutoProcessor), so `from_pretrained` works on saved ASE-MLLM folders.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

from .configuration_ase import ASEConfig
from .modeling_ase import ASEForConditionalGeneration, ASEModel
from .processing_ase import ASEProcessor

AutoConfig.register("ase_mllm", ASEConfig)
AutoModel.register(ASEConfig, ASEModel)
AutoModelForImageTextToText.register(ASEConfig, ASEForConditionalGeneration)
AutoProcessor.register(ASEConfig, ASEProcessor)


def __getattr__(name):  # the Critic pulls in image decoding (rawpy, OpenCV): load it on first use
    if name in ("Critic", "Critique"):
        from . import critic

        return getattr(critic, name)
    raise AttributeError(name)


__all__ = ["ASEConfig", "ASEModel", "ASEForConditionalGeneration", "ASEProcessor", "Critic", "Critique"]
