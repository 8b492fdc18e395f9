"""mmcourse: the companion package of a course on multimodal learning (language meets vision).

Importing it is cheap and has no side effects: no seeds, no plot styles, no TensorFlow.
Submodules are imported on first use: ``mmcourse.data.shapes``, ``mmcourse.config``,
``mmcourse.device``, ``mmcourse.viz``, ``mmcourse.widgets``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["config", "data", "device", "layers", "models", "viz", "widgets", "__version__"]


def __getattr__(name: str):
    if name in __all__ and name != "__version__":
        return importlib.import_module(f"mmcourse.{name}")
    raise AttributeError(f"module 'mmcourse' has no attribute {name!r}")
