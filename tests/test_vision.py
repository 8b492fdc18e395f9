"""The image encoder, its dense pre-training (the cell labeller), the Shapes attribute classifier
and the scene judge built on it: each trained in float32, mixed precision and on two replicas."""

import random

import numpy as np
import pytest

from mmcourse import device, training
from mmcourse.data import shapes
from mmcourse.models import vision
from mmcourse.metrics.judge import SceneJudge

import keras  # noqa: E402  (vision imported TensorFlow quietly first)

# Keras converting TensorFlow tensors to numpy trips a numpy-2 DeprecationWarning inside Keras itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

#: Where each tiny training run of this file happens: (precision, CPU replicas).
SETTINGS = {"float32": ("float32", None), "mixed": ("mixed", None), "replicas": ("float32", 2)}


@pytest.fixture(scope="module")
def single():
    return shapes.generate(96, seed=5, objects=(1,))


def _global_state():
    return random.getstate(), np.random.get_state()[1].tolist()


def _in_every_setting(train):
    """``{setting: train()}`` for each of SETTINGS, each run started from a different global random
    state (which the library must neither use nor change: the same seed gives the same run)."""
    runs = {}
    for k, (name, (precision, replicas)) in enumerate(SETTINGS.items()):
        keras.utils.set_random_seed(100 + k)  # the caller's state, different for each run
        before = _global_state()
        with device.use(precision, cpu_replicas=replicas) as run:
            runs[name] = (train(), run)
        assert _global_state() == before, f"training in the {name} setting changed the global random state"
    return runs


@pytest.fixture(scope="module")
def judges():
    """The scene judge's attribute classifier (8 channels), 16 images × 3 epochs of one step
    (its batch of 64 holds all 16: 8 per replica on two), in each setting; with its per-epoch logs. Few images:
    this CPU runs float16 convolutions emulated, about 0.5 s per image and step."""

    def train():
        history = keras.callbacks.History()
        judge = SceneJudge.train(16, 3, seed=0, channels=8, callbacks=[history])
        return judge, history.history

    return _in_every_setting(train)


@pytest.fixture(scope="module")
def labellers():
    """The dense pre-training of the encoder (8 channels), 16 images × 3 epochs of one step, in each setting."""
    return _in_every_setting(lambda: vision.pretrain_image_encoder(16, 3, channels=8, seed=0, batch_size=16, progress=False))


def test_encoder_gives_an_8x8_grid_and_a_pooled_vector(single):
    encoder = vision.build_image_encoder(channels=16)
    out = encoder(vision.preprocess(single.images[:3]))
    assert tuple(out["grid"].shape) == (3, 8, 8, 16)
    assert tuple(out["pooled"].shape) == (3, 16)
    # pooled is the grid's mean over its 64 cells
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["pooled"]), keras.ops.convert_to_numpy(out["grid"]).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    # the spatial sizes follow the output-size arithmetic: 64 → 32 → 16 → 8
    assert [encoder.get_layer(f"pool{i}").output.shape[1] for i in (1, 2, 3)] == [32, 16, 8]
    # the global dtype policy by default; a model that builds it inside itself passes its own
    assert {layer.dtype_policy.name for layer in encoder.layers[1:]} == {"float32"}
    mixed = vision.build_image_encoder(channels=16, dtype="mixed_float16")
    assert {layer.dtype_policy.name for layer in mixed.layers[1:]} == {"mixed_float16"}
    assert mixed(vision.preprocess(single.images[:1]))["grid"].dtype == "float16"


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
    # Batch normalisation is synchronized across replicas; encoders saved before it was (the
    # shipped captioner's and dual encoder's) have no such key and still load.
    config = encoder.get_config()
    norms = [layer["config"] for layer in config["layers"] if layer["class_name"] == "BatchNormalization"]
    assert len(norms) == 3 and all(norm.pop("synchronized") for norm in norms)
    old = keras.Model.from_config(config)
    old.set_weights(encoder.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(old(x)["grid"]), keras.ops.convert_to_numpy(encoder(x)["grid"]))


def test_preprocess_scales_uint8_and_checks_its_input(single):
    x = vision.preprocess(single.images[:2])
    assert x.dtype == np.float32 and x.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(x * 255, single.images[:2].astype(np.float32), atol=1e-4)
    assert vision.preprocess(single.images[0]).shape == (1, 64, 64, 3)
    with pytest.raises(ValueError, match=r"64×64 RGB.*resize"):
        vision.preprocess(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="divide uint8 images by 255"):
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


def _untrained_head(channels, seed=1):
    with training.seeded(seed):
        return vision.build_attribute_classifier(vision.build_image_encoder(channels=channels), seed=seed).get_layer("shape").get_weights()[0]


def test_the_judge_seeds_its_own_classifier_and_training_lowers_the_loss(judges):
    judge, logs = judges["float32"][0]
    model = judge.classifier
    data = shapes.generate(8, seed=9, objects=(1,))
    assert set(logs) >= {"loss", "shape_accuracy", "colour_accuracy", "size_accuracy", "learning_rate"}
    assert logs["loss"][-1] < logs["loss"][0]
    eta = [2e-3 * 0.5 * (1 + np.cos(np.pi * e / 3)) for e in range(3)]  # the cosine schedule, by hand
    np.testing.assert_allclose(logs["learning_rate"], eta, rtol=1e-5)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(2e-3)  # as compiled again
    # SceneJudge.train builds the classifier from its seed alone: the same untrained weights as
    # building it by hand in training.seeded(0), whatever the global random state.
    keras.utils.set_random_seed(7)
    with training.seeded(0):
        fresh = vision.build_attribute_classifier(vision.build_image_encoder(channels=8), seed=0)
    assert [w.shape for w in fresh.get_weights()] == [w.shape for w in model.get_weights()]
    first = fresh.get_layer("shape").get_weights()[0]
    assert np.abs(first - model.get_layer("shape").get_weights()[0]).max() < 0.05  # three small Adam steps away
    assert np.abs(first - _untrained_head(8)).max() > 0.05  # another seed starts elsewhere
    predicted = vision.predict_attributes(model, data.images)
    assert {a: p.shape for a, p in predicted.items()} == {a: (8,) for a in vision.ATTRIBUTES}


@pytest.mark.parametrize("fixture", ["judges", "labellers"])
def test_mixed_precision_loss_falls_like_float32(fixture, request):
    """Same seed, float32 against mixed_float16: the losses of three steps agree within 1 %.
    Float16 activations carry about 3 significant digits (measured differences: 5e-5 relative
    for the cell labeller, 1.5e-5 for the classifier); 1 % also covers a first step skipped by the
    loss-scale optimizer while it finds its scale, which would hold the loss back by one step
    of a few tenths of a percent here. The heads are float32, so the losses are."""
    runs = request.getfixturevalue(fixture)
    (f32, _), (mixed, run) = runs["float32"], runs["mixed"]
    f32, mixed = (np.array(r[1]["loss"]) for r in (f32, mixed))
    assert run.precision == "mixed_float16"
    assert mixed[-1] < mixed[0]
    np.testing.assert_allclose(mixed, f32, rtol=0.01)


@pytest.mark.parametrize("fixture", ["judges", "labellers"])
def test_two_replicas_train_like_one_device(fixture, request):
    """Same seed, one device against MirroredStrategy over two logical CPUs (8 images each): the
    losses of three steps agree within 1e-4 relative. The two runs see the same batches, the same
    initial weights (built from the seed, though each run starts from another global random
    state) and, with synchronized batch normalisation, the same statistics; what is left is the
    order of float32 sums (measured: under 1e-6). Measured failures it catches: batches drawn by
    tf.data's reshuffling (another order on two replicas) moved the first loss by 0.4 %; batch
    normalisation without synchronization differs in the third decimal (the lead's measurement).
    Adam is blind to a constant factor on the gradient; that part of the reduction is Keras's
    own loss scaling (its compiled losses), tested with SGD in the shared training tests."""
    runs = request.getfixturevalue(fixture)
    (one, _), (two, run) = runs["float32"], runs["replicas"]
    one, two = (np.array(r[1]["loss"]) for r in (one, two))
    assert run.replicas == 2
    np.testing.assert_allclose(two, one, rtol=1e-4)


def test_pretraining_freezes_the_encoder_and_labels_every_cell(labellers):
    (encoder, history, seconds), _ = labellers["float32"]
    assert not encoder.trainable and seconds > 0
    assert set(history) >= {"loss", "shape_accuracy", "colour_accuracy", "size_accuracy"}
    assert history["loss"][-1] < history["loss"][0]
    # the encoder trained under mixed precision computes in float16; encode() still gives float32
    (mixed_encoder, _, _), _ = labellers["mixed"]
    assert mixed_encoder.get_layer("conv1").dtype_policy.name == "mixed_float16"
    images = shapes.generate(3, seed=1).images
    grids = vision.encode(mixed_encoder, images, output="grid")
    assert grids.dtype == np.float32 and grids.shape == (3, 8, 8, 8)
    np.testing.assert_allclose(grids, vision.encode(encoder, images, output="grid"), atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match="n_images must be a positive whole number"):
        vision.pretrain_image_encoder(0, 1)


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
