"""The generative models: each formula against an independent computation."""

import numpy as np
import pytest
from scipy import stats

import keras
from mmcourse.data import shapes
from mmcourse.models import generative as G
from mmcourse.models import judge as J


@pytest.fixture(scope="module")
def images():
    return G.to_unit(shapes.generate(64, seed=3).images)


@pytest.fixture(scope="module")
def trained_vae(images):
    keras.utils.set_random_seed(0)
    vae = G.VAE(4)
    vae.compile(keras.optimizers.Adam(1e-3))
    vae.fit(images, epochs=3, batch_size=16, verbose=0)
    return vae


def test_to_unit_and_noise():
    raw = shapes.generate(2, seed=0).images
    x = G.to_unit(raw)
    assert x.dtype == np.float32 and np.allclose(x * 255, raw)
    with pytest.raises(ValueError, match="divide uint8 images by 255"):
        G.to_unit(raw.astype(np.float32))
    noisy = G.add_noise(raw, 0.2, seed=1)
    assert noisy.min() >= 0 and noisy.max() <= 1 and 0.1 < np.abs(noisy - x).mean() < 0.2


def test_gaussian_log_likelihood_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 64, 64, 3)).astype(np.float32)
    mean = rng.uniform(size=x.shape).astype(np.float32)
    ours = keras.ops.convert_to_numpy(G.gaussian_log_likelihood(x, mean, 0.1))
    ref = stats.norm.logpdf(x.astype(np.float64), mean, 0.1).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(ours, ref, rtol=1e-4)


def test_closed_form_kl_matches_monte_carlo():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(4, 8)).astype(np.float32)
    log_variance = rng.normal(scale=0.7, size=(4, 8)).astype(np.float32)
    closed = keras.ops.convert_to_numpy(G.kl_divergence(mean, log_variance))
    sampled = G.kl_monte_carlo(mean, log_variance, n_samples=200_000, seed=2)
    np.testing.assert_allclose(sampled, closed, rtol=0.02, atol=0.05)
    # and against scipy's entropy of the two densities, one dimension at a time
    q = stats.norm(0.3, 0.8)
    grid = np.linspace(-8, 8, 200_001)
    numeric = np.trapezoid(q.pdf(grid) * (q.logpdf(grid) - stats.norm.logpdf(grid)), grid)
    ours = keras.ops.convert_to_numpy(G.kl_divergence(np.array([[0.3]]), np.log(np.array([[0.64]]))))[0]
    assert abs(numeric - ours) < 1e-6


def test_kl_to_a_learned_prior_matches_monte_carlo_and_integration():
    """The conditional VAE's KL(N(μ, σ²) ‖ N(μ_p, σ_p²)), against sampling and numerical integration."""
    rng = np.random.default_rng(3)
    mean, prior_mean = rng.normal(size=(2, 4, 8)).astype(np.float32)
    log_variance, prior_log_variance = rng.normal(scale=0.7, size=(2, 4, 8)).astype(np.float32)
    closed = keras.ops.convert_to_numpy(G.kl_divergence(mean, log_variance, prior_mean, prior_log_variance))
    sampled = G.kl_monte_carlo(mean, log_variance, 200_000, seed=4, prior_mean=prior_mean, prior_log_variance=prior_log_variance)
    np.testing.assert_allclose(sampled, closed, rtol=0.02, atol=0.05)
    q, p = stats.norm(0.3, 0.8), stats.norm(-0.5, 1.7)
    grid = np.linspace(-12, 12, 200_001)
    numeric = np.trapezoid(q.pdf(grid) * (q.logpdf(grid) - p.logpdf(grid)), grid)
    ours = G.kl_divergence(np.array([[0.3]]), np.log([[0.64]]), np.array([[-0.5]]), np.log([[1.7**2]]))
    assert abs(numeric - keras.ops.convert_to_numpy(ours)[0]) < 1e-6
    # the standard normal is the special case μ_p = 0, log σ_p² = 0
    zeros = np.zeros_like(mean)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(G.kl_divergence(mean, log_variance, zeros, zeros)),
                               keras.ops.convert_to_numpy(G.kl_divergence(mean, log_variance)), rtol=1e-5)
    with pytest.raises(ValueError, match="give both prior_mean and prior_log_variance"):
        G.kl_divergence(mean, log_variance, prior_mean)


def test_conditional_vae_bound_and_prior_samples(images):
    """With a learned prior p(z|c): the ELBO is still below the importance-weighted log p(x|c),
    and prior samples decode z = μ_p(c) + temperature·σ_p(c)·ε."""
    keras.utils.set_random_seed(2)
    vocab = G.caption_vocabulary()
    data = shapes.generate(32, seed=6)
    x, ids = G.to_unit(data.images), G.encode_captions([c[0] for c in data.captions], vocab)
    vae = G.VAE(4, vocab_size=len(vocab))
    vae.compile(keras.optimizers.Adam(1e-3))
    vae.fit((x, ids), epochs=1, batch_size=16, verbose=0)
    terms = vae.elbo(x[:8], ids[:8], n_samples=32)
    iw = G.importance_log_likelihood(vae, x[:8], ids[:8], k=64, seed=1)
    assert iw.mean() >= terms["elbo"].mean() - 1.0
    prior_mean, _ = vae.prior(ids[:3])
    at_mean = vae.sample(3, ids[:3], temperature=0.0)
    np.testing.assert_allclose(at_mean, keras.ops.convert_to_numpy(vae.decode(prior_mean, ids[:3])), atol=1e-5)
    assert np.abs(vae.sample(3, ids[:3], seed=1) - at_mean).max() > 1e-3


def test_reparameterisation_has_the_right_moments():
    mean = np.full((20_000, 2), [1.0, -2.0], np.float32)
    log_variance = np.full_like(mean, np.log(0.25))
    z = keras.ops.convert_to_numpy(G.VAE.reparameterise(mean, log_variance, seed=0))
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=0.02)
    np.testing.assert_allclose(z.std(0), [0.5, 0.5], atol=0.02)


def test_elbo_terms_and_lower_bound(trained_vae, images):
    x = images[:16]
    terms = trained_vae.elbo(x, n_samples=32)
    np.testing.assert_allclose(terms["elbo"], terms["reconstruction"] - terms["kl"], rtol=1e-6)
    assert (terms["kl"] >= 0).all()
    iw = G.importance_log_likelihood(trained_vae, x, k=64, seed=1)
    # log p(x) ≥ ELBO; the importance-weighted estimate is not below the ELBO beyond noise
    assert iw.mean() >= terms["elbo"].mean() - 1.0
    assert (iw >= terms["elbo"] - 5.0).mean() > 0.9


def test_training_lowers_the_loss(images):
    keras.utils.set_random_seed(1)
    vae = G.VAE(4)
    vae.compile(keras.optimizers.Adam(1e-3))
    history = vae.fit(images, epochs=3, batch_size=16, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert set(history) >= {"loss", "reconstruction", "kl"}


def test_vae_saves_and_loads(tmp_path, trained_vae, images):
    path = tmp_path / "vae.keras"
    trained_vae.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(images[:4], verbose=0), trained_vae.predict(images[:4], verbose=0), atol=1e-5)


def test_conditional_vae_saves_and_loads_every_weight(tmp_path):
    """Text encoder, prior, encoder and decoder all come back (they are built when the model is)."""
    vocab = G.caption_vocabulary()
    data = shapes.generate(16, seed=8)
    x, ids = G.to_unit(data.images), G.encode_captions([c[0] for c in data.captions], vocab)
    vae = G.VAE(4, vocab_size=len(vocab))
    vae.compile(keras.optimizers.Adam(1e-3))
    vae.fit((x, ids), epochs=1, batch_size=8, verbose=0)
    vae.save(tmp_path / "cvae.keras")
    loaded = keras.saving.load_model(tmp_path / "cvae.keras", safe_mode=True)
    assert len(loaded.weights) == len(vae.weights)
    for ours, theirs in zip(vae.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs))
    np.testing.assert_allclose(loaded.sample(2, ids[:2], seed=3), vae.sample(2, ids[:2], seed=3), atol=1e-6)


def test_conditional_vae_draws_and_names_unknown_words():
    vocab = G.caption_vocabulary()
    vae = G.VAE(4, vocab_size=len(vocab))
    drawn = vae.draw("a large red circle left of a small blue square", 3, vocabulary=vocab)
    assert drawn.shape == (3, 64, 64, 3) and drawn.min() >= 0 and drawn.max() <= 1
    with pytest.raises(shapes.CaptionError, match="huge"):
        vae.draw("a huge red circle")
    with pytest.raises(ValueError, match="needs captions"):
        vae.sample(2)


def test_gan_losses_match_their_formulas():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    sigmoid = 1 / (1 + np.exp(-real.astype(np.float64))), 1 / (1 + np.exp(-fake.astype(np.float64)))
    d_ref = -np.log(sigmoid[0]) - np.log(1 - sigmoid[1])
    g_ref = -np.log(sigmoid[1])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(G.GAN.d_loss(real, fake)), d_ref, rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(G.GAN.g_loss(fake)), g_ref, rtol=1e-5)


def test_gan_trains_one_epoch(images):
    gan = G.GAN(8)
    gan.compile()
    history = gan.fit(images, epochs=1, batch_size=16, verbose=0).history
    assert np.isfinite(history["d_loss"][0]) and np.isfinite(history["g_loss"][0])
    assert gan.sample(2).shape == (2, 64, 64, 3)


def test_bad_arguments_say_what_was_wrong():
    with pytest.raises(ValueError, match="latent_dim"):
        G.VAE(0)
    with pytest.raises(ValueError, match="beta"):
        G.VAE(4, beta=-1.0)


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


def test_training_uses_batch_statistics(images):
    """fit passes training=True down to batch normalisation: its running averages move;
    outside training the model is deterministic (running averages, z = μ)."""
    vae = G.VAE(4)
    vae.compile(keras.optimizers.Adam(1e-3))
    norms = [layer for net in (vae.encoder, vae.decoder) for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    vae.fit(images[:32], epochs=1, batch_size=16, verbose=0)
    assert all(np.abs(keras.ops.convert_to_numpy(n.moving_mean)).max() > 0 for n in norms)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(vae(images[:4])), keras.ops.convert_to_numpy(vae(images[:4])))


def test_spatial_broadcast_tiles_the_code_and_adds_coordinates():
    vector = np.arange(6, dtype=np.float32).reshape(2, 3)
    grid = keras.ops.convert_to_numpy(G.SpatialBroadcast(4)(vector))
    assert grid.shape == (2, 4, 4, 5)
    assert np.array_equal(grid[1, 2, 3, :3], vector[1])  # every cell holds the whole code
    # then x (across columns) and y (down rows), cell centres in [-1, 1]
    assert np.allclose(grid[0, 0, :, 3], [-0.75, -0.25, 0.25, 0.75]) and np.allclose(grid[0, :, 0, 4], [-0.75, -0.25, 0.25, 0.75])
    with pytest.raises(ValueError, match="unknown decoder 'dense'; choose one of: deconv, broadcast"):
        G.VAE(4, decoder="dense")
    for kind in G.DECODERS:
        assert G.build_image_decoder(4, kind=kind).output_shape == (None, 64, 64, 3)


def test_calibrate_sets_running_statistics_to_the_data_average(images):
    keras.utils.set_random_seed(1)
    vae = G.VAE(4)
    vae.compile(keras.optimizers.Adam(1e-3))
    vae.fit(images[:32], epochs=1, batch_size=16, verbose=0)
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
