"""The draw widget, driven by setting its controls as a learner would, on a tiny untrained model."""

import numpy as np
import pytest

from mmcourse.data import shapes
from mmcourse.metrics import judge as J
from mmcourse.models import denoiser as D
from mmcourse.models import diffusion, latent_diffusion as LD, latent_autoencoder as LAE, vision
from mmcourse.viz import to_png
from mmcourse.widgets import DiffusionDrawer


@pytest.fixture(scope="module")
def drawer():
    model = LD.LatentDiffusion(LAE.build_latent_autoencoder(width=4, seed=0), D.build_denoiser(width=8, text_width=8, num_heads=2),
                               shapes.caption_vocabulary(), diffusion.schedule(100))
    judge = J.SceneJudge(vision.build_attribute_classifier(vision.build_image_encoder(channels=8)))
    return DiffusionDrawer(model, judge=judge, n=3, steps=6)


def test_the_drawer_draws_judges_and_shows_each_step(drawer):
    assert drawer.drawn.shape == (3, 64, 64, 3) and len(drawer.true) == 3 and len(drawer.pictures.children) == 3
    assert "judged true" in drawer.message.value and "6 DDIM steps" in drawer.message.value
    assert drawer.frames.shape == (6, 64, 64, 3) and drawer.frame_steps == sorted(drawer.frame_steps, reverse=True)
    # the slider shows the frame it points at (an untrained model's guesses may all clip to one image,
    # so compare with the frame's own picture, not with the other frames)
    assert drawer.step.value == 5 and drawer.frame.value == to_png(drawer.frames[5], 2 * drawer.scale)
    drawer.step.value = 0
    assert drawer.frame.value == to_png(drawer.frames[0], 2 * drawer.scale) and "step 1 of 6" in drawer.frame_label.value
    # the drawings are the model's for this caption, guidance and seed
    np.testing.assert_array_equal(drawer.drawn, drawer.model.draw([drawer.caption.value] * 3, guidance=3.0, steps=6, seed=0))


def test_the_controls_redraw_and_a_bad_word_is_named(drawer):
    before = drawer.drawn.copy()
    drawer.steps.value = 4
    assert len(drawer.frames) == 4 and drawer.step.max == 3
    drawer.guidance.value = 1.0
    assert "guidance 1" in drawer.message.value
    drawer.again.click()
    assert not np.array_equal(drawer.drawn, before)
    drawer.caption.value = "a small red blob"
    assert "blob" in drawer.error and "blob" in drawer.message.value and drawer.pictures.children == () and drawer.frame.value == b""
    drawer.caption.value = "A small  BLUE square"
    assert drawer.error == "" and len(drawer.drawn) == 3
