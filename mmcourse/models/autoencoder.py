"""Image networks of the generative models, and the plain autoencoder built from them.

Images are float32 in ``[0, 1]``, shape ``(n, 64, 64, 3)`` (:func:`mmcourse.imageops.to_unit`
divides uint8 images by 255). :func:`build_image_encoder` maps an image to a code (or to the
mean and log-variance of a VAE's ``q(z|x)``); :func:`build_image_decoder` maps a code back to pixel
means. The VAE (:mod:`mmcourse.models.vae`) and the GAN's generator
(:mod:`mmcourse.models.gan`) use the same two networks.

Mixed precision: every layer takes the dtype policy it is given (``dtype``; Keras's global
policy by default), except the heads (code, mean, log-variance) and the pixel layer, which
compute in float32, so every loss built on them is computed in float32. Batch normalisation is
synchronised across replicas, so a model trained on several devices sees the statistics
of the whole batch, as on one device.
"""

from __future__ import annotations

import numpy as np

from mmcourse.checks import check_positive_int
from mmcourse import device
from mmcourse.imageops import to_unit
from mmcourse._tf import tensorflow
from mmcourse.data import shapes
from mmcourse.training import seeded
from mmcourse.training import compile as compile_model

tensorflow()  # quietly, before Keras imports it
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = ["add_noise", "build_image_encoder", "SpatialBroadcast", "DECODERS", "build_image_decoder", "build_autoencoder"]

CHANNELS = (16, 32, 64)  # convolution widths at 32×32, 16×16 and 8×8
BN_MOMENTUM = 0.8  # short memory, so test-time statistics are right after a few dozen steps


def add_noise(images, std: float, *, seed: int = 0) -> np.ndarray:
    """Gaussian pixel noise for a denoising autoencoder: ``clip(x + std·ε, 0, 1)``, ε ~ N(0, 1)."""
    x = to_unit(images)
    rng = np.random.default_rng(seed)
    return np.clip(x + std * rng.standard_normal(x.shape).astype(np.float32), 0.0, 1.0)


def _norm_relu(h, dtype):
    # Batch normalisation: without it this net often sits at "all background" for epochs.
    h = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, synchronized=True, dtype=dtype)(h)
    return keras.layers.ReLU(dtype=dtype)(h)


def build_image_encoder(latent_dim: int, *, outputs: int = 1, condition_dim: int = 0, dtype=None, name: str = "encoder") -> keras.Model:
    """Convolutions (stride 2: 64 → 32 → 16 → 8, each with batch normalisation) → Dense(256) → ``outputs`` Dense heads of ``latent_dim``.

    One head for an autoencoder's code; two (mean and log-variance) for a VAE. With
    ``condition_dim`` the model takes a second input (a caption's vector), joined to the
    image features before the heads. ``dtype``: the layers' dtype policy (default: Keras's global one).
    """
    check_positive_int(latent_dim, "latent_dim")
    image = keras.Input((shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 3), name="image")
    h = image
    for width in CHANNELS:
        h = _norm_relu(keras.layers.Conv2D(width, 4, strides=2, padding="same", dtype=dtype)(h), dtype)
    h = keras.layers.Flatten(dtype=dtype)(h)
    inputs = [image]
    if condition_dim:
        condition = keras.Input((condition_dim,), name="condition")
        inputs.append(condition)
        h = keras.layers.Concatenate(dtype=dtype)([h, condition])
    h = keras.layers.Dense(256, activation="relu", dtype=dtype)(h)
    if outputs == 2:
        # log σ² starts at 0 (σ = 1, the prior's width): a random start can put exp(log σ²) in the
        # thousands and the first epoch's KL in the hundreds of thousands of nats.
        log_variance = keras.layers.Dense(latent_dim, kernel_initializer="zeros", dtype="float32", name="log_variance")(h)
        out = [keras.layers.Dense(latent_dim, dtype="float32", name="mean")(h), log_variance]
    elif outputs == 1:
        out = keras.layers.Dense(latent_dim, dtype="float32", name="code")(h)
    else:
        raise ValueError(f"outputs is 1 (a code) or 2 (mean and log-variance), got {outputs!r}")
    return keras.Model(inputs if condition_dim else image, out, name=name)


@keras.saving.register_keras_serializable(package="mmcourse")
class SpatialBroadcast(keras.layers.Layer):
    """A vector tiled over a ``size × size`` grid, with each cell's ``(x, y)`` in [−1, 1] appended.

    The spatial broadcast decoder (Watters et al., 2019) starts from this: every cell sees
    the whole code and where it is, so "an object at x" becomes a comparison the
    convolutions can make, instead of a dense layer that must draw every position apart.
    """

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, vector):
        n = ops.shape(vector)[0]
        tiled = ops.tile(vector[:, None, None, :], (1, self.size, self.size, 1))
        centres = (np.arange(self.size, dtype="float32") + 0.5) / self.size * 2 - 1
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        grid = ops.convert_to_tensor(np.stack([xs, ys], axis=-1)[None], dtype=tiled.dtype)
        return ops.concatenate([tiled, ops.tile(grid, (n, 1, 1, 1))], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1] + 2)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


DECODERS = ("deconv", "broadcast")


def build_image_decoder(latent_dim: int, *, condition_dim: int = 0, kind: str = "deconv", dtype=None, name: str = "decoder") -> keras.Model:
    """The code (and condition) → pixel means in [0, 1], by one of two routes:

    - ``"deconv"``: Dense → 8×8×64 → transposed convolutions (8 → 16 → 32 → 64) → sigmoid;
    - ``"broadcast"``: Dense(128) → :class:`SpatialBroadcast` to 16×16 with coordinates →
      two 3×3 convolutions → transposed convolutions (16 → 32 → 64) → sigmoid.

    ``dtype``: the layers' dtype policy (default: Keras's global one); the pixels are float32.
    """
    check_positive_int(latent_dim, "latent_dim")
    if kind not in DECODERS:
        raise ValueError(f"unknown decoder {kind!r}; choose one of: {', '.join(DECODERS)}")
    z = keras.Input((latent_dim,), name="z")
    inputs, h = [z], z
    if condition_dim:
        condition = keras.Input((condition_dim,), name="condition")
        inputs.append(condition)
        h = keras.layers.Concatenate(dtype=dtype)([z, condition])
    if kind == "deconv":
        h = keras.layers.Dense(256, activation="relu", dtype=dtype)(h)
        h = keras.layers.Dense(8 * 8 * CHANNELS[-1], activation="relu", dtype=dtype)(h)
        h = keras.layers.Reshape((8, 8, CHANNELS[-1]), dtype=dtype)(h)
        widths = reversed(CHANNELS)
    else:
        h = SpatialBroadcast(16, dtype=dtype)(keras.layers.Dense(128, activation="relu", dtype=dtype)(h))
        for _ in range(2):
            h = _norm_relu(keras.layers.Conv2D(CHANNELS[-1], 3, padding="same", dtype=dtype)(h), dtype)
        widths = reversed(CHANNELS[:-1])
    for width in widths:
        h = _norm_relu(keras.layers.Conv2DTranspose(width, 4, strides=2, padding="same", dtype=dtype)(h), dtype)
    # float32: the likelihood and every loss on the pixels are computed in float32 under mixed precision
    x_hat = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", dtype="float32", name="pixels")(h)
    return keras.Model(inputs if condition_dim else z, x_hat, name=name)


def build_autoencoder(latent_dim: int, *, learning_rate: float = 1e-3, seed: int = 0) -> tuple[keras.Model, keras.Model, keras.Model]:
    """A plain (deterministic) autoencoder ``x → code → x̂``, compiled with the mean squared error.

    Built from ``seed`` under the current strategy (:func:`mmcourse.device.strategy`) and
    compiled for the current precision (:func:`mmcourse.training.compile`). Returns
    ``(autoencoder, encoder, decoder)``; the three share weights.
    """
    with device.strategy().scope(), seeded(seed):
        encoder = build_image_encoder(latent_dim)
        decoder = build_image_decoder(latent_dim)
        image = keras.Input((shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 3), name="image")
        autoencoder = keras.Model(image, decoder(encoder(image)), name="autoencoder")
        compile_model(autoencoder, keras.optimizers.Adam(learning_rate), loss="mse")
    return autoencoder, encoder, decoder
