"""prefect-together-lora: take a LoRA adapter from a training run to a live Together AI model."""

from __future__ import annotations

__version__ = "0.1.0"

from prefect_together_lora.credentials import TogetherCredentials

__all__ = ["TogetherCredentials", "__version__"]
