"""The VQA explorer: set its controls as a learner would and check what it shows."""

from __future__ import annotations

import numpy as np
import pytest

from mmcourse.data import shapes
from mmcourse.models import vqa as F
from mmcourse.models import vision
from mmcourse.widgets import VQAExplorer


@pytest.fixture(scope="module")
def explorer():
    data = shapes.generate(5, seed=11)
    encoder = vision.build_image_encoder(8)
    encoder.trainable = False
    models = {name: F.VQAModel(name, units=8) for name in ("early", "attention")}
    return VQAExplorer(encoder, models, data.images, data.scenes)


def test_starts_with_attention_and_a_true_question(explorer):
    assert explorer.model.value == "attention"
    scene = explorer.scenes[0]
    assert explorer.question.options == tuple(qa.question for qa in shapes.questions(scene))
    assert explorer.error is None and explorer.result["answer"] in F.ANSWERS
    assert explorer.true_answer == shapes.questions(scene)[0].answer
    assert explorer.result["attention"].shape == (8, 8)
    assert explorer.image.value[:4] == b"\x89PNG"


def test_changing_image_model_and_question(explorer):
    explorer.index.value = 3
    assert explorer.question.options == tuple(qa.question for qa in shapes.questions(explorer.scenes[3]))
    explorer.question.value = explorer.question.options[-1]
    assert explorer.true_answer == shapes.questions(explorer.scenes[3])[-1].answer
    explorer.model.value = "early"
    assert explorer.result["attention"] is None and "(early)" in explorer.info.value


def test_typed_question_outside_the_grammar_gets_a_clear_message(explorer):
    explorer.typed.value = "what colour is the banana"
    assert explorer.result is None and "'banana'" in explorer.error
    assert "cannot read this question" in explorer.info.value and "banana" in explorer.info.value
    explorer.typed.value = "Is there a red circle?"
    assert explorer.error is None and explorer.result["answer"] in F.ANSWERS
    explorer.typed.value = ""


def compose_green_triangle_above_yellow_circle(explorer) -> shapes.Scene:
    """Switch ``explorer`` to composing and compose a green triangle above a yellow circle, as a learner would."""
    explorer.source.value = "compose"
    c = explorer.composer
    c.count.value = 2
    c.colour[0].value, c.shape[0].value = "green", "triangle"
    c.colour[1].value, c.shape[1].value = "yellow", "circle"
    c.relation.value = "above"
    assert explorer.current()[1] is c.scene
    return c.scene


def test_composed_scene(explorer):
    scene = compose_green_triangle_above_yellow_circle(explorer)
    questions = [qa.question for qa in shapes.questions(scene)]
    assert list(explorer.question.options) == questions
    explorer.question.value = "what colour is the triangle"
    assert explorer.true_answer == "green"
    np.testing.assert_array_equal(explorer.current()[0], shapes.render(scene))
    explorer.widget()  # builds without error
    explorer.source.value = "dataset"


def test_needs_a_model():
    with pytest.raises(ValueError, match="at least one trained VQA model"):
        VQAExplorer(None, {}, np.zeros((1, 64, 64, 3), np.uint8), [])
