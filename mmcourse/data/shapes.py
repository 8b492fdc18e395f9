"""The Shapes world: a synthetic image–caption dataset whose ground truth is exact.

Each 64×64 RGB image holds one or two coloured shapes on a light grey background.
Because every image is drawn from a symbolic *scene*, the course can check what real
datasets cannot: whether a caption is true of its image.

Grammar of the captions (lower case, no punctuation)::

    caption     := [prefix] object [relation object]
    prefix      := "there is" | "a picture of" | "an image of" | "a drawing of"
    object      := "a" size colour shape
    size        := "small" | "large"
    colour      := "red" | "green" | "blue" | "yellow" | "purple" | "orange"
    shape       := "circle" | "square" | "triangle"
    relation    := "left of" | "right of" | "above" | "below"

Every image comes with five reference captions, all of them complete and true:
for two objects, both word orders ("A left of B", "B right of A") appear with
different prefixes. :func:`parse_caption` inverts the grammar exactly.

Coordinates are in pixels, x to the right and y downwards; pixel ``(row, col)``
covers ``[col, col+1) × [row, row+1)`` so its centre is ``(col + 0.5, row + 0.5)``.

Generation is vectorised numpy: every random draw happens up front from one
``numpy.random.Generator``, so the same seed gives the same bytes, and rendering
is split over threads (numpy releases the GIL in its loops).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "IMAGE_SIZE",
    "SHAPES",
    "COLOURS",
    "SIZES",
    "RELATIONS",
    "PREFIXES",
    "CAPTIONS_PER_IMAGE",
    "ShapeObject",
    "Scene",
    "ObjectPhrase",
    "Description",
    "CaptionParse",
    "CaptionError",
    "QA",
    "ShapesDataset",
    "generate",
    "splits",
    "render",
    "compose",
    "parse_caption",
    "questions",
    "vocabulary_words",
    "captions_of",
    "caption_distribution",
]

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
_N_PHRASES = len(_SIZE_NAMES) * len(_COLOUR_NAMES) * len(SHAPES)  # 36
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
        return Description(
            tuple(ObjectPhrase(o.size, o.colour, o.shape) for o in self.objects), self.relation
        )

    def masks(self) -> np.ndarray:
        """Boolean masks of the objects, shape ``(len(objects), 64, 64)``."""
        return render(self, masks=True)[1]


class ObjectPhrase(tuple):
    """``(size, colour, shape)`` as said in a caption."""

    __slots__ = ()

    def __new__(cls, size: str, colour: str, shape: str):
        return super().__new__(cls, (size, colour, shape))

    size = property(lambda self: self[0])
    colour = property(lambda self: self[1])
    shape = property(lambda self: self[2])

    def __repr__(self) -> str:
        return f"ObjectPhrase({self.size!r}, {self.colour!r}, {self.shape!r})"

    def text(self) -> str:
        return f"a {self.size} {self.colour} {self.shape}"

    def matches(self, obj: ShapeObject) -> bool:
        return (obj.size, obj.colour, obj.shape) == tuple(self)


@dataclass(frozen=True)
class Description:
    """What a complete caption says, in canonical order (relation is "left of" or "above")."""

    objects: tuple[ObjectPhrase, ...]
    relation: str | None = None


@dataclass(frozen=True)
class CaptionParse:
    """A caption taken apart: prefix, the objects in the order they are said, the relation said."""

    prefix: str
    objects: tuple[ObjectPhrase, ...]
    relation: str | None = None

    def text(self) -> str:
        """The caption again: ``parse_caption(t).text() == t`` for every caption of the grammar."""
        words = [self.prefix] if self.prefix else []
        words.append(self.objects[0].text())
        if self.relation is not None:
            words += [self.relation, self.objects[1].text()]
        return " ".join(words)

    def description(self) -> Description:
        if self.relation in ("right of", "below"):
            return Description((self.objects[1], self.objects[0]), _INVERSE[self.relation])
        return Description(self.objects, self.relation)

    def describes(self, scene: Scene) -> bool:
        """True when the caption is a complete and true description of the scene."""
        return self.description() == scene.description()

    def is_true_of(self, scene: Scene) -> bool:
        """True when everything the caption says holds in the scene (it may leave things out)."""
        objs = scene.objects
        if self.relation is None:
            return any(self.objects[0].matches(o) for o in objs)
        return any(
            self.objects[0].matches(objs[i])
            and self.objects[1].matches(objs[j])
            and scene.relation_between(i, j) == self.relation
            for i in range(len(objs))
            for j in range(len(objs))
            if i != j
        )


class CaptionError(ValueError):
    """A sentence outside the Shapes grammar; ``word`` and ``position`` say where it went wrong."""

    def __init__(self, text: str, position: int, word: str | None, expected: str):
        self.text, self.position, self.word, self.expected = text, position, word, expected
        if word is None:
            msg = f"caption {text!r} ends too early: expected {expected} after word {position}"
        else:
            msg = f"cannot place {word!r} (word {position + 1}) in caption {text!r}: expected {expected}"
        super().__init__(msg)


def parse_caption(text: str) -> CaptionParse:
    """Parse a Shapes caption; raise :class:`CaptionError` naming the first word that does not fit."""
    if not isinstance(text, str):
        raise TypeError(f"parse_caption expects a string, got {type(text).__name__}")
    words = text.split()
    if not words:
        raise CaptionError(text, 0, None, "a caption such as 'a small red circle'")
    pos = 0
    prefix = ""
    for candidate in PREFIXES[1:]:
        cw = candidate.split()
        if words[: len(cw)] == cw:
            prefix, pos = candidate, len(cw)
            break

    def expect(options: Sequence[str], what: str) -> str:
        nonlocal pos
        if pos >= len(words):
            raise CaptionError(text, pos, None, what)
        if words[pos] not in options:
            raise CaptionError(text, pos, words[pos], what)
        pos += 1
        return words[pos - 1]

    def object_phrase() -> ObjectPhrase:
        expect(("a",), "'a'")
        size = expect(_SIZE_NAMES, "a size (" + ", ".join(_SIZE_NAMES) + ")")
        colour = expect(_COLOUR_NAMES, "a colour (" + ", ".join(_COLOUR_NAMES) + ")")
        shape = expect(SHAPES, "a shape (" + ", ".join(SHAPES) + ")")
        return ObjectPhrase(size, colour, shape)

    first = object_phrase()
    if pos == len(words):
        return CaptionParse(prefix, (first,))
    relation_what = "a relation (" + ", ".join(RELATIONS) + ") or the end of the caption"
    head = expect(("left", "right", "above", "below"), relation_what)
    if head in ("left", "right"):
        expect(("of",), f"'of' after {head!r}")
        relation = f"{head} of"
    else:
        relation = head
    second = object_phrase()
    if pos < len(words):
        raise CaptionError(text, pos, words[pos], "the end of the caption")
    return CaptionParse(prefix, (first, second), relation)


def vocabulary_words() -> list[str]:
    """Every word the caption grammar can produce, in a fixed order."""
    words: list[str] = []
    for chunk in (*PREFIXES, "a", *_SIZE_NAMES, *_COLOUR_NAMES, *SHAPES, *RELATIONS):
        for w in chunk.split():
            if w not in words:
                words.append(w)
    return words


# --------------------------------------------------------------------------- questions


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    kind: str  # colour, shape, size, count, existence or relation


def _plural(shape: str) -> str:
    return shape + "s"


def _refer(scene: Scene, k: int, leave_out: str) -> str | None:
    """The shortest noun phrase that picks out object k without saying ``leave_out``."""
    obj = scene.objects[k]
    others = [o for i, o in enumerate(scene.objects) if i != k]
    options = {
        "colour": [("shape",), ("size", "shape")],
        "shape": [("colour",), ("size", "colour")],
        "size": [("shape",), ("colour", "shape")],
        "none": [("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape")],
    }[leave_out]
    for attrs in options:
        if all(any(getattr(o, a) != getattr(obj, a) for a in attrs) for o in others):
            words = [getattr(obj, a) for a in attrs]
            if "shape" not in attrs:
                words.append("object")
            return " ".join(words)
    return None


def questions(scene: Scene) -> list[QA]:
    """Question–answer pairs that the scene answers exactly.

    Kinds: colour, shape, size (of an object picked out by its other attributes),
    count, existence (balanced yes/no) and relation. Objects that cannot be picked
    out unambiguously (two identical objects) get no attribute questions.
    """
    objs = scene.objects
    qa: list[QA] = []
    for k, obj in enumerate(objs):
        ref = _refer(scene, k, "colour")
        if ref:
            qa.append(QA(f"what colour is the {ref}", obj.colour, "colour"))
        ref = _refer(scene, k, "shape")
        if ref:
            qa.append(QA(f"what shape is the {ref}", obj.shape, "shape"))
        ref = _refer(scene, k, "size")
        if ref:
            qa.append(QA(f"what size is the {ref}", obj.size, "size"))
    qa.append(QA("how many objects are there", str(len(objs)), "count"))
    for k, obj in enumerate(objs):
        if k == 0 or obj.shape != objs[0].shape:
            n = sum(o.shape == obj.shape for o in objs)
            qa.append(QA(f"how many {_plural(obj.shape)} are there", str(n), "count"))
    # Existence: one "yes" per object and one "no" for the colour next to it in the list,
    # so a question alone never gives its answer away.
    present = {(o.colour, o.shape) for o in objs}
    for obj in objs:
        qa.append(QA(f"is there a {obj.colour} {obj.shape}", "yes", "existence"))
        i = _COLOUR_NAMES.index(obj.colour)
        for step in range(1, len(_COLOUR_NAMES)):
            other = _COLOUR_NAMES[(i + step) % len(_COLOUR_NAMES)]
            if (other, obj.shape) not in present:
                qa.append(QA(f"is there a {other} {obj.shape}", "no", "existence"))
                break
    if len(objs) == 2:
        a, b = _refer(scene, 0, "none"), _refer(scene, 1, "none")
        if a and b:
            rel = scene.relation_between(0, 1)
            qa.append(QA(f"where is the {a} relative to the {b}", rel.split()[0], "relation"))
            qa.append(QA(f"where is the {b} relative to the {a}", _INVERSE[rel].split()[0], "relation"))
            qa.append(QA(f"is the {a} {rel} the {b}", "yes", "relation"))
            qa.append(QA(f"is the {a} {_INVERSE[rel]} the {b}", "no", "relation"))
    return qa


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


# --------------------------------------------------------------------------- sampling


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


# --------------------------------------------------------------------------- rendering


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


# --------------------------------------------------------------------------- captions


def _phrase_index(size, colour, shape):
    return (size * len(_COLOUR_NAMES) + colour) * len(SHAPES) + shape


@functools.lru_cache(maxsize=1)
def _caption_tables() -> tuple[np.ndarray, np.ndarray]:
    """Every caption the grammar can say, indexed by (prefix, phrase[, relation, phrase])."""
    phrases = [f"a {s} {c} {h}" for s in _SIZE_NAMES for c in _COLOUR_NAMES for h in SHAPES]
    heads = [p + " " if p else "" for p in PREFIXES]
    single = np.array([h + p for h in heads for p in phrases], dtype=object)
    pair = np.array(
        [f"{h}{p} {r} {q}" for h in heads for p in phrases for r in RELATIONS for q in phrases], dtype=object
    )
    return single, pair


def _sample_captions(rng: np.random.Generator, a: _SceneArrays) -> list[list[str]]:
    """Five distinct true captions per scene: the five prefixes in random order; for two
    objects the word order alternates ("A left of B", "B right of A", …) from a random start."""
    n = len(a)
    single, pair = _caption_tables()
    prefix = np.argsort(rng.random((n, len(PREFIXES))), axis=1)[:, :CAPTIONS_PER_IMAGE]
    swap = (rng.integers(2, size=(n, 1)) + np.arange(CAPTIONS_PER_IMAGE)[None, :]) % 2
    ph = _phrase_index(np.maximum(a.size, 0), np.maximum(a.colour, 0), np.maximum(a.shape, 0)).astype(np.intp)
    first = np.where(swap, ph[:, 1:2], ph[:, 0:1])
    second = np.where(swap, ph[:, 0:1], ph[:, 1:2])
    # RELATIONS is ("left of", "right of", "above", "below"): canonical 0 or 2, +1 when swapped.
    rel = 2 * np.maximum(a.axis, 0)[:, None].astype(np.intp) + swap
    pair_id = ((prefix * _N_PHRASES + first) * len(RELATIONS) + rel) * _N_PHRASES + second
    single_id = prefix * _N_PHRASES + ph[:, 0:1]
    two = (a.n_objects == 2)[:, None]
    return np.where(two, pair[pair_id], single[single_id]).tolist()


# --------------------------------------------------------------------------- datasets


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


def captions_of(scene: Scene, seed: int = 0) -> list[str]:
    """Five true reference captions for one scene, drawn as :func:`generate` draws them."""
    a = _SceneArrays.from_scenes([scene])
    return _sample_captions(np.random.default_rng(seed), a)[0]


def caption_distribution() -> dict[str, float]:
    """The probability of every caption, drawing one reference caption of one image of
    ``generate(n)`` (default options) at random.

    Half the images hold one object: any of the 5 prefixes and 36 object phrases, so each
    such caption has probability ½ · ⅕ · 1/36. The other half hold two: a prefix, the
    phrase said first, one of the 4 relation words (2 axes × 2 word orders) and the phrase
    said second, each uniform and independent: ½ · ⅕ · 1/36 · ¼ · 1/36. This is what makes
    the best possible perplexity of a caption language model computable (notebook 03).
    """
    single, pair = _caption_tables()
    p_single = 0.5 / (len(PREFIXES) * _N_PHRASES)
    p_pair = 0.5 / (len(PREFIXES) * _N_PHRASES * len(RELATIONS) * _N_PHRASES)
    out = dict.fromkeys(single.tolist(), p_single)
    out.update(dict.fromkeys(pair.tolist(), p_pair))
    return out
