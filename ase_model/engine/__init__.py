"""A decode engine for ASEForConditionalGeneration: slot KV cache, prefill, batched decode step (see docs/engine.md)."""

from .core import DecodeEngine, Request, UnsupportedArchitecture, unsupported_reason

__all__ = ["DecodeEngine", "Request", "UnsupportedArchitecture", "unsupported_reason"]
