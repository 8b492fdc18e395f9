"""Drawing scenes: from symbolic scenes to pixels and per-object label maps.

Rendering draws nothing at random (a scene names its tile in a fixed bank of noise), so
:func:`render` of ``dataset.scenes[i]`` reproduces ``dataset.images[i]`` exactly.
``_rasterise`` turns scenes into label maps (0 for background, ``k + 1`` for object ``k``),
``_paint`` colours the labels over the background and noise in uint8 arithmetic, and
``_render_arrays`` does both for many scenes, split over threads (numpy releases the GIL
in its loops).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mmcourse.data.shapes.world import (
    IMAGE_SIZE,
    NOISE_BANK_SIZE,
    NOISE_CLIP,
    NOISE_SIGMA,
    SHAPES,
    Scene,
    _SceneArrays,
)


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed bank of Gaussian noise tiles (uint8, two's complement); a scene names its tile."""
    rng = np.random.default_rng(20240601)
    noise = rng.normal(0.0, NOISE_SIGMA, (NOISE_BANK_SIZE, IMAGE_SIZE, IMAGE_SIZE, 3))
    return np.clip(np.rint(noise), -NOISE_CLIP, NOISE_CLIP).astype(np.int8).view(np.uint8)


_PIXEL_CENTRES = np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5


def _rasterise(a: _SceneArrays) -> np.ndarray:
    """Label map (n, 64, 64) uint8: 0 for background, k + 1 for object k."""
    labels = np.zeros((len(a), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for k in range(2):
        for s, name in enumerate(SHAPES):
            idx = np.flatnonzero((a.n_objects > k) & (a.shape[:, k] == s))
            if idx.size == 0:
                continue
            r = a.extent[idx, k, None] / 2
            dx = _PIXEL_CENTRES[None, :] - a.centre[idx, k, 0, None]  # (m, 64) across columns
            dy = _PIXEL_CENTRES[None, :] - a.centre[idx, k, 1, None]  # (m, 64) down rows
            if name == "circle":
                inside = (dx * dx)[:, None, :] + (dy * dy)[:, :, None] <= (r * r)[:, :, None]
            elif name == "square":
                inside = (np.abs(dx) <= r)[:, None, :] & (np.abs(dy) <= r)[:, :, None]
            else:  # triangle, apex up: half-width grows from 0 at the top to r at the base
                from_top = dy + r
                inside = (np.abs(dx)[:, None, :] <= (from_top / 2)[:, :, None]) & (
                    (from_top >= 0) & (dy <= r)
                )[:, :, None]
            labels[idx] += inside.view(np.uint8) * np.uint8(k + 1)
    return labels


def _paint(a: _SceneArrays, labels: np.ndarray) -> np.ndarray:
    """Images (n, 64, 64, 3) uint8 from label maps, colours and the noise bank.

    Per channel, pixel = noise + background + [label = 1]·(colour₀ − background)
    + [label = 2]·(colour₁ − background), in uint8 arithmetic: the differences wrap
    modulo 256 and unwrap in the sum, and colours are kept clear of 0 and 255 so
    that adding the noise never wraps.
    """
    n = len(a)
    images = np.take(_noise_bank(), a.noise_id, axis=0)
    channels = images.reshape(n, IMAGE_SIZE * IMAGE_SIZE, 3)
    flat = labels.reshape(n, -1)
    on0, on1 = (flat == 1).view(np.uint8), (flat == 2).view(np.uint8)
    bg = a.background.astype(np.uint8)
    diff = (a.rgb.astype(np.int16) - bg[:, None, None]).astype(np.uint8)  # (n, 2, 3), mod 256
    plane, other = np.empty_like(flat), np.empty_like(flat)
    for c in range(3):
        np.multiply(on0, diff[:, 0, c : c + 1], out=plane)
        np.multiply(on1, diff[:, 1, c : c + 1], out=other)
        plane += other
        plane += bg[:, None]
        channels[:, :, c] += plane
    return images


def _render_arrays(a: _SceneArrays, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    n = len(a)
    threads = threads or min(os.cpu_count() or 1, 8)
    chunk = 2048
    if threads == 1 or n <= chunk:
        labels = _rasterise(a)
        return _paint(a, labels), labels
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    labels = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)

    def work(start: int) -> None:
        part = a.take(slice(start, start + chunk))
        labels[start : start + chunk] = _rasterise(part)
        images[start : start + chunk] = _paint(part, labels[start : start + chunk])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(0, n, chunk)))
    return images, labels


def render(scene: Scene, *, masks: bool = False):
    """Draw a scene: a (64, 64, 3) uint8 image, and with ``masks=True`` also (k, 64, 64) bool masks.

    ``render(dataset.scenes[i])`` reproduces ``dataset.images[i]`` exactly.
    """
    a = _SceneArrays.from_scenes([scene])
    images, labels = _render_arrays(a, threads=1)
    if not masks:
        return images[0]
    object_masks = labels[0][None] == np.arange(1, len(scene.objects) + 1, dtype=np.uint8)[:, None, None]
    return images[0], object_masks
