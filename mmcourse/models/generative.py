"""Generative models of Shapes-world images: autoencoder, VAE, conditional VAE, a small GAN.

Images are float32 in ``[0, 1]``, shape ``(n, 64, 64, 3)`` (uint8 images are divided by
255 on the way in). The VAE's likelihood is a Gaussian with a fixed standard deviation
``sigma`` per pixel, so every term of its ELBO is a log-density in nats:

    log p(x|z)  = Σ_pixels [ −(x − x̂(z))² / (2σ²) − ½ log(2πσ²) ]
    KL(q‖p)     = ½ Σ_latent [ μ² + σ_q² − 1 − log σ_q² ]          (q = N(μ, σ_q²), p = N(0, I))
    ELBO(x)     = E_q[log p(x|z)] − KL(q‖p)  ≤  log p(x)

The conditional VAE has a learned prior p(z|c) = N(μ_p(c), σ_p²(c)) (Sohn et al., 2015), and

    KL(q‖p)     = ½ Σ_latent [ log σ_p² − log σ_q² + (σ_q² + (μ − μ_p)²) / σ_p² − 1 ]

Densities of continuous pixels can exceed 1, so an ELBO in nats can be positive; what
matters is that it is a lower bound, which :func:`importance_log_likelihood` lets a test check.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mmcourse import config
from mmcourse._tf import tensorflow
from mmcourse.data import shapes
from mmcourse.data.text import Vocabulary

tf = tensorflow()
import keras  # noqa: E402  (after TensorFlow, imported quietly)
from keras import ops  # noqa: E402

__all__ = [
    "PIXEL_SIGMA",
    "to_unit",
    "add_noise",
    "build_image_encoder",
    "SpatialBroadcast",
    "build_image_decoder",
    "build_autoencoder",
    "gaussian_log_likelihood",
    "kl_divergence",
    "kl_monte_carlo",
    "VAE",
    "caption_vocabulary",
    "encode_captions",
    "importance_log_likelihood",
    "GAN",
    "sample_quality",
    "shipped_model_dir",
    "load_vae",
    "train_command",
    "measure",
]

PIXEL_SIGMA = 0.1  # the decoder's fixed standard deviation per pixel value in [0, 1]
_CHANNELS = (16, 32, 64)  # convolution widths at 32×32, 16×16 and 8×8
_BN_MOMENTUM = 0.8  # short memory, so test-time statistics are right after a few dozen steps
CAPTION_LENGTH = 16  # longest Shapes caption (13 words) with <start> and <end>, padded


def to_unit(images) -> np.ndarray:
    """Images as float32 in ``[0, 1]``: uint8 ``[0, 255]`` is divided by 255; floats are checked."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must have shape (n, height, width, 3), got {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError("float images must lie in [0, 1]; divide uint8 images by 255 (or pass them as uint8)")
    return x


def add_noise(images, std: float, *, seed: int = 0) -> np.ndarray:
    """Gaussian pixel noise for a denoising autoencoder: ``clip(x + std·ε, 0, 1)``, ε ~ N(0, 1)."""
    x = to_unit(images)
    rng = np.random.default_rng(seed)
    return np.clip(x + std * rng.standard_normal(x.shape).astype(np.float32), 0.0, 1.0)


# --------------------------------------------------------------------------- networks


def build_image_encoder(latent_dim: int, *, outputs: int = 1, condition_dim: int = 0, name: str = "encoder") -> keras.Model:
    """Convolutions (stride 2: 64 → 32 → 16 → 8, each with batch normalisation) → Dense(256) → ``outputs`` Dense heads of ``latent_dim``.

    One head for an autoencoder's code; two (mean and log-variance) for a VAE. With
    ``condition_dim`` the model takes a second input (a caption's vector), joined to the
    image features before the heads.
    """
    _check_positive(latent_dim, "latent_dim")
    image = keras.Input((shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 3), name="image")
    h = image
    for width in _CHANNELS:
        # Batch normalisation: without it this net often sits at "all background" for epochs.
        h = keras.layers.Conv2D(width, 4, strides=2, padding="same")(h)
        h = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=_BN_MOMENTUM)(h))
    h = keras.layers.Flatten()(h)
    inputs = [image]
    if condition_dim:
        condition = keras.Input((condition_dim,), name="condition")
        inputs.append(condition)
        h = keras.layers.Concatenate()([h, condition])
    h = keras.layers.Dense(256, activation="relu")(h)
    if outputs == 2:
        # log σ² starts at 0 (σ = 1, the prior's width): a random start can put exp(log σ²) in the
        # thousands and the first epoch's KL in the hundreds of thousands of nats.
        log_variance = keras.layers.Dense(latent_dim, kernel_initializer="zeros", name="log_variance")(h)
        out = [keras.layers.Dense(latent_dim, name="mean")(h), log_variance]
    elif outputs == 1:
        out = keras.layers.Dense(latent_dim, name="code")(h)
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
        grid = ops.convert_to_tensor(np.stack([xs, ys], axis=-1)[None])
        return ops.concatenate([tiled, ops.tile(grid, (n, 1, 1, 1))], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1] + 2)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


DECODERS = ("deconv", "broadcast")


def build_image_decoder(latent_dim: int, *, condition_dim: int = 0, kind: str = "deconv", name: str = "decoder") -> keras.Model:
    """The code (and condition) → pixel means in [0, 1], by one of two routes:

    - ``"deconv"``: Dense → 8×8×64 → transposed convolutions (8 → 16 → 32 → 64) → sigmoid;
    - ``"broadcast"``: Dense(128) → :class:`SpatialBroadcast` to 16×16 with coordinates →
      two 3×3 convolutions → transposed convolutions (16 → 32 → 64) → sigmoid.
    """
    _check_positive(latent_dim, "latent_dim")
    if kind not in DECODERS:
        raise ValueError(f"unknown decoder {kind!r}; choose one of: {', '.join(DECODERS)}")
    z = keras.Input((latent_dim,), name="z")
    inputs, h = [z], z
    if condition_dim:
        condition = keras.Input((condition_dim,), name="condition")
        inputs.append(condition)
        h = keras.layers.Concatenate()([z, condition])
    if kind == "deconv":
        h = keras.layers.Dense(256, activation="relu")(h)
        h = keras.layers.Dense(8 * 8 * _CHANNELS[-1], activation="relu")(h)
        h = keras.layers.Reshape((8, 8, _CHANNELS[-1]))(h)
        widths = reversed(_CHANNELS)
    else:
        h = SpatialBroadcast(16)(keras.layers.Dense(128, activation="relu")(h))
        for _ in range(2):
            h = keras.layers.Conv2D(_CHANNELS[-1], 3, padding="same")(h)
            h = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=_BN_MOMENTUM)(h))
        widths = reversed(_CHANNELS[:-1])
    for width in widths:
        h = keras.layers.Conv2DTranspose(width, 4, strides=2, padding="same")(h)
        h = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=_BN_MOMENTUM)(h))
    x_hat = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="pixels")(h)
    return keras.Model(inputs if condition_dim else z, x_hat, name=name)


def build_autoencoder(latent_dim: int, *, learning_rate: float = 1e-3) -> tuple[keras.Model, keras.Model, keras.Model]:
    """A plain (deterministic) autoencoder ``x → code → x̂``, compiled with the mean squared error.

    Returns ``(autoencoder, encoder, decoder)``; the three share weights.
    """
    encoder = build_image_encoder(latent_dim)
    decoder = build_image_decoder(latent_dim)
    image = keras.Input((shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 3), name="image")
    autoencoder = keras.Model(image, decoder(encoder(image)), name="autoencoder")
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return autoencoder, encoder, decoder


def _build_prior(condition_dim: int, latent_dim: int) -> keras.Model:
    """The conditional VAE's prior network: a caption vector ``c`` → ``(μ_p(c), log σ_p²(c))``."""
    condition = keras.Input((condition_dim,), name="condition")
    h = keras.layers.Dense(128, activation="relu")(condition)
    mean = keras.layers.Dense(latent_dim, name="prior_mean")(h)
    log_variance = keras.layers.Dense(latent_dim, kernel_initializer="zeros", name="prior_log_variance")(h)
    return keras.Model(condition, [mean, log_variance], name="prior")


def _check_positive(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive whole number, got {value!r}")


# --------------------------------------------------------------------------- the terms of the ELBO


def gaussian_log_likelihood(x, x_hat, sigma: float = PIXEL_SIGMA):
    """``log N(x; x̂, σ²I)`` per image, summed over pixels and channels (nats)."""
    const = -0.5 * math.log(2 * math.pi * sigma**2)
    squared = ops.square(ops.convert_to_tensor(x) - x_hat)
    return ops.sum(const - squared / (2 * sigma**2), axis=(1, 2, 3))


def kl_divergence(mean, log_variance, prior_mean=None, prior_log_variance=None):
    """Closed-form KL divergence per row (nats) from ``q = N(μ, diag σ²)`` to the prior.

    The prior is ``N(0, I)`` by default: ``½ Σ (μ² + σ² − 1 − log σ²)``; given
    ``prior_mean`` and ``prior_log_variance`` it is ``N(μ_p, diag σ_p²)``:
    ``½ Σ (log σ_p² − log σ² + (σ² + (μ − μ_p)²) / σ_p² − 1)``.
    """
    if prior_mean is None and prior_log_variance is None:
        return 0.5 * ops.sum(ops.square(mean) + ops.exp(log_variance) - 1.0 - log_variance, axis=-1)
    if prior_mean is None or prior_log_variance is None:
        raise ValueError("give both prior_mean and prior_log_variance (or neither, for the standard normal prior)")
    ratio = (ops.exp(log_variance) + ops.square(mean - prior_mean)) * ops.exp(-prior_log_variance)
    return 0.5 * ops.sum(prior_log_variance - log_variance + ratio - 1.0, axis=-1)


def kl_monte_carlo(mean, log_variance, n_samples: int = 10_000, *, seed: int = 0, prior_mean=0.0, prior_log_variance=0.0) -> np.ndarray:
    """The same KL estimated by sampling: the mean over ``z ~ q`` of ``log q(z) − log p(z)``.

    An independent check of :func:`kl_divergence` (numpy only); its error shrinks as 1/√n.
    """
    mean = np.asarray(mean, np.float64)
    log_variance = np.asarray(log_variance, np.float64)
    prior_mean = np.asarray(prior_mean, np.float64)
    prior_log_variance = np.asarray(prior_log_variance, np.float64)
    std = np.exp(0.5 * log_variance)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((n_samples,) + mean.shape)
    z = mean + std * eps
    log_q = -0.5 * (eps**2 + log_variance + np.log(2 * np.pi))
    log_p = -0.5 * ((z - prior_mean) ** 2 / np.exp(prior_log_variance) + prior_log_variance + np.log(2 * np.pi))
    return (log_q - log_p).sum(axis=-1).mean(axis=0)


# --------------------------------------------------------------------------- captions as conditions


def caption_vocabulary() -> Vocabulary:
    """The Shapes caption vocabulary (``<pad>``, ``<start>``, ``<end>``, ``<unk>`` and every grammar word)."""
    return Vocabulary(shapes.vocabulary_words())


def encode_captions(captions, vocabulary: Vocabulary | None = None) -> np.ndarray:
    """Token ids ``(n, CAPTION_LENGTH)`` of Shapes captions, checked against the grammar first.

    A caption outside the grammar raises :class:`mmcourse.data.shapes.CaptionError`, whose
    message names the unknown or unexpected word.
    """
    vocabulary = vocabulary or caption_vocabulary()
    captions = [captions] if isinstance(captions, str) else list(captions)
    for caption in captions:
        shapes.parse_caption(caption)
    return vocabulary.encode_batch(captions, length=CAPTION_LENGTH)


# --------------------------------------------------------------------------- the VAE


@keras.saving.register_keras_serializable(package="mmcourse")
class VAE(keras.Model):
    """A variational autoencoder, optionally conditioned on a caption.

    The encoder gives ``q(z|x) = N(μ(x), diag exp(log_variance(x)))``; the reparameterisation
    ``z = μ + exp(½ log_variance)·ε`` with ``ε ~ N(0, I)`` keeps sampling differentiable;
    the decoder gives the pixel means ``x̂(z)``. Training maximises the ELBO, i.e. minimises
    ``−E_q[log p(x|z)] + β·KL(q‖p)`` (``β = 1`` is the true ELBO; other β weigh the KL term).

    With ``vocab_size`` > 0 the model is a conditional VAE: a caption (token ids) is encoded
    by an embedding and a GRU into a vector ``c`` that the encoder, the decoder and a learned
    prior see: ``q(z|x, c)``, ``p(x|z, c)`` and ``p(z|c) = N(μ_p(c), diag σ_p²(c))``. With a
    fixed ``N(0, I)`` prior the code must also carry what the caption says (colour, shape), and
    a prior sample then draws whatever colour its random code says; the learned prior puts the
    codes of each caption where its images' codes are. Train it on ``(images, ids)``.

    The decoder is a spatial broadcast decoder by default (``decoder="broadcast"``; see
    :func:`build_image_decoder`): in our runs its prior samples held one object more often
    than the transposed-convolution decoder's (0.80 vs 0.52 of 500, 12,000 images × 8–10 epochs).

    Metrics while training (per image, nats): ``loss`` (−ELBO with β), ``reconstruction``
    (−E_q[log p(x|z)]) and ``kl``.
    """

    def __init__(self, latent_dim: int = 8, *, beta: float = 1.0, sigma: float = PIXEL_SIGMA, vocab_size: int = 0, decoder: str = "broadcast", **kwargs):
        super().__init__(**kwargs)
        _check_positive(latent_dim, "latent_dim")
        if not beta >= 0:
            raise ValueError(f"beta must be zero or more, got {beta!r}")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma!r}")
        self.latent_dim, self.beta, self.sigma, self.vocab_size = int(latent_dim), float(beta), float(sigma), int(vocab_size)
        self.decoder_kind = decoder
        condition_dim = 0
        if self.vocab_size:
            condition_dim = 64
            # Word vectors start at unit scale: with Keras's default (±0.05) the GRU's output starts
            # near 0, the decoder learns to ignore it, and the caption never gets a say.
            self.embedding = keras.layers.Embedding(
                self.vocab_size, 32, mask_zero=True, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0), name="word_vectors"
            )
            self.text_rnn = keras.layers.GRU(condition_dim, name="caption_gru")
            self.embedding.build((None, None))
            self.text_rnn.build((None, None, 32))
        self.encoder = build_image_encoder(self.latent_dim, outputs=2, condition_dim=condition_dim)
        self.decoder = build_image_decoder(self.latent_dim, condition_dim=condition_dim, kind=decoder)
        if self.vocab_size:
            self.prior_net = _build_prior(condition_dim, self.latent_dim)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "reconstruction", "kl")}
        # Every part is built above, so a saved model holds all its weights and loads them back.
        self.built = True

    @property
    def conditional(self) -> bool:
        return self.vocab_size > 0

    @property
    def metrics(self):
        return list(self.trackers.values())

    # -- the pieces, each usable on its own in a notebook
    def condition(self, caption_ids):
        """The caption's vector ``c`` (conditional model only)."""
        if not self.conditional:
            raise ValueError("this VAE is not conditional; build it with VAE(vocab_size=...) to use captions")
        ids = ops.cast(caption_ids, "int32")
        return self.text_rnn(self.embedding(ids), mask=ops.not_equal(ids, 0))

    def encode(self, x, caption_ids=None, *, training=False):
        """``(μ, log σ²)`` of ``q(z|x[, c])``."""
        return self._encode(x, self._condition_or_none(caption_ids), training)

    def decode(self, z, caption_ids=None, *, training=False):
        """Pixel means ``x̂(z[, c])`` in [0, 1]."""
        return self._decode(z, self._condition_or_none(caption_ids), training)

    # c is computed once per batch and handed to both networks; ``training`` reaches their
    # batch normalisation (batch statistics while training, running averages otherwise).
    def _condition_or_none(self, caption_ids):
        return self.condition(self._ids(caption_ids)) if self.conditional else None

    def _encode(self, x, c, training):
        x = ops.convert_to_tensor(x, "float32")
        return self.encoder([x, c] if self.conditional else x, training=training)

    def _decode(self, z, c, training):
        z = ops.convert_to_tensor(z, "float32")
        return self.decoder([z, c] if self.conditional else z, training=training)

    def prior(self, caption_ids=None, n: int = 1):
        """``(μ_p, log σ_p²)`` of the prior: learned from the caption (conditional), else ``N(0, I)`` for ``n`` rows."""
        return self._prior(self._condition_or_none(caption_ids), n)

    def _prior(self, c, n=1):
        if c is None:
            zeros = ops.zeros((n, self.latent_dim))
            return zeros, zeros
        return self.prior_net(c)

    def _ids(self, caption_ids):
        if caption_ids is None:
            raise ValueError("a conditional VAE needs captions: pass their token ids (see encode_captions)")
        return caption_ids

    @staticmethod
    def reparameterise(mean, log_variance, seed=None):
        """``z = μ + exp(½ log σ²) · ε``, ``ε ~ N(0, I)``."""
        eps = keras.random.normal(ops.shape(mean), seed=seed)
        return mean + ops.exp(0.5 * log_variance) * eps

    def call(self, inputs, training=False):
        x, ids = inputs if self.conditional else (inputs, None)
        c = self._condition_or_none(ids)
        mean, log_variance = self._encode(x, c, training)
        z = self.reparameterise(mean, log_variance) if training else mean
        return self._decode(z, c, training)

    def _terms(self, x, ids, seed=None, training=False):
        c = self._condition_or_none(ids)
        mean, log_variance = self._encode(x, c, training)
        z = self.reparameterise(mean, log_variance, seed)
        x_hat = self._decode(z, c, training)
        reconstruction = -gaussian_log_likelihood(x, x_hat, self.sigma)
        kl = kl_divergence(mean, log_variance, *self._prior_or_none(c))
        return reconstruction, kl

    def _prior_or_none(self, c):
        return self.prior_net(c) if self.conditional else (None, None)

    def _unpack(self, data):
        if self.conditional:
            x, ids = data[0] if isinstance(data[0], (tuple, list)) else data[:2]
            return ops.cast(x, "float32"), ids
        x = data[0] if isinstance(data, (tuple, list)) else data
        return ops.cast(x, "float32"), None

    def train_step(self, data):
        x, ids = self._unpack(data)
        with tf.GradientTape() as tape:
            reconstruction, kl = self._terms(x, ids, training=True)
            loss = ops.mean(reconstruction + self.beta * kl)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._update(loss, reconstruction, kl)

    def test_step(self, data):
        x, ids = self._unpack(data)
        reconstruction, kl = self._terms(x, ids)
        return self._update(ops.mean(reconstruction + self.beta * kl), reconstruction, kl)

    def _update(self, loss, reconstruction, kl):
        self.trackers["loss"].update_state(loss)
        self.trackers["reconstruction"].update_state(ops.mean(reconstruction))
        self.trackers["kl"].update_state(ops.mean(kl))
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def calibrate(self, images, caption_ids=None, *, batch_size: int = 256, seed: int = 0) -> None:
        """Set every batch normalisation's running statistics to their average over ``images``.

        Training keeps a short running average (``momentum`` 0.8: the last few batches), and
        this model is sensitive to it: its codes are precise to a few hundredths, so running
        statistics from a few hundred images shift colours and backgrounds at test time
        (calibrated on its training images, the shipped VAE's test ELBO rose from 13,962 to
        15,444 nats per image). Call it after training; it changes no weight.
        """
        x = to_unit(images)
        norms = [layer for net in (self.encoder, self.decoder) for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
        momenta = [layer.momentum for layer in norms]
        try:
            for k, start in enumerate(range(0, len(x), batch_size)):
                for layer in norms:
                    layer.momentum = k / (k + 1)  # moving = the mean of the k + 1 batch statistics so far
                ids = None if caption_ids is None else np.asarray(caption_ids)[start : start + batch_size]
                self._terms(x[start : start + batch_size], ids, seed=seed + k, training=True)
        finally:
            for layer, momentum in zip(norms, momenta):
                layer.momentum = momentum

    # -- numpy helpers for notebooks and tests
    def elbo(self, images, caption_ids=None, *, n_samples: int = 1, batch_size: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
        """Per-image ``{"elbo", "reconstruction", "kl"}`` in nats (β = 1: the true bound).

        ``reconstruction`` is ``E_q[log p(x|z)]`` estimated with ``n_samples`` draws of z;
        ``kl`` is exact; ``elbo = reconstruction − kl``.
        """
        x = to_unit(images)
        rec_parts, kl_parts = [], []
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size]
            ids = None if caption_ids is None else np.asarray(caption_ids)[start : start + batch_size]
            c = self._condition_or_none(ids)
            mean, log_variance = self._encode(xb, c, False)
            total = 0.0
            for s in range(n_samples):
                z = self.reparameterise(mean, log_variance, seed=seed * 1000 + s + start)
                total = total + gaussian_log_likelihood(xb, self._decode(z, c, False), self.sigma)
            rec_parts.append(ops.convert_to_numpy(total) / n_samples)
            kl_parts.append(ops.convert_to_numpy(kl_divergence(mean, log_variance, *self._prior_or_none(c))))
        reconstruction, kl = np.concatenate(rec_parts), np.concatenate(kl_parts)
        return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}

    def sample(self, n: int, caption_ids=None, *, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
        """Decode ``n`` codes drawn from the prior: images in [0, 1].

        ``z = μ_p + temperature·σ_p·ε`` (``μ_p = 0``, ``σ_p = 1`` for the unconditional model);
        the conditional model needs ``n`` captions' token ids.
        """
        c = self._condition_or_none(caption_ids)
        prior_mean, prior_log_variance = (ops.convert_to_numpy(t) for t in self._prior(c, n))
        eps = np.random.default_rng(seed).standard_normal((n, self.latent_dim)).astype(np.float32)
        z = prior_mean + temperature * np.exp(0.5 * prior_log_variance) * eps
        return ops.convert_to_numpy(self._decode(z, c, False))

    def draw(self, caption: str, n: int = 1, *, seed: int = 0, vocabulary: Vocabulary | None = None) -> np.ndarray:
        """Images drawn from a caption (conditional model): ``n`` prior codes decoded with it.

        A caption outside the Shapes grammar raises ``CaptionError`` naming the word.
        """
        ids = encode_captions([caption] * n, vocabulary)
        return self.sample(n, ids, seed=seed)

    def get_config(self):
        config = super().get_config()
        config.update(latent_dim=self.latent_dim, beta=self.beta, sigma=self.sigma, vocab_size=self.vocab_size, decoder=self.decoder_kind)
        return config


def importance_log_likelihood(vae: VAE, images, caption_ids=None, *, k: int = 64, seed: int = 0) -> np.ndarray:
    """An importance-sampled estimate of ``log p(x)`` per image (nats), with q(z|x) as proposal:

        log p(x) ≈ log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x),   z_i ~ q(z|x).

    ``p(z)`` is the model's prior (``p(z|c)`` for the conditional model). In expectation it is at least the ELBO and it tightens as ``k`` grows (Burda et al., 2016);
    with ``k = 1`` it is a one-sample ELBO.
    """
    x = to_unit(images)
    mean, log_variance = (ops.convert_to_numpy(t).astype(np.float64) for t in vae.encode(x, caption_ids))
    prior_mean, prior_log_variance = (ops.convert_to_numpy(t).astype(np.float64) for t in vae.prior(caption_ids, len(x)))
    std = np.exp(0.5 * log_variance)
    rng = np.random.default_rng(seed)
    log_w = np.empty((k, len(x)))
    for i in range(k):
        eps = rng.standard_normal(mean.shape)
        z = mean + std * eps
        log_px_z = ops.convert_to_numpy(gaussian_log_likelihood(x, vae.decode(z.astype(np.float32), caption_ids), vae.sigma))
        log_pz = -0.5 * ((z - prior_mean) ** 2 / np.exp(prior_log_variance) + prior_log_variance + np.log(2 * np.pi)).sum(-1)
        log_qz = -0.5 * (eps**2 + log_variance + np.log(2 * np.pi)).sum(-1)
        log_w[i] = log_px_z + log_pz - log_qz
    top = log_w.max(axis=0)
    return top + np.log(np.exp(log_w - top).mean(axis=0))


# --------------------------------------------------------------------------- a small GAN


@keras.saving.register_keras_serializable(package="mmcourse")
class GAN(keras.Model):
    """A small DCGAN: a generator ``G(z)`` (the VAE's decoder shape) and a convolutional
    discriminator ``D(x)`` giving the logit of "real".

    The two losses (non-saturating form, Goodfellow et al., 2014):

        L_D = −log σ(D(x)) − log(1 − σ(D(G(z))))       (tell real from generated)
        L_G = −log σ(D(G(z)))                          (make D call the generated real)

    Compile with ``compile(d_optimizer=..., g_optimizer=...)``; ``fit`` on real images.
    """

    def __init__(self, latent_dim: int = 32, **kwargs):
        super().__init__(**kwargs)
        _check_positive(latent_dim, "latent_dim")
        self.latent_dim = int(latent_dim)
        self.generator = build_image_decoder(self.latent_dim, name="generator")
        image = keras.Input((shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 3))
        h = image
        for width in (32, 64, 128):
            h = keras.layers.Conv2D(width, 4, strides=2, padding="same")(h)
            h = keras.layers.LeakyReLU(0.2)(h)
        h = keras.layers.Flatten()(h)
        self.discriminator = keras.Model(image, keras.layers.Dense(1)(h), name="discriminator")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("d_loss", "g_loss")}
        self.seed_generator = keras.random.SeedGenerator(0)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, d_optimizer=None, g_optimizer=None, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)

    def call(self, z, training=False):
        return self.generator(z, training=training)

    @staticmethod
    def d_loss(real_logits, fake_logits):
        """``L_D`` per example, from the logits (−log σ(a) = softplus(−a), −log(1−σ(a)) = softplus(a))."""
        return ops.softplus(-real_logits) + ops.softplus(fake_logits)

    @staticmethod
    def g_loss(fake_logits):
        """``L_G`` per example."""
        return ops.softplus(-fake_logits)

    def train_step(self, data):
        real = ops.cast(data[0] if isinstance(data, (tuple, list)) else data, "float32")
        n = ops.shape(real)[0]
        z = keras.random.normal((n, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            fake = self.generator(z, training=True)
            d_loss = ops.mean(self.d_loss(self.discriminator(real, training=True), self.discriminator(fake, training=True)))
        grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_variables))
        z = keras.random.normal((n, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            g_loss = ops.mean(self.g_loss(self.discriminator(self.generator(z, training=True), training=True)))
        grads = tape.gradient(g_loss, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_variables))
        self.trackers["d_loss"].update_state(d_loss)
        self.trackers["g_loss"].update_state(g_loss)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def sample(self, n: int, *, seed: int = 0) -> np.ndarray:
        """``n`` generated images in [0, 1]."""
        z = np.random.default_rng(seed).standard_normal((n, self.latent_dim)).astype(np.float32)
        return ops.convert_to_numpy(self.generator(z, training=False))

    def get_config(self):
        config = super().get_config()
        config.update(latent_dim=self.latent_dim)
        return config


# --------------------------------------------------------------------------- the command line

# Training sizes of `mmcourse train vae` per profile: (images, epochs); the conditional model
# trains on one- and two-object captioned images, the plain one on single objects.
TRAIN_SIZES = {"quick": {"plain": (400, 2), "conditional": (600, 2)}, "full": {"plain": (12_000, 16), "conditional": (12_000, 16)}}
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
LATENT_DIM = 8  # the shipped models' code size: 16 gave no better samples in our runs
CONDITIONAL_BETA = 1.0  # the true bound; with the learned prior, β = 10 drew no more true images in our runs
MODEL_FILE, VOCABULARY_FILE, METRICS_FILE = "vae.keras", "vocabulary.json", "metrics.json"


def shipped_model_dir(conditional: bool = False) -> Path:
    """The folder of a VAE shipped with the course: ``data/vae``, or ``data/cvae`` for the conditional one."""
    return config.shipped_dir("cvae" if conditional else "vae")


def load_vae(folder=None, *, conditional: bool = False) -> VAE:
    """The VAE saved in ``folder`` (default: the shipped one), loaded with ``safe_mode=True``."""
    folder = Path(folder) if folder is not None else shipped_model_dir(conditional)
    if not (folder / MODEL_FILE).is_file():
        raise FileNotFoundError(f"no {MODEL_FILE} in {folder}: pass the folder `mmcourse train vae --out DIR` wrote")
    return keras.saving.load_model(folder / MODEL_FILE, safe_mode=True, compile=False)


def sample_quality(judge, images) -> dict[str, float]:
    """How much a set of single-object images (e.g. prior samples) looks like the Shapes world, as the judge reads it.

    ``one_object``: the fraction in which it finds exactly one object; ``clean``: one object
    whose outline is the shape it reads (:meth:`SceneJudge.outline_match` ≥ 0.8, as every
    real object is); ``kinds``: how many of the 18 colour–shape kinds appear among the one-object reads.
    """
    images = np.asarray(images)
    images = to_unit(images) if images.dtype == np.uint8 else np.clip(images, 0.0, 1.0)  # decoders may overshoot by rounding
    scenes, outline = judge.read(images), judge.outline_match(images)
    one = np.array([s is not None and len(s.objects) == 1 for s in scenes])
    kinds = {(s.objects[0].colour, s.objects[0].shape) for s, o in zip(scenes, one) if o}
    return {"one_object": float(one.mean()), "clean": float((one & (outline >= 0.8)).mean()), "kinds": len(kinds)}


def train_command(out, *, profile: str = "full", conditional: bool = False, seed: int | None = None, latent_dim: int = LATENT_DIM) -> dict:
    """What ``mmcourse train vae`` does: train, write ``vae.keras`` and ``metrics.json``; return the metrics.

    The metrics are measured on a freshly generated test split: the test ELBO and its two
    terms (nats per image, β = 1) and ``train_seconds``; then a judge
    (:class:`mmcourse.models.judge.SceneJudge`, its exact-read rate on the real test images
    recorded) reads the model's drawings: for the plain model, :func:`sample_quality` of
    as many prior samples as test images; for the conditional model, the fraction of images
    drawn from the test captions that it finds true to them and, as a ceiling, the fraction
    of the model's reconstructions of the test images that are.
    """
    import json
    import time

    from tqdm.keras import TqdmCallback

    profile = config.profile(profile)
    seed = 0 if seed is None else int(seed)
    config.seed_everything(seed)
    kind = "conditional" if conditional else "plain"
    n, epochs = TRAIN_SIZES[profile.name][kind]
    data = shapes.splits(train=n, test=profile.n_test, seed=seed, objects=(1, 2) if conditional else (1,))
    x_train = to_unit(data["train"].images)
    vocab = caption_vocabulary()
    rng = np.random.default_rng(seed)
    if conditional:
        model = VAE(latent_dim, beta=CONDITIONAL_BETA, vocab_size=len(vocab))
        train_ids = encode_captions([c[rng.integers(5)] for c in data["train"].captions], vocab)
        train_inputs = (x_train, train_ids)
    else:
        model, train_inputs, train_ids = VAE(latent_dim), x_train, None
    model.compile(keras.optimizers.Adam(LEARNING_RATE))
    start = time.perf_counter()
    model.fit(train_inputs, epochs=epochs, batch_size=BATCH_SIZE, verbose=0, callbacks=[TqdmCallback(verbose=0, desc=f"train {kind} VAE")])
    model.calibrate(x_train, train_ids)
    seconds = time.perf_counter() - start

    metrics = {"profile": profile.name, "conditional": conditional, "seed": seed, "train_images": n, "epochs": epochs,
               "batch_size": BATCH_SIZE, "latent_dim": latent_dim, "decoder": model.decoder_kind, "beta": model.beta,
               "train_seconds": seconds}
    metrics.update(measure(model, data["test"], quick=profile.is_quick, seed=seed))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    if conditional:
        vocab.save(out / VOCABULARY_FILE)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return metrics


def measure(model: VAE, test: shapes.ShapesDataset, *, quick: bool = False, seed: int = 0) -> dict:
    """The figures ``mmcourse train vae`` records, on a test split: the ELBO and its terms, and what a judge reads.

    A judge is trained (:meth:`SceneJudge.train`, with its exact-read rate on ``test``
    recorded), then reads :func:`sample_quality` of ``len(test)`` prior samples (plain
    model), or whether images drawn from each test image's first caption are true to it,
    with the reconstructions as a ceiling (conditional model).
    """
    from mmcourse.models.judge import SceneJudge

    x_test = to_unit(test.images)
    test_captions = [c[0] for c in test.captions]
    test_ids = encode_captions(test_captions) if model.conditional else None
    terms = model.elbo(x_test, test_ids, n_samples=4)
    metrics = {"test_images": len(x_test), "test_elbo": float(terms["elbo"].mean()),
               "test_reconstruction": float(terms["reconstruction"].mean()), "test_kl": float(terms["kl"].mean())}
    judge = SceneJudge.train(n=1_500 if quick else 6_000, epochs=3 if quick else 5, seed=seed)
    metrics["judge_read_accuracy"] = judge.read_accuracy(test)
    if model.conditional:
        drawn = model.sample(len(test_ids), test_ids, seed=seed)
        rebuilt = ops.convert_to_numpy(model((x_test, test_ids)))
        verdict = judge.is_true(drawn, test_captions)
        n_objects = np.array([len(shapes.parse_caption(c).objects) for c in test_captions])
        metrics["true_to_caption"] = float(verdict.mean())
        metrics["true_to_caption_one_object"] = float(verdict[n_objects == 1].mean())
        metrics["true_to_caption_two_objects"] = float(verdict[n_objects == 2].mean())
        metrics["reconstructions_true_to_caption"] = float(judge.is_true(rebuilt, test_captions).mean())
    else:
        samples = sample_quality(judge, model.sample(len(x_test), seed=seed))
        metrics.update({f"samples_{key}": value for key, value in samples.items()})
    return metrics
