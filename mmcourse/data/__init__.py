"""Datasets of the course: the Shapes world, text corpora, tf.data pipelines, the catalogue."""

from __future__ import annotations

import importlib

__all__ = ["shapes", "text", "pipeline", "catalog", "vectors", "photos"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"mmcourse.data.{name}")
    raise AttributeError(f"module 'mmcourse.data' has no attribute {name!r}")
