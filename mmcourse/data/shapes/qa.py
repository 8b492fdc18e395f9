"""Questions about a scene with exact answers, for visual question answering.

:func:`questions` asks, of each object that can be picked out unambiguously, its colour,
shape and size (naming it by its other attributes), then counts, existence (one "yes" and
one "no" per object, so a question alone never gives its answer away) and relations; each
:class:`QA` holds the question, its one-word answer and its kind.
:func:`question_vocabulary` holds every word those questions use.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmcourse.data.shapes.world import _COLOUR_NAMES, _INVERSE, COLOURS, SHAPES, SIZES, Scene
from mmcourse.data.text import Vocabulary


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    kind: str  # colour, shape, size, count, existence or relation


def _plural(shape: str) -> str:
    return shape + "s"


def question_vocabulary() -> Vocabulary:
    """The words of the questions :func:`questions` asks, after ``<pad>``, ``<start>``, ``<end>``
    and ``<unk>``: kept beside the questions, so that a new kind of question brings its words."""
    words = "what colour shape size is the object how many objects are there a where relative to left right of above below".split()
    words += [*SIZES, *COLOURS, *SHAPES, *(_plural(s) for s in SHAPES)]
    return Vocabulary(words)


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
