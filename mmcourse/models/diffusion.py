"""Denoising diffusion (Ho et al., 2020; Song et al., 2021): the noise schedule, the forward
process in closed form, and the two samplers, for images or latents of any shape.

The forward process adds Gaussian noise in ``T`` small steps, ``q(x_t | x_{t−1}) =
N(√(1 − β_t) x_{t−1}, β_t I)``; with ``α_t = 1 − β_t`` and ``ᾱ_t = α_1 ⋯ α_t`` any step can be
reached at once::

    x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε,      ε ~ N(0, I)                       (q_sample)

A denoiser ``ε̂(x_t, t)`` trained to predict that ε (the "simple" loss, ``‖ε − ε̂‖²``) is all
both samplers need:

- **DDPM** (ancestral): ``x_{t−1} = (x_t − β_t / √(1 − ᾱ_t) · ε̂) / √α_t + σ_t z`` with
  ``σ_t² = β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)``, every one of the ``T`` steps.
- **DDIM**: predict ``x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t``, then jump to an earlier step ``s``
  of a shorter sequence: ``x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε̂ + σ z``; ``eta = 0`` makes it
  deterministic, ``eta = 1`` with every step is DDPM again.

**Classifier-free guidance** (Ho & Salimans, 2021) mixes a conditional and an unconditional
prediction of the same network, ``ε̂ = ε̂_∅ + w (ε̂_c − ε̂_∅)`` (:func:`guided_noise`): ``w = 1``
is the conditional model, ``w > 1`` pushes further from what the unconditional one would draw.

Steps are numbered ``t = 0 … T−1`` here (``ᾱ[t]`` is the formulas' ``ᾱ_{t+1}``), and
``ᾱ_{−1} = 1``: the sample after the last step is ``x_0``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from mmcourse.checks import check_positive_int
from mmcourse._tf import tensorflow

tensorflow()

import keras  # noqa: E402  (after the quiet TensorFlow import)
from keras import ops  # noqa: E402

__all__ = ["SCHEDULES", "Schedule", "schedule", "guided_noise", "ddpm_sample", "ddim_sample", "ddim_steps", "noised_batches", "train_denoiser",
           "guided_predictor", "draw_latents"]

#: The noise schedules :func:`schedule` knows.
SCHEDULES = ("cosine", "linear")


@dataclass(frozen=True)
class Schedule:
    """A noise schedule of ``T`` steps: ``betas``, ``alphas`` and ``alpha_bars`` (float64, length T)."""

    betas: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.betas)

    @property
    def alphas(self) -> np.ndarray:
        return 1.0 - self.betas

    @property
    def alpha_bars(self) -> np.ndarray:
        return np.cumprod(self.alphas)

    def alpha_bar_before(self, t) -> np.ndarray:
        """``ᾱ`` of the step before each ``t`` (1 before the first)."""
        t = np.asarray(t)
        return np.where(t > 0, self.alpha_bars[np.maximum(t - 1, 0)], 1.0)

    def q_sample(self, x0, t, noise):
        """``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε`` for a batch: ``t`` one step per row (ints), ``noise`` like ``x0``."""
        x0 = ops.convert_to_tensor(x0)
        a = self._per_row(np.sqrt(self.alpha_bars)[np.asarray(t)], x0)
        b = self._per_row(np.sqrt(1.0 - self.alpha_bars)[np.asarray(t)], x0)
        return a * x0 + b * ops.cast(noise, x0.dtype)

    def posterior(self, x0, xt, t):
        """Mean and variance of ``q(x_{t−1} | x_t, x_0)``, the Gaussian DDPM's step aims at:
        ``μ = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t``, ``β̃_t`` as above."""
        t = np.asarray(t)
        before, now = self.alpha_bar_before(t), self.alpha_bars[t]
        x0 = ops.convert_to_tensor(x0)
        mean = (self._per_row(np.sqrt(before) * self.betas[t] / (1 - now), x0) * x0
                + self._per_row(np.sqrt(self.alphas[t]) * (1 - before) / (1 - now), x0) * ops.cast(xt, x0.dtype))
        return mean, self.betas[t] * (1 - before) / (1 - now)

    @staticmethod
    def _per_row(values, like):
        """Per-row scalars ``(n,)`` shaped to broadcast over a batch like ``like``."""
        values = np.asarray(values, np.float64)
        return ops.cast(np.reshape(values, values.shape + (1,) * (len(like.shape) - values.ndim)), like.dtype)


def schedule(steps: int = 1000, kind: str = "cosine", *, beta_range=(1e-4, 0.02), offset: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """A :class:`Schedule` of ``steps`` steps.

    ``"linear"`` (Ho et al.): β rising evenly over ``beta_range``. ``"cosine"`` (Nichol &
    Dhariwal, 2021): ``ᾱ(t) = f(t)/f(0)``, ``f(t) = cos²((t/T + s)/(1 + s) · π/2)``, each β
    capped at ``max_beta``: the image fades more evenly and the last steps are not wasted on
    pure noise (which a linear schedule reaches long before ``T`` for small images).
    """
    steps = check_positive_int(steps, "steps")
    if kind == "linear":
        return Schedule(np.linspace(beta_range[0], beta_range[1], steps, dtype=np.float64))
    if kind != "cosine":
        raise ValueError(f"kind is one of {SCHEDULES}, got {kind!r}")
    f = np.cos((np.arange(steps + 1) / steps + offset) / (1 + offset) * np.pi / 2) ** 2
    return Schedule(np.minimum(1.0 - f[1:] / f[:-1], max_beta))


def guided_noise(conditional, unconditional, guidance: float):
    """Classifier-free guidance: ``ε̂_∅ + w (ε̂_c − ε̂_∅)``."""
    return unconditional + guidance * (conditional - unconditional)


def ddim_steps(total: int, steps: int) -> np.ndarray:
    """``steps`` of the ``total`` steps, evenly spaced, the last one ``total − 1``, from high to low."""
    steps = check_positive_int(steps, "steps")
    if steps > total:
        raise ValueError(f"at most {total} steps (the schedule's), got {steps}")
    return np.unique(np.round(np.linspace(0, total - 1, steps)).astype(int))[::-1]


def _timesteps(t: int, n: int):
    return ops.full((n,), t, dtype="int32")


def _denoised(x, eps, alpha_bar: float, clip: float | None):
    """``x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t``, and the ε̂ it implies, with ``x̂_0`` clipped to ``[−clip, clip]``
    when ``clip`` is given. Near the end of a cosine schedule ``√ᾱ_t`` is tiny (about 5·10⁻⁵ at
    the last of 1,000 steps), so the guess divides ε̂'s small errors by it: unclipped, a first
    step from pure noise can throw ``x̂_0`` thousands of units away, and every later step inherits it."""
    x0_hat = (x - np.sqrt(1 - alpha_bar) * eps) / np.sqrt(alpha_bar)
    if clip is None:
        return x0_hat, eps
    x0_hat = ops.clip(x0_hat, -clip, clip)
    return x0_hat, (x - np.sqrt(alpha_bar) * x0_hat) / np.sqrt(1 - alpha_bar)


def ddpm_sample(predict_noise, sched: Schedule, noise, *, clip: float | None = None, seed: int = 0, callback=None):
    """Ancestral sampling through all ``T`` steps from ``noise`` (the ``x_T``, a batch).

    ``predict_noise(x_t, t)`` returns ``ε̂`` for a batch (``t`` an int32 vector). Each step draws
    from ``q(x_{t−1} | x_t, x̂_0)`` (:meth:`Schedule.posterior`, the same step as the formula
    above), ``x̂_0`` clipped to ``[−clip, clip]`` when ``clip`` is given (the data's range: Ho et
    al. clip images to [−1, 1]). ``callback(t, x_t, x0_hat)``, when given, sees every step (to
    draw the denoising). Returns ``x_0``.
    """
    generator = keras.random.SeedGenerator(seed)
    x = ops.convert_to_tensor(noise, "float32")
    n = x.shape[0]
    for t in range(sched.steps - 1, -1, -1):
        eps = ops.cast(predict_noise(x, _timesteps(t, n)), "float32")
        x0_hat, _ = _denoised(x, eps, sched.alpha_bars[t], clip)
        if callback is not None:
            callback(t, x, x0_hat)
        mean, variance = sched.posterior(x0_hat, x, np.full(n, t))
        x = mean
        if t > 0:
            x = x + float(np.sqrt(variance[0])) * keras.random.normal(ops.shape(x), seed=generator)
    return x


def ddim_sample(predict_noise, sched: Schedule, noise, *, steps: int = 50, eta: float = 0.0, clip: float | None = None, seed: int = 0,
                callback=None):
    """DDIM sampling in ``steps`` jumps (:func:`ddim_steps`) from ``noise``; ``eta`` 0 is
    deterministic, 1 adds DDPM's noise. ``predict_noise``, ``clip`` and ``callback`` as in
    :func:`ddpm_sample` (a clipped ``x̂_0`` also replaces ε̂ by the noise it implies, so the jump stays on the line from ``x̂_0`` to ``x_t``)."""
    generator = keras.random.SeedGenerator(seed)
    x = ops.convert_to_tensor(noise, "float32")
    n = x.shape[0]
    sequence = ddim_steps(sched.steps, steps)
    for k, t in enumerate(sequence):
        eps = ops.cast(predict_noise(x, _timesteps(int(t), n)), "float32")
        now = sched.alpha_bars[t]
        before = sched.alpha_bars[sequence[k + 1]] if k + 1 < len(sequence) else 1.0
        x0_hat, eps = _denoised(x, eps, now, clip)
        if callback is not None:
            callback(int(t), x, x0_hat)
        sigma = eta * np.sqrt((1 - before) / (1 - now) * (1 - now / before))
        x = np.sqrt(before) * x0_hat + np.sqrt(max(1 - before - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * keras.random.normal(ops.shape(x), seed=generator)
    return x


# --------------------------------------------------------------------------- training the denoiser


def noised_batches(latents, captions, sched: Schedule, *, batch_size: int = 64, epochs: int = 1, seed: int = 0, drop: float = 0.1,
                   min_snr: float | None = None, layouts=None):
    """A ``tf.data`` stream of ``({"noisy", "t", "caption"}, ε)`` batches for the simple loss.

    ``latents (n, s, s, c)`` are the clean ``x_0`` (scaled latents, or images in [−1, 1]);
    ``captions (n, refs, L)`` word ids, one of each row's references drawn per step. Every row
    gets a step ``t`` uniform in ``0 … T−1`` and fresh noise ε, and ``x_t`` from
    :meth:`Schedule.q_sample`; with probability ``drop`` its caption becomes the empty one
    (:func:`mmcourse.models.denoiser.null_caption`: classifier-free guidance's unconditional
    model). All drawn from ``(seed, step)``, so one device and several replicas train alike
    (:mod:`mmcourse.data.pipeline`). With ``layouts (n, s, s, k)``, each row's what-is-where maps
    (:mod:`mmcourse.models.layout`), the inputs also hold ``"layout"``, all zero where the caption
    was dropped: the unconditional model knows neither what nor where.

    With ``min_snr`` = γ each batch also carries a weight per row, ``min(SNR_t, γ) / SNR_t`` with
    ``SNR_t = ᾱ_t / (1 − ᾱ_t)`` (Hang et al., 2023, "Min-SNR"): the nearly clean steps, whose
    noise is hardest to guess and matters least to what the drawing shows, stop dominating the
    loss. Batches are then ``(inputs, ε, weight)``, the weight shaped ``(n, 1, 1)``.
    """
    from mmcourse.data import pipeline
    from mmcourse.models.denoiser import null_caption

    tf = tensorflow()
    if not 0 <= drop < 1:
        raise ValueError(f"drop is a probability below 1, got {drop!r}")
    latents_t, captions_t = tf.constant(np.asarray(latents, np.float32)), tf.constant(np.asarray(captions, np.int32))
    layouts_t = None if layouts is None else tf.constant(np.asarray(layouts, np.float32))
    root_bars = tf.constant(np.sqrt(sched.alpha_bars), tf.float32)
    root_rest = tf.constant(np.sqrt(1 - sched.alpha_bars), tf.float32)
    empty = tf.constant(null_caption(captions_t.shape[-1]))
    refs = captions_t.shape[1]
    snr = sched.alpha_bars / (1 - sched.alpha_bars)
    weights = tf.constant(np.minimum(snr, min_snr) / snr if min_snr else np.ones_like(snr), tf.float32)

    def gather(step, rows):
        key = tf.stack([tf.cast(seed, tf.int64), step])
        n = tf.shape(rows)[0]
        x0 = tf.gather(latents_t, rows)
        caption = pipeline.take(captions_t, rows, pipeline.pick_reference(rows, refs, seed=seed, step=step))
        draw = lambda stream: tf.random.experimental.stateless_fold_in(key, stream)  # noqa: E731  (not pick_reference's stream)
        t = tf.random.stateless_uniform((n,), seed=draw(1), maxval=sched.steps, dtype=tf.int32)
        noise = tf.random.stateless_normal(tf.shape(x0), seed=draw(2))
        noisy = tf.gather(root_bars, t)[:, None, None, None] * x0 + tf.gather(root_rest, t)[:, None, None, None] * noise
        dropped = tf.random.stateless_uniform((n,), seed=draw(3)) < drop
        caption = tf.where(dropped[:, None], empty[None], caption)
        inputs = {"noisy": noisy, "t": t, "caption": caption}
        if layouts_t is not None:
            inputs["layout"] = tf.where(dropped[:, None, None, None], 0.0, tf.gather(layouts_t, rows))
        return (inputs, noise, tf.gather(weights, t)[:, None, None]) if min_snr else (inputs, noise)  # (n, 1, 1): against the squared error per cell

    return pipeline.batches(len(latents), gather, batch_size=batch_size, epochs=epochs, seed=seed)


def train_denoiser(latents, captions, *, sched: Schedule | None = None, epochs: int = 10, batch_size: int = 64, learning_rate: float = 1e-3,
                   drop: float = 0.1, min_snr: float | None = 5.0, ema: float | None = 0.999, seed: int = 0, progress: bool = True, callbacks=(),
                   layouts=None, start_from: keras.Model | None = None, **denoiser_args):
    """Build :func:`mmcourse.models.denoiser.build_denoiser` for ``latents``' shape and train it
    on :func:`noised_batches` with the simple loss ``‖ε − ε̂‖²``. Returns ``(model, history, seconds)``.

    With ``layouts`` (what-is-where maps per row) the denoiser also takes them; with
    ``start_from``, a trained caption-only denoiser, it starts from that one's weights
    (:func:`mmcourse.models.denoiser.with_layout`) and is fine-tuned rather than built afresh.

    Built from ``seed`` and compiled in :func:`mmcourse.device.strategy`'s scope (precision and
    replicas as the surrounding ``device.use``); Adam, its step falling along a half cosine; with
    ``ema`` the weights at the end are the exponential moving average of the steps' weights
    (Keras's ``use_ema``: samples from an average are smoother than from the last step's weights).
    ``callbacks`` join ``fit``'s.
    """
    from mmcourse import device
    from mmcourse import training as training_lib
    from mmcourse.checks import check_seed
    from mmcourse.models.denoiser import build_denoiser, with_layout

    import time

    seed = check_seed(seed)
    epochs, batch_size = check_positive_int(epochs, "epochs"), check_positive_int(batch_size, "batch_size")
    sched = sched or schedule()
    latents = np.asarray(latents, np.float32)
    steps = -(-len(latents) // batch_size)
    optimizer_args = dict(use_ema=True, ema_momentum=ema) if ema else {}
    with device.strategy().scope(), training_lib.seeded(seed):
        channels = 0 if layouts is None else np.shape(layouts)[-1]
        if start_from is not None:
            model = with_layout(start_from, channels)
        else:
            model = build_denoiser(latents.shape[1:], caption_length=np.shape(captions)[-1], layout_channels=channels, **denoiser_args)
        schedule_ = keras.optimizers.schedules.CosineDecay(learning_rate, steps * epochs)
        training_lib.compile(model, keras.optimizers.Adam(schedule_, **optimizer_args), loss="mse")
    stream = noised_batches(latents, captions, sched, batch_size=batch_size, epochs=epochs, seed=seed, drop=drop, min_snr=min_snr, layouts=layouts)
    callbacks = list(callbacks)
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc="train denoiser"))
    start = time.perf_counter()
    history = model.fit(stream, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=callbacks, shuffle=False)
    return model, history.history, time.perf_counter() - start


# --------------------------------------------------------------------------- drawing


def guided_predictor(model: keras.Model, caption_ids, guidance: float = 3.0, layouts=None):
    """``predict_noise(x_t, t)`` for the samplers: ``model``'s ε̂ for captions ``caption_ids (n, L)``
    (and, for a denoiser that takes them, what-is-where maps ``layouts (n, s, s, k)``),
    classifier-free guided with scale ``guidance`` (:func:`guided_noise`; one forward pass of
    ``2n`` rows, the captions and the empty caption with empty maps, when ``guidance`` is not 1)."""
    from mmcourse.models.denoiser import layout_channels, null_caption

    caption_ids = np.asarray(caption_ids, np.int32)
    empty = np.tile(null_caption(caption_ids.shape[-1]), (len(caption_ids), 1))
    captions = ops.convert_to_tensor(caption_ids if guidance == 1 else np.concatenate([caption_ids, empty]))  # a model's inputs are all tensors
    conditions = [captions]
    if layout_channels(model):
        if layouts is None:
            raise ValueError("this denoiser draws from a layout too: pass layouts, what-is-where maps (mmcourse.models.layout)")
        layouts = np.asarray(layouts, np.float32)
        conditions.append(ops.convert_to_tensor(layouts if guidance == 1 else np.concatenate([layouts, np.zeros_like(layouts)])))
    elif layouts is not None:
        raise ValueError("this denoiser reads captions only: it takes no layouts")

    call = _compiled(model)

    def predict(x, t):
        if guidance == 1:
            return call(x, t, *conditions)
        both = call(ops.concatenate([x, x]), ops.concatenate([t, t]), *conditions)
        conditional, unconditional = ops.split(ops.cast(both, "float32"), 2)
        return guided_noise(conditional, unconditional, guidance)

    return predict


_COMPILED = weakref.WeakKeyDictionary()


def _compiled(model: keras.Model):
    """``model``'s inference as one TensorFlow graph, traced once for any batch size (sampling calls
    it every step: eagerly, the layers' Python overhead would cost more than their arithmetic)."""
    if model not in _COMPILED:
        tf = tensorflow()
        noisy = model.input["noisy"]
        signature = [tf.TensorSpec((None, *noisy.shape[1:]), tf.float32), tf.TensorSpec((None,), tf.int32),
                     tf.TensorSpec((None, model.input["caption"].shape[-1]), tf.int32)]
        if "layout" in model.input:
            signature.append(tf.TensorSpec((None, *model.input["layout"].shape[1:]), tf.float32))
            _COMPILED[model] = tf.function(lambda x, t, caption, layout: model({"noisy": x, "t": t, "caption": caption, "layout": layout},
                                                                               training=False), input_signature=signature)
        else:
            _COMPILED[model] = tf.function(lambda x, t, caption: model({"noisy": x, "t": t, "caption": caption}, training=False),
                                           input_signature=signature)
    return _COMPILED[model]


def draw_latents(model: keras.Model, caption_ids, *, sched: Schedule, guidance: float = 3.0, steps: int = 25, sampler: str = "ddim",
                 clip: float | None = None, seed: int = 0, callback=None, layouts=None):
    """Latents for each caption (``caption_ids (n, L)``; with ``layouts``, its what-is-where
    maps), from noise drawn from ``seed``: DDIM in ``steps`` (deterministic) or ancestral DDPM
    through every step (``sampler="ddpm"``), ``x̂_0`` clipped to ``[−clip, clip]`` when given."""
    caption_ids = np.asarray(caption_ids, np.int32)
    shape = (len(caption_ids), *model.input["noisy"].shape[1:])
    noise = keras.random.normal(shape, seed=keras.random.SeedGenerator(seed))
    predict = guided_predictor(model, caption_ids, guidance, layouts)
    if sampler == "ddim":
        return ddim_sample(predict, sched, noise, steps=steps, clip=clip, seed=seed + 1, callback=callback)
    if sampler == "ddpm":
        return ddpm_sample(predict, sched, noise, clip=clip, seed=seed + 1, callback=callback)
    raise ValueError(f"sampler is 'ddim' or 'ddpm', got {sampler!r}")
