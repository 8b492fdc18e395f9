"""Models of the course, one module per chapter (imported on first use)."""

from __future__ import annotations

import importlib

__all__ = ["autoencoder", "captioning", "embeddings", "gan", "generative", "retrieval", "sequence", "transformer_captioner", "vae", "vision",
           "vit", "vlm", "vqa"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"mmcourse.models.{name}")
    raise AttributeError(f"module 'mmcourse.models' has no attribute {name!r}")
