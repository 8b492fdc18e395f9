"""`mmcourse doctor`: versions, devices, the profile and the datasets present."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from mmcourse.config import PROFILE_ENV, data_dir, profile

PACKAGES = ("tensorflow", "keras", "numpy", "matplotlib", "ipywidgets", "jupyterlab", "gensim", "scikit-image", "scikit-learn", "tqdm")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


def report() -> list[str]:
    """The doctor's report, one line each."""
    import os

    from mmcourse import __version__

    p = profile()  # a bad MMCOURSE_PROFILE is refused before TensorFlow takes seconds to load
    from mmcourse import device
    from mmcourse.data import catalog

    lines = [f"mmcourse {__version__} · Python {platform.python_version()} · {platform.system()} {platform.machine()}"]
    lines.append("packages: " + ", ".join(f"{p} {_version(p)}" for p in PACKAGES))
    lines.append("devices: " + device.describe())
    origin = f"from ${PROFILE_ENV}" if os.environ.get(PROFILE_ENV) else "default"
    lines.append(
        f"profile: {p.name} ({origin}) · {p.n_train:,} train / {p.n_val:,} val / {p.n_test:,} test images, "
        f"{p.epochs} epochs, batch {p.batch_size}"
    )
    lines.append(f"data directory: {data_dir()}")
    lines.append("datasets:")
    for info, present, where in catalog.status():
        mark = "ok     " if present else "absent "
        hint = "" if present else f"  (get it from {info.source}; put it at {where})"
        shown = "" if not present else f"  {where}"
        lines.append(f"  {mark}{info.name:<14}{info.description}{shown}{hint}")
    return lines


def main() -> int:
    for line in report():
        print(line)
    missing = [p for p in PACKAGES if _version(p) == "missing"]
    if missing:
        print(f"missing packages: {', '.join(missing)} — run `make lab` (or `pip install -e .`)", file=sys.stderr)
        return 1
    return 0
