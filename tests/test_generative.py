"""The generative models: each formula against an independent computation; training under
mixed precision and on two replicas against float32 on one device."""

import numpy as np
import pytest
from scipy import stats

import keras
from mmcourse import device, imageops, training
from mmcourse._tf import tensorflow
from mmcourse.data import shapes
from mmcourse.models import autoencoder as AE
from mmcourse.models import generative as G
from mmcourse.metrics import judge as J
from mmcourse.models import vae as V
from mmcourse.models.gan import GAN

# Plain SGD for the training comparisons, at rates where the losses move in each of 3 steps on
# one batch of 8 (the VAE's −ELBO by about a quarter a step; the GAN's losses by more; at three
# times the GAN's rate its hinge losses swing by a factor of 3). Not Adam: Adam divides each step by the gradients' own size, so
# it would hide gradients summed twice across replicas, or left multiplied or divided by the
# loss scale; with SGD they change the step, and the loss. One small batch because under
# mixed_float16 this CPU runs the convolutions in emulated float16 (about 0.5 s per image and step).
LEARNING_RATES = {"vae": 3e-7, "cvae": 3e-7, "gan": 0.03}
LOSSES = {"vae": ("loss",), "cvae": ("loss",), "gan": ("d_loss", "g_loss")}


@pytest.fixture(scope="module")
def images():
    return imageops.to_unit(shapes.generate(32, seed=3).images)


@pytest.fixture(scope="module")
def captioned():
    """Images, their first captions' ids and the vocabulary."""
    data = shapes.generate(32, seed=6)
    vocab = shapes.caption_vocabulary()
    return imageops.to_unit(data.images), shapes.encode_captions([c[0] for c in data.captions], vocab), vocab


@pytest.fixture(scope="module")
def trained(images, captioned):
    """``trained(kind, precision="float32", replicas=None)`` → ``(model, history)``: built from
    seed 0 and fitted for 3 epochs of one batch of 8 with SGD, once per module for each setting
    (small batches: under mixed_float16 a CPU runs these convolutions in emulated float16,
    about 1 s per image and step)."""
    cache = {}

    def fit(kind, precision="float32", replicas=None):
        if (kind, precision, replicas) not in cache:
            with device.use(precision, replicas) as run:
                with run.strategy.scope(), training.seeded(0):
                    sgd = lambda: keras.optimizers.SGD(LEARNING_RATES[kind])  # noqa: E731
                    if kind == "gan":
                        model, inputs = GAN(8), images
                        model.compile(sgd(), sgd())
                    else:
                        conditional = kind == "cvae"
                        model = V.VAE(4, vocab_size=len(captioned[2]) if conditional else 0)
                        model.compile(sgd())
                        inputs = captioned[:2] if conditional else images
                inputs = tuple(part[:8] for part in inputs) if isinstance(inputs, tuple) else inputs[:8]
                history = model.fit(inputs, batch_size=8, epochs=3, verbose=0, shuffle=False).history
            cache[kind, precision, replicas] = model, history
        return cache[kind, precision, replicas]

    return fit


@pytest.fixture(scope="module")
def trained_vae(trained):
    return trained("vae")[0]


@pytest.fixture(scope="module")
def trained_cvae(trained):
    return trained("cvae")[0]


@pytest.mark.parametrize("kind", ["vae", "cvae", "gan"])
def test_mixed_precision_trains_like_float32(kind, trained):
    """Same seed, same data, the same 3 SGD steps in float32 and under ``mixed_float16``.

    Tolerance: each epoch's loss within 1% of float32's. float16 keeps about three
    significant digits; measured: VAE 1.0e-4, CVAE 6.8e-4, GAN 8.4e-4 (L_D) and 3.1e-3
    (L_G). The float32 losses move by more than 20% from the first epoch to the second, so
    a mixed run whose steps were skipped for overflow, or whose gradients stayed divided by
    the loss scale (2^15: no step at all), falls outside it. Gradients summed twice are the
    two-replica test's job.
    """
    _, one = trained(kind)
    _, mixed = trained(kind, "mixed")
    for key in LOSSES[kind]:
        moved = abs(one[key][1] / one[key][0] - 1)
        assert moved > 0.2, (key, moved)  # it learned, so the comparison can tell
        # the hinge L_G = −D(G(z)) passes near 0, where a relative tolerance alone means nothing: for it, 1% of its largest value
        atol = 1e-2 * np.abs(one[key]).max() if (kind, key) == ("gan", "g_loss") else 0
        np.testing.assert_allclose(mixed[key], one[key], rtol=1e-2, atol=atol, err_msg=key)


@pytest.mark.parametrize("kind", ["vae", "cvae", "gan"])
def test_two_replicas_train_like_one_device(kind, trained):
    """The same 3 SGD steps on one device and on two CPU replicas (each gets 4 of the 8 images).

    The noise (the VAE's reparameterisation ε, the GAN's z) is drawn for the global batch
    and sliced per replica (:func:`mmcourse.training.replica_normal`), and batch
    normalisation is synchronised, so both runs compute the same thing; nothing is switched
    off. Tolerance: relative 2e-4 per epoch's loss (the GAN's 5e-4), for float32 sums taken in another order
    (each replica sums its half of the batch), grown over 3 steps; measured: VAE 1.2e-5,
    CVAE 5.9e-6, GAN 1.2e-5 (L_D) and 2.4e-4 (L_G: the game grows differences most). A
    gradient summed twice, or left scaled, doubles or shrinks the SGD step, and the loss
    after it moves by more than 20% (see the mixed-precision test).
    """
    _, one = trained(kind)
    model, two = trained(kind, "float32", 2)
    assert model.distribute_strategy.num_replicas_in_sync == 2
    for key in LOSSES[kind]:
        np.testing.assert_allclose(two[key], one[key], rtol=5e-4 if kind == "gan" else 2e-4, err_msg=key)


def test_replica_noise_is_the_one_device_noise():
    """Two replicas with an odd batch (4 + 3 rows): together they draw what one device draws."""
    tf = tensorflow()
    with device.use("float32"):
        one = training.replica_normal(7, 2, keras.random.SeedGenerator(3)).numpy()
    with device.use("float32", 2) as run:
        with run.strategy.scope():
            generator = keras.random.SeedGenerator(3)
        batches = run.strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(np.arange(7.0)).batch(7))
        step = tf.function(lambda rows: run.strategy.run(lambda r: (r, training.replica_normal(tf.shape(r)[0], 2, generator)), args=(rows,)))
        rows, noise = step(next(iter(batches)))
    local = lambda t: np.concatenate([part.numpy() for part in run.strategy.experimental_local_results(t)])  # noqa: E731
    assert local(rows).tolist() == list(range(7)) and [len(p) for p in run.strategy.experimental_local_results(rows)] == [4, 3]
    np.testing.assert_array_equal(local(noise), one)


def test_the_vae_trains_through_keras_and_evaluates_the_same_bound(trained, images):
    """``fit`` reports −ELBO = reconstruction + KL (β = 1); ``evaluate`` reports the same terms
    (a sampled pass with running statistics); ``model(x)`` gives reconstructions, and while
    training the pieces compute_loss needs."""
    vae, history = trained("vae")
    assert set(history) == {"loss", "reconstruction", "kl"}
    np.testing.assert_allclose(history["loss"], np.add(history["reconstruction"], history["kl"]), rtol=1e-5)
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    result = vae.evaluate(images, batch_size=16, verbose=0, return_dict=True)
    assert set(result) == {"loss", "reconstruction", "kl"}
    assert result["loss"] == pytest.approx(result["reconstruction"] + result["kl"], rel=1e-5)
    assert keras.ops.convert_to_numpy(vae(images[:2])).shape == (2, 64, 64, 3)
    pieces = vae(images[:2], training=True)
    assert set(pieces) == {"pixels", "mean", "log_variance"} and all(keras.backend.standardize_dtype(t.dtype) == "float32" for t in pieces.values())


def test_the_autoencoder_is_built_from_its_seed_for_the_strategy_and_precision():
    with device.use("mixed", 2) as run:
        autoencoder, encoder, decoder = AE.build_autoencoder(4, seed=1)
    assert autoencoder.distribute_strategy is run.strategy and autoencoder.dtype_policy.name == "mixed_float16"
    assert isinstance(autoencoder.optimizer, training.LossScaleOptimizer)
    assert str(encoder.output.dtype) == "float32" and str(decoder.output.dtype) == "float32"  # the code and the pixels
    again = AE.build_autoencoder(4, seed=1)[0]
    for a, b in zip(autoencoder.weights, again.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_gan_samples_images(trained):
    gan = trained("gan")[0]
    samples = gan.sample(2)
    assert samples.shape == (2, 64, 64, 3) and samples.min() >= 0 and samples.max() <= 1


def test_to_unit_and_noise():
    raw = shapes.generate(2, seed=0).images
    x = imageops.to_unit(raw)
    assert x.dtype == np.float32 and np.allclose(x * 255, raw)
    with pytest.raises(ValueError, match="divide uint8 images by 255"):
        imageops.to_unit(raw.astype(np.float32))
    noisy = AE.add_noise(raw, 0.2, seed=1)
    assert noisy.min() >= 0 and noisy.max() <= 1 and 0.1 < np.abs(noisy - x).mean() < 0.2


def test_gaussian_log_likelihood_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 64, 64, 3)).astype(np.float32)
    mean = rng.uniform(size=x.shape).astype(np.float32)
    ours = keras.ops.convert_to_numpy(V.gaussian_log_likelihood(x, mean, 0.1))
    ref = stats.norm.logpdf(x.astype(np.float64), mean, 0.1).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(ours, ref, rtol=1e-4)
    # float16 pixel means (a decoder under mixed precision) are taken in float32
    half = keras.ops.convert_to_numpy(V.gaussian_log_likelihood(x, mean.astype(np.float16), 0.1))
    assert half.dtype == np.float32 and np.allclose(half, ref, rtol=1e-2)


def test_closed_form_kl_matches_monte_carlo():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(4, 8)).astype(np.float32)
    log_variance = rng.normal(scale=0.7, size=(4, 8)).astype(np.float32)
    closed = keras.ops.convert_to_numpy(V.kl_divergence(mean, log_variance))
    sampled = V.kl_monte_carlo(mean, log_variance, n_samples=200_000, seed=2)
    np.testing.assert_allclose(sampled, closed, rtol=0.02, atol=0.05)
    # and against scipy's entropy of the two densities, one dimension at a time
    q = stats.norm(0.3, 0.8)
    grid = np.linspace(-8, 8, 200_001)
    numeric = np.trapezoid(q.pdf(grid) * (q.logpdf(grid) - stats.norm.logpdf(grid)), grid)
    ours = keras.ops.convert_to_numpy(V.kl_divergence(np.array([[0.3]]), np.log(np.array([[0.64]]))))[0]
    assert abs(numeric - ours) < 1e-6


def test_kl_to_a_learned_prior_matches_monte_carlo_and_integration():
    """The conditional VAE's KL(N(μ, σ²) ‖ N(μ_p, σ_p²)), against sampling and numerical integration."""
    rng = np.random.default_rng(3)
    mean, prior_mean = rng.normal(size=(2, 4, 8)).astype(np.float32)
    log_variance, prior_log_variance = rng.normal(scale=0.7, size=(2, 4, 8)).astype(np.float32)
    closed = keras.ops.convert_to_numpy(V.kl_divergence(mean, log_variance, prior_mean, prior_log_variance))
    sampled = V.kl_monte_carlo(mean, log_variance, 200_000, seed=4, prior_mean=prior_mean, prior_log_variance=prior_log_variance)
    np.testing.assert_allclose(sampled, closed, rtol=0.02, atol=0.05)
    q, p = stats.norm(0.3, 0.8), stats.norm(-0.5, 1.7)
    grid = np.linspace(-12, 12, 200_001)
    numeric = np.trapezoid(q.pdf(grid) * (q.logpdf(grid) - p.logpdf(grid)), grid)
    ours = V.kl_divergence(np.array([[0.3]]), np.log([[0.64]]), np.array([[-0.5]]), np.log([[1.7**2]]))
    assert abs(numeric - keras.ops.convert_to_numpy(ours)[0]) < 1e-6
    # the standard normal is the special case μ_p = 0, log σ_p² = 0
    zeros = np.zeros_like(mean)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(V.kl_divergence(mean, log_variance, zeros, zeros)),
                               keras.ops.convert_to_numpy(V.kl_divergence(mean, log_variance)), rtol=1e-5)
    with pytest.raises(ValueError, match="give both prior_mean and prior_log_variance"):
        V.kl_divergence(mean, log_variance, prior_mean)


def test_conditional_vae_bound_and_prior_samples(trained_cvae, captioned):
    """With a learned prior p(z|c): the ELBO is still below the importance-weighted log p(x|c),
    and prior samples decode z = μ_p(c) + temperature·σ_p(c)·ε."""
    x, ids, _ = captioned
    terms = trained_cvae.elbo(x[:8], ids[:8], n_samples=32)
    iw = V.importance_log_likelihood(trained_cvae, x[:8], ids[:8], k=64, seed=1)
    assert iw.mean() >= terms["elbo"].mean() - 1.0
    prior_mean, _ = trained_cvae.prior(ids[:3])
    at_mean = trained_cvae.sample(3, ids[:3], temperature=0.0)
    np.testing.assert_allclose(at_mean, keras.ops.convert_to_numpy(trained_cvae.decode(prior_mean, ids[:3])), atol=1e-5)
    assert np.abs(trained_cvae.sample(3, ids[:3], seed=1) - at_mean).max() > 1e-3


def test_reparameterisation_has_the_right_moments():
    mean = np.full((20_000, 2), [1.0, -2.0], np.float32)
    log_variance = np.full_like(mean, np.log(0.25))
    z = keras.ops.convert_to_numpy(V.VAE.reparameterise(mean, log_variance, seed=0))
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=0.02)
    np.testing.assert_allclose(z.std(0), [0.5, 0.5], atol=0.02)


def test_elbo_terms_and_lower_bound(trained_vae, images):
    x = images[:16]
    terms = trained_vae.elbo(x, n_samples=32)
    np.testing.assert_allclose(terms["elbo"], terms["reconstruction"] - terms["kl"], rtol=1e-6)
    assert (terms["kl"] >= 0).all()
    iw = V.importance_log_likelihood(trained_vae, x, k=64, seed=1)
    # log p(x) ≥ ELBO; the importance-weighted estimate is not below the ELBO beyond noise
    assert iw.mean() >= terms["elbo"].mean() - 1.0
    assert (iw >= terms["elbo"] - 5.0).mean() > 0.9


def test_vae_saves_and_loads(tmp_path, trained_vae, images):
    G.save(trained_vae, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae.keras"]
    loaded = G.load(tmp_path)
    np.testing.assert_allclose(loaded.predict(images[:4], verbose=0), trained_vae.predict(images[:4], verbose=0), atol=1e-5)


def test_conditional_vae_saves_and_loads_every_weight(tmp_path, trained_cvae, captioned):
    """Text encoder, prior, encoder and decoder all come back (they are built when the model is), with the vocabulary."""
    _, ids, vocab = captioned
    G.save(trained_cvae, tmp_path, vocab)
    assert (tmp_path / "vocabulary.json").is_file()
    loaded = G.load(tmp_path)
    assert len(loaded.weights) == len(trained_cvae.weights)
    for ours, theirs in zip(trained_cvae.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs))
    np.testing.assert_allclose(loaded.sample(2, ids[:2], seed=3), trained_cvae.sample(2, ids[:2], seed=3), atol=1e-6)


def test_conditional_vae_draws_and_names_unknown_words(captioned):
    vocab = captioned[2]
    vae = V.VAE(4, vocab_size=len(vocab))
    drawn = vae.draw("a large red circle left of a small blue square", 3, vocabulary=vocab)
    assert drawn.shape == (3, 64, 64, 3) and drawn.min() >= 0 and drawn.max() <= 1
    with pytest.raises(shapes.CaptionError, match="huge"):
        vae.draw("a huge red circle")
    with pytest.raises(ValueError, match="needs captions"):
        vae.sample(2)
    with pytest.raises(ValueError, match="takes \\(images, caption_ids\\)"):
        vae(captioned[0][:2])


def test_gan_losses_match_their_formulas():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    sigmoid = 1 / (1 + np.exp(-real.astype(np.float64))), 1 / (1 + np.exp(-fake.astype(np.float64)))
    gan = GAN(8, loss="nonsaturating")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gan.d_loss(real, fake)), -np.log(sigmoid[0]) - np.log(1 - sigmoid[1]), rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gan.g_loss(fake)), -np.log(sigmoid[1]), rtol=1e-5)
    hinge = GAN(8)  # the default
    np.testing.assert_allclose(keras.ops.convert_to_numpy(hinge.d_loss(real, fake)),
                               np.maximum(0, 1 - real) + np.maximum(0, 1 + fake), rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(hinge.g_loss(fake)), -fake, rtol=1e-6)
    with pytest.raises(ValueError, match="hinge"):
        GAN(8, loss="wasserstein")


def test_spectral_norm_is_the_largest_singular_value():
    """Power iteration, refined while training, converges on numpy's largest singular value, and
    the layer computes with the kernel divided by it; the layers save and load."""
    from mmcourse.models.gan import SpectralConv2D, SpectralDense, spectral_norm

    kernel = np.random.default_rng(1).normal(size=(4, 4, 3, 8)).astype(np.float32)
    u = np.random.default_rng(2).normal(size=(1, 8)).astype(np.float32)
    for _ in range(50):
        sigma, u = spectral_norm(kernel, u)
    expected = np.linalg.svd(kernel.reshape(-1, 8), compute_uv=False)[0]
    np.testing.assert_allclose(float(sigma), expected, rtol=1e-4)

    x = np.random.default_rng(3).normal(size=(2, 6)).astype(np.float32)
    keras.utils.set_random_seed(0)  # the kernel and u: unseeded, they followed whichever tests ran first, and
    # a kernel whose top two singular values lie close needs far more than 50 steps (a CI run failed so)
    dense = SpectralDense(5)
    dense(x)
    for _ in range(50):
        dense(x, training=True)  # each training call refines u
    w = keras.ops.convert_to_numpy(dense.kernel)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dense(x)), x @ (w / np.linalg.svd(w, compute_uv=False)[0]),
                               rtol=1e-4, atol=1e-5)
    images = np.random.default_rng(4).normal(size=(2, 8, 8, 3)).astype(np.float32)
    model = keras.Sequential([keras.Input((8, 8, 3)), SpectralConv2D(4, 3, strides=2, padding="same"), keras.layers.Flatten(), SpectralDense(1)])
    before = keras.ops.convert_to_numpy(model(images))
    import tempfile, os
    path = os.path.join(tempfile.mkdtemp(), "sn.keras")
    model.save(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.saving.load_model(path)(images)), before, rtol=1e-6)


def test_bad_arguments_say_what_was_wrong(tmp_path):
    with pytest.raises(ValueError, match="latent_dim"):
        V.VAE(0)
    with pytest.raises(ValueError, match="beta"):
        V.VAE(4, beta=-1.0)
    with pytest.raises(FileNotFoundError, match="no vae.keras in"):
        G.load(tmp_path)
    # (the command's checks: tests/test_train_commands.py)


def test_segmentation_finds_the_objects():
    data = shapes.generate(50, seed=5)
    for image, scene, masks in zip(data.images, data.scenes, data.masks):
        _, found = J.segment(image)
        assert len(found) == len(scene.objects)
        # each found region overlaps one true mask almost entirely
        for region in found:
            overlap = max((region & m).sum() / region.sum() for m in masks[: len(scene.objects)])
            assert overlap > 0.9


def test_outline_iou_tells_drawn_shapes_from_smears():
    data = shapes.generate(200, seed=6, objects=(1,))
    own = [J.outline_iou(m[0], s.objects[0].shape) for m, s in zip(data.masks, data.scenes)]
    assert min(own) > 0.8  # every real object has its own shape's outline
    # the same masks against a different shape: squares and triangles are told apart
    other = {"circle": "triangle", "square": "triangle", "triangle": "square"}
    wrong = [J.outline_iou(m[0], other[s.objects[0].shape]) for m, s in zip(data.masks, data.scenes)]
    assert np.median(wrong) < 0.7
    # an ellipse three times as wide as tall is none of the three shapes; half an object is not one
    yy, xx = np.mgrid[:64, :64] + 0.5
    ellipse = ((xx - 30) / 15) ** 2 + ((yy - 30) / 5) ** 2 <= 1
    assert max(J.outline_iou(ellipse, shape) for shape in shapes.SHAPES) < 0.5
    square = next(m[0] for m, s in zip(data.masks, data.scenes) if s.objects[0].shape == "square" and s.objects[0].size == "large")
    half = square & (xx < np.nonzero(square)[1].mean())
    assert J.outline_iou(half, "square") < 0.6
    assert J.outline_iou(np.zeros((64, 64), bool), "circle") == 0.0


def test_scene_from_centres_is_canonical():
    a = shapes.ShapeObject("circle", "red", "small", (40.0, 30.0), 12.0, (0, 0, 0))
    b = shapes.ShapeObject("square", "blue", "large", (12.0, 32.0), 24.0, (0, 0, 0))
    scene = J._scene([a, b])
    assert scene.relation == "left of" and scene.objects[0] is b
    assert shapes.parse_caption("a small red circle right of a large blue square").is_true_of(scene)
    assert not shapes.parse_caption("a small red circle left of a large blue square").is_true_of(scene)


def test_training_uses_batch_statistics(trained_vae, images):
    """fit passes training=True down to batch normalisation: its running averages moved;
    outside training the model is deterministic (running averages, z = μ)."""
    norms = [layer for net in (trained_vae.encoder, trained_vae.decoder) for layer in net.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.synchronized for layer in norms)
    assert all(np.abs(keras.ops.convert_to_numpy(n.moving_mean)).max() > 0 for n in norms)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(trained_vae(images[:4])), keras.ops.convert_to_numpy(trained_vae(images[:4])))


def test_spatial_broadcast_tiles_the_code_and_adds_coordinates():
    vector = np.arange(6, dtype=np.float32).reshape(2, 3)
    grid = keras.ops.convert_to_numpy(AE.SpatialBroadcast(4)(vector))
    assert grid.shape == (2, 4, 4, 5)
    assert np.array_equal(grid[1, 2, 3, :3], vector[1])  # every cell holds the whole code
    # then x (across columns) and y (down rows), cell centres in [-1, 1]
    assert np.allclose(grid[0, 0, :, 3], [-0.75, -0.25, 0.25, 0.75]) and np.allclose(grid[0, :, 0, 4], [-0.75, -0.25, 0.25, 0.75])
    # under mixed precision the coordinates join the float16 code as float16
    assert keras.backend.standardize_dtype(AE.SpatialBroadcast(4, dtype="mixed_float16")(vector).dtype) == "float16"
    with pytest.raises(ValueError, match="unknown decoder 'dense'; choose one of: deconv, broadcast"):
        V.VAE(4, decoder="dense")
    for kind in AE.DECODERS:
        assert AE.build_image_decoder(4, kind=kind).output_shape == (None, 64, 64, 3)


def test_calibrate_sets_running_statistics_to_the_data_average(images):
    with training.seeded(1):
        vae = V.VAE(4)
    conv = next(layer for layer in vae.encoder.layers if isinstance(layer, keras.layers.Conv2D))
    norm = next(layer for layer in vae.encoder.layers if isinstance(layer, keras.layers.BatchNormalization))
    features = keras.ops.convert_to_numpy(keras.Model(vae.encoder.input, conv.output)(images))
    # one batch: the running statistics become that batch's, exactly
    vae.calibrate(images, batch_size=len(images))
    assert np.allclose(keras.ops.convert_to_numpy(norm.moving_mean), features.mean(axis=(0, 1, 2)), atol=1e-4)
    assert np.allclose(keras.ops.convert_to_numpy(norm.moving_variance), features.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-5)
    # two equal batches: the mean of the two batch means, i.e. the mean over all images
    vae.calibrate(images, batch_size=len(images) // 2)
    assert np.allclose(keras.ops.convert_to_numpy(norm.moving_mean), features.mean(axis=(0, 1, 2)), atol=1e-4)
    assert norm.momentum == 0.8  # training's momentum is put back
