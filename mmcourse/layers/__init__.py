"""Keras layers of the course (imported on first use)."""

from __future__ import annotations

import importlib

__all__ = ["attention", "transformer"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"mmcourse.layers.{name}")
    raise AttributeError(f"module 'mmcourse.layers' has no attribute {name!r}")
