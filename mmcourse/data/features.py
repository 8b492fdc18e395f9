"""A backbone's grids of many photographs, computed once and kept on disk.

Running a ``keras.applications`` network over thousands of photographs is the slow part of
training a captioner on them; the decoder then trains on the 8×8 grids many times over. The
grids are cached under ``cache_dir`` (default ``data_dir()/cache/features``) in a file whose
name is a hash of everything they depend on: the backbone, its weights (``"imagenet"``, a
weights file's SHA-256, or random weights with their seed), the image size, and every image
file's path, size and modification time. Change any of them and the grids are computed anew.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmcourse.config import data_dir

__all__ = ["Grids", "cache_key", "backbone_grids"]


@dataclass
class Grids:
    """``grids`` float16 ``(n, 8, 8, C)`` of the images at ``kept`` (indices into the photos);
    ``skipped``: ``(path, reason)`` of files that could not be read; ``seconds`` the time the
    computation took (0 when ``cached``)."""

    grids: np.ndarray
    kept: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    cached: bool = False
    path: Path | None = None

    @property
    def images_per_second(self) -> float | None:
        return len(self.kept) / self.seconds if self.seconds else None


def cache_key(what: dict, paths) -> str:
    """A hash of ``what`` (backbone, weights, size, …) and of each file's path, size and mtime."""
    files = []
    for p in map(Path, paths):
        stat = p.stat() if p.is_file() else None
        files.append([str(p.resolve()), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1])
    text = json.dumps({"what": what, "files": files}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def backbone_grids(encoder, photos, *, what: dict, cache_dir=None, batch_size: int = 32, progress: bool = True) -> Grids:
    """The ``encoder``'s grids (:func:`mmcourse.models.vision.build_backbone`) of every image of
    ``photos`` (:class:`mmcourse.data.photos.CaptionedPhotos`), read at the encoder's input
    size, from the cache when ``what`` and the files are unchanged. A file that is missing, not
    an image or damaged is skipped and named in ``skipped``; the others are still computed."""
    from mmcourse.data.photos import load_image

    size = int(encoder.input.shape[1])
    what = dict(what, image_size=size)
    cache_dir = Path(cache_dir) if cache_dir is not None else data_dir() / "cache" / "features"
    path = cache_dir / f"{cache_key(what, photos.image_paths)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            skipped = [tuple(row) for row in stored["skipped"].tolist()]
            return Grids(stored["grids"], stored["kept"], skipped, 0.0, True, path)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(photos), desc=f"{what.get('backbone', 'backbone')} features", unit="image")
    start = time.perf_counter()
    grids, kept, skipped = [], [], []
    for lo in range(0, len(photos), batch_size):
        batch, rows = [], []
        for i in range(lo, min(lo + batch_size, len(photos))):
            try:
                batch.append(load_image(photos.image_paths[i], size))
                rows.append(i)
            except (FileNotFoundError, ValueError) as error:
                skipped.append((str(photos.image_paths[i]), str(error)))
        if batch:
            x = np.stack(batch).astype(np.float32) / 255.0
            grids.append(np.asarray(encoder(x, training=False)["grid"], np.float16))
            kept += rows
        if bar is not None:
            bar.update(min(batch_size, len(photos) - lo))
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    channels = int(encoder.output["grid"].shape[-1])
    result = Grids(np.concatenate(grids) if grids else np.zeros((0, 8, 8, channels), np.float16), np.array(kept, int), skipped, seconds, False, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial.npz")
    np.savez(temporary, grids=result.grids, kept=result.kept, skipped=np.array(skipped, dtype=str).reshape(-1, 2))
    temporary.replace(path)  # whole or not at all: an interrupted run leaves no half a cache
    return result
