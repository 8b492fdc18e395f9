"""Where each named object goes: the first stage of grounded text to image.

A caption-conditioned denoiser that sees only the caption has to decide *where* "a red circle
left of a blue square" puts each object, and which colour goes with which shape, by itself;
the shipped caption-only model hardly does (notebook 10, section 6). Grounded text to image
(GLIGEN, Li et al., 2023; LLM-grounded diffusion, Lian et al., 2023) splits the job:

1. **caption → layout.** Read the caption into its objects and relation, then choose a box for
   each object. LLM-grounded diffusion asks a language model; here the Shapes grammar's parser
   reads the caption exactly (:func:`mmcourse.data.shapes.parse_caption`), and
   :class:`LayoutBank` draws the boxes from the layouts of real training scenes with the same
   relation and sizes (a resampling model of layouts, fitted to the training split).
2. **layout → image.** The denoiser also receives *what-is-where maps* (:func:`object_maps`): one
   channel per colour and per shape, each a soft disc where an object of that colour (or shape)
   stands. The maps say "red here, circle here", so the drawing need not guess which word goes
   where; the caption still reaches the denoiser as before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmcourse.data import shapes
from mmcourse.data.shapes.world import IMAGE_SIZE, SHAPES

__all__ = ["CHANNELS", "object_maps", "scene_maps", "LayoutBank"]

_COLOURS = tuple(shapes.COLOURS)
_SIZES = tuple(shapes.SIZES)
#: The maps' channels: one per colour, then one per shape.
CHANNELS = _COLOURS + SHAPES
#: The disc's edge falls from 1 to 0 over this many pixels (a latent cell is 4).
SOFTNESS = 4.0


def object_maps(colour, shape, centre, extent, present, side: int = 16) -> np.ndarray:
    """What-is-where maps ``(n, side, side, len(CHANNELS))`` float32 for ``n`` layouts of up to
    two objects each: ``colour`` and ``shape`` ``(n, 2)`` indices into the Shapes world's colours
    and shapes, ``centre (n, 2, 2)`` (x, y) and ``extent (n, 2)`` in pixels of the 64×64 image,
    ``present (n, 2)`` whether the slot holds an object. Each object is a disc of its extent,
    soft at the edge (:data:`SOFTNESS`), added to its colour's channel and its shape's."""
    colour, shape = np.asarray(colour, np.int64), np.asarray(shape, np.int64)
    centre, extent = np.asarray(centre, np.float32), np.asarray(extent, np.float32)
    present = np.asarray(present, bool)
    cells = (np.arange(side, dtype=np.float32) + 0.5) * (IMAGE_SIZE / side)  # cell centres in pixels
    dx = cells[None, None, None, :] - centre[:, :, 0, None, None]
    dy = cells[None, None, :, None] - centre[:, :, 1, None, None]
    distance = np.sqrt(dx**2 + dy**2)  # (n, 2, side, side)
    disc = np.clip((extent[:, :, None, None] / 2 - distance) / SOFTNESS + 0.5, 0.0, 1.0) * present[:, :, None, None]
    maps = np.zeros((len(colour), side, side, len(CHANNELS)), np.float32)
    rows = np.arange(len(colour))
    for k in range(colour.shape[1]):
        maps[rows, :, :, np.maximum(colour[:, k], 0)] += disc[:, k]
        maps[rows, :, :, len(_COLOURS) + np.maximum(shape[:, k], 0)] += disc[:, k]
    return maps


def scene_maps(dataset: shapes.ShapesDataset, side: int = 16) -> np.ndarray:
    """:func:`object_maps` of a dataset's own scenes: the layouts the images were drawn from."""
    a = dataset._arrays
    present = np.arange(2)[None] < a.n_objects[:, None]
    return object_maps(a.colour, a.shape, a.centre, a.extent, present, side)


def _key(axis: int, sizes) -> tuple:
    """The bank's key: the relation's axis (−1 for one object) and the sizes in canonical order."""
    return (int(axis), *(int(s) for s in sizes))


class LayoutBank:
    """Layouts of real scenes, by relation axis and sizes: :meth:`sample` gives a caption's
    objects a place drawn from the training scenes that match it.

    A scene stores two objects in canonical order (the first left of, or above, the second), so
    "A right of B" takes a stored "left of" layout with B's size first and puts B in its first slot."""

    def __init__(self, centre: np.ndarray, extent: np.ndarray, keys: np.ndarray):
        self.centre = np.asarray(centre, np.float32)  # (m, 2, 2)
        self.extent = np.asarray(extent, np.float32)  # (m, 2)
        self.keys = np.asarray(keys, np.int8)  # (m, 3): axis, size of slot 0, size of slot 1 (−1 when absent)
        self._rows = {}
        for row, key in enumerate(map(tuple, self.keys.tolist())):
            self._rows.setdefault(key, []).append(row)

    @classmethod
    def fit(cls, dataset: shapes.ShapesDataset) -> LayoutBank:
        """The layouts of every scene of ``dataset`` (a training split)."""
        a = dataset._arrays
        sizes = np.where(np.arange(2)[None] < a.n_objects[:, None], a.size, -1)
        return cls(a.centre, a.extent, np.column_stack([a.axis, sizes]))

    def __len__(self) -> int:
        return len(self.keys)

    def sample(self, captions, *, seed: int = 0) -> dict[str, np.ndarray]:
        """A layout for each caption: ``colour``, ``shape`` ``(n, 2)``, ``centre (n, 2, 2)``,
        ``extent (n, 2)``, ``present (n, 2)``, the objects in the order the caption names them.
        A caption outside the Shapes grammar raises a ``ValueError`` naming the word; a
        combination of relation and sizes no training scene had raises one too."""
        rng = np.random.default_rng(seed)
        n = len(captions)
        out = {"colour": np.zeros((n, 2), np.int64), "shape": np.zeros((n, 2), np.int64), "centre": np.zeros((n, 2, 2), np.float32),
               "extent": np.zeros((n, 2), np.float32), "present": np.zeros((n, 2), bool)}
        for i, caption in enumerate(captions):
            parse = shapes.parse_caption(caption)
            objects = list(parse.objects)
            flipped = parse.relation in ("right of", "below")  # the caption names the canonical second object first
            canonical = objects[::-1] if flipped else objects
            axis = -1 if parse.relation is None else (0 if parse.relation in ("left of", "right of") else 1)
            sizes = [_SIZES.index(o.size) for o in canonical] + [-1] * (2 - len(canonical))
            rows = self._rows.get(_key(axis, sizes))
            if not rows:
                raise ValueError(f"no training layout for {caption!r}: the bank holds none with that relation and those sizes")
            row = rows[rng.integers(len(rows))]
            order = [1, 0] if flipped else [0, 1]
            for slot, (obj, stored) in enumerate(zip(objects, order)):
                out["colour"][i, slot] = _COLOURS.index(obj.colour)
                out["shape"][i, slot] = SHAPES.index(obj.shape)
                out["centre"][i, slot] = self.centre[row, stored]
                out["extent"][i, slot] = self.extent[row, stored]
                out["present"][i, slot] = True
        return out

    def maps(self, captions, *, side: int = 16, seed: int = 0) -> np.ndarray:
        """:func:`object_maps` of :meth:`sample`'s layouts."""
        return object_maps(**self.sample(captions, seed=seed), side=side)

    def save(self, path) -> Path:
        path = Path(path)
        np.savez_compressed(path, centre=self.centre, extent=self.extent, keys=self.keys)
        return path

    @classmethod
    def load(cls, path) -> LayoutBank:
        with np.load(path) as f:
            return cls(f["centre"], f["extent"], f["keys"])
