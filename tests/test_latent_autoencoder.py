"""The latent autoencoder of latent diffusion: its loss weights, shapes, loss, saving and training."""

import keras
import numpy as np
import pytest

from mmcourse.data import pipeline, shapes
from mmcourse.imageops import to_unit
from mmcourse.models import latent_autoencoder as lae


def _weights_by_hand(x, weight, threshold, dilation):
    out = []
    for image in x:
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        background = np.sort(border, axis=0)[(len(border) - 1) // 2]
        far = np.linalg.norm(image - background, axis=-1) > threshold
        grown = far.copy()
        for dy in range(-dilation, dilation + 1):
            for dx in range(-dilation, dilation + 1):
                shifted = np.zeros_like(far)
                h, w = far.shape
                shifted[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = far[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
                grown |= shifted
        out.append(1.0 + weight * grown)
    return np.stack(out)


@pytest.mark.parametrize("dilation", [0, 1, 2])
def test_object_weights_mark_what_differs_from_the_border_and_its_edges(dilation):
    x = to_unit(shapes.generate(4, seed=(3, 1)).images)
    got = np.asarray(lae.object_weights(x, weight=5.0, threshold=0.08, dilation=dilation))
    assert np.allclose(got, _weights_by_hand(x, 5.0, 0.08, dilation))
    labels = shapes.generate(4, seed=(3, 1)).labels
    assert (got[labels > 0] > 1).mean() > 0.95  # the objects are weighted ...
    assert (got[labels == 0] == 1).mean() > 0.8  # ... and most of the background is not


@pytest.fixture(scope="module")
def small():
    return lae.build_latent_autoencoder(width=8, seed=0)


def test_shapes_and_the_weighted_loss(small):
    x = to_unit(shapes.generate(3, seed=(3, 2)).images)
    z = small.encode(x)
    assert tuple(z.shape) == (3, 16, 16, 4) == (3, *small.latent_shape)
    assert tuple(small.decode(z).shape) == (3, 64, 64, 3)
    y = np.asarray(small(x))
    w = _weights_by_hand(x, small.weight, small.threshold, small.dilation)
    by_hand = np.mean([(w[i] * ((x[i] - y[i]) ** 2).sum(-1)).sum() / w[i].sum() for i in range(3)])
    assert np.isclose(float(small.compute_loss(x, None, y)), by_hand, rtol=1e-5)


def test_scale_and_saving(small, tmp_path):
    images = shapes.generate(8, seed=(3, 3)).images
    scale = small.fit_scale(images)
    assert np.isclose(np.asarray(small.encode(to_unit(images))).std(), 1.0, rtol=1e-4)
    small.save(tmp_path / "lae.keras")
    again = keras.saving.load_model(tmp_path / "lae.keras")
    assert np.isclose(float(np.asarray(again.scale)), scale)
    x = to_unit(images)
    assert np.allclose(np.asarray(again.encode(x)), np.asarray(small.encode(x)), atol=1e-5)
    assert np.allclose(np.asarray(again(x)), np.asarray(small(x)), atol=1e-5)


def test_many_images_are_encoded_and_decoded_a_batch_at_a_time(small):
    # One call on thousands of images would hold all their full-resolution activations (8,000: 20 GB)
    seen = []
    shapes_of = lambda x: seen.append(int(x.shape[0])) or x * 2.0  # noqa: E731
    x = np.arange(600 * 2, dtype="float32").reshape(600, 2)
    assert np.array_equal(np.asarray(lae._in_batches(shapes_of, x, 256)), x * 2) and seen == [256, 256, 88]
    images = to_unit(shapes.generate(10, seed=(3, 4)).images)
    whole, batched = np.asarray(small.encode(images)), np.asarray(small.encode(images, batch_size=3))
    assert np.allclose(whole, batched, atol=1e-5)
    assert np.allclose(np.asarray(small.decode(whole)), np.asarray(small.decode(whole, batch_size=4)), atol=1e-5)


def test_training_lowers_the_loss():
    model = lae.build_latent_autoencoder(width=8, seed=1, learning_rate=3e-3)
    x = to_unit(shapes.generate(128, seed=(3, 4)).images)
    history = model.fit(pipeline.table_batches(x, batch_size=32, epochs=4, seed=0), epochs=4, steps_per_epoch=4, verbose=0)
    loss = history.history["loss"]
    assert loss[-1] < 0.6 * loss[0], loss


def test_a_bad_factor_is_refused():
    with pytest.raises(ValueError, match="power of 2"):
        lae.LatentAutoencoder(factor=3)


def _fit_sgd(precision, replicas):
    """The autoencoder trained with plain SGD (a gradient of the wrong scale would change its steps, which Adam hides)."""
    from mmcourse import device, training

    x = to_unit(shapes.generate(64, seed=(3, 5)).images)
    with device.use(precision, replicas) as run:
        with run.strategy.scope(), training.seeded(0):
            model = lae.LatentAutoencoder(width=8)
            training.compile(model, keras.optimizers.SGD(0.5))
        history = model.fit(pipeline.table_batches(x, batch_size=16, epochs=3, seed=0), epochs=3, steps_per_epoch=4, verbose=0)
    return history.history["loss"], model


def test_two_replicas_and_mixed_precision_train_like_one_device():
    one, _ = _fit_sgd("float32", None)
    two, _ = _fit_sgd("float32", 2)
    np.testing.assert_allclose(two, one, rtol=1e-4)
    mixed, model = _fit_sgd("mixed", 2)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(mixed).all() and one[-1] < one[0]
    np.testing.assert_allclose(mixed, one, rtol=0.05)
