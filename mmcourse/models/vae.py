"""The variational autoencoder of Shapes images, plain or conditioned on a caption.

The VAE's likelihood is a Gaussian with a fixed standard deviation ``sigma`` per pixel, so
every term of its ELBO is a log-density in nats:

    log p(x|z)  = Σ_pixels [ −(x − x̂(z))² / (2σ²) − ½ log(2πσ²) ]
    KL(q‖p)     = ½ Σ_latent [ μ² + σ_q² − 1 − log σ_q² ]          (q = N(μ, σ_q²), p = N(0, I))
    ELBO(x)     = E_q[log p(x|z)] − KL(q‖p)  ≤  log p(x)

The conditional VAE has a learned prior p(z|c) = N(μ_p(c), σ_p²(c)) (Sohn et al., 2015), and

    KL(q‖p)     = ½ Σ_latent [ log σ_p² − log σ_q² + (σ_q² + (μ − μ_p)²) / σ_p² − 1 ]

Densities of continuous pixels can exceed 1, so an ELBO in nats can be positive; what
matters is that it is a lower bound, which :func:`importance_log_likelihood` lets a test check.

Training goes through Keras's own ``fit``: :meth:`VAE.call` (while training) returns the
pieces of the ELBO and :meth:`VAE.compute_loss` turns them into the loss, so Keras scales
it under mixed precision and sums the gradients across replicas.
"""

from __future__ import annotations

import math

import numpy as np

from mmcourse.checks import check_positive_int
from mmcourse._tf import tensorflow
from mmcourse.data import shapes
from mmcourse.data.text import Vocabulary
from mmcourse.imageops import to_unit
from mmcourse.models.autoencoder import build_image_decoder, build_image_encoder
from mmcourse.training import as_float32, build_from_one_replica, for_precision, replica_mean, replica_normal

tf = tensorflow()
import keras  # noqa: E402  (after TensorFlow, imported quietly)
from keras import ops  # noqa: E402

__all__ = [
    "PIXEL_SIGMA",
    "gaussian_log_likelihood",
    "kl_divergence",
    "kl_monte_carlo",
    "VAE",
    "importance_log_likelihood",
]

PIXEL_SIGMA = 0.1  # the decoder's fixed standard deviation per pixel value in [0, 1]
# Under mixed precision the loss scale starts here, not at Keras's 2^15: the loss is in nats summed
# over 12,288 pixel values, so its gradients are thousands of times those of a per-pixel loss. From
# 2^15 a fresh VAE's first 12 steps overflowed float16 and were skipped; the scale settled at 2^3,
# then 2^2 a few steps later.
INITIAL_LOSS_SCALE = 2.0**2


# --------------------------------------------------------------------------- the terms of the ELBO


def gaussian_log_likelihood(x, x_hat, sigma: float = PIXEL_SIGMA):
    """``log N(x; x̂, σ²I)`` per image, summed over pixels and channels (nats), in float32."""
    const = -0.5 * math.log(2 * math.pi * sigma**2)
    x, x_hat = as_float32(ops.convert_to_tensor(x), ops.convert_to_tensor(x_hat))
    return ops.sum(const - ops.square(x - x_hat) / (2 * sigma**2), axis=(1, 2, 3))


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


# --------------------------------------------------------------------------- the VAE


def _build_prior(condition_dim: int, latent_dim: int, dtype=None) -> keras.Model:
    """The conditional VAE's prior network: a caption vector ``c`` → ``(μ_p(c), log σ_p²(c))``, in float32."""
    condition = keras.Input((condition_dim,), name="condition")
    h = keras.layers.Dense(128, activation="relu", dtype=dtype)(condition)
    mean = keras.layers.Dense(latent_dim, dtype="float32", name="prior_mean")(h)
    log_variance = keras.layers.Dense(latent_dim, kernel_initializer="zeros", dtype="float32", name="prior_log_variance")(h)
    return keras.Model(condition, [mean, log_variance], name="prior")


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
    :func:`mmcourse.models.autoencoder.build_image_decoder`): in our runs its prior samples
    held one object more often than the transposed-convolution decoder's (0.80 vs 0.52 of
    500, 12,000 images × 8–10 epochs).

    ``model(x)`` (or ``model((x, ids))``) gives the reconstructions, decoded from ``z = μ``.
    ``fit`` trains it: while training, :meth:`call` returns the pieces of the ELBO and
    :meth:`compute_loss` computes the loss from them in float32. Metrics while training (per
    image, nats): ``loss`` (−ELBO with β), ``reconstruction`` (−E_q[log p(x|z)]) and ``kl``.
    The reparameterisation noise comes from the model's own seed generator, drawn for the
    global batch (:func:`mmcourse.training.replica_normal`): one device and several replicas train alike.
    """

    def __init__(self, latent_dim: int = 8, *, beta: float = 1.0, sigma: float = PIXEL_SIGMA, vocab_size: int = 0, decoder: str = "broadcast", **kwargs):
        super().__init__(**kwargs)
        check_positive_int(latent_dim, "latent_dim")
        if not beta >= 0:
            raise ValueError(f"beta must be zero or more, got {beta!r}")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma!r}")
        self.latent_dim, self.beta, self.sigma, self.vocab_size = int(latent_dim), float(beta), float(sigma), int(vocab_size)
        self.decoder_kind = decoder
        # Every layer computes in the model's own dtype policy, so a model trained under mixed
        # precision loads as it trained, whatever the global policy is when it is loaded.
        policy = self.dtype_policy
        condition_dim = 0
        if self.vocab_size:
            condition_dim = 64
            # Word vectors start at unit scale: with Keras's default (±0.05) the GRU's output starts
            # near 0, the decoder learns to ignore it, and the caption never gets a say.
            self.embedding = keras.layers.Embedding(
                self.vocab_size, 32, mask_zero=True, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0), dtype=policy,
                name="word_vectors",
            )
            self.text_rnn = keras.layers.GRU(condition_dim, dtype=policy, name="caption_gru")
            self.embedding.build((None, None))
            self.text_rnn.build((None, None, 32))
        self.encoder = build_image_encoder(self.latent_dim, outputs=2, condition_dim=condition_dim, dtype=policy)
        self.decoder = build_image_decoder(self.latent_dim, condition_dim=condition_dim, kind=decoder, dtype=policy)
        if self.vocab_size:
            self.prior_net = _build_prior(condition_dim, self.latent_dim, dtype=policy)
        self.noise = keras.random.SeedGenerator(name="reparameterisation_noise")  # its seed: from Python's random state
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        # Every part is built above, so a saved model holds all its weights and loads them back.
        self.built = True

    @property
    def conditional(self) -> bool:
        return self.vocab_size > 0

    def compile(self, optimizer="adam", **kwargs):
        """Keras's ``compile``; under mixed precision the optimizer is wrapped in
        :class:`mmcourse.training.LossScaleOptimizer` starting at :data:`INITIAL_LOSS_SCALE`."""
        super().compile(optimizer=for_precision(optimizer, self.dtype_policy.name, initial_scale=INITIAL_LOSS_SCALE), **kwargs)
        build_from_one_replica(self)

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
            raise ValueError("a conditional VAE needs captions: pass their token ids (see mmcourse.data.shapes.encode_captions)")
        return caption_ids

    def _inputs(self, inputs):
        """``(images, caption ids or None)`` from what ``call`` and ``fit`` are given."""
        if self.conditional:
            if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
                raise ValueError("a conditional VAE takes (images, caption_ids); see mmcourse.data.shapes.encode_captions")
            return inputs[0], inputs[1]
        if isinstance(inputs, (tuple, list)):
            inputs = inputs[0]
        return inputs, None

    @staticmethod
    def reparameterise(mean, log_variance, seed=None, *, noise=None):
        """``z = μ + exp(½ log σ²) · ε``, ``ε ~ N(0, I)`` (drawn from ``seed``, or given as ``noise``)."""
        eps = keras.random.normal(ops.shape(mean), seed=seed) if noise is None else noise
        return mean + ops.exp(0.5 * log_variance) * eps

    def call(self, inputs, training=False):
        """The reconstructions ``x̂(μ)``; while training, the pieces of the ELBO (:meth:`elbo_pieces`)."""
        x, ids = self._inputs(inputs)
        if training:
            return self.elbo_pieces(x, ids, training=True)
        c = self._condition_or_none(ids)
        mean, _ = self._encode(x, c, False)
        return self._decode(mean, c, False)

    def elbo_pieces(self, x, caption_ids=None, *, training=False, seed=None) -> dict:
        """One pass through the model with a sampled code, as a dict of float32 tensors:
        ``pixels`` (``x̂(z)``, ``z = μ + σ·ε``), ``mean`` and ``log_variance`` of ``q(z|x)``,
        and ``prior_mean``, ``prior_log_variance`` (conditional model only).

        ``ε`` is drawn from ``seed`` (an int) if given, else from the model's seed generator.
        """
        c = self._condition_or_none(caption_ids)
        mean, log_variance = as_float32(*self._encode(x, c, training))
        noise = replica_normal(ops.shape(mean)[0], self.latent_dim, self.noise if seed is None else seed)
        z = self.reparameterise(mean, log_variance, noise=noise)
        pieces = {"pixels": as_float32(self._decode(z, c, training)), "mean": mean, "log_variance": log_variance}
        if self.conditional:
            pieces["prior_mean"], pieces["prior_log_variance"] = as_float32(*self.prior_net(c))
        return pieces

    def elbo_terms(self, x, pieces):
        """Per image, ``(−E_q[log p(x|z)], KL(q‖p))`` in nats (one-sample estimate), in float32."""
        reconstruction = -gaussian_log_likelihood(x, pieces["pixels"], self.sigma)
        kl = kl_divergence(pieces["mean"], pieces["log_variance"], pieces.get("prior_mean"), pieces.get("prior_log_variance"))
        return reconstruction, kl

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """``mean(−log p(x|z) + β·KL)`` over this replica's images, ready for Keras to scale and sum.

        ``fit`` hands over the pieces :meth:`call` returned while training; ``evaluate`` (whose
        ``call`` gives reconstructions from ``z = μ``) gets a sampled pass here, so validation
        figures are the same one-sample ELBO estimate.
        """
        images, ids = self._inputs(x)
        pieces = y_pred if isinstance(y_pred, dict) else self.elbo_pieces(images, ids, training=False)
        reconstruction, kl = self.elbo_terms(images, pieces)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return replica_mean(reconstruction + self.beta * kl)

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
                self.elbo_pieces(x[start : start + batch_size], ids, training=True, seed=seed + k)
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
            mean, log_variance = as_float32(*self._encode(xb, c, False))
            total = 0.0
            for s in range(n_samples):
                z = self.reparameterise(mean, log_variance, seed=seed * 1000 + s + start)
                total = total + gaussian_log_likelihood(xb, self._decode(z, c, False), self.sigma)
            rec_parts.append(ops.convert_to_numpy(total) / n_samples)
            prior = as_float32(*self.prior_net(c)) if self.conditional else (None, None)
            kl_parts.append(ops.convert_to_numpy(kl_divergence(mean, log_variance, *prior)))
        reconstruction, kl = np.concatenate(rec_parts), np.concatenate(kl_parts)
        return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}

    def sample(self, n: int, caption_ids=None, *, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
        """Decode ``n`` codes drawn from the prior: images in [0, 1].

        ``z = μ_p + temperature·σ_p·ε`` (``μ_p = 0``, ``σ_p = 1`` for the unconditional model);
        the conditional model needs ``n`` captions' token ids.
        """
        c = self._condition_or_none(caption_ids)
        prior_mean, prior_log_variance = (ops.convert_to_numpy(t).astype(np.float32) for t in self._prior(c, n))
        eps = np.random.default_rng(seed).standard_normal((n, self.latent_dim)).astype(np.float32)
        z = prior_mean + temperature * np.exp(0.5 * prior_log_variance) * eps
        return ops.convert_to_numpy(self._decode(z, c, False))

    def draw(self, caption: str, n: int = 1, *, seed: int = 0, vocabulary: Vocabulary | None = None) -> np.ndarray:
        """Images drawn from a caption (conditional model): ``n`` prior codes decoded with it.

        A caption outside the Shapes grammar raises ``CaptionError`` naming the word.
        """
        ids = shapes.encode_captions([caption] * n, vocabulary)
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
