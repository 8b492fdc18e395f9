"""The captioning explorer: controls change the caption and the map shown."""

import numpy as np
import pytest

from mmcourse import training
from mmcourse.data import shapes
from mmcourse.models import captioning as C
from mmcourse.widgets import CaptioningExplorer


@pytest.fixture(scope="module")
def explorer():
    """An untrained captioner with seeded weights: the explorer shows whatever the model says."""
    data = shapes.generate(5, seed=4)
    vocab = shapes.caption_vocabulary()
    with training.seeded(0):
        model = C.Captioner(len(vocab), channels=8, units=16, attention_units=8)
    return CaptioningExplorer(model, vocab, data.images, data.scenes), model, vocab, data


def test_caption_is_the_beam_search_of_the_chosen_image(explorer):
    ex, model, vocab, data = explorer
    ex.index.value = 3
    ex.beam_width.value = 2
    caption, maps, log_p = C.beam_search(model, data.images[3], vocab, beam_width=2)
    assert ex.caption == caption and ex.log_probability == pytest.approx(log_p)
    assert ex.word.max == len(maps) - 1 and ex.word.value == 0


def test_word_slider_moves_the_peak(explorer):
    ex = explorer[0]
    for k in range(ex.word.max + 1):
        ex.word.value = k
        assert ex.peak == tuple(np.unravel_index(np.argmax(ex.attention[k]), (8, 8)))
    assert ex.image.value[:4] == b"\x89PNG"


def test_composed_scene_is_captioned_and_judged(explorer):
    ex, model, vocab, _ = explorer
    ex.source.value = "composed scene"
    ex.composer.count.value = 1
    ex.composer.colour[0].value = "green"
    image, scene = ex.current()
    assert scene.objects[0].colour == "green"
    assert ex.caption == C.beam_search(model, image, vocab, beam_width=ex.beam_width.value)[0]
    truth = shapes.parse_caption(ex.caption).describes(scene) if _parses(ex.caption) else False
    assert ex.true == truth
    assert ex.index.disabled


def _parses(caption):
    try:
        shapes.parse_caption(caption)
        return True
    except shapes.CaptionError:
        return False


def test_needs_matching_images_and_scenes(explorer):
    _, model, vocab, data = explorer
    with pytest.raises(ValueError, match="as many scenes as images"):
        CaptioningExplorer(model, vocab, data.images[:3], data.scenes[:2])
