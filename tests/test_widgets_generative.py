"""Latent sliders and text to image, driven by setting their controls as a learner would."""

import numpy as np
import pytest

from mmcourse.data import shapes
from mmcourse.models import vae as V
from mmcourse.metrics import judge as J
from mmcourse.models import vision
from mmcourse.widgets import LatentSliders, TextToImage


@pytest.fixture(scope="module")
def vae():
    return V.VAE(6)


def test_latent_sliders_move_the_code_and_the_picture(vae):
    images = shapes.generate(5, seed=2).images
    w = LatentSliders(vae, images, n_sliders=3)
    assert len(w.sliders) == 3 and len(set(w.directions)) == 3
    start_code, start_png = w.code.copy(), w.image.value
    w.sliders[0].value = 2.5
    assert w.code[w.directions[0]] == pytest.approx(2.5)
    np.testing.assert_array_equal(np.delete(w.code, w.directions[0]), np.delete(start_code, w.directions[0]))
    assert w.image.value != start_png
    expected = np.clip(np.rint(np.asarray(vae.decode(w.code[None]))[0] * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(w.decoded, expected)
    w.index.value = 3
    np.testing.assert_allclose(w.code[w.directions], np.clip(np.round(w.base_codes[3, w.directions], 1), -3, 3), atol=1e-6)


def test_text_to_image_draws_judges_and_names_unknown_words():
    vocab = shapes.caption_vocabulary()
    cvae = V.VAE(4, vocab_size=len(vocab))
    judge = J.SceneJudge(vision.build_attribute_classifier(vision.build_image_encoder(channels=8)))
    w = TextToImage(cvae, judge=judge, n=3)
    assert w.drawn.shape == (3, 64, 64, 3) and len(w.true) == 3 and len(w.pictures.children) == 3
    assert "judged true" in w.message.value
    w.caption.value = "a giant red circle"
    assert "giant" in w.error and "giant" in w.message.value and w.pictures.children == ()
    w.caption.value = "A small  BLUE square"
    assert w.error == "" and len(w.drawn) == 3
