"""mmcourse: the companion package of a course on multimodal learning (language meets vision).

Importing it is cheap and has no side effects: no seeds, no plot styles, no TensorFlow.
Submodules are imported on first use (``mmcourse.data``, ``mmcourse.models``,
``mmcourse.metrics``, ``mmcourse.device``, ``mmcourse.training``, ``mmcourse.viz``, …).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["artifacts", "checks", "config", "data", "device", "imageops", "layers", "metrics", "models", "training", "viz", "widgets",
           "wordsim", "__version__"]


def __getattr__(name: str):
    if name in __all__ and name != "__version__":
        return importlib.import_module(f"mmcourse.{name}")
    raise AttributeError(f"module 'mmcourse' has no attribute {name!r}")
