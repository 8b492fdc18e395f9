"""The convolution playground, driven by setting its controls as a learner would."""

import io

import numpy as np
import pytest
import skimage.color
from PIL import Image

from mmcourse import imageops
from mmcourse.widgets import ConvolutionPlayground

RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 256, size=(24, 20, 3), dtype=np.uint8)


def shown(image_widget):
    return np.asarray(Image.open(io.BytesIO(image_widget.value)).convert("RGB"))


def brute_force_same(image, k):
    """Cross-correlation with zero padding of one pixel, written as the definition."""
    padded = np.pad(image, 1)
    h, w = image.shape
    return np.array([[np.sum(padded[i : i + 3, j : j + 3] * k) for j in range(w)] for i in range(h)])


def test_choosing_a_named_kernel_sets_the_sliders_and_filters_the_grey_photo():
    pg = ConvolutionPlayground(PHOTO)
    pg.kernel_name.value = "gaussian blur"
    np.testing.assert_array_equal(pg.kernel, imageops.KERNELS["gaussian blur"])
    grey = skimage.color.rgb2gray(PHOTO)
    np.testing.assert_allclose(pg.result, brute_force_same(grey, pg.kernel), atol=1e-5)
    # a blur sums to one, so the picture is the result clipped to [0, 1]
    np.testing.assert_array_equal(shown(pg.filtered)[..., 0], (np.clip(pg.result, 0, 1) * 255 + 0.5).astype(np.uint8))


def test_moving_a_slider_makes_a_custom_kernel_and_changes_the_picture():
    pg = ConvolutionPlayground(PHOTO)
    pg.kernel_name.value = "identity"
    before = pg.filtered.value
    np.testing.assert_allclose(pg.result, skimage.color.rgb2gray(PHOTO), atol=1e-5)
    pg.sliders[0][2].value = 1.0  # k[0, 2]: adds the pixel one up and one to the right
    assert pg.kernel_name.value == "custom"
    assert pg.kernel[1, 1] == 1.0 and pg.kernel[0, 2] == 1.0  # the other sliders kept their values
    assert pg.filtered.value != before
    np.testing.assert_allclose(pg.result, brute_force_same(skimage.color.rgb2gray(PHOTO), pg.kernel), atol=1e-5)


def test_colour_mode_filters_each_channel_and_edges_show_their_absolute_value():
    pg = ConvolutionPlayground(PHOTO)
    pg.grey.value = False
    pg.kernel_name.value = "sobel y"
    photo = PHOTO / 255.0
    for c in range(3):
        np.testing.assert_allclose(pg.result[..., c], brute_force_same(photo[..., c], imageops.KERNELS["sobel y"]), atol=1e-4)
    expected = (np.abs(pg.result) / np.abs(pg.result).max() * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(shown(pg.filtered), expected)
    assert "sum to <b>0.00" in pg.info.value


def test_the_playground_needs_an_rgb_image():
    with pytest.raises(ValueError, match=r"RGB image \(h, w, 3\)"):
        ConvolutionPlayground(PHOTO[..., 0])
    assert ConvolutionPlayground(size=32).photo.shape == (32, 32, 3)  # the astronaut, made small


def test_a_named_kernel_survives_the_browser_rounding_its_weights_to_the_slider_step():
    """A browser snaps 1/9 to the sliders' step and sends it back: "box blur" must stay box blur,
    applied with its exact weights; a real move of one slider still makes it custom."""
    playground = ConvolutionPlayground(np.random.default_rng(0).random((16, 16, 3)))
    playground.kernel_name.value = "box blur"
    playground.sliders[0][0].value = round(1 / 9, 2)  # what the page sends back
    assert playground.kernel_name.value == "box blur"
    assert np.array_equal(playground.kernel, imageops.KERNELS["box blur"])
    assert "sum to <b>1.00</b>" in playground.info.value
    playground.sliders[0][0].value = 0.5
    assert playground.kernel_name.value == "custom" and playground.kernel[0, 0] == 0.5
