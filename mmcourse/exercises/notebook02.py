"""Checks for notebook 02 · CNNs and image features."""

from __future__ import annotations

import numpy as np

from mmcourse.exercises import exercise, hint


@exercise("02.symmetric_kernels", "Which kernels of imageops.KERNELS does flipping in both directions leave unchanged?",
          right="these kernels are symmetric under a half turn, so convolution and correlation agree for them.")
def symmetric_kernels(answer):
    from mmcourse import imageops

    expected = {name for name, k in imageops.KERNELS.items() if np.array_equal(k, np.rot90(k, 2))}
    given = {answer} if isinstance(answer, str) else set(answer)
    unknown = given - set(imageops.KERNELS)
    return (hint(not unknown, f"{sorted(unknown)} are not names of imageops.KERNELS.")
            or hint(not (expected - given), f"{len(expected - given)} more kernel(s) look the same after a half turn: compare k with k[::-1, ::-1].")
            or hint(not (given - expected), f"{sorted(given - expected)} change when flipped: compare k with k[::-1, ::-1]."))


def _receptive_field(layers) -> int:
    """Pixels across that one output cell sees, by pushing a single cell back through the layers
    (kernel sizes and strides), not by a formula: the cells that reach it, layer by layer."""
    reach = np.ones(1, bool)  # one output cell
    for size, stride in reversed(layers):
        wider = np.zeros((len(reach) - 1) * stride + size, bool)
        for i in np.flatnonzero(reach):
            wider[i * stride : i * stride + size] = True
        reach = wider
    return int(reach.sum())


ENCODER_LAYERS = [(3, 1), (2, 2)] * 3  # the encoder of notebook 02: three blocks of a 3×3 convolution and a 2×2 max pool


@exercise("02.receptive_field", "After the encoder's three blocks, one grid cell depends on how many input pixels across?",
          right="each 3×3 convolution widens the field by 2 steps, each 2×2 pool by 1 step and doubles the step.")
def receptive_field(answer):
    expected = _receptive_field(ENCODER_LAYERS)
    if not np.isscalar(answer):
        return "answer with one number: pixels across."
    return (hint(answer != 15, "15 counts the convolutions only: a 2×2 pool also widens the field, by (2 − 1) × the current step.")
            or hint(answer == expected, "walk through the six layers keeping r (pixels seen) and the step between cells: "
                    "a k×k layer adds (k − 1) × step to r; a stride-s layer then multiplies the step by s."))


@exercise("02.output_size", "Write output_size(n, kernel, padding, stride): the output length of a convolution or pooling layer.",
          right="it agrees with Keras's own layers on every case tried.")
def output_size(answer):
    from mmcourse._tf import tensorflow

    tensorflow()  # quietly, before Keras loads it
    import keras

    cases = [(n, k, p, s) for n in (5, 8, 28, 64) for k in (1, 2, 3, 5) for p in ("valid", "same") for s in (1, 2, 3) if k <= n]
    for n, k, padding, stride in cases:
        layer = keras.layers.Conv1D(1, k, strides=stride, padding=padding)
        expected = layer.compute_output_shape((1, n, 1))[1]
        got = answer(n, k, padding, stride)
        if got != expected:
            return (f"output_size({n}, {k}, {padding!r}, {stride}) gave {got}, Keras gives {expected}. "
                    "'valid': ⌊(n − k) / s⌋ + 1; 'same': ⌈n / s⌉.")
    return None
