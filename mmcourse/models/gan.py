"""A small GAN of Shapes images: a generator and a discriminator, each with its own optimizer.

The GAN is the one model of the course with a hand-written ``train_step``: two losses,
two optimizers, two gradient steps per batch. It does by hand what Keras's own step does
for every other model: each loss is this replica's share (:func:`mmcourse.training.replica_share`),
scaled by its optimizer under mixed precision (``optimizer.scale_loss``) before the
gradient is taken, and unscaled when the optimizer applies it.
"""

from __future__ import annotations

import numpy as np

from mmcourse.checks import check_positive_int
from mmcourse._tf import tensorflow
from mmcourse.data import shapes
from mmcourse.models.autoencoder import build_image_decoder
from mmcourse.training import as_float32, build_from_one_replica, for_precision, replica_mean, replica_normal

tf = tensorflow()
import keras  # noqa: E402  (after TensorFlow, imported quietly)
from keras import ops  # noqa: E402

__all__ = ["GAN"]


@keras.saving.register_keras_serializable(package="mmcourse")
class GAN(keras.Model):
    """A small DCGAN: a generator ``G(z)`` (the VAE's decoder shape) and a convolutional
    discriminator ``D(x)`` giving the logit of "real".

    The two losses (non-saturating form, Goodfellow et al., 2014):

        L_D = −log σ(D(x)) − log(1 − σ(D(G(z))))       (tell real from generated)
        L_G = −log σ(D(G(z)))                          (make D call the generated real)

    Compile with ``compile(d_optimizer=..., g_optimizer=...)`` (Adam(2e-4, β₁ = 0.5) each by
    default; under mixed precision each is wrapped in a loss-scale optimizer); ``fit`` on
    real images. The noise ``z`` comes from the model's own seed generator, drawn for the
    global batch, so one device and several replicas train alike.
    """

    def __init__(self, latent_dim: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        policy = self.dtype_policy  # every layer's, so a GAN trained in mixed precision loads as it trained
        self.generator = build_image_decoder(self.latent_dim, dtype=policy, name="generator")
        image = keras.Input((shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 3))
        h = image
        for width in (32, 64, 128):
            h = keras.layers.Conv2D(width, 4, strides=2, padding="same", dtype=policy)(h)
            h = keras.layers.LeakyReLU(0.2, dtype=policy)(h)
        h = keras.layers.Flatten(dtype=policy)(h)
        self.discriminator = keras.Model(image, keras.layers.Dense(1, dtype="float32")(h), name="discriminator")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.noise = keras.random.SeedGenerator(name="gan_noise")  # its seed: from Python's random state
        self.built = True

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def compile(self, d_optimizer=None, g_optimizer=None, **kwargs):
        """Give each network its optimizer (built here, under the strategy the model was built in)."""
        super().compile(optimizer=None, **kwargs)
        optimizers = []
        for optimizer in (d_optimizer, g_optimizer):
            optimizers.append(for_precision(optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5), self.dtype_policy.name))
        self.d_optimizer, self.g_optimizer = optimizers
        build_from_one_replica(self)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

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

    def _step(self, optimizer, variables, loss_fn):
        """One gradient step on ``variables`` for the per-example loss ``loss_fn()``; returns it."""
        with tf.GradientTape() as tape:
            per_example = ops.reshape(loss_fn(), (-1,))
            scaled = optimizer.scale_loss(replica_mean(per_example))
        optimizer.apply(tape.gradient(scaled, variables), variables)  # unscales, skips a step that overflowed
        return per_example

    def train_step(self, data):
        real = ops.cast(data[0] if isinstance(data, (tuple, list)) else data, "float32")
        n = ops.shape(real)[0]
        z = replica_normal(n, self.latent_dim, self.noise)

        def discriminator_loss():
            fake = self.generator(z, training=True)
            real_logits, fake_logits = as_float32(self.discriminator(real, training=True), self.discriminator(fake, training=True))
            return self.d_loss(real_logits, fake_logits)

        d_loss = self._step(self.d_optimizer, self.discriminator.trainable_variables, discriminator_loss)
        z = replica_normal(n, self.latent_dim, self.noise)
        g_loss = self._step(self.g_optimizer, self.generator.trainable_variables,
                            lambda: self.g_loss(as_float32(self.discriminator(self.generator(z, training=True), training=True))))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {tracker.name: tracker.result() for tracker in self.metrics}

    def sample(self, n: int, *, seed: int = 0) -> np.ndarray:
        """``n`` generated images in [0, 1]."""
        z = np.random.default_rng(seed).standard_normal((n, self.latent_dim)).astype(np.float32)
        return ops.convert_to_numpy(self.generator(z, training=False))

    def get_config(self):
        config = super().get_config()
        config.update(latent_dim=self.latent_dim)
        return config
