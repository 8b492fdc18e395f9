"""The Shapes world itself: what a scene can hold, and scenes.

The vocabulary (``SHAPES``, ``COLOURS``, ``SIZES``, ``RELATIONS``, the caption ``PREFIXES``)
and the constants of drawing (colour, size and background jitter, noise, margins);
:class:`ShapeObject` and :class:`Scene`, the symbolic ground truth every image is drawn
from; and ``_SceneArrays``, many scenes as columns of numpy arrays, the form in which
:mod:`~mmcourse.data.shapes.sampling` draws them, :mod:`~mmcourse.data.shapes.rendering`
paints them and :mod:`~mmcourse.data.shapes.grammar` captions them. Coordinates are in
pixels, x to the right and y downwards; pixel ``(row, col)`` covers
``[col, col+1) × [row, row+1)`` so its centre is ``(col + 0.5, row + 0.5)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mmcourse.data.shapes.grammar import Description

IMAGE_SIZE = 64
SHAPES = ("circle", "square", "triangle")
#: Nominal RGB of each colour; every object's colour is jittered by up to ±COLOUR_JITTER.
COLOURS = {
    "red": (220, 50, 50),
    "green": (50, 170, 70),
    "blue": (50, 90, 220),
    "yellow": (235, 200, 40),
    "purple": (150, 70, 190),
    "orange": (245, 140, 30),
}
#: Nominal extent (width = height of the shape's box) in pixels.
SIZES = {"small": 12, "large": 24}
SIZE_JITTER = {"small": 1.0, "large": 2.0}
RELATIONS = ("left of", "right of", "above", "below")
PREFIXES = ("", "there is", "a picture of", "an image of", "a drawing of")
CAPTIONS_PER_IMAGE = 5

COLOUR_JITTER = 15
BACKGROUND = 235
BACKGROUND_JITTER = 6
NOISE_SIGMA = 3.0
NOISE_CLIP = 8  # noise is clipped to ±8, and colours kept in [8, 247], so uint8 never wraps
MARGIN = 1.0  # objects stay this far from the image border
MIN_GAP = 3.0  # and at least this far apart along their relation's axis
NOISE_BANK_SIZE = 512

_COLOUR_NAMES = tuple(COLOURS)
_SIZE_NAMES = tuple(SIZES)
_NOMINAL_RGB = np.array([COLOURS[c] for c in _COLOUR_NAMES], dtype=np.int16)
# Relation of object 0 to object 1 is canonical: 0 means "left of", 1 means "above".
_AXIS_RELATION = ("left of", "above")
_INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene: what it is (shape, colour, size) and where (centre, extent)."""

    shape: str
    colour: str
    size: str
    centre: tuple[float, float]  # (x, y) in pixels
    extent: float  # width and height of the shape's box, in pixels
    rgb: tuple[int, int, int]

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """The shape's box ``(x0, y0, x1, y1)`` in pixels."""
        r = self.extent / 2
        x, y = self.centre
        return (x - r, y - r, x + r, y + r)

    @property
    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """A symbolic scene: one or two objects, their relation, the background grey level.

    When there are two objects they are stored in canonical order: ``objects[0]`` is
    left of (``relation == "left of"``) or above (``relation == "above"``) ``objects[1]``.
    """

    objects: tuple[ShapeObject, ...]
    relation: str | None = None
    background: int = BACKGROUND
    noise_id: int = 0

    def relation_between(self, i: int, j: int) -> str:
        """The relation word that makes "object i RELATION object j" true."""
        if self.relation is None or {i, j} != {0, 1}:
            raise ValueError(f"a relation needs two different objects of a two-object scene, got {i} and {j}")
        return self.relation if i == 0 else _INVERSE[self.relation]

    def description(self) -> Description:
        """The scene's content in canonical form (what a complete caption says)."""
        from mmcourse.data.shapes.grammar import Description, ObjectPhrase  # here: grammar.py imports world.py

        return Description(
            tuple(ObjectPhrase(o.size, o.colour, o.shape) for o in self.objects), self.relation
        )

    def masks(self) -> np.ndarray:
        """Boolean masks of the objects, shape ``(len(objects), 64, 64)``."""
        from mmcourse.data.shapes.rendering import render  # here: rendering.py imports world.py

        return render(self, masks=True)[1]


# --------------------------------------------------------------------------- arrays


@dataclass(eq=False)
class _SceneArrays:
    """Scenes as columns of numpy arrays (second object slot is -1 / 0 when absent)."""

    n_objects: np.ndarray  # (n,) int8, 1 or 2
    shape: np.ndarray  # (n, 2) int8
    colour: np.ndarray  # (n, 2) int8
    size: np.ndarray  # (n, 2) int8
    centre: np.ndarray  # (n, 2, 2) float32, (x, y)
    extent: np.ndarray  # (n, 2) float32
    rgb: np.ndarray  # (n, 2, 3) uint8
    axis: np.ndarray  # (n,) int8: 0 = objects[0] left of objects[1], 1 = above, -1 = one object
    background: np.ndarray  # (n,) uint8
    noise_id: np.ndarray  # (n,) int16

    def __len__(self) -> int:
        return len(self.n_objects)

    def take(self, idx) -> _SceneArrays:
        return _SceneArrays(**{f: getattr(self, f)[idx] for f in self.__dataclass_fields__})

    def scene(self, i: int) -> Scene:
        objects = tuple(
            ShapeObject(
                shape=SHAPES[self.shape[i, k]],
                colour=_COLOUR_NAMES[self.colour[i, k]],
                size=_SIZE_NAMES[self.size[i, k]],
                centre=(float(self.centre[i, k, 0]), float(self.centre[i, k, 1])),
                extent=float(self.extent[i, k]),
                rgb=tuple(int(v) for v in self.rgb[i, k]),
            )
            for k in range(self.n_objects[i])
        )
        relation = _AXIS_RELATION[self.axis[i]] if self.n_objects[i] == 2 else None
        return Scene(objects, relation, int(self.background[i]), int(self.noise_id[i]))

    @classmethod
    def from_scenes(cls, scenes: Sequence[Scene]) -> _SceneArrays:
        n = len(scenes)
        a = cls(
            n_objects=np.zeros(n, np.int8),
            shape=np.full((n, 2), -1, np.int8),
            colour=np.full((n, 2), -1, np.int8),
            size=np.full((n, 2), -1, np.int8),
            centre=np.zeros((n, 2, 2), np.float32),
            extent=np.zeros((n, 2), np.float32),
            rgb=np.zeros((n, 2, 3), np.uint8),
            axis=np.full(n, -1, np.int8),
            background=np.zeros(n, np.uint8),
            noise_id=np.zeros(n, np.int16),
        )
        for i, sc in enumerate(scenes):
            _check_scene(sc)
            a.n_objects[i] = len(sc.objects)
            for k, o in enumerate(sc.objects):
                a.shape[i, k] = SHAPES.index(o.shape)
                a.colour[i, k] = _COLOUR_NAMES.index(o.colour)
                a.size[i, k] = _SIZE_NAMES.index(o.size)
                a.centre[i, k] = o.centre
                a.extent[i, k] = o.extent
                a.rgb[i, k] = o.rgb
            if len(sc.objects) == 2:
                a.axis[i] = _AXIS_RELATION.index(sc.relation)
            a.background[i] = sc.background
            a.noise_id[i] = sc.noise_id % NOISE_BANK_SIZE
        return a


def _check_scene(scene: Scene) -> None:
    if not isinstance(scene, Scene):
        raise TypeError(f"expected a Scene, got {type(scene).__name__}")
    if len(scene.objects) not in (1, 2):
        raise ValueError(f"a scene holds 1 or 2 objects, not {len(scene.objects)}")
    for o in scene.objects:
        _check_name(o.shape, SHAPES, "shape")
        _check_name(o.colour, _COLOUR_NAMES, "colour")
        _check_name(o.size, _SIZE_NAMES, "size")
    if len(scene.objects) == 2 and scene.relation not in _AXIS_RELATION:
        raise ValueError(
            f"a two-object scene stores its relation as 'left of' or 'above' (objects in canonical "
            f"order), got {scene.relation!r}; use compose() to build scenes from any relation"
        )


def _check_name(value: str, options: Sequence[str], what: str) -> None:
    if value not in options:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(options)}")
