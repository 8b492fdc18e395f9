"""The Vision Transformer: patches against numpy slicing and against the strided convolution,
attention rollout against numpy, both poolings, save and load, the same training in float32,
mixed precision and on two replicas, and a short training that beats chance."""

import numpy as np
import pytest

from mmcourse import device, training
from mmcourse.data import shapes
from mmcourse.models import vision, vit

import keras  # noqa: E402  (vit imported TensorFlow quietly first)

# Keras converting TensorFlow tensors to numpy trips a numpy-2 DeprecationWarning inside Keras itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIZES = dict(d_model=16, num_heads=2, layers=2, hidden=32)
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def single():
    return shapes.generate(16, seed=(7, 1), objects=(1,))


def _encoder(pooling="cls", seed=0, **sizes):
    with device.strategy().scope(), training.seeded(seed):
        return vit.build_vit_encoder(**{**SIZES, **sizes}, pooling=pooling)


@pytest.mark.parametrize("patch", [4, 8, 16])
def test_patches_cut_by_reshape_are_the_slices_of_the_image(patch):
    images = RNG.random((3, 64, 64, 3)).astype(np.float32)
    side = 64 // patch
    expected = np.stack([images[:, i * patch:(i + 1) * patch, j * patch:(j + 1) * patch].reshape(3, -1)
                         for i in range(side) for j in range(side)], axis=1)
    np.testing.assert_array_equal(np.asarray(vit.split_patches(images, patch)), expected)


def test_patch_embedding_is_its_strided_convolution():
    images = RNG.random((4, 64, 64, 3)).astype(np.float32)
    layer = vit.PatchEmbedding(16, patch=8)
    tokens = np.asarray(layer(images))
    conv = layer.as_convolution()
    assert tokens.shape == (4, 64, 16)
    assert (conv.kernel_size, conv.strides, conv.filters) == ((8, 8), (8, 8), 16)
    np.testing.assert_allclose(np.asarray(conv(images)).reshape(4, 64, 16), tokens, atol=1e-5)
    # and token k is the Dense layer on patch k (row by row): token 9 is patch (1, 1)
    kernel, bias = layer.projection.get_weights()
    np.testing.assert_allclose(tokens[:, 9], images[:, 8:16, 8:16].reshape(4, -1) @ kernel + bias, atol=1e-5)
    with pytest.raises(ValueError, match="must divide"):
        vit.PatchEmbedding(16, patch=5)(images)


def _random_attention(n, layers, heads, tokens):
    scores = RNG.normal(scale=2.0, size=(n, layers, heads, tokens, tokens))
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _rollout_numpy(weights, residual, cls):
    """Abnar & Zuidema's rollout written again, one image and one layer at a time, with their
    ½ A + ½ I (the same as adding I and renormalising rows that sum to 1)."""
    out = []
    for image in weights:
        rollout = np.eye(image.shape[-1])
        for layer in image:
            a = layer.mean(axis=0)
            if residual:
                a = 0.5 * a + 0.5 * np.eye(len(a))
            rollout = a @ rollout
        relevance = rollout[0, 1:] if cls else rollout.mean(axis=0)
        out.append(relevance / relevance.sum())
    return np.array(out)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("tokens", [65, 64])
def test_rollout_matches_numpy(residual, tokens):
    weights = _random_attention(3, 3, 2, tokens)
    relevance = vit.attention_rollout(weights, residual=residual)
    assert relevance.shape == (3, 64)
    np.testing.assert_allclose(relevance, _rollout_numpy(weights, residual, cls=tokens == 65), atol=1e-10)
    np.testing.assert_allclose(relevance.sum(-1), 1.0)
    # one layer of plain attention, no residual: the class token's own row, renormalised over the patches
    one = weights[:, :1]
    row = one[:, 0].mean(1)[:, 0, 1:] if tokens == 65 else one[:, 0].mean(1).mean(1)
    np.testing.assert_allclose(vit.attention_rollout(one, residual=False), row / row.sum(-1, keepdims=True), atol=1e-12)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_both_poolings_give_the_cnn_encoders_outputs_and_attention_maps(pooling, single):
    encoder = _encoder(pooling)
    out = encoder(vision.preprocess(single.images[:4]))
    grid, pooled = (np.asarray(out[k]) for k in ("grid", "pooled"))
    assert (grid.shape, pooled.shape) == ((4, 8, 8, 16), (4, 16))
    tokens = 65 if pooling == "cls" else 64
    np.testing.assert_allclose(vision.encode(encoder, single.images[:4]), pooled, atol=1e-6)  # the CNN's helpers take it
    if pooling == "mean":
        np.testing.assert_allclose(pooled, grid.mean(axis=(1, 2)), atol=1e-5)
    else:  # the class token is not a patch: its vector is not the patches' mean
        assert np.abs(pooled - grid.mean(axis=(1, 2))).max() > 0.1
    maps = vit.attention_maps(encoder, single.images[:4], batch_size=3)  # two batches
    assert maps.shape == (4, 2, 2, tokens, tokens) and maps.dtype == np.float32
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)
    relevance = vit.attention_rollout(maps)
    hits = vit.rollout_hits(relevance, single.subset(np.arange(4)))
    assert relevance.shape == (4, 64) and 0.0 <= hits <= 1.0
    with pytest.raises(ValueError, match="pooling must be"):
        vit.build_vit_encoder(**SIZES, pooling="max")


def test_rollout_hits_count_peaks_on_object_patches(single):
    on_object = (vision.cell_targets(single)["shape"] > 0).reshape(len(single), 64)
    relevance = np.where(on_object, 1.0, 0.0) + RNG.random((len(single), 64)) * 0.1  # peaks on the object
    assert vit.rollout_hits(relevance, single) == 1.0
    assert vit.rollout_hits(1.0 - relevance, single) == 0.0  # peaks on the background
    relevance[:4] = 1.0 - relevance[:4]
    assert vit.rollout_hits(relevance, single) == pytest.approx(12 / 16)
    with pytest.raises(ValueError, match="one value per 8×8 patch"):
        vit.rollout_hits(relevance[:, :16], single)


def test_encoder_saves_and_loads_as_keras_file(single, tmp_path):
    encoder = _encoder("cls", seed=3)
    encoder.save(tmp_path / "vit.keras")
    loaded = keras.models.load_model(tmp_path / "vit.keras")
    x = vision.preprocess(single.images[:3])
    for key in ("grid", "pooled"):
        np.testing.assert_array_equal(np.asarray(loaded(x)[key]), np.asarray(encoder(x)[key]))
    np.testing.assert_array_equal(vit.attention_maps(loaded, single.images[:3]), vit.attention_maps(encoder, single.images[:3]))


#: Where each tiny training run happens: (precision, CPU replicas).
SETTINGS = {"float32": ("float32", None), "mixed": ("mixed", None), "replicas": ("float32", 2)}


@pytest.fixture(scope="module")
def runs(single):
    """The attribute classifier on a one-block ViT, 16 images × 3 epochs of one step (8 a replica on two),
    in each setting: ``{setting: (classifier, losses, run)}``."""
    out = {}
    for name, (precision, replicas) in SETTINGS.items():
        with device.use(precision, cpu_replicas=replicas) as run:
            with device.strategy().scope(), training.seeded(0):
                classifier = vision.build_attribute_classifier(vit.build_vit_encoder(**{**SIZES, "layers": 1}), seed=0)
            history = vision.train_attribute_classifier(classifier, single, epochs=3, batch_size=16)
        out[name] = (classifier, np.array(history.history["loss"]), run)
    return out


def test_mixed_precision_trains_like_float32(runs, single):
    """float16 compute, float32 weights and losses; the three losses within 1 % of float32's
    (float16 carries about 3 significant digits; the loss-scale optimizer may skip a first step)."""
    (_, f32, _), (model, mixed, run) = runs["float32"], runs["mixed"]
    assert run.precision == "mixed_float16" and isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(mixed).all() and mixed[-1] < mixed[0]
    assert {w.dtype for w in model.weights} == {"float32"}
    encoder = model.get_layer("vit_encoder")
    assert encoder(vision.preprocess(single.images[:2]))["pooled"].dtype == "float16"
    assert vit.attention_maps(encoder, single.images[:2]).dtype == np.float32
    np.testing.assert_allclose(mixed, f32, rtol=0.01)


def test_two_replicas_train_like_one_device(runs, single):
    """Same seed and batches, one device against MirroredStrategy over two logical CPUs: without
    batch normalisation only the order of float32 sums differs."""
    (one_model, one, _), (model, two, run) = runs["float32"], runs["replicas"]
    assert run.replicas == 2
    np.testing.assert_allclose(two, one, rtol=1e-4)
    maps = [vit.attention_maps(m.get_layer("vit_encoder"), single.images[:2]) for m in (one_model, model)]
    np.testing.assert_allclose(maps[1], maps[0], atol=1e-4)


def test_a_short_training_beats_chance():
    """320 images × 3 epochs (60 steps) of the "cls" ViT with one block: colour and size are found
    first, shape needs far more steps. Measured on 200 held-out images, seeds 0–3 (shared CPUs):
    colour 0.38–0.74, size 0.71–0.85, shape 0.36–0.47 (seed 0: 0.74, 0.85, 0.36); chance 1/6, 1/2,
    1/3. The bars sit below the worst seed, far above an untrained model."""
    train = shapes.generate(320, seed=(3, 1), objects=(1,))
    val = shapes.generate(200, seed=(3, 2), objects=(1,))
    with device.strategy().scope(), training.seeded(0):
        encoder = vit.build_vit_encoder(d_model=16, num_heads=2, layers=1, hidden=32)
        classifier = vision.build_attribute_classifier(encoder, learning_rate=2e-3)
    vision.train_attribute_classifier(classifier, train, epochs=3, batch_size=16)
    predicted, truth = vision.predict_attributes(classifier, val.images), vision.attribute_targets(val)
    accuracy = {attr: float((predicted[attr] == truth[attr]).mean()) for attr in vision.ATTRIBUTES}
    assert accuracy["colour"] > 1 / 6 + 0.15, accuracy
    assert accuracy["size"] > 1 / 2 + 0.15, accuracy
    assert accuracy["shape"] > 1 / 3 - 0.05, accuracy  # not worse than guessing
