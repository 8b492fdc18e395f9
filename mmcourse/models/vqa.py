"""Fusion of image and question, compared on visual question answering (VQA) in the Shapes world.

Every model sees the same two inputs: the 8×8 feature grid ``G`` of the image encoder of
notebook 02 (trained once, then frozen and shared), with each cell's ``(x, y)`` position
appended, and the question, read word by word by a GRU into a vector ``q``. They differ
only in where and how the two meet:

- ``early``: concatenate, then classify: ``h = MLP([v; q])`` with ``v`` the image vector;
- ``late``: one classifier per modality, predictions combined: ``logits = f_v(v) + f_q(q)``,
  i.e. ``p(a | I, Q) ∝ p_v(a | I) · p_q(a | Q)``;
- ``product``: element-wise (multiplicative) fusion, ``h = tanh(W_v v) ⊙ tanh(W_q q)``;
- ``film``: the question modulates every channel of the grid, ``FiLM(F | q) = γ(q) ⊙ F + β(q)``,
  inside two residual blocks of per-cell (1×1) convolutions, then max-pooled over the cells
  (Perez et al., 2018);
- ``attention``: the question attends over the 64 grid cells (two heads), and what each head
  saw and where it looked meet the question: ``h = MLP([Σ_j α_j V_j; Σ_j α_j (x_j, y_j); q])``.

Baselines that show what a model can get without really fusing: ``blind`` (the question
only), ``image`` (the image only) and :func:`majority_baseline` (the commonest answer of each
question type).

The image vector of the global models is ``v = ReLU(W vec(G))``, a learned summary of the
whole grid (positions included), so that early, late and product fusion are not handicapped
by losing *where* things are; what they lack is a way for the question to choose *which*
part of the image to read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcourse.checks import check_positive_int
from mmcourse import artifacts, device, training
from mmcourse._tf import tensorflow
from mmcourse.data import pipeline, shapes
from mmcourse.data.text import Vocabulary, pad_sequences
from mmcourse.layers.attention import MultiHeadAttention
from mmcourse.models import vision
from mmcourse.models.vision import cell_targets, pretrain_image_encoder  # shared with the captioner; re-exported here

tf = tensorflow()
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = [
    "FUSIONS",
    "BASELINES",
    "MODELS",
    "KINDS",
    "ANSWERS",
    "QUESTION_LENGTH",
    "QuestionError",
    "encode_questions",
    "VQAData",
    "vqa_pairs",
    "add_coordinates",
    "FiLM",
    "VQAModel",
    "cell_targets",
    "pretrain_image_encoder",
    "grid_features",
    "train_vqa",
    "predict",
    "accuracy_by_kind",
    "evaluate",
    "majority_baseline",
    "answer",
    "save",
    "load",
    "train_command",
]

FUSIONS = ("early", "late", "product", "film", "attention")
BASELINES = ("blind", "image")
MODELS = BASELINES + FUSIONS
KINDS = ("colour", "shape", "size", "count", "existence", "relation")
#: Every answer the Shapes questions have, in a fixed order (the models' classes).
ANSWERS: tuple[str, ...] = (
    *shapes.COLOURS,
    *shapes.SHAPES,
    *shapes.SIZES,
    "1",
    "2",
    "yes",
    "no",
    "left",
    "right",
    "above",
    "below",
)
QUESTION_LENGTH = 14  # words; the longest Shapes question has 12
GRID_CELLS = 64  # the encoder's 8×8 grid


# --------------------------------------------------------------------------- questions


class QuestionError(ValueError):
    """A question the models cannot read: a word outside the Shapes question vocabulary, or too long."""


_EXAMPLES = "e.g. 'what colour is the circle', 'how many squares are there', 'is there a red triangle', 'where is the circle relative to the square'"


def encode_questions(questions: Sequence[str], vocabulary: Vocabulary | None = None) -> np.ndarray:
    """Word ids of questions, padded with 0 to ``QUESTION_LENGTH``: ``(n, QUESTION_LENGTH)`` int32.

    Raises :class:`QuestionError` naming the first word that is not in the question
    vocabulary (words are lower-cased; a final question mark is allowed).
    """
    vocabulary = vocabulary or shapes.question_vocabulary()
    if isinstance(questions, str):
        questions = [questions]
    rows = []
    for text in questions:
        if not isinstance(text, str):
            raise QuestionError(f"a question must be a string, got {type(text).__name__}")
        words = text.lower().replace("?", " ").split()
        if not words:
            raise QuestionError(f"the question is empty; ask something such as {_EXAMPLES}")
        for position, word in enumerate(words, start=1):
            if word not in vocabulary or vocabulary.index(word) < 4:
                raise QuestionError(
                    f"the word {word!r} (word {position} of {text!r}) is not in the Shapes question vocabulary; "
                    f"the models only know {', '.join(vocabulary.words[4:])} ({_EXAMPLES})"
                )
        if len(words) > QUESTION_LENGTH:
            raise QuestionError(f"the question {text!r} has {len(words)} words; the models read at most {QUESTION_LENGTH}")
        rows.append(vocabulary.encode(words, bounds=False))
    return pad_sequences(rows, QUESTION_LENGTH)


@dataclass(eq=False)
class VQAData:
    """Question–answer pairs over a set of images: pair ``m`` asks ``questions[m]`` about image
    ``image_index[m]``; ``answers`` are indices into :data:`ANSWERS`, ``kinds`` into :data:`KINDS`."""

    image_index: np.ndarray  # (m,) int
    questions: list[str]
    tokens: np.ndarray  # (m, QUESTION_LENGTH) int32
    answers: np.ndarray  # (m,) int32
    kinds: np.ndarray  # (m,) int32

    def __len__(self) -> int:
        return len(self.answers)

    def subset(self, index) -> VQAData:
        index = np.arange(len(self))[index]
        return VQAData(self.image_index[index], [self.questions[i] for i in index], self.tokens[index], self.answers[index], self.kinds[index])


def vqa_pairs(dataset: shapes.ShapesDataset, vocabulary: Vocabulary | None = None) -> VQAData:
    """Every question–answer pair :func:`shapes.questions` gives for every image of ``dataset``."""
    image_index, questions, answers, kinds = [], [], [], []
    for i, scene in enumerate(dataset.scenes):
        for qa in shapes.questions(scene):
            image_index.append(i)
            questions.append(qa.question)
            answers.append(ANSWERS.index(qa.answer))
            kinds.append(KINDS.index(qa.kind))
    tokens = encode_questions(questions, vocabulary)
    return VQAData(np.array(image_index, np.int64), questions, tokens, np.array(answers, np.int32), np.array(kinds, np.int32))


# --------------------------------------------------------------------------- layers


def add_coordinates(grid):
    """``(n, 8, 8, C)`` → ``(n, 64, C + 2)``: the cells in reading order, each with its centre's
    ``(x, y)`` in ``[−1, 1]`` appended (x to the right, y downwards)."""
    n, rows, cols, channels = ops.shape(grid)[0], grid.shape[1], grid.shape[2], grid.shape[3]
    centres = (np.arange(rows, dtype=np.float32) + 0.5) / rows * 2 - 1
    ys, xs = np.meshgrid(centres, (np.arange(cols, dtype=np.float32) + 0.5) / cols * 2 - 1, indexing="ij")
    grid = ops.convert_to_tensor(grid)
    coords = ops.cast(ops.convert_to_tensor(np.stack([xs.ravel(), ys.ravel()], -1)), grid.dtype)  # (64, 2), in the grid's dtype
    cells = ops.reshape(grid, (n, rows * cols, channels))
    return ops.concatenate([cells, ops.broadcast_to(coords[None], (n, rows * cols, 2))], axis=-1)


@keras.saving.register_keras_serializable(package="mmcourse")
class FiLM(keras.layers.Layer):
    """Feature-wise linear modulation: ``FiLM(F | q) = γ(q) ⊙ F + β(q)``, with
    ``γ(q) = W_γ q + b_γ`` and ``β(q) = W_β q + b_β`` (Perez et al., 2018).

    The conditioning vector ``q`` scales and shifts every channel of the feature map ``F``,
    the same at every position. ``b_γ`` starts at 1 and the rest at small values, so that a
    fresh layer passes ``F`` through almost unchanged.

    Args:
        channels: the number of channels of ``F``.

    Call: ``(features (batch, …, channels), condition (batch, d))`` → same shape as ``features``.
    """

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = check_positive_int(channels, "channels")

    def build(self, features_shape, condition_shape=None):
        if features_shape[-1] != self.channels:
            raise ValueError(f"FiLM({self.channels}) got features with {features_shape[-1]} channels")
        d = condition_shape[-1]
        self.W_gamma = self.add_weight(name="W_gamma", shape=(d, self.channels), initializer="glorot_uniform")
        self.b_gamma = self.add_weight(name="b_gamma", shape=(self.channels,), initializer="ones")
        self.W_beta = self.add_weight(name="W_beta", shape=(d, self.channels), initializer="glorot_uniform")
        self.b_beta = self.add_weight(name="b_beta", shape=(self.channels,), initializer="zeros")

    def call(self, features, condition):
        gamma = ops.matmul(condition, self.W_gamma) + self.b_gamma  # (batch, channels)
        beta = ops.matmul(condition, self.W_beta) + self.b_beta
        for _ in range(len(features.shape) - 2):  # broadcast over the positions
            gamma, beta = ops.expand_dims(gamma, 1), ops.expand_dims(beta, 1)
        return gamma * features + beta

    def compute_output_shape(self, features_shape, condition_shape=None):
        return features_shape

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="mmcourse")
class VQAModel(keras.Model):
    """Image grid + question → answer logits, with one of :data:`MODELS` as its fusion.

    ``call({"grid": (n, 8, 8, C), "question": (n, QUESTION_LENGTH)})`` gives logits ``(n,
    len(ANSWERS))``, float32 under any dtype policy (the answer layers are float32, so the
    loss is too under mixed precision); :meth:`attention_weights` gives the attention
    fusion's weights ``(n, heads, 64)`` over the grid cells. FiLM's batch normalisation is
    synchronized across replicas.

    Args:
        fusion: ``early``, ``late``, ``product``, ``film``, ``attention``, or a baseline:
            ``blind`` (question only) or ``image`` (image only).
        vocab_size: ``len(shapes.question_vocabulary())``.
        units: width of the question vector and the fused vector.
        heads: attention heads (``attention`` only).
    """

    def __init__(self, fusion: str = "attention", *, vocab_size: int | None = None, units: int = 64, embed_dim: int = 32,
                 heads: int = 2, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if fusion not in MODELS:
            raise ValueError(f"fusion must be one of {', '.join(MODELS)}; got {fusion!r}")
        vocab_size = len(shapes.question_vocabulary()) if vocab_size is None else vocab_size
        for name, value in (("vocab_size", vocab_size), ("units", units), ("embed_dim", embed_dim), ("heads", heads)):
            check_positive_int(value, name)
        if units % heads:
            raise ValueError(f"units ({units}) must be a multiple of heads ({heads})")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.fusion, self.vocab_size, self.units, self.embed_dim, self.heads, self.dropout_rate = (
            fusion, int(vocab_size), int(units), int(embed_dim), int(heads), float(dropout))
        n_answers = len(ANSWERS)
        # Every layer computes in the model's dtype policy (so a model trained under mixed precision
        # loads as it trained) except the answer logits, float32 so the loss is float32 too.
        policy = self.dtype_policy
        layers = keras.layers

        def dense(units, **kw):
            return layers.Dense(units, **{"dtype": policy, **kw})

        if fusion != "image":
            self.embedding = layers.Embedding(self.vocab_size, embed_dim, mask_zero=True, dtype=policy, name="word_embedding")
            self.reader = layers.GRU(units, dtype=policy, name="question_gru")
        if fusion in ("image", "early", "late", "product"):
            self.flatten = layers.Flatten(dtype=policy, name="flatten_grid")
            self.image_vector = dense(units, activation="relu", name="image_vector")  # v = ReLU(W vec(G))
        if fusion == "late":
            self.image_head = [dense(units, activation="relu", name="image_hidden"), dense(n_answers, dtype="float32", name="image_logits")]
            self.question_head = [dense(units, activation="relu", name="question_hidden"),
                                  dense(n_answers, dtype="float32", name="question_logits")]
        if fusion == "product":
            self.W_v = dense(units, activation="tanh", name="W_v")
            self.W_q = dense(units, activation="tanh", name="W_q")
        if fusion == "film":
            self.stem = layers.Conv2D(units, 1, activation="relu", dtype=policy, name="stem")
            self.convs = [layers.Conv2D(units, 1, dtype=policy, name=f"film_conv{k}") for k in (1, 2)]  # per cell; positions come in as coordinates
            self.norms = [layers.BatchNormalization(center=False, scale=False, synchronized=True, dtype=policy, name=f"film_norm{k}")
                          for k in (1, 2)]
            self.films = [FiLM(units, dtype=policy, name=f"film{k}") for k in (1, 2)]
            self.pool = layers.GlobalMaxPooling2D(dtype=policy, name="max_pool")
        if fusion == "attention":
            self.cell_projection = dense(units, activation="relu", name="cells")
            self.attend = MultiHeadAttention(heads, units // heads, dtype=policy, name="question_attends_grid")
        if fusion != "late":
            self.hidden = dense(units, activation="relu", name="fused")
            self.drop = layers.Dropout(dropout, dtype=policy)
            self.classifier = dense(n_answers, dtype="float32", name="answer_logits")

    def _image_vector(self, grid):
        cells = add_coordinates(grid)
        return self.image_vector(self.flatten(cells))

    def _question_vector(self, tokens):
        return self.reader(self.embedding(tokens))

    def forward(self, inputs, training=False):
        """``(logits, attention weights (n, heads, 64) or None)``."""
        grid, tokens = inputs["grid"], inputs["question"]
        weights = None
        f = self.fusion
        if f == "late":
            v, q = self._image_vector(grid), self._question_vector(tokens)
            image_logits = self.image_head[1](self.image_head[0](v))
            question_logits = self.question_head[1](self.question_head[0](q))
            return image_logits + question_logits, None
        if f == "blind":
            h = self._question_vector(tokens)
        elif f == "image":
            h = self._image_vector(grid)
        elif f == "early":
            h = ops.concatenate([self._image_vector(grid), self._question_vector(tokens)], axis=-1)
        elif f == "product":
            h = self.W_v(self._image_vector(grid)) * self.W_q(self._question_vector(tokens))
        elif f == "film":
            q = self._question_vector(tokens)
            cells = add_coordinates(grid)
            F = self.stem(ops.reshape(cells, (-1, grid.shape[1], grid.shape[2], cells.shape[-1])))
            for conv, norm, film in zip(self.convs, self.norms, self.films):
                F = F + ops.relu(film(norm(conv(F), training=training), q))  # residual block
            h = self.pool(F)
        else:  # attention
            q = self._question_vector(tokens)
            cells = add_coordinates(grid)
            V = self.cell_projection(cells)  # (n, 64, units)
            context, weights = self.attend(ops.expand_dims(q, 1), V)  # (n, 1, units), (n, heads, 1, 64)
            weights = weights[:, :, 0]
            where = ops.matmul(weights, cells[:, :, -2:])  # (n, heads, 2): the attended position p = Σ_j α_j (x_j, y_j)
            h = ops.concatenate([context[:, 0], ops.reshape(where, (-1, 2 * self.heads)), q], axis=-1)
        logits = self.classifier(self.drop(self.hidden(h), training=training))
        return logits, None if weights is None else ops.cast(weights, "float32")

    def call(self, inputs, training=False):
        return self.forward(inputs, training=training)[0]

    def attention_weights(self, inputs):
        """The attention fusion's weights over the 64 grid cells, ``(n, heads, 64)``."""
        if self.fusion != "attention":
            raise ValueError(f"only attention fusion has attention weights; this model's fusion is {self.fusion!r}")
        return self.forward(inputs)[1]

    def get_config(self):
        return {**super().get_config(), "fusion": self.fusion, "vocab_size": self.vocab_size, "units": self.units,
                "embed_dim": self.embed_dim, "heads": self.heads, "dropout": self.dropout_rate}


# --------------------------------------------------------------------------- training


def grid_features(encoder: keras.Model, images, *, batch_size: int = 256) -> np.ndarray:
    """The frozen encoder's grids of many images, ``(n, 8, 8, C)`` float32 (computed once, reused)."""
    return vision.encode(encoder, images, batch_size=batch_size, output="grid")


def _dataset(grids: np.ndarray, data: VQAData, *, batch_size: int, epochs: int = 1, seed: int | None = None):
    """``({"grid", "question"}, answer)`` batches: in order (``seed=None``), or for ``epochs`` passes
    each in its own order drawn from ``seed`` (:func:`mmcourse.data.pipeline.row_batches`)."""
    table, index = tf.constant(grids), tf.constant(data.image_index)
    tokens, answers = tf.constant(data.tokens), tf.constant(data.answers)

    def gather(step, pairs):
        question, answer = pipeline.take((tokens, answers), pairs)
        return {"grid": pipeline.take(table, pipeline.take(index, pairs)), "question": question}, answer

    return pipeline.batches(len(data), gather, batch_size=batch_size, epochs=epochs, seed=seed)


def _check_grids(grids, data: VQAData) -> np.ndarray:
    grids = np.asarray(grids, np.float32)
    if grids.ndim != 4 or grids.shape[1:3] != (8, 8):
        raise ValueError(f"grids must be the encoder's (n, 8, 8, C) feature grids (see grid_features), got shape {grids.shape}")
    if len(data) and data.image_index.max() >= len(grids):
        raise ValueError(f"the questions refer to image {data.image_index.max()} but there are only {len(grids)} grids: "
                         "pass the grids of the same images the pairs were made from")
    return grids


def train_vqa(grids, data: VQAData, *, fusion: str = "attention", epochs: int = 4, batch_size: int = 256,
              learning_rate: float = 3e-3, seed: int = 0, progress: bool = True, **model_args):
    """Build a :class:`VQAModel` and train it on ``data`` (questions about the images whose grids
    are ``grids``) with cross-entropy and Adam, the step size falling along a half cosine.

    ``seed`` decides the initial weights, the dropout masks and the order of the batches (the
    caller's random state is left alone). The model is built and compiled under
    :func:`mmcourse.device.strategy`: inside ``device.use(...)`` it trains with that block's
    precision and replicas; ``batch_size`` is the global batch. ``model_args`` go to
    :class:`VQAModel` (``units``, ``embed_dim``, ``heads``, ``dropout``).

    Returns ``(model, history, seconds)``.
    """
    grids = _check_grids(grids, data)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    with device.strategy().scope(), training.seeded(seed):
        model = VQAModel(fusion, **model_args)
        # Built here, not at the first step of fit: layers that make their weights in build() (FiLM,
        # attention) draw their initial values inside this seeded block.
        model({"grid": grids[:1], "question": data.tokens[:1]})
        steps = -(-len(data) // batch_size) * epochs
        training.compile(model, keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps)),
                         loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    callbacks = []
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks = [TqdmCallback(verbose=0, desc=f"train {fusion}")]
    start = time.perf_counter()
    history = model.fit(_dataset(grids, data, batch_size=batch_size, epochs=epochs, seed=seed), epochs=epochs,
                        steps_per_epoch=-(-len(data) // batch_size), verbose=0, shuffle=False, callbacks=callbacks)
    return model, history.history, time.perf_counter() - start


def predict(model: VQAModel, grids, data: VQAData, *, batch_size: int = 512) -> np.ndarray:
    """Answer probabilities ``(m, len(ANSWERS))`` for every pair of ``data``."""
    grids = _check_grids(grids, data)
    # Called eagerly, batch by batch: keras's predict() would trace a new graph for every model,
    # and TensorFlow warns about "retracing" when a notebook evaluates several models in a row.
    parts = [ops.convert_to_numpy(ops.softmax(model(x, training=False), axis=-1))
             for x, _ in _dataset(grids, data, batch_size=batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, len(ANSWERS)), np.float32)


def accuracy_by_kind(predicted, data: VQAData) -> dict[str, float]:
    """``{"accuracy": overall, "colour": …, …}``: the share of answers right, over all pairs and per question type."""
    predicted = np.asarray(predicted)
    if predicted.shape != (len(data),):
        raise ValueError(f"predicted must hold one answer index per pair, shape ({len(data)},); got {predicted.shape}")
    right = predicted == data.answers
    out = {"accuracy": float(right.mean())}
    for k, kind in enumerate(KINDS):
        chosen = data.kinds == k
        out[kind] = float(right[chosen].mean()) if chosen.any() else float("nan")
    return out


def evaluate(model: VQAModel, grids, data: VQAData) -> dict[str, float]:
    """Accuracy overall and per question type (see :func:`accuracy_by_kind`)."""
    return accuracy_by_kind(predict(model, grids, data).argmax(-1), data)


def majority_baseline(train: VQAData, test: VQAData) -> tuple[np.ndarray, dict[str, float]]:
    """The commonest training answer of each question type, given to every test question of that
    type. Returns ``(answer index per type, accuracies on test)``."""
    per_kind = np.array([np.bincount(train.answers[train.kinds == k], minlength=len(ANSWERS)).argmax() for k in range(len(KINDS))])
    return per_kind, accuracy_by_kind(per_kind[test.kinds], test)


def answer(encoder: keras.Model, model: VQAModel, image, question: str, vocabulary: Vocabulary | None = None) -> dict:
    """Answer one question about one image: ``{"answer", "probabilities" (dict), "attention" ((8, 8)
    mean over heads, or None)}``. Raises :class:`QuestionError` for a question the model cannot read."""
    tokens = encode_questions([question], vocabulary)
    grid = grid_features(encoder, vision.preprocess(image))
    inputs = {"grid": ops.convert_to_tensor(grid), "question": ops.convert_to_tensor(tokens)}
    logits, weights = model.forward(inputs)
    p = np.asarray(ops.convert_to_numpy(ops.softmax(logits, axis=-1)))[0]
    attention = None if weights is None else np.asarray(ops.convert_to_numpy(weights))[0].mean(0).reshape(8, 8)
    return {"answer": ANSWERS[int(p.argmax())], "probabilities": dict(zip(ANSWERS, p.tolist())), "attention": attention}


# --------------------------------------------------------------------------- files and the command line

TRAIN_SIZES = {"quick": (1_500, 2, 2_000, 2), "full": (8_000, 6, 6_000, 6)}  # (VQA images, epochs, encoder images, encoder epochs)
ENCODER_FILE, MODEL_FILE, VOCABULARY_FILE = "image_encoder.keras", "vqa.keras", "vocabulary.json"


def save(encoder: keras.Model, model: VQAModel, out, vocabulary: Vocabulary | None = None) -> Path:
    """Write ``image_encoder.keras``, ``vqa.keras`` (without optimizer state), ``vocabulary.json``
    and their SHA-256 sums (``SHA256``, checked by :func:`load`) into the folder ``out``."""
    out = artifacts.prepare_out(out)
    artifacts.save_model(encoder, out / ENCODER_FILE)
    artifacts.save_model(model, out / MODEL_FILE)
    (vocabulary or shapes.question_vocabulary()).save(out / VOCABULARY_FILE)
    artifacts.write_checksums(out, [ENCODER_FILE, MODEL_FILE, VOCABULARY_FILE])
    return out


def load(folder=None) -> tuple[keras.Model, VQAModel, Vocabulary]:
    """``(encoder, model, vocabulary)`` saved by :func:`save` (or ``mmcourse train vqa --out DIR``),
    the files checked against their SHA-256 sums first; ``folder=None``: the attention-fusion
    model shipped in ``data/vqa`` (the demo app's)."""
    folder = artifacts.shipped("vqa") if folder is None else Path(folder)
    for name in (ENCODER_FILE, MODEL_FILE, VOCABULARY_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"no {name} in {folder}: pass the folder that `mmcourse train vqa --out DIR` wrote")
    encoder = artifacts.load_model(folder / ENCODER_FILE)
    model = artifacts.load_model(folder / MODEL_FILE, custom_objects={"mmcourse>FiLM": FiLM})  # not the denoiser's FiLM, registered by the same name
    return encoder, model, Vocabulary.load(folder / VOCABULARY_FILE)


def train_command(out, *, profile: str | None = None, seed: int = 0, precision: str = "auto", cpu_replicas: int | None = None,
                  progress: bool = True, fusion: str = "attention") -> dict:
    """What ``mmcourse train vqa`` does: pre-train the image encoder, train one fusion model on
    Shapes questions, measure it on a freshly generated test split, and write the encoder, the
    model, the question vocabulary and ``metrics.json`` into ``out``.

    ``metrics.json`` holds the shared keys (``train_seconds`` is the encoder's pre-training
    plus the VQA model's training, the frozen encoder's grids of the training images included
    (as for the captioner); ``test_seed`` the seed of the test images) and
    ``accuracy``, one accuracy per question type, the majority baseline's, ``final_loss``.
    The arguments are checked and ``out`` prepared before anything trains.
    """
    if fusion not in MODELS:
        raise ValueError(f"fusion must be one of {', '.join(MODELS)}; got {fusion!r}")
    chosen, seed, out = training.start_command(out, profile=profile, seed=seed, precision=precision, cpu_replicas=cpu_replicas)
    n_images, epochs, n_encoder, encoder_epochs = TRAIN_SIZES[chosen.name]
    with device.use(precision, cpu_replicas) as run:
        encoder, encoder_history, encoder_seconds = pretrain_image_encoder(n_encoder, encoder_epochs, seed=seed, progress=progress)
        train = shapes.generate(n_images, seed=(seed, 1))
        test_seed = [seed, 2]
        test = shapes.generate(chosen.n_test, seed=tuple(test_seed))
        train_pairs, test_pairs = vqa_pairs(train), vqa_pairs(test)
        start = time.perf_counter()  # the frozen encoder's grids of the training images are part of training, as for the captioner
        train_grids = grid_features(encoder, train.images)
        grid_seconds = time.perf_counter() - start
        model, history, fusion_seconds = train_vqa(train_grids, train_pairs, fusion=fusion, epochs=epochs, seed=seed, progress=progress)
        fusion_seconds += grid_seconds
        test_grids = grid_features(encoder, test.images)
        scores = evaluate(model, test_grids, test_pairs)
        _, majority = majority_baseline(train_pairs, test_pairs)
        save(encoder, model, out)
    metrics = {"fusion": fusion, "train_images": n_images, "train_questions": len(train_pairs), "epochs": epochs,
               "encoder_images": n_encoder, "encoder_epochs": encoder_epochs, "test_images": len(test), "test_questions": len(test_pairs),
               **scores, "majority_baseline": majority, "encoder_seconds": encoder_seconds, "fusion_seconds": fusion_seconds,
               "encoder_final_loss": float(encoder_history["loss"][-1]), "final_loss": float(history["loss"][-1])}
    return artifacts.write_metrics(out, metrics, files=[ENCODER_FILE, MODEL_FILE, VOCABULARY_FILE], run=run, profile=chosen.name, seed=seed, test_seed=test_seed,
                                   train_seconds=encoder_seconds + fusion_seconds)
