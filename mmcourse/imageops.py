"""Image operations by hand, in numpy: convolution, output sizes, pooling, classic kernels.

What a convolutional layer computes, written out so it can be read and checked.
Deep-learning frameworks call it *convolution* but compute a **cross-correlation**
(the kernel is not flipped)::

    y[i, j, o] = sum_{u, v, c} x[s*i + u, s*j + v, c] * k[u, v, c, o]

with stride ``s``, after padding ``x`` with zeros. :func:`conv2d` follows
``tf.nn.conv2d`` exactly, ``"same"`` padding included (when the padding is odd, the
extra row and column go at the bottom and the right).

Images are channels-last: ``(height, width)``, ``(height, width, channels)`` or a batch
``(n, height, width, channels)``.

Pixel values come in two conventions, uint8 in ``[0, 255]`` (as images are stored and
drawn) and float32 in ``[0, 1]`` (as networks take them). :func:`to_unit` and
:func:`to_uint8` are the one way across, in numpy; :func:`to_unit_tensor` is the same step
inside a model's graph. Nothing here needs TensorFlow, except :func:`to_unit_tensor`, which
imports Keras when it is called.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mmcourse.checks import check_positive_int

__all__ = [
    "to_unit",
    "to_uint8",
    "to_unit_tensor",
    "PADDINGS",
    "KERNELS",
    "gaussian_kernel",
    "output_size",
    "same_padding",
    "conv2d",
    "filter_channels",
    "max_pool2d",
    "avg_pool2d",
]

PADDINGS = ("valid", "same")

#: Classic hand-made 3×3 kernels, as cross-correlation kernels (rows = y, columns = x).
KERNELS: dict[str, np.ndarray] = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32),
    "box blur": np.full((3, 3), 1 / 9, np.float32),
    "gaussian blur": (np.outer([1, 2, 1], [1, 2, 1]) / 16).astype(np.float32),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32),
    # Sobel: positive where the image gets brighter to the right (x) or downwards (y).
    "sobel x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32),
    "sobel y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float32),
    "laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32),
    "emboss": np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32),
}


def to_unit(images, *, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """RGB images as networks take them: a float32 batch ``(n, height, width, 3)`` in ``[0, 1]``.

    uint8 images are divided by 255; float images must already lie in ``[0, 1]`` (a float
    image in ``[0, 255]`` would otherwise train on values 255 times too large, silently).
    One image ``(height, width, 3)`` becomes a batch of one. ``shape``: the
    ``(height, width, 3)`` a network requires, checked here with a message that says so.
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if shape is not None and (x.ndim != 4 or x.shape[1:] != tuple(shape)):
        h, w, c = shape
        raise ValueError(
            f"expected {h}×{w} RGB images, shape (n, {h}, {w}, {c}) or ({h}, {w}, {c}); got {np.shape(images)}. "
            "Shapes-world images already have this shape; resize other images first (e.g. skimage.transform.resize)."
        )
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must have shape (n, height, width, 3) or (height, width, 3), got {np.shape(images)}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"images must be uint8 in [0, 255] or floats in [0, 1]; got dtype {x.dtype}")
    if x.size and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ValueError(
            f"float images must lie in [0, 1], these span [{float(x.min()):.3g}, {float(x.max()):.3g}]; "
            "divide uint8 images by 255 (or pass them as uint8)"
        )
    return x.astype(np.float32, copy=False)


def to_uint8(images) -> np.ndarray:
    """Images as they are stored and drawn: a uint8 batch in ``[0, 255]``.

    uint8 images pass unchanged; floats in ``[0, 1]`` are scaled by 255, rounded and clipped
    (a decoder's pixels may overshoot the range a little). One image ``(height, width,
    channels)`` becomes a batch of one.
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.dtype != np.uint8:
        x = np.clip(np.rint(x.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    return x


def to_unit_tensor(images):
    """:func:`to_unit` inside a model's graph: uint8 images become float32 in ``[0, 1]``; float
    images (already in ``[0, 1]``, or features) pass unchanged. Shapes are the caller's to check."""
    from keras import ops

    x = ops.convert_to_tensor(images)
    return ops.cast(x, "float32") / 255.0 if x.dtype == "uint8" else x


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """A ``size × size`` Gaussian blur kernel, ``exp(-(u² + v²) / 2σ²)`` normalised to sum 1."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd whole number (3, 5, 7, ...), got {size!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    u = np.arange(size) - size // 2
    g = np.exp(-(u[:, None] ** 2 + u[None, :] ** 2) / (2 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def _pair(value, what: str) -> tuple[int, int]:
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in pair):
        raise ValueError(f"{what} must be a positive whole number or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_padding(padding) -> None:
    if isinstance(padding, str):
        if padding not in PADDINGS:
            raise ValueError(f"padding must be 'valid', 'same' or a whole number of pixels, got {padding!r}")
    elif isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be 'valid', 'same' or a whole number of pixels >= 0, got {padding!r}")


def output_size(n: int, k: int, padding: str | int = "valid", stride: int = 1) -> int:
    """Length of a convolution's (or pooling's) output along one axis.

    With ``p`` pixels of zeros on each side, the window of size ``k`` fits
    ``⌊(n + 2p − k) / s⌋ + 1`` times at stride ``s``. ``"valid"`` means ``p = 0``;
    ``"same"`` pads just enough that the output has ``⌈n / s⌉`` positions (``n`` at
    stride 1), whatever ``k`` is. ``padding`` may also be ``p`` itself.
    """
    for value, what in ((n, "n (the input length)"), (k, "k (the kernel size)"), (stride, "stride")):
        check_positive_int(value, what)
    _check_padding(padding)
    if padding == "same":
        return -(-n // stride)  # ⌈n / s⌉
    p = 0 if padding == "valid" else int(padding)
    if n + 2 * p < k:
        raise ValueError(f"a kernel of size {k} does not fit in {n} pixels padded by {p} on each side; pad more or use a smaller kernel")
    return (n + 2 * p - k) // stride + 1


def same_padding(n: int, k: int, stride: int = 1) -> tuple[int, int]:
    """Zeros added (before, after) along an axis for ``"same"`` padding, as TensorFlow does.

    The total ``max((⌈n/s⌉ − 1)·s + k − n, 0)`` is split with the odd pixel after.
    """
    out = output_size(n, k, "same", stride)
    total = max((out - 1) * stride + k - n, 0)
    return total // 2, total - total // 2


def _pad_amounts(shape_hw, kernel_hw, padding, strides):
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return tuple(same_padding(n, k, s) for n, k, s in zip(shape_hw, kernel_hw, strides))
    return (padding, padding), (padding, padding)


def _as_batch(x: np.ndarray, what: str) -> tuple[np.ndarray, int]:
    """``x`` as ``(n, h, w, c)`` and how many axes it had."""
    x = np.asarray(x)
    if x.ndim == 2:
        return x[None, :, :, None], 2
    if x.ndim == 3:
        return x[None], 3
    if x.ndim == 4:
        return x, 4
    raise ValueError(
        f"{what} takes an image of shape (height, width), (height, width, channels) or a batch "
        f"(n, height, width, channels); got an array of shape {x.shape}"
    )


def conv2d(image, kernel, padding: str | int = "valid", stride: int | tuple[int, int] = 1) -> np.ndarray:
    """2-D cross-correlation, as ``tf.nn.conv2d`` and ``keras.layers.Conv2D`` compute it.

    Args:
        image: ``(h, w)``, ``(h, w, c_in)`` or ``(n, h, w, c_in)``.
        kernel: ``(k_h, k_w)`` (one input and one output channel), ``(k_h, k_w, c_in)``
            (one output channel) or ``(k_h, k_w, c_in, c_out)``.
        padding: ``"valid"`` (no padding), ``"same"`` (as TensorFlow) or a number of zero
            pixels added on every side.
        stride: step between windows, one number or ``(s_h, s_w)``.

    Returns:
        float array: ``(h', w')`` for a 2-D kernel on a 2-D image, ``(h', w')`` for a 3-D
        kernel on a 3-D image, otherwise ``(…, h', w', c_out)``, with ``h'`` and ``w'``
        given by :func:`output_size`.
    """
    x, image_ndim = _as_batch(image, "conv2d")
    k = np.asarray(kernel)
    if k.ndim not in (2, 3, 4):
        raise ValueError(f"kernel must have shape (k_h, k_w), (k_h, k_w, c_in) or (k_h, k_w, c_in, c_out); got {k.shape}")
    kernel_ndim = k.ndim
    if k.ndim == 2:
        k = k[:, :, None, None]
    elif k.ndim == 3:
        k = k[..., None]
    if k.shape[2] != x.shape[-1]:
        raise ValueError(
            f"the kernel expects {k.shape[2]} input channel(s) but the image has {x.shape[-1]}: "
            f"give the kernel shape (k_h, k_w, {x.shape[-1]}, c_out), or use filter_channels() to apply "
            "one 2-D kernel to every channel separately"
        )
    _check_padding(padding)
    strides = _pair(stride, "stride")
    (top, bottom), (left, right) = _pad_amounts(x.shape[1:3], k.shape[:2], padding, strides)
    for axis, n_pix, k_pix, before, after in ((0, x.shape[1], k.shape[0], top, bottom), (1, x.shape[2], k.shape[1], left, right)):
        if n_pix + before + after < k_pix:
            raise ValueError(
                f"the kernel ({k.shape[0]}×{k.shape[1]}) is larger than the padded image "
                f"({x.shape[1] + top + bottom}×{x.shape[2] + left + right}); use padding='same' or a smaller kernel"
            )
    dtype = np.result_type(x.dtype, k.dtype, np.float32)
    x = np.pad(x.astype(dtype, copy=False), ((0, 0), (top, bottom), (left, right), (0, 0)))
    # windows: (n, h', w', c_in, k_h, k_w), every k_h × k_w patch the kernel visits
    windows = sliding_window_view(x, k.shape[:2], axis=(1, 2))[:, :: strides[0], :: strides[1]]
    y = np.einsum("nijcuv,uvco->nijo", windows, k.astype(dtype, copy=False), optimize=True)
    if image_ndim == 4:
        return y
    y = y[0]
    if kernel_ndim == 4 or (kernel_ndim == 2 and image_ndim == 3):
        return y
    return y[..., 0]


def filter_channels(image, kernel, padding: str | int = "same", stride: int | tuple[int, int] = 1) -> np.ndarray:
    """Apply one 2-D kernel to every channel separately (a *depthwise* convolution).

    ``(h, w)`` gives ``(h', w')``; ``(h, w, c)`` gives ``(h', w', c)``; a batch keeps its
    batch axis. This is how a blur or an edge filter is applied to a colour photograph.
    """
    x, image_ndim = _as_batch(image, "filter_channels")
    k = np.asarray(kernel)
    if k.ndim != 2:
        raise ValueError(f"filter_channels takes one 2-D kernel (k_h, k_w); got shape {k.shape}")
    c = x.shape[-1]
    flat = np.moveaxis(x, -1, 1).reshape(-1, *x.shape[1:3], 1)  # every channel as its own image
    y = conv2d(flat, k[:, :, None, None], padding, stride)[..., 0]
    y = np.moveaxis(y.reshape(x.shape[0], c, *y.shape[1:]), 1, -1)
    return y[0, ..., 0] if image_ndim == 2 else y[0] if image_ndim == 3 else y


def _pool(x, size, stride, padding, reduce: str) -> np.ndarray:
    x, ndim = _as_batch(x, f"{reduce}_pool2d")
    sizes = _pair(size, "pool size")
    strides = sizes if stride is None else _pair(stride, "stride")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    if padding == "valid" and (x.shape[1] < sizes[0] or x.shape[2] < sizes[1]):
        raise ValueError(f"a {sizes[0]}×{sizes[1]} pool does not fit in a {x.shape[1]}×{x.shape[2]} image; use padding='same'")
    (top, bottom), (left, right) = _pad_amounts(x.shape[1:3], sizes, padding, strides)
    x = x.astype(np.result_type(x.dtype, np.float32), copy=False)
    # Padding never wins a max and is not counted in an average (as in TensorFlow).
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=np.nan)
    windows = sliding_window_view(padded, sizes, axis=(1, 2))[:, :: strides[0], :: strides[1]]
    y = np.nanmax(windows, axis=(-2, -1)) if reduce == "max" else np.nanmean(windows, axis=(-2, -1))
    return y[0, ..., 0] if ndim == 2 else y[0] if ndim == 3 else y


def max_pool2d(x, size: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None, padding: str = "valid") -> np.ndarray:
    """Largest value in each ``size`` window (stride defaults to the size), channel by channel.

    Shapes as :func:`filter_channels`; matches ``tf.nn.max_pool2d``.
    """
    return _pool(x, size, stride, padding, "max")


def avg_pool2d(x, size: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None, padding: str = "valid") -> np.ndarray:
    """Mean of each ``size`` window (padding not counted), channel by channel; matches ``tf.nn.avg_pool2d``."""
    return _pool(x, size, stride, padding, "avg")
