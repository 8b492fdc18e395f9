"""Convolution, output sizes and pooling by hand, checked against TensorFlow and Keras."""

import itertools

import numpy as np
import pytest

from mmcourse import imageops
from mmcourse._tf import tensorflow

tf = tensorflow()
import keras  # noqa: E402  (after the quiet TensorFlow import)

RNG = np.random.default_rng(0)


def tf_conv(x, k, padding, stride):
    """Reference: tf.nn.conv2d on a batch with a 4-D kernel (explicit padding as [[0,0],[p,p],[p,p],[0,0]])."""
    pad = padding.upper() if isinstance(padding, str) else [[0, 0], [padding, padding], [padding, padding], [0, 0]]
    return tf.nn.conv2d(x.astype(np.float32), k.astype(np.float32), strides=stride, padding=pad).numpy()


@pytest.mark.parametrize(
    "h, w, c_in, c_out, k, padding, stride",
    [
        (9, 9, 1, 1, 3, "valid", 1),
        (9, 9, 1, 1, 3, "same", 1),
        (10, 7, 3, 4, 3, "same", 2),
        (11, 12, 2, 5, 4, "same", 3),  # even kernel: TF puts the odd padding pixel after
        (11, 12, 2, 5, 4, "valid", 2),
        (8, 8, 3, 2, 5, 2, 1),  # explicit padding of 2 pixels
        (13, 9, 4, 3, 2, "same", (2, 1)),
    ],
)
def test_conv2d_matches_tf_nn_conv2d(h, w, c_in, c_out, k, padding, stride):
    x = RNG.normal(size=(2, h, w, c_in)).astype(np.float32)
    kernel = RNG.normal(size=(k, k, c_in, c_out)).astype(np.float32)
    ours = imageops.conv2d(x, kernel, padding, stride)
    np.testing.assert_allclose(ours, tf_conv(x, kernel, padding, stride), rtol=1e-5, atol=1e-5)
    # one image of the batch, and the shape promised by output_size
    np.testing.assert_allclose(imageops.conv2d(x[1], kernel, padding, stride), ours[1], rtol=1e-6, atol=1e-6)
    sh, sw = (stride, stride) if np.ndim(stride) == 0 else stride
    assert ours.shape[1:3] == (imageops.output_size(h, k, padding, sh), imageops.output_size(w, k, padding, sw))


def test_conv2d_single_channel_shapes_and_a_brute_force_loop():
    x = RNG.normal(size=(6, 7))
    k = imageops.KERNELS["sobel x"]
    y = imageops.conv2d(x, k)
    assert y.shape == (4, 5)
    brute = np.array([[sum(x[i + u, j + v] * k[u, v] for u in range(3) for v in range(3)) for j in range(5)] for i in range(4)])
    np.testing.assert_allclose(y, brute, rtol=1e-6, atol=1e-6)
    # a (k_h, k_w, c_in) kernel sums over the channels and gives one map
    xc = RNG.normal(size=(6, 7, 3))
    kc = RNG.normal(size=(3, 3, 3))
    np.testing.assert_allclose(imageops.conv2d(xc, kc), tf_conv(xc[None], kc[..., None], "valid", 1)[0, ..., 0], rtol=1e-5, atol=1e-5)


def test_sobel_is_positive_where_the_image_gets_brighter_to_the_right_and_down():
    step = np.zeros((6, 6))
    step[:, 3:] = 1.0
    assert imageops.conv2d(step, imageops.KERNELS["sobel x"]).max() > 0
    assert np.allclose(imageops.conv2d(step, imageops.KERNELS["sobel y"]), 0)
    assert imageops.conv2d(step.T, imageops.KERNELS["sobel y"]).max() > 0


def test_blur_kernels_sum_to_one_and_gaussian_matches_its_formula():
    for name in ("box blur", "gaussian blur", "identity", "sharpen"):
        assert imageops.KERNELS[name].sum() == pytest.approx(1.0)
    g = imageops.gaussian_kernel(5, 1.3)
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros((5, 5))
    impulse[2, 2] = 1
    reference = gaussian_filter(impulse, 1.3, mode="constant", truncate=2 / 1.3)
    # scipy samples the same exp(-(u²+v²)/2σ²) on the same grid; both are normalised to sum 1
    np.testing.assert_allclose(g, reference / reference.sum(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        imageops.gaussian_kernel(4, 1.0)


def test_filter_channels_matches_depthwise_conv2d():
    x = RNG.random((2, 12, 10, 3)).astype(np.float32)
    k = imageops.KERNELS["sharpen"]
    depthwise = np.repeat(k[:, :, None, None], 3, axis=2)
    reference = tf.nn.depthwise_conv2d(x, depthwise, strides=[1, 1, 1, 1], padding="SAME").numpy()
    np.testing.assert_allclose(imageops.filter_channels(x, k), reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(imageops.filter_channels(x[0], k), reference[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(imageops.filter_channels(x[0, ..., 1], k), reference[0, ..., 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n, k, padding, stride", list(itertools.product([5, 8, 13], [1, 2, 3, 5], ["valid", "same"], [1, 2, 3])))
def test_output_size_matches_keras_layers(n, k, padding, stride):
    if padding == "valid" and k > n:
        return
    conv = keras.layers.Conv2D(1, k, strides=stride, padding=padding)
    pool = keras.layers.MaxPooling2D(k, strides=stride, padding=padding)
    expected = imageops.output_size(n, k, padding, stride)
    assert conv.compute_output_shape((None, n, n, 1))[1] == expected
    assert pool.compute_output_shape((None, n, n, 1))[1] == expected


def test_output_size_with_explicit_padding_matches_zero_padding_then_valid():
    for n, k, p, s in itertools.product([5, 9], [1, 3, 4], [0, 1, 2], [1, 2]):
        model = keras.Sequential([keras.Input((n, n, 1)), keras.layers.ZeroPadding2D(p), keras.layers.Conv2D(1, k, strides=s)])
        assert model.output_shape[1] == imageops.output_size(n, k, p, s)
    assert imageops.same_padding(7, 4, 3) == (1, 2)  # TF: total = (3-1)*3 + 4 - 7 = 3, odd pixel after


@pytest.mark.parametrize("size, stride, padding", [(2, None, "valid"), (3, 2, "valid"), (3, 2, "same"), (2, 1, "same"), ((2, 3), (1, 2), "same")])
def test_pooling_matches_tf(size, stride, padding):
    x = RNG.normal(size=(2, 9, 8, 3)).astype(np.float32)
    strides = size if stride is None else stride
    np.testing.assert_allclose(
        imageops.max_pool2d(x, size, stride, padding), tf.nn.max_pool2d(x, size, strides, padding.upper()).numpy(), rtol=1e-6
    )
    np.testing.assert_allclose(
        imageops.avg_pool2d(x, size, stride, padding), tf.nn.avg_pool2d(x, size, strides, padding.upper()).numpy(), rtol=1e-5, atol=1e-6
    )
    assert imageops.max_pool2d(x[0, ..., 0], size, stride, padding).ndim == 2


def test_learner_mistakes_say_what_to_do():
    with pytest.raises(ValueError, match="input channel"):
        imageops.conv2d(np.zeros((5, 5, 3)), np.zeros((3, 3, 1, 2)))
    with pytest.raises(ValueError, match="padding='same'"):
        imageops.conv2d(np.zeros((2, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="'valid', 'same'"):
        imageops.conv2d(np.zeros((5, 5)), np.zeros((3, 3)), padding="full")
    with pytest.raises(ValueError, match=r"\(height, width\)"):
        imageops.conv2d(np.zeros(5), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="stride"):
        imageops.output_size(8, 3, "valid", 0)
    with pytest.raises(ValueError, match="does not fit"):
        imageops.output_size(2, 5)
    with pytest.raises(ValueError, match="filter_channels takes one 2-D kernel"):
        imageops.filter_channels(np.zeros((5, 5, 3)), np.zeros((3, 3, 3)))


def test_to_unit_and_to_uint8_convert_both_ways_and_check_their_input():
    raw = RNG.integers(0, 256, (2, 5, 5, 3)).astype(np.uint8)
    x = imageops.to_unit(raw)
    assert x.dtype == np.float32 and np.array_equal(imageops.to_uint8(x), raw)
    assert imageops.to_unit(raw[0]).shape == imageops.to_uint8(raw[0]).shape == (1, 5, 5, 3)  # one image: a batch of one
    assert imageops.to_uint8(np.array([[[-0.1, 0.5, 1.2]]])).tolist() == [[[[0, 128, 255]]]]  # rounded and clipped
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(imageops.to_unit_tensor(raw)), x)  # the same step in a graph
    assert imageops.to_unit_tensor(x).dtype == "float32"
    with pytest.raises(ValueError, match=r"4×4 RGB.*resize"):
        imageops.to_unit(raw, shape=(4, 4, 3))
    with pytest.raises(ValueError, match=r"span \[0, 255\]; divide uint8 images by 255"):
        imageops.to_unit(raw.astype(np.float32) * 0 + np.float32(255) * (np.arange(3) / 2))
    with pytest.raises(ValueError, match="uint8 in \\[0, 255\\] or floats"):
        imageops.to_unit(raw.astype(np.int64))
