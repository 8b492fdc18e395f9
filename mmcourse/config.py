"""Profiles (quick or full), seeding and the data directory.

``MMCOURSE_PROFILE`` picks the profile (``quick`` or ``full``; ``full`` by default) each
time :func:`profile` is called, so a notebook reads it in its setup cell. Nothing here
runs at import time: importing :mod:`mmcourse` sets no seed and no plot style.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Profile", "PROFILES", "profile", "profile_name", "seed_everything", "data_dir"]

PROFILE_ENV = "MMCOURSE_PROFILE"
DATA_ENV = "MMCOURSE_DATA"
DEFAULT_PROFILE = "full"


@dataclass(frozen=True)
class Profile:
    """How much data and training a notebook uses.

    ``quick`` keeps every cell to seconds on a laptop CPU (and in CI); ``full`` is for
    learning, with results good enough to be worth looking at.
    """

    name: str
    n_train: int  # Shapes-world training images
    n_val: int  # validation images
    n_test: int  # test images
    epochs: int  # passes over the training set
    batch_size: int
    steps_per_epoch: int | None = None  # None: one pass over the data

    @property
    def is_quick(self) -> bool:
        return self.name == "quick"


PROFILES = {
    "quick": Profile("quick", n_train=2_000, n_val=200, n_test=200, epochs=2, batch_size=64),
    "full": Profile("full", n_train=20_000, n_val=2_000, n_test=1_000, epochs=20, batch_size=64),
}


def profile_name(name: str | None = None) -> str:
    """The profile's name: ``name`` if given, else ``$MMCOURSE_PROFILE``, else ``full``."""
    chosen = name if name is not None else os.environ.get(PROFILE_ENV, DEFAULT_PROFILE)
    key = chosen.strip().lower()
    if key not in PROFILES:
        source = "profile" if name is not None else f"{PROFILE_ENV}"
        raise ValueError(
            f"{source}={chosen!r} is not a profile; choose one of: {', '.join(PROFILES)} "
            f"(e.g. `export {PROFILE_ENV}=quick`)"
        )
    return key


def profile(name: str | None = None) -> Profile:
    """The sizes to use now: ``profile()`` reads ``$MMCOURSE_PROFILE``."""
    return PROFILES[profile_name(name)]


def seed_everything(seed: int) -> int:
    """Seed Python, NumPy, TensorFlow and Keras; return the seed.

    Called explicitly in each notebook's setup cell: reproducibility is a choice the
    learner can see, not a side effect of an import.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    from mmcourse._tf import tensorflow

    tensorflow()  # quietly, before keras imports it
    import keras

    keras.utils.set_random_seed(seed)
    return seed


def _repo_root() -> Path | None:
    """The source checkout this package lives in, if it is one (editable install)."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        return root
    return None


def shipped_dir(name: str) -> Path:
    """The folder of a model shipped with the course, ``data/<name>`` beside the package (the
    captioner, the dual encoder). Not ``$MMCOURSE_DATA``: that is for datasets a learner fetches."""
    return Path(__file__).resolve().parent.parent / "data" / name


def data_dir(create: bool = False) -> Path:
    """Where datasets a learner downloads, and the course's caches, live.

    ``$MMCOURSE_DATA`` if set; else ``data/`` in the source checkout; else the user cache
    directory (``$XDG_CACHE_HOME/mmcourse`` or ``~/.cache/mmcourse``).
    """
    if os.environ.get(DATA_ENV):
        path = Path(os.environ[DATA_ENV]).expanduser()
    elif (root := _repo_root()) is not None:
        path = root / "data"
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(cache) / "mmcourse"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
