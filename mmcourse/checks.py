"""Argument checks shared by the whole package (no TensorFlow here: data and plotting code use them too).

Each returns the value as a plain ``int`` or raises ``ValueError`` naming the argument and
what it got, so that a wrong call fails at once with a message saying what to pass.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_positive_int", "check_seed"]


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is a whole number of at least ``minimum`` (1 unless told);
    else ``ValueError`` naming ``name``. ``True``/``False`` are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive whole number" if minimum == 1 else f"a whole number of at least {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_seed(seed) -> int:
    """``seed`` as an ``int`` if it is a whole number of at least 0; else ``ValueError``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}")
    return int(seed)
