"""A DCGAN of Shapes images: a generator and a discriminator, each with its own optimizer.

The GAN is the one model of the course with a hand-written ``train_step``: two losses,
two optimizers, two gradient steps per batch. It does by hand what Keras's own step does
for every other model: each loss is this replica's share (:func:`mmcourse.training.replica_share`),
scaled by its optimizer under mixed precision (``optimizer.scale_loss``) before the
gradient is taken, and unscaled when the optimizer applies it.

What makes it draw, rather than collapse to one grey image (measured in notebook 05):
the discriminator's layers are *spectrally normalised* (Miyato et al., 2018): each weight
matrix is divided by its largest singular value, so the discriminator cannot grow sharper
faster than the generator can follow; the losses are the *hinge* form; the generator
upsamples and convolves instead of using transposed convolutions (no checkerboard).
``GAN(spectral_norm=False, loss="nonsaturating")`` is the textbook DCGAN of Radford et al.
(2016) with the same generator, kept as the contrast.
"""

from __future__ import annotations

import numpy as np

import time
from pathlib import Path

from mmcourse import artifacts, device
from mmcourse.checks import check_positive_int
from mmcourse._tf import tensorflow
from mmcourse.data import pipeline, shapes
from mmcourse.imageops import to_unit
from mmcourse.training import as_float32, build_from_one_replica, for_precision, replica_mean, replica_normal, seeded, start_command

tf = tensorflow()
import keras  # noqa: E402  (after TensorFlow, imported quietly)
from keras import ops  # noqa: E402

__all__ = ["GAN", "LOSSES", "SpectralConv2D", "SpectralDense", "spectral_norm", "build_generator", "build_discriminator",
           "train_command", "load", "TRAIN_SIZES"]

# Channels: half of Radford et al.'s at each scale. Shapes images are simple, and on two CPU
# cores the step is the cost: these widths train about four times faster than twice them.
GENERATOR_WIDTHS = (64, 32, 16)  # at 8×8, 16×16 and 32×32 (from 4×4×128)
DISCRIMINATOR_WIDTHS = (16, 32, 64, 128)  # at 32×32, 16×16, 8×8 and 4×4
LATENT_DIM = 64
# `mmcourse train gan`: (single-object images, epochs) per profile; batches of BATCH_SIZE
TRAIN_SIZES = {"quick": (400, 2), "full": (6_000, 50)}
BATCH_SIZE = 32
MODEL_FILE = "gan.keras"


def spectral_norm(kernel, u):
    """The largest singular value σ of ``kernel`` (reshaped to a matrix: rows = everything but
    its last axis), by one step of power iteration from ``u`` (shape ``(1, outputs)``), and the
    next ``u``. σ is differentiable in the kernel; ``u`` is not (Miyato et al., 2018, Algorithm 1)."""
    w = ops.reshape(ops.cast(kernel, "float32"), (-1, ops.shape(kernel)[-1]))
    v = ops.stop_gradient(_unit(ops.matmul(ops.cast(u, "float32"), ops.transpose(w))))
    u_next = ops.stop_gradient(_unit(ops.matmul(v, w)))
    return ops.sum(ops.matmul(v, w) * u_next), u_next


def _unit(x):
    return x / (ops.sqrt(ops.sum(x * x)) + 1e-12)


class _SpectralMixin:
    """The layer's kernel divided by its spectral norm in every call; ``u`` refined while training.
    ``u`` is the same on every replica (it depends only on the weights), so the first replica's is kept."""

    def build(self, input_shape):
        super().build(input_shape)
        self.u = self.add_weight(shape=(1, self.kernel.shape[-1]), name="u", trainable=False, dtype="float32",
                                 initializer=keras.initializers.RandomNormal(stddev=1.0), aggregation="only_first_replica")

    def save_own_variables(self, store):
        super().save_own_variables(store)
        store["u"] = self.u

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self.u.assign(store["u"])

    def call(self, inputs, training=False):
        sigma, u_next = spectral_norm(self.kernel, self.u)
        if training:
            self.u.assign(u_next)
        outputs = self._apply(inputs, self.kernel / ops.cast(sigma, self.compute_dtype))
        if self.use_bias:
            outputs = outputs + self.bias
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package="mmcourse")
class SpectralConv2D(_SpectralMixin, keras.layers.Conv2D):
    """A ``Conv2D`` (channels last) whose kernel is divided by its spectral norm."""

    def _apply(self, inputs, kernel):
        return self.convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package="mmcourse")
class SpectralDense(_SpectralMixin, keras.layers.Dense):
    """A ``Dense`` whose kernel is divided by its spectral norm."""

    def _apply(self, inputs, kernel):
        return ops.matmul(inputs, kernel)


def build_generator(latent_dim: int, *, dtype=None) -> keras.Model:
    """``z`` → Dense → 4×4×128 → (upsample ×2, 3×3 convolution, batch normalisation, ReLU) × 3 →
    upsample → 3×3 convolution → sigmoid pixels in [0, 1] (float32), 64×64×3."""
    z = keras.Input((latent_dim,), name="z")
    start = 2 * GENERATOR_WIDTHS[0]
    h = keras.layers.Reshape((4, 4, start), dtype=dtype)(keras.layers.Dense(4 * 4 * start, use_bias=False, dtype=dtype)(z))
    h = keras.layers.ReLU(dtype=dtype)(keras.layers.BatchNormalization(synchronized=True, dtype=dtype)(h))
    for width in GENERATOR_WIDTHS:
        h = keras.layers.UpSampling2D(dtype=dtype)(h)
        h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, dtype=dtype)(h)
        h = keras.layers.ReLU(dtype=dtype)(keras.layers.BatchNormalization(synchronized=True, dtype=dtype)(h))
    h = keras.layers.UpSampling2D(dtype=dtype)(h)
    pixels = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", dtype="float32", name="pixels")(h)
    return keras.Model(z, pixels, name="generator")


def build_discriminator(*, spectral_norm: bool = True, dtype=None) -> keras.Model:
    """An image (in [0, 1], shifted to [−1, 1]) → 4×4 strided convolutions with leaky ReLU
    (64 → 32 → 16 → 8 → 4) → one logit of "real" (float32); no batch normalisation (it would
    let the images of a batch inform each other's verdicts)."""
    conv, dense = (SpectralConv2D, SpectralDense) if spectral_norm else (keras.layers.Conv2D, keras.layers.Dense)
    image = keras.Input((shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 3), name="image")
    h = keras.layers.Rescaling(2.0, offset=-1.0, dtype=dtype)(image)
    for width in DISCRIMINATOR_WIDTHS:
        h = keras.layers.LeakyReLU(0.2, dtype=dtype)(conv(width, 4, strides=2, padding="same", dtype=dtype)(h))
    h = keras.layers.Flatten(dtype=dtype)(h)
    return keras.Model(image, dense(1, dtype="float32", name="logit")(h), name="discriminator")


def hinge_losses(real_logits, fake_logits):
    """``L_D = max(0, 1 − D(x)) + max(0, 1 + D(G(z)))`` per example."""
    return ops.relu(1.0 - real_logits) + ops.relu(1.0 + fake_logits)


def nonsaturating_losses(real_logits, fake_logits):
    """``L_D = −log σ(D(x)) − log(1 − σ(D(G(z))))`` per example (−log σ(a) = softplus(−a), −log(1−σ(a)) = softplus(a))."""
    return ops.softplus(-real_logits) + ops.softplus(fake_logits)


LOSSES = {  # name → (L_D per example from both logits, L_G per example from the fakes' logits)
    "hinge": (hinge_losses, lambda fake_logits: -fake_logits),
    "nonsaturating": (nonsaturating_losses, lambda fake_logits: ops.softplus(-fake_logits)),
}


@keras.saving.register_keras_serializable(package="mmcourse")
class GAN(keras.Model):
    """A generator ``G(z)`` and a discriminator ``D(x)`` giving the logit of "real", played as a game.

    Losses (``loss=``):

    - ``"hinge"`` (default; Lim & Ye, 2017; Miyato et al., 2018):
      ``L_D = max(0, 1 − D(x)) + max(0, 1 + D(G(z)))``, ``L_G = −D(G(z))``;
    - ``"nonsaturating"`` (Goodfellow et al., 2014):
      ``L_D = −log σ(D(x)) − log(1 − σ(D(G(z))))``, ``L_G = −log σ(D(G(z)))``.

    ``spectral_norm``: divide each of the discriminator's weight matrices by its largest
    singular value. Compile with ``compile(d_optimizer=..., g_optimizer=...)`` (Adam(2e-4,
    β₁ = 0.5) each by default; under mixed precision each is wrapped in a loss-scale
    optimizer); ``fit`` on real images. The noise ``z`` comes from the model's own seed
    generator, drawn for the global batch, so one device and several replicas train alike.
    """

    def __init__(self, latent_dim: int = LATENT_DIM, *, spectral_norm: bool = True, loss: str = "hinge", **kwargs):
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"unknown GAN loss {loss!r}; choose one of: {', '.join(LOSSES)}")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.spectral_norm, self.loss_name = bool(spectral_norm), loss
        policy = self.dtype_policy  # every layer's, so a GAN trained in mixed precision loads as it trained
        self.generator = build_generator(self.latent_dim, dtype=policy)
        self.discriminator = build_discriminator(spectral_norm=self.spectral_norm, dtype=policy)
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

    def d_loss(self, real_logits, fake_logits):
        """``L_D`` per example, from the logits."""
        return LOSSES[self.loss_name][0](real_logits, fake_logits)

    def g_loss(self, fake_logits):
        """``L_G`` per example."""
        return LOSSES[self.loss_name][1](fake_logits)

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
        config.update(latent_dim=self.latent_dim, spectral_norm=self.spectral_norm, loss=self.loss_name)
        return config


def load(folder=None) -> GAN:
    """The GAN written by :func:`train_command` in ``folder``, loaded with ``safe_mode=True``;
    ``folder=None``: the shipped one, ``data/gan``, its files checked against their SHA-256 sums first."""
    folder = Path(artifacts.shipped("gan") if folder is None else folder)
    if not (folder / MODEL_FILE).is_file():
        raise FileNotFoundError(f"no {MODEL_FILE} in {folder}: pass the folder `mmcourse train gan --out DIR` wrote")
    return artifacts.load_model(folder / MODEL_FILE)


def train_command(out, *, profile: str | None = None, seed: int = 0, precision: str = "auto", cpu_replicas: int | None = None,
                  progress: bool = True) -> dict:
    """What ``mmcourse train gan`` does: train the GAN (spectral norm, hinge loss) on single-object
    images, write ``gan.keras`` and ``metrics.json``; return the metrics.

    Measured on as many samples as the profile has test images, read by a judge trained as
    ``mmcourse train vae`` trains its own (:func:`mmcourse.models.generative.measure`): the
    fraction with one object, drawn cleanly, and the colour–shape kinds covered (of 18) —
    and the same for the real test images, the ceiling.
    """
    from mmcourse.metrics.judge import SceneJudge
    from mmcourse.models.generative import JUDGE_SIZES, sample_quality

    profile, seed, out = start_command(out, profile=profile, seed=seed, precision=precision, cpu_replicas=cpu_replicas)
    n, epochs = TRAIN_SIZES[profile.name]
    with device.use(precision, cpu_replicas) as run:
        data = shapes.splits(train=n, test=profile.n_test, seed=seed, objects=(1,))
        x_train = to_unit(data["train"].images)
        with run.strategy.scope(), seeded(seed):
            model = GAN()
            model.compile()
        callbacks = []
        if progress:
            from tqdm.keras import TqdmCallback

            callbacks.append(TqdmCallback(verbose=0, desc="train GAN"))
        start = time.perf_counter()
        steps = len(x_train) // BATCH_SIZE  # whole batches only: the game is played on equal halves
        batches = pipeline.table_batches(x_train, batch_size=BATCH_SIZE, epochs=epochs, seed=seed)
        history = model.fit(batches, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=callbacks).history
        seconds = time.perf_counter() - start
        judge_images, judge_epochs = JUDGE_SIZES["quick" if profile.is_quick else "full"]
        with device.use("float32"):  # the instrument is the same whatever precision the model trained in
            judge = SceneJudge.train(n=judge_images, epochs=judge_epochs, seed=seed)
        samples = sample_quality(judge, model.sample(len(data["test"]), seed=seed))
        real = sample_quality(judge, data["test"].images)
    metrics = {"train_images": n, "epochs": epochs, "steps": steps * epochs, "batch_size": BATCH_SIZE, "latent_dim": model.latent_dim,
               "loss": model.loss_name, "spectral_norm": model.spectral_norm,
               "final_d_loss": float(history["d_loss"][-1]), "final_g_loss": float(history["g_loss"][-1]),
               "judge_read_accuracy": judge.read_accuracy(data["test"])}
    metrics.update({f"samples_{key}": value for key, value in samples.items()})
    metrics.update({f"real_{key}": value for key, value in real.items()})
    artifacts.save_model(model, Path(out) / MODEL_FILE)
    return artifacts.write_metrics(out, metrics, files=[MODEL_FILE], run=run, profile=profile.name, seed=seed, test_seed=[seed, 2],
                                   train_seconds=seconds)
