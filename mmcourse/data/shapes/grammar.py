"""The caption grammar: saying what a scene holds, and reading it back.

Captions are lower case, without punctuation::

    caption     := [prefix] object [relation object]
    prefix      := "there is" | "a picture of" | "an image of" | "a drawing of"
    object      := "a" size colour shape
    size        := "small" | "large"
    colour      := "red" | "green" | "blue" | "yellow" | "purple" | "orange"
    shape       := "circle" | "square" | "triangle"
    relation    := "left of" | "right of" | "above" | "below"

:func:`parse_caption` inverts the grammar exactly, into a :class:`CaptionParse` whose
:class:`Description` compares with a scene's, or raises :class:`CaptionError` at the
first word that does not fit; :func:`vocabulary_words` lists every word the grammar can
produce, :func:`caption_vocabulary` is the vocabulary every model of captions uses, and
:func:`encode_captions` turns captions into its word ids. Every image comes with five reference captions, all of them complete and true:
for two objects, both word orders ("A left of B", "B right of A") appear with different
prefixes. ``_sample_captions`` draws them for many scenes at once, :func:`captions_of`
for one scene, and :func:`caption_distribution` gives the exact probability of each caption.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmcourse.data.text import Vocabulary
from mmcourse.data.shapes.world import (
    _COLOUR_NAMES,
    _INVERSE,
    _SIZE_NAMES,
    CAPTIONS_PER_IMAGE,
    PREFIXES,
    RELATIONS,
    SHAPES,
    Scene,
    ShapeObject,
    _SceneArrays,
)

_N_PHRASES = len(_SIZE_NAMES) * len(_COLOUR_NAMES) * len(SHAPES)  # 36
#: Words in the longest caption, "a picture of a small red circle left of a large blue square" (13):
#: the longest prefix, two objects ("a" size colour shape) and the longest relation.
LONGEST_CAPTION = max(len(p.split()) for p in PREFIXES) + 2 * 4 + max(len(r.split()) for r in RELATIONS)
#: Word ids of a caption for a model that reads or writes it word by word: ``<start>``, the
#: longest caption, ``<end>``, padded to 16.
CAPTION_LENGTH = 16


# --------------------------------------------------------------------------- parsing


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


def caption_vocabulary() -> Vocabulary:
    """``<pad>``, ``<start>``, ``<end>``, ``<unk>`` and every word of the caption grammar: the one
    vocabulary of the captioner, the dual encoder and the conditional VAE, so word ids mean
    the same in all of them."""
    return Vocabulary(vocabulary_words())


_CHECKS = ("grammar", "words", None)


def encode_captions(captions: Sequence[str], vocabulary: Vocabulary | None = None, *, length: int = CAPTION_LENGTH,
                    bounds: bool = True, check: str | None = "grammar") -> np.ndarray:
    """Word ids ``(n, length)`` int32 of captions, padded with 0 at the end.

    Captions are lower-cased and their spaces tidied first. ``vocabulary`` defaults to
    :func:`caption_vocabulary`. ``bounds`` wraps each caption in ``<start>`` … ``<end>`` (what
    a model that writes captions, or is conditioned on them, reads); without them a text
    encoder reads the words alone. ``check`` says how strictly, so that a mistyped caption is
    named rather than silently read as ``<unk>``:

    - ``"grammar"``: every caption is parsed (:func:`parse_caption`); a :class:`CaptionError`
      names the word that does not fit;
    - ``"words"``: any sequence of known words (a search box takes what a learner types); a
      ``ValueError`` names an unknown word, or a caption longer than ``length`` ids hold;
    - ``None``: no check; an unknown word becomes ``<unk>``, a long caption is cut.
    """
    if check not in _CHECKS:
        raise ValueError(f"check must be 'grammar', 'words' or None, got {check!r}")
    if isinstance(captions, str):
        raise TypeError("encode_captions takes a list of captions; wrap a single caption in a list: [caption]")
    vocabulary = caption_vocabulary() if vocabulary is None else vocabulary
    captions = [" ".join(c.lower().split()) for c in captions]
    room = length - 2 if bounds else length  # words that fit
    for c in captions if check else ():
        if check == "grammar":
            parse_caption(c)
        unknown = [w for w in c.split() if w not in vocabulary]
        if unknown:
            raise ValueError(f"unknown word {unknown[0]!r} in caption {c!r}: the model knows only the Shapes words "
                             f"({', '.join(vocabulary.words[4:])})")
        if len(c.split()) > room:
            raise ValueError(f"caption {c!r} has {len(c.split())} words; the model reads at most {room}")
    return vocabulary.encode_batch(captions, length, bounds=bounds)


# --------------------------------------------------------------------------- drawing captions


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
