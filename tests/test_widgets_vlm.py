"""The vision-language model explorer: set its controls as a learner would and check what it
shows against the model run directly."""

from __future__ import annotations

import numpy as np
import pytest

from mmcourse import training
from mmcourse.data import shapes
from mmcourse.models import vision
from mmcourse.models import vlm as V
from mmcourse.viz import to_png
from mmcourse.widgets import VLMExplorer

from test_vlm import fit  # tests/ is on sys.path: the same tiny VLM, trained a few steps
from test_widgets_vqa import compose_green_triangle_above_yellow_circle


@pytest.fixture(scope="module")
def model():
    data = shapes.generate(32, seed=11)
    with training.seeded(5):
        encoder = vision.build_image_encoder(channels=8)
    return fit(data, V.task_tables(data, V.vocabulary()), encoder)[0]


@pytest.fixture(scope="module")
def data():
    return shapes.generate(4, seed=3, objects=(2,))


@pytest.fixture
def explorer(model, data):
    return VLMExplorer(model, data.images, data.scenes)


def test_starts_answering_the_first_image_s_first_question(explorer, model, data):
    scene = data.scenes[0]
    assert explorer.task.value == "question" and explorer.error is None
    assert explorer.question.options == tuple(qa.question for qa in shapes.questions(scene))
    first = shapes.questions(scene)[0]
    assert explorer.output == V.answer_questions(model, data.images[:1], [first.question])[0]
    assert explorer.true_answer == first.answer and explorer.true == (explorer.output == first.answer)
    assert len(explorer.tokens) <= V.ANSWER_TOKENS and explorer.maps.shape == (len(explorer.tokens), 8, 8)
    assert f"Q:</b> {first.question}" in explorer.info.value
    assert ("✓" if explorer.true else "✗ (true answer:") in explorer.info.value
    assert explorer.image.value[:4] == b"\x89PNG"


def test_the_output_is_the_models_greedy_decoding_of_the_chosen_question(explorer, model, data):
    explorer.index.value = 2
    assert explorer.question.options == tuple(qa.question for qa in shapes.questions(data.scenes[2]))
    explorer.question.value = explorer.question.options[-1]
    asked = explorer.question.value
    tokens, maps = V.generate_with_attention(model, data.images[2], V.question_prompt(asked), max_tokens=V.ANSWER_TOKENS)
    assert explorer.tokens == tokens and np.array_equal(explorer.maps, maps)
    assert explorer.output == V.generate(model, data.images[2:3], [V.question_prompt(asked)], max_tokens=V.ANSWER_TOKENS)[0]
    assert explorer.true_answer == shapes.questions(data.scenes[2])[-1].answer


def test_the_word_slider_moves_the_map_and_the_underline(explorer, data):
    explorer.task.value = "caption"
    assert len(explorer.tokens) >= 2, explorer.tokens
    pictures = set()
    for k in range(explorer.word.max + 1):
        explorer.word.value = k
        assert explorer.peak == tuple(np.unravel_index(np.argmax(explorer.maps[k]), (8, 8)))
        assert f"<u>{explorer.tokens[k]}</u>".replace("<end>", "&lt;end&gt;") in explorer.info.value
        share = explorer.maps[k].sum()
        assert f"{share:.0%} of its attention on the image, {1 - share:.0%} on the words" in explorer.info.value
        pictures.add(explorer.image.value)
    assert explorer.word.max == len(explorer.tokens) - 1 and len(pictures) > 1  # each token's own map
    explorer.index.value = 1
    assert explorer.word.value == 0  # a new output starts at its first token


def test_caption_mode_captions_and_judges_the_caption(explorer, model, data):
    explorer.index.value = 3
    explorer.task.value = "caption"
    assert explorer.output == V.caption_images(model, data.images[3:4])[0]
    assert explorer.true_answer is None and explorer.question.disabled and explorer.typed.disabled
    try:
        truth = shapes.parse_caption(explorer.output).describes(data.scenes[3])
    except shapes.CaptionError:
        truth = False
    assert explorer.true is truth
    assert ("true to the image ✓" if truth else "not true to the image ✗") in explorer.info.value
    assert "caption:</b>" in explorer.info.value and "Q:" not in explorer.info.value
    explorer.task.value = "question"
    assert not explorer.typed.disabled and len(explorer.tokens) <= V.ANSWER_TOKENS


def test_a_typed_unknown_word_is_named_in_one_red_line(explorer, data):
    explorer.typed.value = "what colour is the banana"
    assert "'banana'" in explorer.error and explorer.tokens == [] and explorer.output == ""
    assert explorer.true is None and explorer.peak is None and explorer.word.max == 0
    assert explorer.info.value.count("color:#b00") == 1 and "banana" in explorer.info.value and "Traceback" not in explorer.info.value
    assert explorer.image.value == to_png(data.images[0], scale=explorer.scale)  # undimmed, no outline
    explorer.typed.value = "Is there a red circle?"
    assert explorer.error is None and explorer.tokens


def test_a_composed_scene_offers_its_own_questions_and_knows_a_typed_one(explorer, model):
    before = explorer.question.options
    scene = compose_green_triangle_above_yellow_circle(explorer)
    image = explorer.current()[0]
    np.testing.assert_array_equal(image, shapes.render(scene))
    assert list(explorer.question.options) == [qa.question for qa in shapes.questions(scene)] and explorer.question.options != before
    explorer.typed.value = "What colour is the triangle?"
    assert explorer.true_answer == "green"
    assert explorer.output == V.answer_questions(model, image[None], ["what colour is the triangle"])[0]
    assert explorer.true == (explorer.output == "green")
    assert "is there a purple square" not in explorer.question.options
    explorer.typed.value = "is there a purple square"
    assert explorer.true_answer is None and explorer.true is None and "not one of this scene's own questions" in explorer.info.value
    explorer.widget()  # builds without error


def test_needs_matching_images_and_scenes(model):
    with pytest.raises(ValueError, match="as many scenes as images"):
        VLMExplorer(model, np.zeros((2, 64, 64, 3), np.uint8), [])
