"""The Shapes world: a synthetic image–caption dataset whose ground truth is exact.

Each 64×64 RGB image holds one or two coloured shapes on a light grey background.
Because every image is drawn from a symbolic *scene*, the course can check what real
datasets cannot: whether a caption is true of its image. Every image comes with five
reference captions, all of them complete and true, in a small grammar that
:func:`parse_caption` inverts exactly.

Each step has its own module; everything public is imported here, so
``from mmcourse.data import shapes; shapes.generate(100)`` is all a notebook needs:

- :mod:`~mmcourse.data.shapes.world`: the vocabulary and the drawing constants,
  :class:`ShapeObject` and :class:`Scene`, and scenes as columns of arrays;
- :mod:`~mmcourse.data.shapes.grammar`: the caption grammar, :func:`parse_caption`,
  reference captions drawn for scenes, and captions as word ids (:func:`caption_vocabulary`,
  :func:`encode_captions`);
- :mod:`~mmcourse.data.shapes.qa`: question–answer pairs a scene answers exactly, and the
  words they use (:func:`question_vocabulary`);
- :mod:`~mmcourse.data.shapes.sampling`: random scenes, every draw from one seed;
- :mod:`~mmcourse.data.shapes.rendering`: scenes to images and per-object label maps;
- :mod:`~mmcourse.data.shapes.datasets`: :func:`generate`, :func:`splits`, :func:`compose`
  and :class:`ShapesDataset`.
"""

from mmcourse.data.shapes.datasets import ShapesDataset, compose, generate, splits
from mmcourse.data.shapes.grammar import (
    CAPTION_LENGTH,
    LONGEST_CAPTION,
    CaptionError,
    CaptionParse,
    Description,
    ObjectPhrase,
    caption_distribution,
    caption_vocabulary,
    captions_of,
    encode_captions,
    parse_caption,
    vocabulary_words,
)
from mmcourse.data.shapes.qa import QA, question_vocabulary, questions
from mmcourse.data.shapes.rendering import render
from mmcourse.data.shapes.world import (
    BACKGROUND,
    BACKGROUND_JITTER,
    CAPTIONS_PER_IMAGE,
    COLOUR_JITTER,
    COLOURS,
    IMAGE_SIZE,
    MARGIN,
    MIN_GAP,
    NOISE_BANK_SIZE,
    NOISE_CLIP,
    NOISE_SIGMA,
    PREFIXES,
    RELATIONS,
    SHAPES,
    SIZE_JITTER,
    SIZES,
    Scene,
    ShapeObject,
)

__all__ = [
    "IMAGE_SIZE",
    "SHAPES",
    "COLOURS",
    "SIZES",
    "RELATIONS",
    "PREFIXES",
    "CAPTIONS_PER_IMAGE",
    "LONGEST_CAPTION",
    "CAPTION_LENGTH",
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
    "caption_vocabulary",
    "encode_captions",
    "question_vocabulary",
    "captions_of",
    "caption_distribution",
]
