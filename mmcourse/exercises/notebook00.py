"""Checks for notebook 00 · Start here: the Shapes world."""

from __future__ import annotations

import numpy as np

from mmcourse.exercises import close, exercise, hint


def _measured_fractions(n: int = 2000, seed: int = 3) -> dict[str, float]:
    """Mean share of the image covered by the object, per size, over single-object images."""
    from mmcourse.data import shapes

    single = shapes.generate(n, seed=seed, objects=(1,))
    covered = (single.labels == 1).mean(axis=(1, 2))
    return {size: float(covered[single.contains(size=size)].mean()) for size in shapes.SIZES}


@exercise("00.object_fraction", "On single-object images, what fraction of the pixels belongs to the object, for small and for large objects?",
          right="the object covers about π/4, 1 or 1/2 of its e × e box (circle, square, triangle): e²/4096 × 0.76 on average.")
def object_fraction(answer):
    from mmcourse.data import shapes

    if not isinstance(answer, dict) or set(answer) != set(shapes.SIZES):
        return 'answer with a dict of two numbers: {"small": ..., "large": ...}.'
    try:
        given = {size: float(answer[size]) for size in shapes.SIZES}
    except (TypeError, ValueError):
        return "each value should be one number: the mean fraction of the image's pixels."
    expected = _measured_fractions()
    box = {size: extent**2 / shapes.IMAGE_SIZE**2 for size, extent in shapes.SIZES.items()}
    return (hint(max(given.values()) <= 1, "give fractions of the image (between 0 and 1), not percentages or pixel counts.")
            or hint(not close([given["small"], given["large"]], [expected["large"], expected["small"]], rtol=0.05),
                    "small and large are swapped.")
            or hint(not close(list(given.values()), list(box.values()), rtol=0.05),
                    "that is the whole e × e box; a circle fills π/4 of it, a triangle 1/2.")
            or hint(all(close(given[s], expected[s], rtol=0.05) for s in expected),
                    "measure it: single = shapes.generate(2000, seed=3, objects=(1,)); the object's pixels are single.masks[:, 0]; "
                    "average their share of the image over the images of each size (single.contains(size=...))."))


@exercise("00.stacked_scene", "Compose a scene whose five captions all contain 'below' or 'above'.",
          right="two objects one above the other: every caption names them both and the vertical relation.")
def stacked_scene(answer):
    from mmcourse.data import shapes

    if not isinstance(answer, shapes.Scene):
        return "answer with a scene: shapes.compose([(size, colour, shape), (size, colour, shape)], relation)."
    if len(answer.objects) < 2:
        return "a one-object scene's captions name no relation: compose two objects."
    if answer.relation not in ("above", "below"):
        return f"the objects stand side by side ({answer.relation!r}), so the captions say 'left of' or 'right of'."
    for seed in range(5):  # five draws of the wording
        for caption in shapes.captions_of(answer, seed=seed):
            if not ({"above", "below"} & set(caption.split()) and shapes.parse_caption(caption).describes(answer)):
                return f"the caption {caption!r} does not say 'above' or 'below'."
    return None


SECTION_2_3_SCENE = ([("small", "red", "circle"), ("large", "blue", "square")], "left of")


@exercise("00.partial_captions", "Write three captions that are true of the scene of section 2.3 but do not describe it completely.",
          right="each names one of the two objects, with or without an opening such as 'there is'.")
def partial_captions(answer):
    from mmcourse.data import shapes

    scene = shapes.compose(*SECTION_2_3_SCENE)
    if isinstance(answer, str) or not all(isinstance(c, str) for c in answer):
        return "answer with a list of three captions (strings)."
    for caption in answer:
        try:
            parsed = shapes.parse_caption(caption)
        except shapes.CaptionError as error:
            return f"outside the grammar: {error}."
        if not parsed.is_true_of(scene):
            return f"{caption!r} is not true of the scene (a small red circle left of a large blue square)."
        if parsed.describes(scene):
            return f"{caption!r} describes the scene completely: leave something out."
    distinct = {shapes.parse_caption(c).text() for c in answer}
    return hint(len(distinct) >= 3, f"{len(distinct)} different caption(s): write three.")


def _expected_fraction() -> float:
    """Chance that an image of generate() holds a given colour–shape pair: every object draws one of the
    6 × 3 pairs uniformly, and one- and two-object images are equally likely."""
    from mmcourse.data import shapes

    k = len(shapes.COLOURS) * len(shapes.SHAPES)
    return 0.5 * (1 / k) + 0.5 * (1 - (1 - 1 / k) ** 2)


@exercise("00.expected_fraction", "What fraction of the test images would you expect to contain a yellow triangle?",
          right="1/18 for a one-object image, 1 − (17/18)² for a two-object one, half of each: about 0.082.")
def expected_fraction(answer):
    if not np.isscalar(answer):
        return "answer with one number: the expected fraction of the test images."
    from mmcourse.data import shapes

    k = len(shapes.COLOURS) * len(shapes.SHAPES)
    expected = _expected_fraction()
    return (hint(answer != 0, "the test split draws from every pair: holdout keeps pairs out of the other splits only.")
            or hint(answer <= 1, "give a fraction of the images, not a count.")
            or hint(not close(answer, 1.5 / k, rtol=0.005), "1.5/18 counts an image with two yellow triangles twice: "
                    "a two-object image holds one with probability 1 − (17/18)².")
            or hint(not close(answer, 1 / k, rtol=0.01), "half the images hold two objects, and either may be the yellow triangle.")
            or hint(close(answer, expected, rtol=0.01) or not close(answer, expected, rtol=0.05), "close: give three significant digits.")
            or hint(close(answer, expected, rtol=0.01), "each object is one of 6 × 3 colour–shape pairs, drawn uniformly; "
                    "half the images hold one object, half two. What is the chance that at least one is a yellow triangle?"))
