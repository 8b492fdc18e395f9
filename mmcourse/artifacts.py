"""What a trained model leaves on disk, written and read one way for every model of the course.

* :func:`prepare_out` — the ``--out`` folder, created or checked writable *before* training;
* :func:`save_model` — a ``.keras`` file without optimizer state (what is needed to use the
  model; Adam's moments would double the file);
* :func:`write_metrics` — ``metrics.json`` in one schema (see ``data/README.md``);
* :func:`shipped` — a model folder shipped in ``data/``, its files checked against their
  SHA-256 sums before anything loads them.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import tempfile
from pathlib import Path

__all__ = ["MODEL_COMMANDS", "ShippedModelError", "prepare_out", "save_model", "load_model", "write_metrics", "read_metrics",
           "shipped", "verify", "write_checksums", "file_sha256", "METRICS_FILE", "CHECKSUM_FILE"]

METRICS_FILE = "metrics.json"
CHECKSUM_FILE = "SHA256"

#: How each shipped model is rebuilt (quoted in the error when its files are missing or altered).
MODEL_COMMANDS = {
    "captioner": "mmcourse train captioner --profile full --out data/captioner",
    "retrieval": "mmcourse train retrieval --profile full --out data/retrieval",
    "vae": "mmcourse train vae --profile full --out data/vae",
    "cvae": "mmcourse train vae --conditional --profile full --out data/cvae",
    "judge": "mmcourse train judge --profile full --seed 3 --out data/judge",
    "gan": "mmcourse train gan --profile full --out data/gan",
    "vqa": "mmcourse train vqa --profile full --out data/vqa",
    "transformer_captioner": "mmcourse train captioner --decoder transformer --profile full --out data/transformer_captioner",
    "vlm": "mmcourse train vlm --profile full --out data/vlm",
    "diffusion": "mmcourse train diffusion --profile full --out data/diffusion",
}


class ShippedModelError(RuntimeError):
    """A shipped model's file is missing or is not the file that was shipped."""


def prepare_out(out) -> Path:
    """The folder ``out``, created if needed and checked writable; ``ValueError`` saying why not."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: choose a folder name")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".mmcourse-write-check-"):
            pass
    except OSError as error:
        raise ValueError(f"cannot write into --out {out}: {error.strerror or error}") from error
    return out


def save_model(model, path) -> Path:
    """Save ``model`` to ``path`` (``.keras``) without its optimizers or compile settings (a model
    with optimizers of its own, as the GAN's two, loses those as well)."""
    import keras

    path = Path(path)
    optimizers = [name for name, value in model.__dict__.items() if isinstance(value, keras.optimizers.Optimizer)]
    names = {"optimizer", "compiled", "_compile_config", *optimizers}
    saved = {name: model.__dict__[name] for name in names if name in model.__dict__}
    try:
        for name in {"optimizer", *optimizers}:
            model.__dict__[name] = None
        model.__dict__["compiled"] = False
        model.__dict__.pop("_compile_config", None)
        model.save(path)
    finally:
        for name in names:
            model.__dict__.pop(name, None)
        model.__dict__.update(saved)
    return path


def load_model(path, custom_objects: dict | None = None):
    """A model saved by :func:`save_model`, loaded with ``safe_mode=True`` and not compiled. When its
    folder lists SHA-256 sums (every ``mmcourse train`` folder does), the files are checked first.
    ``custom_objects`` name the classes to use over Keras's registry (two modules register a
    ``mmcourse>FiLM``, and the registry keeps whichever was imported last)."""
    import keras

    path = Path(path)
    if (path.parent / CHECKSUM_FILE).is_file():
        verify(path.parent)
    registry = keras.saving.get_custom_objects()  # Keras looks here before any scope or custom_objects argument
    before = {name: registry.get(name) for name in custom_objects or {}}
    registry.update(custom_objects or {})
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    finally:
        for name, value in before.items():
            if value is None:
                registry.pop(name, None)
            else:
                registry[name] = value


def _versions() -> dict:
    import keras
    import numpy as np

    from mmcourse import __version__
    from mmcourse._tf import tensorflow

    return {"mmcourse": __version__, "python": platform.python_version(), "tensorflow": tensorflow().__version__,
            "keras": keras.__version__, "numpy": np.__version__}


def write_metrics(out, metrics: dict, *, files, run, profile: str, seed: int, test_seed, train_seconds: float) -> dict:
    """Write ``out/metrics.json`` with the keys every model shares, then the model's own, and
    ``out/SHA256`` listing the model's ``files`` (names in ``out``; call it after saving them, and
    last); return the metrics. Other files in ``out`` are the learner's and are left out.

    ``train_seconds`` is the wall time of everything that fits weights for this model (any
    pre-training included; data generation and evaluation excluded). ``run`` is the
    :class:`mmcourse.device.Run` it trained under.
    """
    record = {"profile": profile, "seed": int(seed), "test_seed": test_seed, "train_seconds": float(train_seconds),
              **run.record(), "versions": _versions(), "command": " ".join(["mmcourse", *sys.argv[1:]]) if _from_cli() else None}
    clash = sorted(k for k in metrics if k in record and metrics[k] != record[k])
    if clash:  # e.g. a captioner's object "precision" beside the numeric precision: rename the model's key
        raise ValueError(f"metrics {clash} clash with keys every metrics.json shares ({', '.join(record)}); rename them")
    record.update(metrics)
    out = Path(out)
    (out / METRICS_FILE).write_text(json.dumps(record, indent=2))
    write_checksums(out, sorted(files))  # what load_model checks before loading
    return record


def _from_cli() -> bool:
    return Path(sys.argv[0]).name in ("mmcourse", "__main__.py")


def read_metrics(folder) -> dict:
    """The ``metrics.json`` of a model folder."""
    return json.loads(Path(folder, METRICS_FILE).read_text())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder, names) -> Path:
    """Write ``folder/SHA256`` listing the SHA-256 of each of ``names`` (``sha256sum`` format)."""
    folder = Path(folder)
    lines = [f"{file_sha256(folder / name)}  {name}" for name in names]
    (folder / CHECKSUM_FILE).write_text("\n".join(lines) + "\n")
    return folder / CHECKSUM_FILE


def verify(folder, name: str | None = None) -> Path:
    """Check every file listed in ``folder/SHA256``; raise :class:`ShippedModelError` naming the
    first one that is missing or altered, and what to do: for a model the course ships (its
    folder under ``data/``), restore it or rebuild it with its command; for a folder a learner
    trained, train into it again."""
    from mmcourse import config

    folder = Path(folder)
    name = name or folder.name
    is_shipped = name in MODEL_COMMANDS and folder.resolve() == config.shipped_dir(name).resolve()
    listing = folder / CHECKSUM_FILE
    if not listing.is_file():
        where = "" if folder.is_dir() else " (the folder does not exist)"
        raise ShippedModelError(
            f"the shipped model {name!r} is not at {folder}{where}: it ships in the course's data/ folder of a source "
            f"checkout (git clone, then `pip install -e .`); or rebuild it with "
            f"`{MODEL_COMMANDS.get(name, f'mmcourse train ... --out {folder}')}`"
        )
    if is_shipped:
        advice = f"restore it (`git checkout -- {folder}`) or rebuild it with `{MODEL_COMMANDS[name]}`"
    else:
        advice = f"train the model into {folder} again (the `mmcourse train ... --out` that made it)"
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        expected, file = line.split(maxsplit=1)
        path = folder / file.strip()
        if not path.is_file():
            raise ShippedModelError(f"{path} is missing; {advice}")
        if file_sha256(path) != expected:
            raise ShippedModelError(f"{path} is not the file that was saved there (its SHA-256 differs from {listing.name}); {advice}")
    return folder


def shipped(name: str) -> Path:
    """The verified folder of the model shipped as ``data/<name>`` (``captioner``, ``transformer_captioner``, ``retrieval``, ``vae``, ``cvae``, ``judge``, ``gan``, ``vqa``, ``vlm``, ``diffusion``)."""
    from mmcourse import config

    return verify(config.shipped_dir(name), name)

