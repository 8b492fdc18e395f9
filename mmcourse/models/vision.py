"""The course's image encoder: a small CNN that turns a 64×64 image into feature vectors.

Notebook 02 builds and trains it; notebooks 05–08 reuse it. The API is small and stable::

    from mmcourse.models import vision

    encoder = vision.build_image_encoder(channels=64)        # keras.Model
    out = encoder(vision.preprocess(images))                 # {"grid": (n, 8, 8, 64), "pooled": (n, 64)}
    classifier = vision.build_attribute_classifier(encoder)  # three softmax heads on top
    history = vision.train_attribute_classifier(classifier, train, val, epochs=5)
    pooled = vision.encode(encoder, images)                  # numpy, in batches
    neighbours, similarity = vision.nearest_images(pooled, query_index=0, k=5)

**Inputs.** The encoder takes float32 images in ``[0, 1]``, shape ``(n, 64, 64, 3)``.
The Shapes world gives uint8 images in ``[0, 255]``: :func:`preprocess` converts them
(:func:`encode` and :func:`train_attribute_classifier` call it for you).

**Outputs.** ``grid`` is an 8×8 grid of ``channels``-dimensional feature vectors, one for
each 8×8-pixel patch of the image (what attention looks at); ``pooled`` is their mean,
one vector for the whole image.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmcourse import imageops
from mmcourse.checks import check_positive_int, check_seed
from mmcourse._tf import tensorflow

tf = tensorflow()

import keras  # noqa: E402  (after the quiet TensorFlow import)

from mmcourse import device, training  # noqa: E402
from mmcourse.data import pipeline, shapes  # noqa: E402

__all__ = [
    "cell_targets",
    "pretrain_image_encoder",
    "IMAGE_SHAPE",
    "ATTRIBUTES",
    "preprocess",
    "build_image_encoder",
    "BACKBONES",
    "build_backbone",
    "calibrate_batch_norm",
    "build_attribute_classifier",
    "attribute_targets",
    "train_attribute_classifier",
    "predict_attributes",
    "encode",
    "nearest_images",
]

IMAGE_SHAPE = (shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 3)
#: The three things the attribute classifier predicts about a single object, and their classes.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": tuple(shapes.SHAPES),
    "colour": tuple(shapes.COLOURS),
    "size": tuple(shapes.SIZES),
}


def preprocess(images) -> np.ndarray:
    """Images as the encoder takes them: float32 in ``[0, 1]``, shape ``(n, 64, 64, 3)``.

    uint8 images (as the Shapes world makes them) are divided by 255; float images must
    already lie in ``[0, 1]``. One image ``(64, 64, 3)`` becomes a batch of one. This is
    :func:`mmcourse.imageops.to_unit` with the encoder's shape checked.
    """
    return imageops.to_unit(images, shape=IMAGE_SHAPE)


def build_image_encoder(channels: int = 64, *, dtype=None, name: str = "image_encoder") -> keras.Model:
    """A small CNN: 64×64×3 images → ``{"grid": (n, 8, 8, channels), "pooled": (n, channels)}``.

    Three blocks of *3×3 convolution ("same" padding) → batch normalisation → ReLU →
    2×2 max pooling* with ``channels/4``, ``channels/2`` and ``channels`` filters halve the
    image three times (64 → 32 → 16 → 8); a 1×1 convolution with ReLU mixes the channels at
    each grid cell; the pooled vector is the grid's mean over its 64 cells. Layers are named
    ``conv1``, ``norm1``, ``relu1``, ``pool1``, …, ``grid``, ``pooled`` so their outputs can
    be inspected (e.g. ``keras.Model(encoder.input, encoder.get_layer("relu1").output)``).
    Batch normalisation is synchronized across replicas (the statistics of the global batch),
    so a model trains the same on one device and on several. The layers take Keras's dtype
    policy: under mixed precision the outputs are float16 (:func:`encode` gives float32).

    Args:
        channels: length of each feature vector; a positive multiple of 4.
        dtype: the layers' dtype policy (default: Keras's global policy); a model that builds
            the encoder inside itself passes its own, so that it loads as it was trained.
        name: the model's name.

    Returns:
        A functional ``keras.Model`` with a dict output; it saves and loads as ``.keras``.
    """
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 4 or channels % 4:
        raise ValueError(f"channels must be a positive multiple of 4 (e.g. 32, 64, 128), got {channels!r}")
    channels = int(channels)
    inputs = keras.Input(IMAGE_SHAPE, name="image")
    x = inputs
    for i, width in enumerate((channels // 4, channels // 2, channels), start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, dtype=dtype, name=f"conv{i}")(x)
        # A short memory (0.7, not Keras's 0.99) so that the running statistics used at test
        # time catch up with the weights even after a few dozen steps (the quick profile).
        # Synchronized: on several replicas the batch statistics are those of the global batch.
        x = keras.layers.BatchNormalization(momentum=0.7, synchronized=True, dtype=dtype, name=f"norm{i}")(x)
        x = keras.layers.ReLU(dtype=dtype, name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, dtype=dtype, name=f"pool{i}")(x)
    grid = keras.layers.Conv2D(channels, 1, activation="relu", dtype=dtype, name="grid")(x)
    pooled = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="pooled")(grid)
    return keras.Model(inputs, {"grid": grid, "pooled": pooled}, name=name)


#: The ``keras.applications`` backbones :func:`build_backbone` knows: name → (constructor, how it
#: wants its pixels: ``"0-255"`` when it rescales them itself, ``"-1-1"`` for MobileNetV2).
BACKBONES = {
    "mobilenet_v3_small": ("MobileNetV3Small", "0-255"),
    "mobilenet_v3_large": ("MobileNetV3Large", "0-255"),
    "efficientnet_b0": ("EfficientNetB0", "0-255"),
    "mobilenet_v2": ("MobileNetV2", "-1-1"),
}
#: Photographs go through a backbone at 256×256: every backbone above divides by 32, which
#: leaves the 8×8 grid the course's decoders attend over.
PHOTO_SIZE = 256


def build_backbone(name: str = "shapes", *, channels: int = 64, weights: str | None = None, image_size: int | None = None,
                   dtype=None) -> keras.Model:
    """An image encoder with :func:`build_image_encoder`'s interface (images in ``[0, 1]`` →
    ``{"grid": (n, 8, 8, C), "pooled": (n, C)}``) for ``name``: ``"shapes"`` is the course's CNN
    (64×64 images, ``channels`` wide); any name in :data:`BACKBONES` is that ``keras.applications``
    network without its classifier, on ``image_size`` (default :data:`PHOTO_SIZE`) images, ``C``
    its own width (576 for MobileNetV3Small).

    ``weights``: ``None`` (random; never touches the network), ``"imagenet"`` (Keras downloads
    them once into ``~/.keras`` if they are not there yet) or the path of a weights file for that
    network (as Keras saves or downloads them). Only a ``keras.applications`` backbone has them.
    """
    if name == "shapes":
        if weights not in (None, "none"):
            raise ValueError("the shapes backbone has no pre-trained weights to load: use --weights none (it trains with the captioner)")
        return build_image_encoder(channels, dtype=dtype)
    if name not in BACKBONES:
        raise ValueError(f"backbone must be 'shapes' or one of {', '.join(BACKBONES)}; got {name!r}")
    if weights not in (None, "none", "imagenet") and not Path(weights).is_file():
        raise FileNotFoundError(f"weights: no file at {weights} (pass None, 'imagenet', or a weights file of the {name} network)")
    size = PHOTO_SIZE if image_size is None else check_positive_int(image_size, "image_size", minimum=32)
    constructor, pixels = BACKBONES[name]
    inputs = keras.Input((size, size, 3), name="image")
    # the networks were trained on pixels scaled their own way: undo the course's [0, 1] first
    x = keras.layers.Rescaling(255.0 if pixels == "0-255" else 2.0, offset=0.0 if pixels == "0-255" else -1.0, dtype=dtype, name="pixels")(inputs)
    network = getattr(keras.applications, constructor)(input_shape=(size, size, 3), include_top=False,
                                                       weights=None if weights in (None, "none") else str(weights))
    grid = network(x)
    pooled = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="pooled")(grid)
    return keras.Model(inputs, {"grid": grid, "pooled": pooled}, name=f"{name}_encoder")


def calibrate_batch_norm(encoder: keras.Model, images) -> int:
    """Set every BatchNormalization layer's moving statistics to those of ``images`` (uint8 or
    ``[0, 1]``, at the encoder's input size); returns how many layers were set.

    A ``keras.applications`` network with random weights is no use as it is: its BatchNorm
    layers hold mean 0 and variance 1, which do not match what reaches them, so activations
    shrink layer after layer (about 1e-10 at MobileNetV3-Small's last map: zero in float16, the
    same grid for every photograph). Estimating the statistics from data is what BatchNorm does
    in training; here it is done once, with no labels and no gradient step. One forward pass in
    training mode, with each layer's momentum at 0 (the moving statistics become this batch's)
    and dropout off, sets them all: a layer sees what the layers before it, already normalised
    by the batch's statistics, pass on, which is what it will see in inference on these images.
    """
    x = np.asarray(images)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    norms = [layer for layer in _all_layers(encoder) if isinstance(layer, keras.layers.BatchNormalization)]
    drops = [layer for layer in _all_layers(encoder) if isinstance(layer, keras.layers.Dropout)]
    saved = [(layer, layer.momentum) for layer in norms], [(layer, layer.rate) for layer in drops]
    try:
        for layer in norms:
            layer.momentum = 0.0
        for layer in drops:
            layer.rate = 0.0
        encoder(x, training=True)
    finally:
        for layer, momentum in saved[0]:
            layer.momentum = momentum
        for layer, rate in saved[1]:
            layer.rate = rate
    return len(norms)


def _all_layers(model: keras.Model):
    """Every layer of ``model``, nested models' layers included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def build_attribute_classifier(encoder: keras.Model, *, hidden: int = 64, learning_rate: float = 2e-3, seed: int = 0) -> keras.Model:
    """The encoder with three softmax heads for a single object's shape, colour and size.

    ``pooled`` → Dense(``hidden``, ReLU) → three Dense softmax layers named ``shape``
    (3 classes), ``colour`` (6) and ``size`` (2), in float32 whatever the dtype policy (so the
    losses are computed in float32 under mixed precision). The model is compiled with Adam,
    sparse categorical cross-entropy on each head (summed) and each head's accuracy. Training
    it trains the encoder too (they share weights). The heads' initial weights come from
    ``seed``; the model is built in :func:`mmcourse.device.strategy`'s scope, where the encoder
    must have been built too (it is, when both are built in the same ``device.use`` block).
    """
    try:
        outputs = encoder.output
    except (AttributeError, ValueError):  # a model that was never built has no outputs
        outputs = None
    if not isinstance(encoder, keras.Model) or not isinstance(outputs, dict) or "pooled" not in outputs:
        raise ValueError("build_attribute_classifier takes an encoder made by build_image_encoder(), with a 'pooled' output")
    hidden = check_positive_int(hidden, "hidden")
    with device.strategy().scope(), training.seeded(seed):
        inputs = keras.Input(IMAGE_SHAPE, name="image")
        h = keras.layers.Dense(int(hidden), activation="relu", name="hidden")(encoder(inputs)["pooled"])
        outputs = {attr: keras.layers.Dense(len(classes), activation="softmax", dtype="float32", name=attr)(h)
                   for attr, classes in ATTRIBUTES.items()}
        model = keras.Model(inputs, outputs, name="attribute_classifier")
        training.compile(
            model,
            keras.optimizers.Adam(learning_rate),
            loss={attr: "sparse_categorical_crossentropy" for attr in ATTRIBUTES},
            metrics={attr: ["accuracy"] for attr in ATTRIBUTES},
        )
    return model


def attribute_targets(dataset: shapes.ShapesDataset) -> dict[str, np.ndarray]:
    """Class indices ``{"shape": (n,), "colour": (n,), "size": (n,)}`` of single-object images.

    The indices follow :data:`ATTRIBUTES`. Every image must hold exactly one object.
    """
    if not isinstance(dataset, shapes.ShapesDataset):
        raise TypeError(f"attribute_targets takes a ShapesDataset, got {type(dataset).__name__}")
    if (dataset.n_objects != 1).any():
        raise ValueError(
            f"{int((dataset.n_objects != 1).sum())} of the {len(dataset)} images hold two objects; the attribute "
            "classifier needs single-object images: shapes.generate(n, seed, objects=(1,))"
        )
    objects = [scene.objects[0] for scene in dataset.scenes]
    return {attr: np.array([classes.index(getattr(o, attr)) for o in objects], np.int32) for attr, classes in ATTRIBUTES.items()}


def train_attribute_classifier(
    model: keras.Model,
    train: shapes.ShapesDataset,
    val: shapes.ShapesDataset | None = None,
    *,
    epochs: int = 5,
    batch_size: int = 64,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    cosine_decay: bool = True,
    seed: int = 0,
    verbose: int = 0,
) -> keras.callbacks.History:
    """Fit the attribute classifier on single-object Shapes images; return the Keras ``History``.

    With ``cosine_decay`` the learning rate falls from its compiled value ``η₀`` along a
    half cosine, ``η_e = η₀ · ½ (1 + cos(π e / epochs))`` in epoch ``e = 0, 1, …``: big steps
    first, small ones at the end, so the weights (and batch normalisation's running
    statistics) settle. ``history.history`` holds ``loss``, ``shape_accuracy``,
    ``colour_accuracy``, ``size_accuracy`` (and ``val_…`` when ``val`` is given) and
    ``learning_rate``, one value per epoch. Afterwards the learning rate is ``η₀`` again.
    The images are reshuffled every epoch in an order drawn from ``seed``; ``batch_size`` is
    the global batch (split between replicas when the model was built under several).
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    epochs = check_positive_int(epochs, "epochs")
    # every pass in its own order drawn from seed, the same on one device and on several
    batches = pipeline.table_batches((preprocess(train.images), attribute_targets(train)), batch_size=batch_size, epochs=epochs, seed=seed)
    steps = -(-len(train) // batch_size)
    validation = None if val is None else (preprocess(val.images), attribute_targets(val))
    callbacks = list(callbacks)
    if cosine_decay:
        eta_0 = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        callbacks.insert(0, keras.callbacks.LearningRateScheduler(lambda e: eta_0 * 0.5 * (1 + np.cos(np.pi * e / epochs))))
    history = model.fit(batches, validation_data=validation, validation_batch_size=batch_size, epochs=epochs, steps_per_epoch=steps, shuffle=False,
                        callbacks=callbacks, verbose=verbose)
    if cosine_decay:
        model.optimizer.learning_rate = eta_0  # as compiled, so that training again starts from η₀
    return history


def predict_attributes(model: keras.Model, images, *, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Predicted class indices ``{"shape": (n,), "colour": (n,), "size": (n,)}``."""
    probs = model.predict(preprocess(images), batch_size=batch_size, verbose=0)
    return {attr: np.asarray(probs[attr]).argmax(axis=-1) for attr in ATTRIBUTES}


def encode(encoder: keras.Model, images, *, batch_size: int = 256, output: str = "pooled") -> np.ndarray:
    """Features of many images, computed in batches: ``(n, C)`` pooled or ``(n, 8, 8, C)`` grid.

    Args:
        encoder: made by :func:`build_image_encoder` (trained or not).
        images: uint8 ``[0, 255]`` or float ``[0, 1]``, shape ``(n, 64, 64, 3)``.
        batch_size: images per forward pass (memory, not results, depends on it).
        output: ``"pooled"`` or ``"grid"``.
    """
    if output not in ("pooled", "grid"):
        raise ValueError(f"output must be 'pooled' or 'grid', got {output!r}")
    x = preprocess(images)
    parts = [np.asarray(keras.ops.convert_to_numpy(encoder(x[i : i + batch_size], training=False)[output]), np.float32)
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0,) + tuple(encoder.output[output].shape[1:]), np.float32)


def nearest_images(features, query_index: int, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` images whose feature vectors are most similar to the query's (cosine similarity).

    Returns ``(indices, similarities)``, most similar first, the query itself left out.
    Cosine similarity ``cos(a, b) = a·b / (‖a‖ ‖b‖)`` compares directions, not lengths.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be one vector per image, shape (n, C); got {f.shape} (flatten grids first)")
    n = len(f)
    if not -n <= query_index < n:
        raise IndexError(f"query_index {query_index} is out of range for {n} images")
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and {n - 1} (the other images), got {k}")
    unit = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit[query_index]
    similarity[query_index % n] = -np.inf
    order = np.argsort(-similarity, kind="stable")[:k]
    return order, similarity[order]


# --------------------------------------------------------------------------- dense pre-training


def cell_targets(dataset: shapes.ShapesDataset) -> dict[str, np.ndarray]:
    """What each of the encoder's 8×8 cells shows: ``{"shape", "colour", "size"}``, each ``(n, 8, 8)``
    int32, 0 for background and ``1 + index`` into :data:`ATTRIBUTES` for the object that covers
    most of the cell's 8×8 pixels (at least 8 of them), read from the exact masks."""
    n = len(dataset)
    patches = dataset.labels.reshape(n, 8, 8, 8, 8)  # (image, row, pixel row, column, pixel column)
    counts = np.stack([(patches == k + 1).sum(axis=(2, 4)) for k in range(2)], -1)  # (n, 8, 8, 2) pixels per object
    which, covered = counts.argmax(-1), counts.max(-1) >= 8
    out = {}
    for attr, classes in ATTRIBUTES.items():
        table = np.zeros((n, 2), np.int32)
        for i, scene in enumerate(dataset.scenes):
            for k, obj in enumerate(scene.objects):
                table[i, k] = classes.index(getattr(obj, attr)) + 1
        out[attr] = np.where(covered, np.take_along_axis(table[:, None, None, :], which[..., None], -1)[..., 0], 0).astype(np.int32)
    return out


def pretrain_image_encoder(n_images: int = 4_000, epochs: int = 4, *, channels: int = 64, seed: int = 0, batch_size: int = 64,
                           learning_rate: float = 3e-3, progress: bool = True, holdout=()):
    """The image encoder of notebook 02, pre-trained to say at each of its 64 grid cells what is
    there (the shape, colour and size of the object covering the cell, or background; see
    :func:`cell_targets`), then frozen, so that models built on it (VQA in notebook 08, the captioner of notebook 06)
    compute its grids once and share them.

    Dense, per-cell labels make each grid vector describe its own patch of the image, which is
    what a model that picks out *parts* of the image (by a question, or word by word) needs. Returns
    ``(encoder, history, seconds)``; ``history`` holds per-epoch losses and cell accuracies,
    ``seconds`` the time spent fitting. ``holdout``: ``(colour, shape)`` pairs it never sees
    (for tests of compositional generalisation).

    ``seed`` decides the images, the initial weights and the order of the batches (the
    caller's random state is left alone). The labeller (encoder and one float32 1×1
    convolution per attribute, so the losses are float32 under mixed precision) is built and
    compiled under :func:`mmcourse.device.strategy`: inside ``device.use(...)`` it trains with
    that block's precision and replicas; ``batch_size`` is the global batch.
    """
    n_images = check_positive_int(n_images, "n_images")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_seed(seed)
    callbacks = []
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks = [TqdmCallback(verbose=0, desc="pre-train image encoder")]
    data = shapes.generate(n_images, seed=(seed, 101), holdout=holdout)
    batches = pipeline.table_batches((preprocess(data.images), cell_targets(data)), batch_size=batch_size, epochs=epochs, seed=seed)
    steps = -(-len(data) // batch_size)
    start = time.perf_counter()
    with device.strategy().scope(), training.seeded(seed):
        encoder = build_image_encoder(channels)
        image = keras.Input(IMAGE_SHAPE, name="image")
        grid = encoder(image)["grid"]
        heads = {attr: keras.layers.Conv2D(len(classes) + 1, 1, dtype="float32", name=attr)(grid) for attr, classes in ATTRIBUTES.items()}
        labeller = keras.Model(image, heads, name="cell_labeller")
        training.compile(labeller, keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps * epochs)),
                         loss={attr: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for attr in heads},
                         metrics={attr: ["accuracy"] for attr in heads})
    history = labeller.fit(batches, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=callbacks)
    encoder.trainable = False
    return encoder, history.history, time.perf_counter() - start
