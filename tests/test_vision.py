"""The image encoder and the Shapes attribute classifier."""

import numpy as np
import pytest

from mmcourse import config
from mmcourse.data import shapes
from mmcourse.models import vision

import keras  # noqa: E402  (vision imported TensorFlow quietly first)

# Keras converting TensorFlow tensors to numpy trips a numpy-2 DeprecationWarning inside Keras itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def single():
    return shapes.generate(96, seed=5, objects=(1,))


def test_encoder_gives_an_8x8_grid_and_a_pooled_vector(single):
    encoder = vision.build_image_encoder(channels=16)
    out = encoder(vision.preprocess(single.images[:3]))
    assert tuple(out["grid"].shape) == (3, 8, 8, 16)
    assert tuple(out["pooled"].shape) == (3, 16)
    # pooled is the grid's mean over its 64 cells
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["pooled"]), keras.ops.convert_to_numpy(out["grid"]).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    # the spatial sizes follow the output-size arithmetic: 64 → 32 → 16 → 8
    assert [encoder.get_layer(f"pool{i}").output.shape[1] for i in (1, 2, 3)] == [32, 16, 8]


def test_encode_in_batches_matches_one_pass(single):
    encoder = vision.build_image_encoder(channels=8)
    whole = keras.ops.convert_to_numpy(encoder(vision.preprocess(single.images[:10]), training=False)["pooled"])
    np.testing.assert_allclose(vision.encode(encoder, single.images[:10], batch_size=3), whole, rtol=1e-5, atol=1e-6)
    grid = vision.encode(encoder, single.images[:10], batch_size=4, output="grid")
    assert grid.shape == (10, 8, 8, 8)


def test_encoder_saves_and_loads_as_keras_file(single, tmp_path):
    encoder = vision.build_image_encoder(channels=12, name="enc")
    x = vision.preprocess(single.images[:4])
    path = tmp_path / "encoder.keras"
    encoder.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.name == "enc"
    for key in ("grid", "pooled"):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)[key]), keras.ops.convert_to_numpy(encoder(x)[key]))
    weights = tmp_path / "encoder.weights.h5"
    encoder.save_weights(weights)
    fresh = vision.build_image_encoder(channels=12)
    fresh.load_weights(weights)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh(x)["pooled"]), keras.ops.convert_to_numpy(encoder(x)["pooled"]))


def test_preprocess_scales_uint8_and_checks_its_input(single):
    x = vision.preprocess(single.images[:2])
    assert x.dtype == np.float32 and x.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(x * 255, single.images[:2].astype(np.float32), atol=1e-4)
    assert vision.preprocess(single.images[0]).shape == (1, 64, 64, 3)
    with pytest.raises(ValueError, match=r"64×64 RGB.*resize"):
        vision.preprocess(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="divide uint8-range images by 255"):
        vision.preprocess(single.images[:2].astype(np.float32))
    with pytest.raises(ValueError, match="multiple of 4"):
        vision.build_image_encoder(channels=10)
    with pytest.raises(ValueError, match="build_image_encoder"):
        vision.build_attribute_classifier(keras.Sequential([keras.layers.Flatten()]))
    with pytest.raises(ValueError, match="build_image_encoder"):
        image = keras.Input((64, 64, 3))
        vision.build_attribute_classifier(keras.Model(image, keras.layers.Flatten()(image)))


def test_attribute_targets_follow_the_scenes_and_refuse_two_objects(single):
    y = vision.attribute_targets(single)
    for i in (0, 7, 50):
        obj = single.scenes[i].objects[0]
        assert [vision.ATTRIBUTES[a][y[a][i]] for a in ("shape", "colour", "size")] == [obj.shape, obj.colour, obj.size]
    with pytest.raises(ValueError, match=r"objects=\(1,\)"):
        vision.attribute_targets(shapes.generate(20, seed=1))


def test_a_short_training_run_reduces_the_loss(single):
    config.seed_everything(0)
    model = vision.build_attribute_classifier(vision.build_image_encoder(channels=16))
    y = vision.attribute_targets(single)
    x = vision.preprocess(single.images)
    before = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    history = vision.train_attribute_classifier(model, single, epochs=4, batch_size=32)
    after = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert set(history.history) >= {"loss", "shape_accuracy", "colour_accuracy", "size_accuracy"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    eta = [2e-3 * 0.5 * (1 + np.cos(np.pi * e / 4)) for e in range(4)]  # the cosine schedule, by hand
    np.testing.assert_allclose(history.history["learning_rate"], eta, rtol=1e-5)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(2e-3)
    assert after < before
    predicted = vision.predict_attributes(model, single.images)
    assert {a: p.shape for a, p in predicted.items()} == {a: (96,) for a in vision.ATTRIBUTES}


def test_nearest_images_by_cosine_similarity_matches_brute_force():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(30, 5))
    idx, sim = vision.nearest_images(f, query_index=4, k=6)
    brute = [(float(np.dot(f[4], f[j]) / np.linalg.norm(f[4]) / np.linalg.norm(f[j])), j) for j in range(30) if j != 4]
    brute.sort(reverse=True)
    assert list(idx) == [j for _, j in brute[:6]]
    np.testing.assert_allclose(sim, [s for s, _ in brute[:6]], rtol=1e-12)
    with pytest.raises(ValueError, match="flatten grids first"):
        vision.nearest_images(f.reshape(30, 5, 1), 0)
    with pytest.raises(IndexError, match="out of range"):
        vision.nearest_images(f, 30)
