"""The diffusion schedule, forward process and samplers against independent computations."""

import keras
import numpy as np
import pytest

from mmcourse._tf import tensorflow
from mmcourse.models import diffusion


@pytest.mark.parametrize("kind", diffusion.SCHEDULES)
def test_schedules_fade_from_the_image_to_noise(kind):
    sched = diffusion.schedule(1000, kind)
    ab = sched.alpha_bars
    assert sched.steps == 1000 and np.all(np.diff(ab) < 0)
    assert ab[0] > 0.999 and ab[-1] < 1e-4
    assert np.all((sched.betas > 0) & (sched.betas <= 0.999))
    assert np.allclose(np.cumprod(1 - sched.betas), ab)


def test_cosine_schedule_follows_its_formula():
    T, s = 100, 0.008
    sched = diffusion.schedule(T, "cosine")
    t = np.arange(1, T)  # the last step is capped
    f = lambda t: np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    assert np.allclose(sched.alpha_bars[t - 1], f(t) / f(0), rtol=1e-9)


def test_q_sample_matches_running_the_chain_step_by_step():
    """Monte Carlo: 40,000 chains of x_t = √(1-β_t) x_{t-1} + √β_t z reach mean √ᾱ_t x_0 and variance 1 - ᾱ_t."""
    sched = diffusion.schedule(50, "linear", beta_range=(1e-3, 0.1))
    rng = np.random.default_rng(0)
    x0 = np.array([1.5, -0.7, 0.0])
    x = np.repeat(x0[None], 40_000, 0)
    for t in range(sched.steps):
        x = np.sqrt(1 - sched.betas[t]) * x + np.sqrt(sched.betas[t]) * rng.normal(size=x.shape)
        if t in (0, 9, 49):
            closed = np.asarray(sched.q_sample(np.repeat(x0[None], 40_000, 0).astype("float32"),
                                                             np.full(40_000, t), rng.normal(size=x.shape).astype("float32")))
            for sample in (x, closed):
                assert np.allclose(sample.mean(0), np.sqrt(sched.alpha_bars[t]) * x0, atol=0.02)
                assert np.allclose(sample.var(0), 1 - sched.alpha_bars[t], atol=0.02 * max(1 - sched.alpha_bars[t], 0.05))


def test_posterior_is_the_product_of_the_two_gaussians():
    """q(x_{t-1} | x_t, x_0) ∝ N(x_t; √α_t x_{t-1}, β_t) N(x_{t-1}; √ᾱ_{t-1} x_0, 1 - ᾱ_{t-1}), completed by hand."""
    sched = diffusion.schedule(30, "cosine")
    rng = np.random.default_rng(1)
    t = np.array([0, 1, 7, 29])
    x0, xt = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    mean, variance = sched.posterior(x0.astype("float32"), xt.astype("float32"), t)
    a, b = sched.alphas[t], sched.betas[t]
    prior_mean = np.sqrt(np.r_[1.0, sched.alpha_bars][t])[:, None] * x0
    prior_var = 1 - np.r_[1.0, sched.alpha_bars][t]
    precision = a / b + np.where(prior_var > 0, 1 / np.maximum(prior_var, 1e-300), np.inf)
    by_hand_var = 1 / precision
    by_hand_mean = np.where(prior_var[:, None] > 0,
                            by_hand_var[:, None] * (np.sqrt(a)[:, None] * xt / b[:, None] + prior_mean / np.maximum(prior_var, 1e-300)[:, None]),
                            x0)
    assert np.allclose(variance, by_hand_var, atol=1e-12)
    assert np.allclose(np.asarray(mean), by_hand_mean, atol=1e-5)


def _oracle(sched, x0):
    """The perfect denoiser for one known x_0: ε = (x_t - √ᾱ_t x_0) / √(1 - ᾱ_t)."""
    def predict(x, t):
        ab = sched.alpha_bars[np.asarray(t)][:, None, None, None]
        return (np.asarray(x) - np.sqrt(ab) * x0) / np.sqrt(1 - ab)
    return predict


@pytest.mark.parametrize("steps", [1000, 50, 10])
def test_ddim_with_a_perfect_denoiser_returns_the_image(steps):
    sched = diffusion.schedule(1000)
    rng = np.random.default_rng(2)
    x0 = rng.uniform(-1, 1, size=(3, 4, 4, 2)).astype("float32")
    out = diffusion.ddim_sample(_oracle(sched, x0), sched, rng.normal(size=x0.shape), steps=steps)
    assert np.allclose(np.asarray(out), x0, atol=1e-3)


def test_ddpm_with_a_perfect_denoiser_returns_the_image():
    sched = diffusion.schedule(200)
    rng = np.random.default_rng(3)
    x0 = rng.uniform(-1, 1, size=(2, 4, 4, 1)).astype("float32")
    seen = []
    out = diffusion.ddpm_sample(_oracle(sched, x0), sched, rng.normal(size=x0.shape), callback=lambda t, x, x0_hat: seen.append(t))
    assert np.allclose(np.asarray(out), x0, atol=1e-3)
    assert seen == list(range(199, -1, -1))


def test_ddim_with_eta_one_and_every_step_is_ddpm():
    """The same noise draws: DDIM's σ at eta = 1 is DDPM's √β̃_t, and its mean is DDPM's mean."""
    sched = diffusion.schedule(40, "linear", beta_range=(1e-3, 0.2))
    rng = np.random.default_rng(4)
    start = rng.normal(size=(2, 3, 3, 1)).astype("float32")
    w = rng.normal(size=(1, 3, 3, 1)).astype("float32")
    denoiser = lambda x, t: np.tanh(np.asarray(x) * w + np.asarray(t)[:, None, None, None] / 40)  # noqa: E731  (any function of x, t)
    ddpm = diffusion.ddpm_sample(denoiser, sched, start, seed=5)
    ddim = diffusion.ddim_sample(denoiser, sched, start, steps=40, eta=1.0, seed=5)
    assert np.allclose(np.asarray(ddpm), np.asarray(ddim), atol=1e-4)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_clipping_the_clean_guess_keeps_a_slightly_wrong_denoiser_in_range(sampler):
    """A denoiser whose noise is off by 0.01 everywhere: at the last step of a cosine schedule
    (√ᾱ ≈ 5·10⁻⁵) the guess x̂_0 = (x_t − √(1−ᾱ) ε̂)/√ᾱ lands hundreds of units from the data;
    clipped to the data's range it stays there, and the clipped guess implies ε̂ again exactly."""
    sched = diffusion.schedule(1000 if sampler == "ddim" else 100)
    rng = np.random.default_rng(12)
    x0 = rng.uniform(-1, 1, size=(2, 3, 3, 1)).astype("float32")
    perfect = _oracle(sched, x0)
    off = lambda x, t: perfect(x, t) + 0.01  # noqa: E731
    first = {}
    run = diffusion.ddim_sample if sampler == "ddim" else diffusion.ddpm_sample
    extra = {"steps": 10} if sampler == "ddim" else {}
    for clip in (None, 1.0):
        guesses = []
        run(off, sched, rng.normal(size=x0.shape), clip=clip, callback=lambda t, x, x0_hat: guesses.append(np.asarray(x0_hat)), **extra)
        first[clip] = np.abs(guesses[0]).max()
        assert clip is None or max(np.abs(g).max() for g in guesses) <= clip + 1e-6
    assert first[None] > 10 and first[1.0] <= 1.0
    x = rng.normal(size=x0.shape).astype("float32")
    eps = rng.normal(size=x0.shape).astype("float32")
    x0_hat, implied = diffusion._denoised(x, eps, 0.3, 0.5)
    assert np.abs(np.asarray(x0_hat)).max() <= 0.5
    assert np.allclose(np.sqrt(0.3) * np.asarray(x0_hat) + np.sqrt(0.7) * np.asarray(implied), x, atol=1e-5)


@pytest.mark.parametrize("steps", [50, 10])
def test_a_clip_wider_than_the_data_changes_nothing_for_a_perfect_denoiser(steps):
    sched = diffusion.schedule(1000)
    rng = np.random.default_rng(13)
    x0 = rng.uniform(-1, 1, size=(3, 4, 4, 2)).astype("float32")
    start = rng.normal(size=x0.shape)
    assert np.allclose(np.asarray(diffusion.ddim_sample(_oracle(sched, x0), sched, start, steps=steps, clip=1.0)), x0, atol=1e-3)
    small = diffusion.schedule(100)
    assert np.allclose(np.asarray(diffusion.ddpm_sample(_oracle(small, x0), small, start, clip=1.0)), x0, atol=1e-3)


def test_min_snr_weights_follow_the_step_drawn():
    sched = diffusion.schedule(100)
    rng = np.random.default_rng(14)
    latents = rng.normal(size=(32, 4, 4, 2)).astype("float32")
    captions = rng.integers(4, 30, size=(32, 2, 16)).astype("int32")
    inputs, noise, weight = next(iter(diffusion.noised_batches(latents, captions, sched, batch_size=32, seed=2, min_snr=5.0)))
    t = np.asarray(inputs["t"])
    snr = sched.alpha_bars[t] / (1 - sched.alpha_bars[t])
    assert np.asarray(weight).shape == (32, 1, 1)
    assert np.allclose(np.asarray(weight)[:, 0, 0], np.minimum(snr, 5.0) / snr, rtol=1e-5)
    assert (np.asarray(weight) < 1).any() and (np.asarray(weight) == 1).any()  # clean steps weighed down, noisy ones not
    plain = next(iter(diffusion.noised_batches(latents, captions, sched, batch_size=32, seed=2)))
    assert len(plain) == 2 and np.array_equal(np.asarray(plain[1]), np.asarray(noise))  # the same draws, without the weight


def test_ddim_steps_and_guidance():
    assert list(diffusion.ddim_steps(1000, 5)) == [999, 749, 500, 250, 0]
    assert list(diffusion.ddim_steps(10, 10)) == list(range(9, -1, -1))
    with pytest.raises(ValueError, match="at most 10"):
        diffusion.ddim_steps(10, 11)
    c, u = np.array([1.0, 2.0]), np.array([0.0, 4.0])
    assert np.allclose(diffusion.guided_noise(c, u, 0.0), u) and np.allclose(diffusion.guided_noise(c, u, 1.0), c)
    assert np.allclose(diffusion.guided_noise(c, u, 3.0), [3.0, -2.0])
    with pytest.raises(ValueError, match="kind is one of"):
        diffusion.schedule(10, "square")


def test_q_sample_keeps_the_batch_dtype():
    sched = diffusion.schedule(10)
    x = keras.ops.ones((2, 3), dtype="float16")
    assert keras.backend.standardize_dtype(sched.q_sample(x, [0, 9], np.zeros((2, 3))).dtype) == "float16"


def test_noised_batches_follow_q_sample_and_drop_captions():
    from mmcourse.models.denoiser import null_caption

    sched = diffusion.schedule(100)
    rng = np.random.default_rng(6)
    latents = rng.normal(size=(40, 4, 4, 2)).astype("float32")
    captions = rng.integers(4, 30, size=(40, 3, 16)).astype("int32")
    stream = diffusion.noised_batches(latents, captions, sched, batch_size=40, epochs=50, seed=1, drop=0.3)
    dropped = 0
    seen = []
    for inputs, noise in stream:
        noisy, t, caption = (np.asarray(inputs[k]) for k in ("noisy", "t", "caption"))
        assert noisy.shape == (40, 4, 4, 2) and t.dtype == np.int32 and 0 <= t.min() and t.max() < 100
        # which latent each row is: x_0 = (x_t - √(1-ᾱ) ε) / √ᾱ must be one of the table's rows
        x0 = (noisy - np.sqrt(1 - sched.alpha_bars[t])[:, None, None, None] * np.asarray(noise)) / np.sqrt(sched.alpha_bars[t])[:, None, None, None]
        distance = np.abs(x0[:, None] - latents[None]).reshape(40, 40, -1).max(-1)
        rows = distance.argmin(1)
        assert np.all(distance.min(1) < 1e-3 / np.sqrt(sched.alpha_bars[t]).clip(1e-2))
        is_null = (caption == null_caption()).all(1)
        dropped += is_null.sum()
        for r, c, null in zip(rows, caption, is_null):
            assert null or any((c == ref).all() for ref in captions[r])
        seen.append(np.asarray(noise))
    assert 0.25 < dropped / (40 * 50) < 0.35
    noise = np.concatenate(seen)
    assert abs(noise.mean()) < 0.02 and abs(noise.std() - 1) < 0.02
    again = next(iter(diffusion.noised_batches(latents, captions, sched, batch_size=40, epochs=1, seed=1, drop=0.3)))
    assert np.array_equal(np.asarray(again[1]), seen[0])  # the same seed draws the same batches


def test_a_short_training_lowers_the_denoising_loss():
    """Latents that are a caption's colour, constant over the grid: a few epochs learn to predict
    the noise far better than ε̂ = 0 (whose loss is 1)."""
    from mmcourse.data import shapes

    rng = np.random.default_rng(7)
    captions = ["a small red square", "a small blue circle", "a large green triangle"]
    ids = shapes.encode_captions(captions)
    which = rng.integers(0, 3, size=192)
    colours = np.array([[1.0, -1.0], [-1.0, 1.0], [0.5, 0.5]], np.float32)
    latents = np.broadcast_to(colours[which][:, None, None, :], (192, 8, 8, 2)).copy()
    model, history, seconds = diffusion.train_denoiser(latents, ids[which][:, None], sched=diffusion.schedule(100), epochs=6, batch_size=32,
                                                       learning_rate=3e-3, ema=None, seed=0, progress=False, width=16, text_width=16,
                                                       num_heads=2)
    assert history["loss"][-1] < 0.5 < history["loss"][0] and seconds > 0


@pytest.fixture
def eagerly():
    """Sampling runs the denoiser as a compiled graph; these tests look at each call's inputs."""
    tf = tensorflow()
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


class _Recorder(keras.Model):
    """A stand-in denoiser: ε̂ = (caption's first word id) · 0.01 · x, recording its calls."""

    def __init__(self):
        super().__init__()
        self.calls = []
        inputs = {"noisy": keras.Input((4, 4, 2)), "t": keras.Input((), dtype="int32"), "caption": keras.Input((16,), dtype="int32")}
        self._inputs_spec = inputs

    @property
    def input(self):
        return self._inputs_spec

    def call(self, inputs, training=False):
        self.calls.append(np.asarray(inputs["caption"]).copy())
        scale = keras.ops.cast(inputs["caption"][:, 1], "float32")[:, None, None, None] * 0.01
        return scale * inputs["noisy"]


def test_guidance_mixes_the_conditional_and_empty_caption_predictions(eagerly):
    from mmcourse.data import shapes
    from mmcourse.models.denoiser import null_caption

    ids = shapes.encode_captions(["a small red square", "a large blue circle"])
    x = np.random.default_rng(8).normal(size=(2, 4, 4, 2)).astype("float32")
    t = np.array([3, 3], np.int32)
    model = _Recorder()
    conditional = np.asarray(diffusion.guided_predictor(model, ids, 1.0)(x, t))
    assert len(model.calls) == 1 and np.array_equal(model.calls[0], ids)
    guided = np.asarray(diffusion.guided_predictor(model, ids, 4.0)(x, t))
    assert np.array_equal(model.calls[1], np.concatenate([ids, np.tile(null_caption(), (2, 1))]))
    unconditional = null_caption()[1] * 0.01 * x
    assert np.allclose(guided, unconditional + 4.0 * (conditional - unconditional), atol=1e-6)


def test_draw_latents_is_repeatable_and_checks_its_sampler(eagerly):
    from mmcourse.data import shapes

    ids = shapes.encode_captions(["a small red square"] * 3)
    sched = diffusion.schedule(50)
    one = np.asarray(diffusion.draw_latents(_Recorder(), ids, sched=sched, steps=5, seed=3))
    two = np.asarray(diffusion.draw_latents(_Recorder(), ids, sched=sched, steps=5, seed=3))
    other = np.asarray(diffusion.draw_latents(_Recorder(), ids, sched=sched, steps=5, seed=4))
    assert one.shape == (3, 4, 4, 2) and np.array_equal(one, two) and not np.allclose(one, other)
    assert np.asarray(diffusion.draw_latents(_Recorder(), ids, sched=sched, sampler="ddpm", seed=3)).shape == (3, 4, 4, 2)
    with pytest.raises(ValueError, match="sampler is"):
        diffusion.draw_latents(_Recorder(), ids, sched=sched, sampler="euler")


def test_the_denoiser_trains_alike_on_two_replicas_and_in_mixed_precision():
    from mmcourse import device
    from mmcourse.data import shapes

    rng = np.random.default_rng(9)
    ids = shapes.encode_captions(["a small red square", "a large blue circle"])
    which = rng.integers(0, 2, size=64)
    latents = rng.normal(size=(64, 8, 8, 2)).astype("float32")
    arguments = dict(sched=diffusion.schedule(50), epochs=2, batch_size=16, learning_rate=1e-3, seed=0, progress=False, width=16,
                     text_width=16, num_heads=2)
    runs = {}
    for precision, replicas in (("float32", None), ("float32", 2), ("mixed", 2)):
        with device.use(precision, replicas):
            model, history, _ = diffusion.train_denoiser(latents, ids[which][:, None], **arguments)
        runs[precision, replicas] = history["loss"]
    np.testing.assert_allclose(runs["float32", 2], runs["float32", None], rtol=1e-4)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) and np.isfinite(runs["mixed", 2]).all()
    np.testing.assert_allclose(runs["mixed", 2], runs["float32", None], rtol=0.05)
