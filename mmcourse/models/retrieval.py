"""Cross-modal retrieval: a dual encoder that puts images and captions in one space (CLIP-style).

Two towers, trained together:

- the **image tower**: the CNN of notebook 02 (:func:`mmcourse.models.vision.build_image_encoder`);
  its 8×8 grid is narrowed by a 1×1 convolution and flattened (so the tower still knows *where*
  things are, which "left of" and "above" need), then a small MLP projects it;
- the **text tower**: word embeddings read by a GRU (``text_encoder="gru"``) or simply averaged
  (``"mean"``, a bag of words that cannot tell "a red circle left of a blue square" from
  "a blue circle left of a red square"), then projected;

each to ``dim`` numbers, scaled to unit length (L2-normalised), so that a dot product is a
cosine similarity ``s_ij = x_i · y_j`` between image ``i`` and caption ``j``.

Training uses the symmetric contrastive (InfoNCE) loss over a batch (:func:`info_nce_loss`)
with a learnable temperature ``τ``: the logits are ``s_ij / τ = s_ij · exp(t)``, ``t`` is the
trained parameter (:class:`LogitScale`), started at ``exp(t) = 1/0.07`` and clipped so that
``exp(t) ≤ 100``, as in CLIP (Radford et al., 2021).

In the Shapes world many images in a batch share what they show, and a caption such as
"a small red circle" is true of every image that holds one. The loss therefore takes an
optional matrix of *positives*: a caption that is true of another image of the batch is not
pushed away from it (:func:`truth_matrix` computes them from :func:`meaning_codes`). With
only the diagonal positive it is exactly CLIP's loss.

A batch of random images almost never holds two that differ only in how their objects are
arranged, so nothing in it teaches "left of" from "right of". Two kinds of *hard negatives*
do: a caption with its relation turned round (:func:`hard_negative`, as in NegCLIP), which
joins every image's softmax over captions, and a *twin* image drawn beside every image in its
batch (:func:`twin_scene`: the same objects in another arrangement).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmcourse import artifacts, device, imageops
from mmcourse import training as training_lib
from mmcourse.checks import check_positive_int, check_seed
from mmcourse._tf import tensorflow
from mmcourse.data import pipeline, shapes
from mmcourse.data.text import Vocabulary
from mmcourse.models import vision

tf = tensorflow()
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = [
    "TEXT_ENCODERS",
    "TEXT_LENGTH",
    "MAX_LOGIT_SCALE",
    "encode_captions",
    "meaning_codes",
    "truth_matrix",
    "info_nce_loss",
    "hard_negative",
    "LogitScale",
    "DualEncoder",
    "twin_scene",
    "retrieval_dataset",
    "train_dual_encoder",
    "embed_images",
    "embed_captions",
    "search",
    "zero_shot_prompts",
    "zero_shot_classify",
    "modality_gap",
    "evaluate",
    "train_command",
    "save",
    "load",
]

TEXT_ENCODERS = ("gru", "mean")
TEXT_LENGTH = shapes.LONGEST_CAPTION  # 13 words: "a picture of a small red circle left of a large blue square"
MAX_LOGIT_SCALE = 100.0  # CLIP clips exp(t) at 100, i.e. the temperature τ = 1/exp(t) at 0.01
INITIAL_TEMPERATURE = 0.07  # CLIP's starting τ

_PHRASES = [(s, c, h) for s in shapes.SIZES for c in shapes.COLOURS for h in shapes.SHAPES]
_PHRASE_ID = {p: i for i, p in enumerate(_PHRASES)}
_AXIS = {None: -1, "left of": 0, "above": 1}


# --------------------------------------------------------------------------- text


def encode_captions(captions: Sequence[str], vocabulary: Vocabulary, *, check: bool = True) -> np.ndarray:
    """What the text tower reads: word ids ``(n, TEXT_LENGTH)`` int32, padded with 0 at the end, no
    ``<start>``/``<end>`` (:func:`mmcourse.data.shapes.encode_captions` in the tower's format).

    With ``check`` (the default) a word the vocabulary does not know raises a ``ValueError``
    that names it, instead of silently becoming ``<unk>``; any sequence of known words is
    read (a search box takes what a learner types).
    """
    return shapes.encode_captions(captions, vocabulary, length=TEXT_LENGTH, bounds=False, check="words" if check else None)


def meaning_codes(items) -> np.ndarray:
    """What a caption says, or what a scene holds, as three integers ``(a, axis, b)``, shape ``(n, 3)``.

    ``a`` and ``b`` number the object phrases (size, colour, shape; 0–35), ``axis`` is 0 for
    "left of"/"right of", 1 for "above"/"below", and ``b = axis = −1`` for one object. Both
    are in canonical order (``a`` is left of or above ``b``), so "B right of A" and
    "A left of B" get the same code. ``items`` are captions (strings) or scenes.
    """
    codes = np.empty((len(items), 3), np.int32)
    for k, item in enumerate(items):
        d = shapes.parse_caption(item).description() if isinstance(item, str) else item.description()
        b = _PHRASE_ID[tuple(d.objects[1])] if len(d.objects) == 2 else -1
        codes[k] = (_PHRASE_ID[tuple(d.objects[0])], _AXIS[d.relation], b)
    return codes


def truth_matrix(caption_codes, scene_codes):
    """``T[c, s]``: caption ``c`` is true of scene ``s`` (from :func:`meaning_codes`), as a bool tensor.

    A one-object caption is true when either object of the scene is the one it names; a
    two-object caption when the scene holds exactly that pair along that axis in that order.
    This is :meth:`shapes.CaptionParse.is_true_of`, vectorised so that it runs inside training.
    """
    c = ops.convert_to_tensor(caption_codes, "int32")
    s = ops.convert_to_tensor(scene_codes, "int32")
    a, axis = c[:, None, 0], c[:, None, 1]
    single = ops.logical_or(ops.equal(a, s[None, :, 0]), ops.equal(a, s[None, :, 2]))
    pair = ops.all(ops.equal(c[:, None, :], s[None, :, :]), axis=-1)
    return ops.where(ops.equal(axis, -1), single, pair)


# --------------------------------------------------------------------------- the loss


def info_nce_loss(image_embeddings, text_embeddings, logit_scale, positives=None, negative_embeddings=None, negative_positives=None):
    """The symmetric contrastive (InfoNCE) loss of a batch of ``B`` image–caption pairs.

    With unit vectors ``x_i`` (images) and ``y_j`` (captions), logits ``z_ij = exp(t) · x_i · y_j``::

        L = ½ [ −(1/B) Σ_i Σ_j q_ij log softmax_j(z_i·)  −(1/B) Σ_j Σ_i q'_ji log softmax_i(z_·j) ]

    where ``q_i·`` spreads the target over the captions that are positives for image ``i``
    (``positives[i, j]``, divided by their number) and ``q'_j·`` over the images that are
    positives for caption ``j``. Without ``positives`` only the diagonal is positive and
    ``L`` is CLIP's loss: cross-entropy of "which caption is mine" and "which image is mine".

    *Hard negatives* (NegCLIP, Yuksekgonul et al., 2023): ``negative_embeddings`` ``n_k`` are
    extra captions, such as a batch caption with its relation turned round, that join every
    image's softmax over captions (``j`` runs over the ``B`` captions and the ``K`` negatives);
    they have no image of their own, so the caption → image term is unchanged.

    Args:
        image_embeddings, text_embeddings: ``(B, d)``, already unit length.
        logit_scale: ``exp(t) = 1/τ``, a scalar.
        positives: optional bool ``(B, B)``, ``[i, j]`` True where caption ``j`` is a right
            answer for image ``i``; the diagonal must be True.
        negative_embeddings: optional ``(K, d)`` extra captions for the image → caption term.
        negative_positives: optional bool ``(B, K)``: a "negative" that happens to be true of
            image ``i`` (all False when not given).

    Returns:
        ``(loss, logits)``: a scalar and the ``(B, B)`` logits of the batch pairs.
    """
    x = ops.convert_to_tensor(image_embeddings, "float32")
    y = ops.convert_to_tensor(text_embeddings, "float32")
    scale = ops.cast(logit_scale, "float32")
    logits = scale * ops.matmul(x, ops.transpose(y))
    if positives is None:
        p = ops.eye(ops.shape(logits)[0], dtype="float32")
    else:
        p = ops.cast(ops.convert_to_tensor(positives), "float32")
    image_logits, image_p = logits, p  # each image's choice among captions
    if negative_embeddings is not None:
        n = ops.convert_to_tensor(negative_embeddings, "float32")
        image_logits = ops.concatenate([logits, scale * ops.matmul(x, ops.transpose(n))], axis=1)
        if negative_positives is None:
            extra = ops.zeros((ops.shape(x)[0], ops.shape(n)[0]), "float32")
        else:
            extra = ops.cast(ops.convert_to_tensor(negative_positives), "float32")
        image_p = ops.concatenate([p, extra], axis=1)
    image_to_text = image_p / ops.sum(image_p, axis=1, keepdims=True)  # q: each image's targets over captions
    text_to_image = ops.transpose(p) / ops.sum(ops.transpose(p), axis=1, keepdims=True)  # q': each caption's over images
    loss_i2t = -ops.mean(ops.sum(image_to_text * ops.log_softmax(image_logits, axis=1), axis=1))
    loss_t2i = -ops.mean(ops.sum(text_to_image * ops.log_softmax(ops.transpose(logits), axis=1), axis=1))
    return 0.5 * (loss_i2t + loss_t2i), logits


def hard_negative(caption: str, rng: np.random.Generator) -> str:
    """A caption that says almost the same as ``caption`` but (in general) is false of its image.

    Two objects: the same objects with one of the three other relations ("left of" → "right of",
    "above" or "below"); one object: one of its size, colour or shape changed. The prefix stays.
    """
    parse = shapes.parse_caption(caption)
    if parse.relation is not None:
        relation = rng.choice([r for r in shapes.RELATIONS if r != parse.relation])
        return shapes.CaptionParse(parse.prefix, parse.objects, str(relation)).text()
    obj = list(parse.objects[0])
    k = int(rng.integers(3))
    options = (tuple(shapes.SIZES), tuple(shapes.COLOURS), tuple(shapes.SHAPES))[k]
    obj[k] = str(rng.choice([v for v in options if v != obj[k]]))
    return shapes.CaptionParse(parse.prefix, (shapes.ObjectPhrase(*obj),)).text()


@keras.saving.register_keras_serializable(package="mmcourse")
class ClipValue(keras.constraints.Constraint):
    """Keep a weight within ``[low, high]`` after every optimiser step."""

    def __init__(self, low: float, high: float):
        if not low < high:
            raise ValueError(f"ClipValue needs low < high, got low={low} and high={high}")
        self.low, self.high = float(low), float(high)

    def __call__(self, w):
        return ops.clip(w, self.low, self.high)

    def get_config(self):
        return {"low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package="mmcourse")
class LogitScale(keras.layers.Layer):
    """The learnable inverse temperature ``exp(t)``, with ``t`` the trained weight (log-parameterised).

    ``call()`` returns ``exp(min(t, log max_scale))``. The weight starts at
    ``t = log(1 / initial_temperature)`` and is clipped to ``[0, log max_scale]`` after every
    step, as CLIP does, so the temperature ``τ = 1/exp(t)`` stays within ``[1/max_scale, 1]``.
    Training ``t`` rather than ``τ`` keeps ``τ`` positive and makes its steps relative.

    Args:
        initial_temperature: ``τ`` at the start, in ``(1/max_scale, 1]``.
        max_scale: the largest ``exp(t)``.
    """

    def __init__(self, initial_temperature: float = INITIAL_TEMPERATURE, max_scale: float = MAX_LOGIT_SCALE, **kwargs):
        super().__init__(**kwargs)
        if not max_scale > 1:
            raise ValueError(f"max_scale must be greater than 1 (CLIP uses 100), got {max_scale!r}")
        if not 1 / max_scale <= initial_temperature <= 1:
            raise ValueError(f"initial_temperature must lie in [1/max_scale, 1] = [{1 / max_scale:g}, 1], got {initial_temperature!r}")
        self.initial_temperature, self.max_scale = float(initial_temperature), float(max_scale)

    def build(self, input_shape=None):
        self.t = self.add_weight(
            shape=(),
            name="log_scale",
            initializer=keras.initializers.Constant(np.log(1 / self.initial_temperature)),
            constraint=ClipValue(0.0, float(np.log(self.max_scale))),
        )

    def call(self, inputs=None):
        return ops.exp(ops.minimum(self.t, float(np.log(self.max_scale))))

    @property
    def temperature(self) -> float:
        """The current ``τ = 1/exp(t)``."""
        return float(1.0 / ops.convert_to_numpy(self.call()))

    def get_config(self):
        config = super().get_config()
        config.update(initial_temperature=self.initial_temperature, max_scale=self.max_scale)
        return config


# --------------------------------------------------------------------------- the model


@keras.saving.register_keras_serializable(package="mmcourse")
class DualEncoder(keras.Model):
    """An image tower and a text tower mapping into one ``dim``-dimensional unit sphere.

    ``call((images, tokens))`` returns ``(image_embeddings (n, dim), text_embeddings (m, dim))``,
    and ``call((images, tokens, negative_tokens))`` also the hard negatives' embeddings;
    :meth:`embed_images` and :meth:`embed_texts` run one tower. Training data are
    ``((images, tokens, negative_tokens), (caption_codes, scene_codes, negative_codes))`` batches
    (:func:`retrieval_dataset`); the loss (:meth:`compute_loss`) is :func:`info_nce_loss` over
    the whole global batch, with positives from :func:`truth_matrix` unless
    ``semantic_positives=False``.

    Args:
        vocab_size: number of word ids (``len(shapes.caption_vocabulary())``).
        text_encoder: ``"gru"`` or ``"mean"``.
        dim: size of the shared space.
        channels: width of the CNN's grid vectors.
        embed_dim: word-vector size; units: GRU state size (and hidden width of the projections).
        semantic_positives: count captions true of another image of the batch as its positives.
        hard_negatives: add each batch caption's :func:`hard_negative` to the image → caption softmax.
        backbone, image_size: the image tower's encoder (:func:`mmcourse.models.vision.build_backbone`):
            the course's CNN, or a ``keras.applications`` network for photographs.
        text_length: the words a caption keeps (:func:`embed_captions` pads or cuts to it).

    Photographs have no meaning codes: a batch without ``y`` is trained with instance positives
    only (an image's own caption), as CLIP is.
    """

    def __init__(self, vocab_size: int, *, text_encoder: str = "gru", dim: int = 64, channels: int = 32, embed_dim: int = 64,
                 units: int = 128, semantic_positives: bool = True, hard_negatives: bool = True,
                 initial_temperature: float = INITIAL_TEMPERATURE, backbone: str = "shapes", image_size: int | None = None,
                 text_length: int = TEXT_LENGTH, **kwargs):
        super().__init__(**kwargs)
        if text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder must be one of {', '.join(TEXT_ENCODERS)}; got {text_encoder!r}")
        check_positive_int(vocab_size, "vocab_size (the vocabulary's length)", minimum=5)
        for name, value in (("dim", dim), ("embed_dim", embed_dim), ("units", units)):
            check_positive_int(value, name)
        self.vocab_size, self.text_encoder, self.dim, self.channels = int(vocab_size), text_encoder, int(dim), int(channels)
        self.embed_dim, self.units, self.semantic_positives = int(embed_dim), int(units), bool(semantic_positives)
        self.hard_negatives = bool(hard_negatives)
        self.initial_temperature = float(initial_temperature)
        self.backbone, self.image_size, self.text_length = backbone, image_size, check_positive_int(text_length, "text_length")
        # every layer takes the model's dtype policy (so a model trained in mixed precision loads as it trained)
        policy = self.dtype_policy
        # image tower: CNN grid → narrow 1×1 convolution → flatten (keeps where) → MLP → unit vector
        self.image_encoder = vision.build_backbone(backbone, channels=self.channels, image_size=image_size, dtype=policy)
        self.channels = int(self.image_encoder.output["grid"].shape[-1])
        self.image_narrow = keras.layers.Conv2D(16, 1, activation="relu", dtype=policy, name="image_narrow")
        self.image_flatten = keras.layers.Flatten(dtype=policy, name="image_flatten")
        self.image_hidden = keras.layers.Dense(2 * self.units, activation="relu", dtype=policy, name="image_hidden")
        self.image_projection = keras.layers.Dense(self.dim, dtype=policy, name="image_projection")
        # text tower: word vectors → GRU (or their mean) → projection → unit vector
        self.word_vectors = keras.layers.Embedding(self.vocab_size, self.embed_dim, mask_zero=True, dtype=policy, name="word_vectors")
        if text_encoder == "gru":
            self.reader = keras.layers.GRU(self.units, dtype=policy, name="text_gru")
        else:
            self.reader = keras.layers.GlobalAveragePooling1D(dtype=policy, name="text_mean")
        self.text_hidden = keras.layers.Dense(self.units, activation="relu", dtype=policy, name="text_hidden")
        self.text_projection = keras.layers.Dense(self.dim, dtype=policy, name="text_projection")
        self.unit = keras.layers.UnitNormalization(name="l2_normalise", dtype="float32")  # unit vectors in float32
        self.logit_scale = LogitScale(self.initial_temperature, name="logit_scale", dtype="float32")
        # Keras tracks the loss itself; these two are reported beside it
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("accuracy", "temperature")}

    def embed_images(self, images, training=False):
        """Unit vectors ``(n, dim)`` of uint8 images, float images in ``[0, 1]``, or the image
        encoder's grids ``(n, 8, 8, C)`` computed beforehand (a frozen backbone's)."""
        x = ops.convert_to_tensor(images)
        grid = self.image_encoder(imageops.to_unit_tensor(x), training=training)["grid"] if x.shape[-1] == 3 else x
        h = self.image_hidden(self.image_flatten(self.image_narrow(grid)))
        return self.unit(self.image_projection(h))

    def embed_texts(self, tokens, training=False):
        """Unit vectors ``(m, dim)`` of word-id rows (:func:`encode_captions`)."""
        tokens = ops.convert_to_tensor(tokens, "int32")
        vectors = self.word_vectors(tokens)
        mask = ops.not_equal(tokens, 0)
        h = self.reader(vectors, mask=mask, training=training)
        return self.unit(self.text_projection(self.text_hidden(h)))

    def call(self, inputs, training=False):
        images, tokens, *negative_tokens = inputs
        self.logit_scale(None)  # built with the model, so its weight is tracked and saved
        out = (self.embed_images(images, training=training), self.embed_texts(tokens, training=training))
        if negative_tokens and self.hard_negatives:
            out += (self.embed_texts(negative_tokens[0], training=training),)
        return out

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The contrastive loss of the *global* batch for Keras's ``fit``: ``y`` are the meaning
        codes ``(caption_codes, scene_codes, negative_codes)``, ``y_pred`` what :meth:`call` gave.

        A contrastive loss compares every image with every caption of the batch, so on several
        replicas (each holding a share of the batch) the embeddings and codes are first gathered
        from every replica (in the global batch's order): each replica computes the loss of
        the whole batch, the same number as on one device, and returns its share of it; the
        gradients summed across replicas are then the one-device gradient.
        """
        image_vectors, text_vectors, *negative_vectors = training_lib.as_float32(*y_pred)
        gather = training_lib.gather_replicas
        if y is None:  # photographs: an image's own caption is its only positive
            loss, accuracy = self.batch_loss(gather(image_vectors), gather(text_vectors), None, None)
            self.trackers["accuracy"].update_state(accuracy)
            self.trackers["temperature"].update_state(1.0 / training_lib.as_float32(self.logit_scale(None)))
            return training_lib.replica_share(loss)
        caption_codes, scene_codes, negative_codes = y
        loss, accuracy = self.batch_loss(gather(image_vectors), gather(text_vectors), gather(caption_codes), gather(scene_codes),
                                         gather(negative_vectors[0]) if negative_vectors else None,
                                         gather(negative_codes) if negative_vectors else None)
        self.trackers["accuracy"].update_state(accuracy)
        self.trackers["temperature"].update_state(1.0 / training_lib.as_float32(self.logit_scale(None)))
        return training_lib.replica_share(loss)

    def batch_loss(self, image_vectors, text_vectors, caption_codes, scene_codes, negative_vectors=None, negative_codes=None):
        """``(loss, accuracy)`` of a batch of unit vectors and their meaning codes, in float32.

        ``accuracy`` is the share of images whose most similar caption of the batch (the hard
        negatives left out) is true of them (is their own, with ``semantic_positives=False``)."""
        x, y = training_lib.as_float32(image_vectors, text_vectors)
        # positives[i, j]: caption j (of image j) is true of image i
        positives = ops.transpose(truth_matrix(caption_codes, scene_codes)) if self.semantic_positives and caption_codes is not None else None
        negatives = negative_positives = None
        if self.hard_negatives and negative_vectors is not None:
            negatives = training_lib.as_float32(negative_vectors)
            negative_positives = ops.transpose(truth_matrix(negative_codes, scene_codes))  # rare: true after all
        loss, logits = info_nce_loss(x, y, training_lib.as_float32(self.logit_scale(None)), positives, negatives, negative_positives)
        best = ops.argmax(logits, axis=1)
        if positives is None:
            right = ops.cast(ops.equal(best, ops.arange(ops.shape(logits)[0], dtype=best.dtype)), "float32")
        else:  # an image's best caption is right when it is true of the image
            right = ops.cast(ops.take_along_axis(ops.cast(positives, "int32"), best[:, None], axis=1)[:, 0], "float32")
        return loss, ops.mean(right)

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, text_encoder=self.text_encoder, dim=self.dim, channels=self.channels,
                      embed_dim=self.embed_dim, units=self.units, semantic_positives=self.semantic_positives,
                      hard_negatives=self.hard_negatives, initial_temperature=self.initial_temperature, backbone=self.backbone,
                      image_size=self.image_size, text_length=self.text_length)
        return config


# --------------------------------------------------------------------------- training


def twin_scene(scene: shapes.Scene, rng: np.random.Generator) -> shapes.Scene:
    """A scene that differs from ``scene`` in the smallest way a caption can tell.

    Two objects: the same objects in another arrangement (the first object is put in one of
    the three other relations to the second, with a fresh layout); one object: one of its size,
    colour or shape changed. Drawn as :func:`mmcourse.data.shapes.compose` draws with a seed.
    """
    objects = [(o.size, o.colour, o.shape) for o in scene.objects]
    seed = int(rng.integers(2**31))
    if len(objects) == 2:
        relation = str(rng.choice([r for r in shapes.RELATIONS if r != scene.relation_between(0, 1)]))
        return shapes.compose(objects, relation, seed=seed)
    obj = list(objects[0])
    k = int(rng.integers(3))
    options = (tuple(shapes.SIZES), tuple(shapes.COLOURS), tuple(shapes.SHAPES))[k]
    obj[k] = str(rng.choice([v for v in options if v != obj[k]]))
    return shapes.compose([tuple(obj)], None, seed=seed)


def retrieval_dataset(data: shapes.ShapesDataset, vocabulary: Vocabulary, *, batch_size: int = 128, seed: int = 0,
                      twins: bool = False, epochs: int = 1):
    """A ``tf.data`` stream of ``((images, tokens, negative_tokens), (caption_codes, scene_codes,
    negative_codes))`` batches (what :meth:`DualEncoder.call` reads, then what its loss compares)
    for ``epochs`` passes over the images, each pass in its own order drawn from ``seed``, in
    which every image comes with one of its reference captions, drawn afresh at every step, and
    that caption's :func:`hard_negative` (one drawn per reference caption).

    With ``twins``, every image brings along a :func:`twin_scene` (rendered, with its own five
    captions) into the same batch, so that half the batch are *hard negative images*: the same
    objects in another arrangement. An epoch then holds twice as many images.
    The incomplete last batch of each pass is dropped (a contrastive batch needs its
    negatives): a pass is ``images // batch_size`` batches (twins counted).

    ``batch_size`` is the global batch: on several replicas each gets a contiguous share of
    it (an image and its twin may then sit on two replicas), and the loss gathers the shares
    back into the whole batch, in order, before comparing images with captions. Orders and
    draws are fixed before the batches are split, so one device and several see the same."""
    batch_size = check_positive_int(batch_size, "batch_size")
    epochs = check_positive_int(epochs, "epochs")
    group = 2 if twins else 1  # an image and its twin stay together
    if len(data) * group < batch_size:
        raise ValueError(f"{len(data)} images make no full batch of {batch_size}; use more images or a smaller batch_size")
    if batch_size % group:
        raise ValueError(f"with twins, an image and its twin share a batch: batch_size must be even, got {batch_size}")
    rng = np.random.default_rng(seed)
    images, captions, scenes = data.images, [list(c) for c in data.captions], list(data.scenes)
    if twins:
        twin = [twin_scene(sc, rng) for sc in scenes]
        twin_images = np.stack([shapes.render(sc) for sc in twin])
        images = np.stack([images, twin_images], axis=1).reshape(-1, *images.shape[1:])  # image i, its twin, …
        captions = [c for pair in zip(captions, (shapes.captions_of(sc, seed=k) for k, sc in enumerate(twin))) for c in pair]
        scenes = [sc for pair in zip(scenes, twin) for sc in pair]
    n, refs = len(images), len(captions[0])
    flat = [c for caps in captions for c in caps]
    tokens = encode_captions(flat, vocabulary).reshape(n, refs, TEXT_LENGTH)
    caption_codes = meaning_codes(flat).reshape(n, refs, 3)
    scene_codes = meaning_codes(scenes)
    negative = [hard_negative(c, rng) for c in flat]
    negative_tokens = encode_captions(negative, vocabulary).reshape(n, refs, TEXT_LENGTH)
    negative_codes = meaning_codes(negative).reshape(n, refs, 3)
    images_t, scodes_t = tf.constant(images), tf.constant(scene_codes)
    per_caption = tuple(tf.constant(t) for t in (tokens, negative_tokens, caption_codes, negative_codes))

    def gather(step, pair_rows):
        rows = tf.reshape(pair_rows[:, None] * group + tf.range(group, dtype=pair_rows.dtype), [-1])  # an image, then its twin
        tokens, ntokens, ccodes, ncodes = pipeline.take(per_caption, rows, pipeline.pick_reference(rows, refs, seed=seed, step=step))
        return (pipeline.take(images_t, rows), tokens, ntokens), (ccodes, pipeline.take(scodes_t, rows), ncodes)

    # every pass in its own order of the images (with twins: of the pairs), drawn up front; full batches only
    return pipeline.batches(n // group, gather, batch_size=batch_size // group, epochs=epochs, seed=seed, full_batches=True)


def train_dual_encoder(data: shapes.ShapesDataset, vocabulary: Vocabulary, *, text_encoder: str = "gru", epochs: int = 10,
                       batch_size: int = 64, learning_rate: float = 3e-3, twins: bool = True, seed: int = 0, progress: bool = True,
                       callbacks=(), **model_args):
    """Build and train a :class:`DualEncoder` on Shapes images and captions.

    The step size falls along a half cosine, ``η₀ · ½(1 + cos(π s / S))`` over the ``S`` steps.
    With ``twins`` every image is trained beside a :func:`twin_scene` (hard negative images, and
    twice the images per epoch). Returns ``(model, history, seconds)``; ``history`` holds ``loss``,
    ``accuracy`` (the share of images whose most similar caption in the batch is true of them)
    and ``temperature``, per epoch.

    The model is built from ``seed`` (without touching the global random state) and compiled
    in :func:`mmcourse.device.strategy`'s scope, so inside ``device.use(precision, cpu_replicas)``
    it trains under that precision and on those replicas; ``batch_size`` is the global batch
    (the contrastive loss always compares the whole of it).
    """
    seed = check_seed(seed)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    stream = retrieval_dataset(data, vocabulary, batch_size=batch_size, seed=seed, twins=twins, epochs=epochs)
    steps = len(data) * (2 if twins else 1) // batch_size  # a pass: full batches only
    with device.strategy().scope(), training_lib.seeded(seed):
        model = DualEncoder(len(vocabulary), text_encoder=text_encoder, **model_args)
        training_lib.compile(model, keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps * epochs)))
    callbacks = list(callbacks)
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc=f"train {text_encoder} dual encoder"))
    start = time.perf_counter()
    # the stream shuffles itself, every pass in its own order
    history = model.fit(stream, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=callbacks)
    return model, history.history, time.perf_counter() - start


# --------------------------------------------------------------------------- using it


def embed_images(model: DualEncoder, images, *, batch_size: int = 256) -> np.ndarray:
    """Unit vectors ``(n, dim)`` of many images (at the image encoder's size), or of their grids, in batches (numpy)."""
    x = np.asarray(images)
    x = imageops.to_unit(x, shape=tuple(model.image_encoder.input.shape[1:])) if x.shape[-1] == 3 else x
    parts = [ops.convert_to_numpy(model.embed_images(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, model.dim), np.float32)


def embed_captions(model: DualEncoder, captions: Sequence[str], vocabulary: Vocabulary, *, batch_size: int = 1024) -> np.ndarray:
    """Unit vectors ``(m, dim)`` of captions. On the Shapes world an unknown word raises a
    ``ValueError`` naming it; a photo model (its own vocabulary) reads it as ``<unk>``."""
    if model.backbone == "shapes":
        tokens = encode_captions(captions, vocabulary)
    else:
        from mmcourse.data.photos import normalise_caption

        tokens = vocabulary.encode_batch([normalise_caption(c) for c in captions], length=model.text_length, bounds=False)
    parts = [ops.convert_to_numpy(model.embed_texts(tokens[i : i + batch_size])) for i in range(0, len(tokens), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, model.dim), np.float32)


def search(query_embeddings, item_embeddings, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items most similar to each query: ``(indices (q, k), similarities (q, k))``, best first."""
    q, items = np.atleast_2d(np.asarray(query_embeddings)), np.asarray(item_embeddings)
    if q.shape[-1] != items.shape[-1]:
        raise ValueError(f"queries have {q.shape[-1]} numbers and items {items.shape[-1]}: embed both with the same model")
    if not 1 <= k <= len(items):
        raise ValueError(f"k must be between 1 and the number of items ({len(items)}), got {k}")
    similarity = q @ items.T
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(similarity, order, axis=1)


def zero_shot_prompts() -> tuple[list[str], list[tuple[str, str, str]]]:
    """The 36 captions "a {size} {colour} {shape}" and their ``(size, colour, shape)``."""
    return [f"a {s} {c} {h}" for s, c, h in _PHRASES], list(_PHRASES)


def zero_shot_classify(model: DualEncoder, images, vocabulary: Vocabulary) -> dict[str, np.ndarray]:
    """Name the object of single-object images with no classifier: the most similar of the
    36 prompts of :func:`zero_shot_prompts`. Returns ``{"size", "colour", "shape"}`` → predicted
    names ``(n,)``, and ``"prompt"`` → the index of the chosen prompt."""
    prompts, parts = zero_shot_prompts()
    best = (embed_images(model, images) @ embed_captions(model, prompts, vocabulary).T).argmax(axis=1)
    chosen = np.array(parts, dtype=object)[best]
    return {"size": chosen[:, 0].astype(str), "colour": chosen[:, 1].astype(str), "shape": chosen[:, 2].astype(str), "prompt": best}


def modality_gap(image_embeddings, text_embeddings) -> float:
    """``‖mean(x) − mean(y)‖``: the distance between the centres of the two clouds of unit
    vectors (Liang et al., 2022). 0 when the modalities share one region of the sphere."""
    return float(np.linalg.norm(np.mean(image_embeddings, axis=0) - np.mean(text_embeddings, axis=0)))


def evaluate(model: DualEncoder, data: shapes.ShapesDataset, vocabulary: Vocabulary, *, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Recall@K both ways over ``data``, at the instance level and semantically.

    Every caption of every image is a query for text → image (5 per image, as on COCO); every
    image is a query for image → text over all the captions. Keys: ``recall@K_t2i``,
    ``recall@K_i2t``, ``semantic_recall@K_t2i``, ``semantic_recall@K_i2t``.
    """
    from mmcourse.metrics.retrieval import instance_relevance, recall_at_k, semantic_relevance

    n, refs = len(data), len(data.captions[0])
    captions = [c for caps in data.captions for c in caps]
    owner = np.repeat(np.arange(n), refs)
    x, y = embed_images(model, data.images), embed_captions(model, captions, vocabulary)
    s_t2i = y @ x.T  # (captions, images)
    true = semantic_relevance(captions, data.scenes)
    out = {}
    for name, sim, rel in (
        ("t2i", s_t2i, instance_relevance(owner, np.arange(n))),
        ("i2t", s_t2i.T, instance_relevance(np.arange(n), owner)),
    ):
        out.update({f"recall@{k}_{name}": v for k, v in recall_at_k(sim, rel, ks).items()})
    out.update({f"semantic_recall@{k}_t2i": v for k, v in recall_at_k(s_t2i, true, ks).items()})
    out.update({f"semantic_recall@{k}_i2t": v for k, v in recall_at_k(s_t2i.T, true.T, ks).items()})
    return out


# --------------------------------------------------------------------------- files and the command line

MODEL_FILE, VOCABULARY_FILE = "dual_encoder.keras", "vocabulary.json"
#: (training images, epochs) of `mmcourse train retrieval` in each profile
TRAIN_SIZES = {"quick": (2_000, 3), "full": (20_000, 14)}
BATCH_SIZE, LEARNING_RATE = 64, 3e-3  # of `mmcourse train retrieval` (the global batch)


def save(model: DualEncoder, vocabulary: Vocabulary, out) -> Path:
    """Write ``dual_encoder.keras`` (without optimizer state) and ``vocabulary.json`` into the folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    artifacts.save_model(model, out / MODEL_FILE)
    vocabulary.save(out / VOCABULARY_FILE)
    return out


def load(folder=None) -> tuple[DualEncoder, Vocabulary]:
    """The dual encoder and vocabulary that :func:`save` wrote into ``folder``, loaded with
    ``safe_mode=True``; ``folder=None``: the one shipped in ``data/retrieval``, its files first
    checked against their SHA-256 sums."""
    folder = artifacts.shipped("retrieval") if folder is None else Path(folder)
    for name in (MODEL_FILE, VOCABULARY_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"no {name} in {folder}: pass the folder that `mmcourse train retrieval --out DIR` wrote")
    return artifacts.load_model(folder / MODEL_FILE), Vocabulary.load(folder / VOCABULARY_FILE)


def train_command(out, *, profile: str | None = None, seed: int = 0, precision: str = "auto", cpu_replicas: int | None = None,
                  progress: bool = True, text_encoder: str = "gru") -> dict:
    """What ``mmcourse train retrieval`` does: train a dual encoder on Shapes, measure Recall@1, 5
    and 10 both ways (instance and semantic) on a fresh test split of ``profile.n_test`` images,
    write the model, its vocabulary and ``metrics.json``. Returns what ``metrics.json`` holds.

    The arguments are checked and ``out`` is created (or found writable) before anything trains.
    """
    if text_encoder not in TEXT_ENCODERS:
        raise ValueError(f"text_encoder must be one of {', '.join(TEXT_ENCODERS)}; got {text_encoder!r}")
    chosen, seed, out = training_lib.start_command(out, profile=profile, seed=seed, precision=precision, cpu_replicas=cpu_replicas)
    n, epochs = TRAIN_SIZES[chosen.name]
    train = shapes.generate(n, seed=(seed, 1))
    test = shapes.generate(chosen.n_test, seed=(seed, 2))
    vocabulary = shapes.caption_vocabulary()
    with device.use(precision, cpu_replicas) as run:
        model, history, seconds = train_dual_encoder(train, vocabulary, text_encoder=text_encoder, epochs=epochs, seed=seed,
                                                     batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE, progress=progress)
        scores = evaluate(model, test, vocabulary)
    save(model, vocabulary, out)
    metrics = {"text_encoder": text_encoder, "train_images": n, "epochs": epochs, "batch_size": BATCH_SIZE, "test_images": len(test),
               "final_loss": float(history["loss"][-1]), "temperature": model.logit_scale.temperature, **scores}
    return artifacts.write_metrics(out, metrics, files=[MODEL_FILE, VOCABULARY_FILE], run=run, profile=chosen.name, seed=seed, test_seed=[seed, 2], train_seconds=seconds)


def search_files(folder, query: str, paths, *, k: int = 5) -> tuple[list[tuple[str, float]], list[tuple[str, str]]]:
    """What ``mmcourse search`` does: the ``k`` image files of ``paths`` most similar to the
    text ``query`` under the dual encoder saved in ``folder`` (``None``: the shipped one), each
    read at the model's input size (64×64 on Shapes, 256×256 through a photo backbone) whatever
    its own. Returns ``(ranked [(path, cosine similarity)], unreadable [(path, reason)])``."""
    from mmcourse.data.photos import load_image

    model, vocabulary = load(folder)
    size = int(model.image_encoder.input.shape[1])
    images, readable, unreadable = [], [], []
    for path in paths:
        try:
            images.append(load_image(path, size))
            readable.append(str(path))
        except (FileNotFoundError, ValueError) as error:
            unreadable.append((str(path), str(error)))
    if not images:
        return [], unreadable
    order, similarity = search(embed_captions(model, [query], vocabulary), embed_images(model, np.stack(images)), k=min(k, len(images)))
    return [(readable[i], float(s)) for i, s in zip(order[0], similarity[0])], unreadable
