"""Datasets of the Shapes world, and scenes built from words.

:func:`generate` makes ``n`` images with their captions and exact annotations, a
:class:`ShapesDataset`; :func:`splits` makes named splits from their own seeds, keeping
held-out colour–shape pairs out of all but the test split; :func:`compose` builds one
scene from words. Generation is vectorised numpy: every random draw happens up front from
one ``numpy.random.Generator``, the scenes (:mod:`~mmcourse.data.shapes.sampling`) and
then their captions (:mod:`~mmcourse.data.shapes.grammar`), and rendering
(:mod:`~mmcourse.data.shapes.rendering`) draws nothing, so the same seed gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mmcourse.data.shapes.grammar import _sample_captions
from mmcourse.data.shapes.rendering import _render_arrays
from mmcourse.data.shapes.sampling import _sample_layout, _sample_scenes
from mmcourse.data.shapes.world import (
    _AXIS_RELATION,
    _COLOUR_NAMES,
    _INVERSE,
    _NOMINAL_RGB,
    _SIZE_NAMES,
    BACKGROUND,
    BACKGROUND_JITTER,
    COLOUR_JITTER,
    COLOURS,
    IMAGE_SIZE,
    NOISE_BANK_SIZE,
    NOISE_CLIP,
    RELATIONS,
    SHAPES,
    SIZES,
    Scene,
    ShapeObject,
    _check_name,
    _SceneArrays,
)


class _SceneList(Sequence):
    """The scenes of a dataset, made on demand from its arrays."""

    def __init__(self, arrays: _SceneArrays):
        self._a = arrays

    def __len__(self) -> int:
        return len(self._a)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._a.scene(j) for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"scene index {i} out of range for {n} scenes")
        return self._a.scene(i % n)


@dataclass(eq=False)
class ShapesDataset:
    """Images, captions and exact annotations of the Shapes world.

    Attributes:
        images: ``(n, 64, 64, 3)`` uint8.
        captions: ``n`` lists of 5 reference captions.
        labels: ``(n, 64, 64)`` uint8 segmentation: 0 background, ``k + 1`` object ``k``.
        scenes: the symbolic scenes (a sequence; ``scenes[i]`` is a :class:`Scene`).
        masks: ``(n, 2, 64, 64)`` bool per-object masks (all False for an absent object).
    """

    images: np.ndarray
    captions: list[list[str]]
    labels: np.ndarray
    seed: object
    holdout: tuple[tuple[str, str], ...]
    _arrays: _SceneArrays = field(repr=False)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"ShapesDataset(n={len(self)}, seed={self.seed!r}, holdout={self.holdout!r})"

    @property
    def scenes(self) -> _SceneList:
        return _SceneList(self._arrays)

    @property
    def masks(self) -> np.ndarray:
        return self.labels[:, None] == np.array([1, 2], np.uint8)[None, :, None, None]

    @property
    def n_objects(self) -> np.ndarray:
        return self._arrays.n_objects.copy()

    def contains(self, *, colour: str | None = None, shape: str | None = None, size: str | None = None) -> np.ndarray:
        """Boolean ``(n,)``: which images hold an object with all the given attributes."""
        a = self._arrays
        hit = np.arange(2)[None, :] < a.n_objects[:, None]
        for value, options, column in ((colour, _COLOUR_NAMES, a.colour), (shape, SHAPES, a.shape), (size, _SIZE_NAMES, a.size)):
            if value is not None:
                _check_name(value, options, "colour" if options is _COLOUR_NAMES else "shape" if options is SHAPES else "size")
                hit &= column == options.index(value)
        return hit.any(axis=1)

    def subset(self, index) -> ShapesDataset:
        """A dataset of the chosen images (an index array, a boolean mask or a slice)."""
        index = np.arange(len(self))[index]
        return ShapesDataset(
            self.images[index],
            [self.captions[i] for i in index],
            self.labels[index],
            self.seed,
            self.holdout,
            self._arrays.take(index),
        )


def generate(
    n: int,
    seed: int | Sequence[int] = 0,
    *,
    holdout: Iterable[tuple[str, str]] = (),
    objects: Sequence[int] = (1, 2),
) -> ShapesDataset:
    """Generate ``n`` Shapes-world images with captions and annotations.

    Args:
        n: number of images (at least 1).
        seed: an int (or a sequence of ints); the same seed gives the same bytes.
        holdout: ``(colour, shape)`` pairs that never appear, to test compositional generalisation.
        objects: the object counts to draw from, ``(1, 2)`` by default; ``(1,)`` for single objects.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be a whole number of images, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be at least 1 image, got {n}")
    objects = tuple(int(k) for k in np.atleast_1d(objects))
    if not objects or any(k not in (1, 2) for k in objects):
        raise ValueError(f"objects takes object counts from (1, 2), got {objects}")
    holdout = tuple(tuple(p) for p in holdout)
    rng = np.random.default_rng(seed)
    arrays = _sample_scenes(rng, int(n), holdout, objects)
    captions = _sample_captions(rng, arrays)
    images, labels = _render_arrays(arrays)
    return ShapesDataset(images, captions, labels, seed, holdout, arrays)


def splits(
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    *,
    holdout: Iterable[tuple[str, str]] = (),
    objects: Sequence[int] = (1, 2),
    **named_sizes: int,
) -> dict[str, ShapesDataset]:
    """Train, validation and test splits, each from its own seed.

    Pass sizes as ``splits(train=2000, val=200, test=200)`` or a dict. The ``holdout``
    pairs are kept out of every split except ``"test"``, which draws from all pairs,
    so a model's captions for unseen combinations can be measured there.
    """
    sizes = dict(sizes or {}, **named_sizes)
    if not sizes:
        raise ValueError("give the split sizes, e.g. splits(train=2000, val=200, test=200)")
    holdout = tuple(tuple(p) for p in holdout)
    out = {}
    for i, (name, n) in enumerate(sizes.items()):
        out[name] = generate(n, seed=(seed, i + 1), holdout=() if name == "test" else holdout, objects=objects)
    return out


def compose(
    objects: Sequence[tuple[str, str, str]],
    relation: str | None = None,
    *,
    seed: int | None = None,
) -> Scene:
    """Build a scene from words: ``compose([("small", "red", "circle"), ("large", "blue", "square")], "left of")``.

    ``relation`` says where the first object stands relative to the second, with any of
    the four relation words. With ``seed=None`` the layout is centred and the colours are
    the nominal ones; with a seed they are drawn as :func:`generate` draws them.
    """
    objects = [tuple(o) for o in objects]
    if len(objects) not in (1, 2):
        raise ValueError(f"a scene holds 1 or 2 objects, got {len(objects)}")
    for o in objects:
        if len(o) != 3:
            raise ValueError(f"each object is (size, colour, shape), got {o!r}")
        _check_name(o[0], _SIZE_NAMES, "size")
        _check_name(o[1], _COLOUR_NAMES, "colour")
        _check_name(o[2], SHAPES, "shape")
    if len(objects) == 2:
        _check_name(relation, RELATIONS, "relation")
        if relation in ("right of", "below"):
            objects = objects[::-1]
    elif relation is not None:
        raise ValueError("a one-object scene has no relation; pass relation=None")
    axis = _AXIS_RELATION.index(_INVERSE[relation] if relation in ("right of", "below") else relation) if relation else -1
    n_obj = len(objects)
    size = np.array([[_SIZE_NAMES.index(o[0]) for o in objects] + [-1] * (2 - n_obj)], np.int8)
    colour = [_COLOUR_NAMES.index(o[1]) for o in objects]
    shape = [SHAPES.index(o[2]) for o in objects]
    if seed is None:
        extent = np.array([[SIZES[o[0]] for o in objects] + [0] * (2 - n_obj)], np.float32)
        centre = np.full((1, 2, 2), IMAGE_SIZE / 2, np.float32)
        if n_obj == 2:
            # Centre the pair along its axis with a gap of a quarter of the image.
            gap = IMAGE_SIZE / 4
            total = extent[0, 0] + gap + extent[0, 1]
            start = (IMAGE_SIZE - total) / 2
            centre[0, 0, axis] = start + extent[0, 0] / 2
            centre[0, 1, axis] = start + extent[0, 0] + gap + extent[0, 1] / 2
        rgb = [COLOURS[o[1]] for o in objects]
        background, noise_id = BACKGROUND, 0
    else:
        rng = np.random.default_rng(seed)
        extent, centre = _sample_layout(rng, size, np.array([n_obj], np.int8), np.array([axis], np.int8))
        jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=(n_obj, 3))
        rgb = np.clip(_NOMINAL_RGB[colour] + jitter, NOISE_CLIP, 255 - NOISE_CLIP)
        background = BACKGROUND + int(rng.integers(-BACKGROUND_JITTER, BACKGROUND_JITTER + 1))
        noise_id = int(rng.integers(NOISE_BANK_SIZE))
    objs = tuple(
        ShapeObject(
            shape=SHAPES[shape[k]],
            colour=_COLOUR_NAMES[colour[k]],
            size=_SIZE_NAMES[size[0, k]],
            centre=(float(centre[0, k, 0]), float(centre[0, k, 1])),
            extent=float(extent[0, k]),
            rgb=tuple(int(v) for v in rgb[k]),
        )
        for k in range(n_obj)
    )
    return Scene(objs, _AXIS_RELATION[axis] if n_obj == 2 else None, background, noise_id)
