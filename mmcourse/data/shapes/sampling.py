"""Random scenes: which objects, how large, where, in which colours.

Every random draw that makes a scene happens here, vectorised over many scenes at once
from one ``numpy.random.Generator`` in a fixed order, so the same seed gives the same
scenes. ``_sample_scenes`` draws object counts, colour–shape pairs (leaving out held-out
pairs, ``_allowed_pairs``), sizes, relation axes, the layout, colour jitter, background
and noise tile; ``_sample_layout`` places objects inside the image and apart along their
relation's axis (:func:`~mmcourse.data.shapes.compose` uses it too, with a seed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from mmcourse.data.shapes.world import (
    _COLOUR_NAMES,
    _NOMINAL_RGB,
    _SIZE_NAMES,
    BACKGROUND,
    BACKGROUND_JITTER,
    COLOUR_JITTER,
    IMAGE_SIZE,
    MARGIN,
    MIN_GAP,
    NOISE_BANK_SIZE,
    NOISE_CLIP,
    SHAPES,
    SIZE_JITTER,
    SIZES,
    _check_name,
    _SceneArrays,
)


def _sample_layout(rng: np.random.Generator, size: np.ndarray, n_objects: np.ndarray, axis: np.ndarray):
    """Extents and centres: objects inside the image, apart along the relation's axis."""
    n = len(size)
    nominal = np.array([SIZES[s] for s in _SIZE_NAMES], np.float32)
    jitter = np.array([SIZE_JITTER[s] for s in _SIZE_NAMES], np.float32)
    sz = np.maximum(size, 0)
    extent = nominal[sz] + jitter[sz] * rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    extent[n_objects < 2, 1] = 0
    u = rng.random((n, 6), dtype=np.float32)
    lo = MARGIN + extent / 2
    hi = IMAGE_SIZE - MARGIN - extent / 2
    centre = np.zeros((n, 2, 2), np.float32)
    # One object: anywhere inside.
    centre[:, 0, 0] = lo[:, 0] + u[:, 0] * (hi[:, 0] - lo[:, 0])
    centre[:, 0, 1] = lo[:, 0] + u[:, 1] * (hi[:, 0] - lo[:, 0])
    two = n_objects == 2
    if two.any():
        e0, e1 = extent[two, 0], extent[two, 1]
        ax = axis[two].astype(np.intp)
        # Along the axis: share the free space between the margins and the gap.
        slack = IMAGE_SIZE - 2 * MARGIN - e0 - e1 - MIN_GAP
        a, b = np.minimum(u[two, 2], u[two, 3]), np.maximum(u[two, 2], u[two, 3])
        start0 = MARGIN + slack * a
        along0 = start0 + e0 / 2
        along1 = start0 + e0 + MIN_GAP + slack * (b - a) + e1 / 2
        # Across the axis: close enough that the pair reads as side by side (or stacked).
        lo0, hi0 = lo[two, 0], hi[two, 0]
        lo1, hi1 = lo[two, 1], hi[two, 1]
        across0 = lo0 + u[two, 4] * (hi0 - lo0)
        reach = (along1 - along0) / 2
        across1 = np.clip(across0 + (2 * u[two, 5] - 1) * reach, lo1, hi1)
        rows = np.flatnonzero(two)
        centre[rows, 0, ax] = along0
        centre[rows, 1, ax] = along1
        centre[rows, 0, 1 - ax] = across0
        centre[rows, 1, 1 - ax] = across1
    return extent, centre


def _allowed_pairs(holdout: Iterable[tuple[str, str]]) -> np.ndarray:
    held = set()
    for pair in holdout:
        try:
            colour, shape = pair
        except (TypeError, ValueError):
            raise ValueError(f"holdout takes (colour, shape) pairs such as ('red', 'circle'), got {pair!r}") from None
        _check_name(colour, _COLOUR_NAMES, "colour")
        _check_name(shape, SHAPES, "shape")
        held.add((_COLOUR_NAMES.index(colour), SHAPES.index(shape)))
    pairs = [(c, s) for c in range(len(_COLOUR_NAMES)) for s in range(len(SHAPES)) if (c, s) not in held]
    if not pairs:
        raise ValueError("holdout leaves no colour–shape pair to draw")
    return np.array(pairs, np.int8)


def _sample_scenes(rng: np.random.Generator, n: int, holdout, objects: Sequence[int]) -> _SceneArrays:
    pairs = _allowed_pairs(holdout)
    n_objects = rng.choice(np.asarray(objects, np.int8), size=n)
    pick = pairs[rng.integers(len(pairs), size=(n, 2))]
    colour, shape = pick[..., 0].copy(), pick[..., 1].copy()
    size = rng.integers(len(_SIZE_NAMES), size=(n, 2), dtype=np.int8)
    axis = rng.integers(2, size=n, dtype=np.int8)
    one = n_objects == 1
    colour[one, 1] = shape[one, 1] = size[one, 1] = -1
    axis[one] = -1
    extent, centre = _sample_layout(rng, size, n_objects, axis)
    jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=(n, 2, 3), dtype=np.int16)
    rgb = np.clip(_NOMINAL_RGB[np.maximum(colour, 0)] + jitter, NOISE_CLIP, 255 - NOISE_CLIP).astype(np.uint8)
    rgb[one, 1] = 0
    background = (BACKGROUND + rng.integers(-BACKGROUND_JITTER, BACKGROUND_JITTER + 1, size=n)).astype(np.uint8)
    noise_id = rng.integers(NOISE_BANK_SIZE, size=n, dtype=np.int16)
    return _SceneArrays(n_objects, shape, colour, size, centre, extent, rgb, axis, background, noise_id)
