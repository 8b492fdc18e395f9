"""Word embeddings by skip-gram with negative sampling (word2vec), in Keras.

Skip-gram (Mikolov et al., 2013) learns two vectors per word: a *target* vector
:math:`v_w`, used when the word is the centre of a window, and a *context* vector
:math:`u_w`, used when it is a neighbour. For a centre word *c*, one of its neighbours
*o* and *K* noise words :math:`k_1 … k_K` drawn from the unigram distribution raised to
the power 0.75, the loss of the pair is

.. math:: \\ell(c, o) = -\\log\\sigma(u_o^\\top v_c) - \\sum_{k=1}^{K} \\log\\sigma(-u_k^\\top v_c)

The pieces, each a small function so a notebook and a test can look at it alone:

* :func:`context_pairs` — every (centre, context) pair within a window, vectorised
  (optionally with word2vec's *dynamic window*: each centre draws its own window size
  uniformly from 1 … ``window``, so near neighbours count more often than far ones);
* :func:`keep_probabilities` — subsampling of frequent words, in the variant of the
  word2vec C code that gensim also uses: a word of relative frequency
  :math:`f = \\text{count}/\\text{total}` is kept with probability
  :math:`\\min\\bigl(1, (\\sqrt{f/t} + 1)\\, t/f\\bigr)` (the paper's formula, discard
  with :math:`1 - \\sqrt{t/f}`, is a little harsher);
* :func:`noise_distribution` — :math:`P_n(w) \\propto \\text{count}(w)^{0.75}`;
* :class:`SkipGram` — a Keras model holding the two embedding tables, whose ``call``
  returns :math:`\\ell` for each pair and whose ``compute_loss`` sums it over the batch
  (Keras's ``fit`` then takes the SGD steps, loss-scaled under mixed precision, on any
  number of replicas);
* :func:`train_skipgram` — the whole recipe (vocabulary, subsampling, pairs, negatives
  drawn per epoch in NumPy; batches served by ``tf.data``; SGD in Keras's ``fit`` with a
  learning rate decaying linearly, as word2vec does), returning
  :class:`TrainedVectors`: a :class:`~mmcourse.data.vectors.WordVectors` (nearest
  neighbours, similarity, analogies, word2vec-format files) with its training record.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmcourse.checks import check_positive_int, check_seed
from mmcourse._tf import tensorflow

tf = tensorflow()

import keras  # noqa: E402  (after TensorFlow is imported quietly)
from keras import ops  # noqa: E402

from mmcourse import artifacts, device  # noqa: E402
from mmcourse.data.text import Vocabulary, load_corpus  # noqa: E402
from mmcourse.data.vectors import UnknownWordError, WordVectors  # noqa: E402
from mmcourse.training import as_float32, seeded, start_command  # noqa: E402
from mmcourse.training import compile as compile_model  # noqa: E402

__all__ = [
    "SkipGramSettings",
    "SkipGram",
    "TrainedVectors",
    "UnknownWordError",
    "WordVectors",
    "build_vocabulary",
    "encode_sentences",
    "context_pairs",
    "keep_probabilities",
    "subsample",
    "noise_distribution",
    "draw_negatives",
    "skipgram_loss_numpy",
    "epoch_pairs",
    "pair_dataset",
    "learning_rate_schedule",
    "train_skipgram",
    "train_command",
    "save",
    "load",
    "CORPUS_DEFAULTS",
]


# --------------------------------------------------------------------------- data


def build_vocabulary(sentences: Sequence[Sequence[str]], min_count: int = 5) -> tuple[Vocabulary, np.ndarray]:
    """The words seen at least ``min_count`` times (most frequent first) and their counts.

    The vocabulary is a :class:`~mmcourse.data.text.Vocabulary`, so ids 0–3 are its special
    tokens; they never occur in running text and get count 0 (so they are never sampled).
    """
    check_positive_int(min_count, "min_count")
    vocab = Vocabulary.build(sentences, min_count=min_count)
    if len(vocab) <= len(Vocabulary().words):
        raise ValueError(f"no word occurs {min_count} times or more; lower min_count or use a larger corpus")
    counts = np.zeros(len(vocab), np.int64)
    for sentence in sentences:
        for word in sentence:
            i = vocab.index(word)
            if i != vocab.unk_id:
                counts[i] += 1
    return vocab, counts


def encode_sentences(sentences: Sequence[Sequence[str]], vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """All sentences as one id array, words outside the vocabulary dropped (as word2vec does).

    Returns ``(ids, sentence)``: the ids, and for each the number of its sentence (so that
    windows never cross from one sentence into the next).
    """
    ids, owner = [], []
    for n, sentence in enumerate(sentences):
        encoded = [i for i in (vocab.index(w) for w in sentence) if i != vocab.unk_id]
        ids.extend(encoded)
        owner.extend([n] * len(encoded))
    return np.asarray(ids, np.int32), np.asarray(owner, np.int32)


def context_pairs(
    ids: np.ndarray, sentence: np.ndarray | None = None, window: int = 5, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every (centre, context) pair with the context at most ``window`` positions away.

    Args:
        ids: word ids in running order, shape ``(n,)``.
        sentence: the sentence number of each id (pairs never cross sentences); ``None``: one sentence.
        window: the largest distance between centre and context.
        rng: if given, word2vec's dynamic window: each centre position draws its own
            window ``b`` uniformly from ``1 … window`` and pairs only with contexts at most
            ``b`` away. If ``None``, every pair within ``window`` is produced.

    Returns:
        ``(centres, contexts)``, two int32 arrays of equal length, grouped by offset
        (−window … −1, 1 … window), not by position.
    """
    check_positive_int(window, "window")
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D (one id per word), got shape {ids.shape}")
    n = len(ids)
    sentence = np.zeros(n, np.int32) if sentence is None else np.asarray(sentence)
    if sentence.shape != ids.shape:
        raise ValueError(f"sentence must have one entry per id: {sentence.shape} vs {ids.shape}")
    reach = np.full(n, window) if rng is None else rng.integers(1, window + 1, size=n)
    centres, contexts = [], []
    for offset in [*range(-window, 0), *range(1, window + 1)]:
        lo, hi = max(0, -offset), min(n, n - offset)  # centre positions whose neighbour exists
        if hi <= lo:
            continue
        position = np.arange(lo, hi)
        ok = (sentence[position] == sentence[position + offset]) & (reach[position] >= abs(offset))
        centres.append(ids[position[ok]])
        contexts.append(ids[position[ok] + offset])
    if not centres:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    return np.concatenate(centres).astype(np.int32), np.concatenate(contexts).astype(np.int32)


def keep_probabilities(counts: np.ndarray, sample: float = 1e-3) -> np.ndarray:
    """Probability of keeping each occurrence of a word when subsampling frequent words.

    The word2vec C code's (and gensim's) formula: with :math:`f = \\text{count}/\\text{total}`,
    :math:`P_\\text{keep} = \\min\\bigl(1, (\\sqrt{f/t} + 1)\\, t/f\\bigr)` where ``t = sample``.
    ``sample=0`` keeps every word. Words with count 0 get probability 0.
    """
    counts = np.asarray(counts, np.float64)
    if sample < 0:
        raise ValueError(f"sample must be non-negative, got {sample}")
    if sample == 0:
        return (counts > 0).astype(np.float64)
    f = counts / counts.sum()
    t = sample
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (np.sqrt(f / t) + 1) * t / f
    return np.where(counts > 0, np.minimum(keep, 1.0), 0.0)


def subsample(ids: np.ndarray, sentence: np.ndarray, keep: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Drop each occurrence of word ``w`` with probability ``1 − keep[w]``."""
    kept = rng.random(len(ids)) < keep[ids]
    return ids[kept], sentence[kept]


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """:math:`P_n(w) = \\text{count}(w)^{0.75} / \\sum_{w'} \\text{count}(w')^{0.75}`."""
    weights = np.asarray(counts, np.float64) ** power
    total = weights.sum()
    if total <= 0:
        raise ValueError("all counts are zero: there is nothing to sample noise words from")
    return weights / total


def draw_negatives(noise: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Noise word ids drawn from ``noise`` (with replacement), as an int32 array of ``shape``."""
    cumulative = np.cumsum(noise)
    cumulative /= cumulative[-1]
    return np.searchsorted(cumulative, rng.random(shape), side="right").astype(np.int32)


def skipgram_loss_numpy(v: np.ndarray, u: np.ndarray, centre, context, negatives) -> np.ndarray:
    """The loss of each pair, straight from the formula, in NumPy (a reference for the tests).

    ``v`` and ``u`` are the target and context tables; ``negatives`` has shape ``(pairs, K)``.
    """

    def log_sigmoid(x):
        return -np.logaddexp(0.0, -x)

    v_c = v[np.asarray(centre)]
    u_o = u[np.asarray(context)]
    u_k = u[np.asarray(negatives)]
    positive = np.sum(u_o * v_c, axis=-1)
    negative = np.einsum("pkd,pd->pk", u_k, v_c)
    return -log_sigmoid(positive) - np.sum(log_sigmoid(-negative), axis=-1)


# --------------------------------------------------------------------------- model


@keras.saving.register_keras_serializable(package="mmcourse")
class SkipGram(keras.Model):
    """Skip-gram with negative sampling: two embedding tables and the loss of each pair.

    Args:
        vocab_size: number of words (rows of each table).
        dim: length of each vector.
        seed: seed of the initial target vectors (``None``: Keras's global random state).

    Weights: ``target`` (:math:`v`, the word vectors one keeps; uniform in
    ``±1/dim`` as in gensim, twice the word2vec C code's ±0.5/dim) and ``context`` (:math:`u`;
    zeros at the start).

    Input: a tuple ``(centre, context, negatives)`` of int ids with shapes ``(batch,)``,
    ``(batch,)`` and ``(batch, K)``.

    Output: the loss of each pair, shape ``(batch,)``, in float32 (the dot products run in
    the compute dtype, float16 under mixed precision; the loss is taken in float32):
    :math:`-\\log\\sigma(u_o^\\top v_c) - \\sum_k \\log\\sigma(-u_k^\\top v_c)`.

    Training goes through Keras's ``fit`` (compile with :func:`mmcourse.training.compile`);
    :meth:`compute_loss` gives Keras the loss to differentiate: the **sum** over the batch
    (plain SGD on the summed loss reproduces word2vec's one-pair-at-a-time updates, batched).
    The history's ``loss`` is the mean loss per pair.
    """

    def __init__(self, vocab_size: int, dim: int = 100, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        check_positive_int(vocab_size, "vocab_size", minimum=2)
        check_positive_int(dim, "dim")
        self.vocab_size = int(vocab_size)
        self.dim = int(dim)
        self.seed = seed
        self.pair_loss = keras.metrics.Mean(name="loss")  # mean loss per pair (what the history shows)

    def build(self, input_shape=None):
        # The tables' shapes depend on the vocabulary and dim only, not on the input.
        self.target = self.add_weight(
            shape=(self.vocab_size, self.dim),
            initializer=keras.initializers.RandomUniform(-1.0 / self.dim, 1.0 / self.dim, seed=self.seed),
            name="target",
        )
        self.context = self.add_weight(shape=(self.vocab_size, self.dim), initializer="zeros", name="context")
        self.built = True

    def call(self, inputs):
        # Indices as int32: older Keras (3.3) turns numpy inputs into float tensors.
        centre, context, negatives = (ops.cast(x, "int32") for x in inputs)
        v_c = ops.take(self.target, centre, axis=0)  # (batch, dim)
        u_o = ops.take(self.context, context, axis=0)  # (batch, dim)
        u_k = ops.take(self.context, negatives, axis=0)  # (batch, K, dim)
        positive = as_float32(ops.sum(u_o * v_c, axis=-1))  # u_o · v_c
        negative = as_float32(ops.einsum("bkd,bd->bk", u_k, v_c))  # u_k · v_c
        # −log σ(x) = softplus(−x)
        return ops.softplus(-positive) + ops.sum(ops.softplus(negative), axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The summed loss of this replica's pairs, NOT divided by the number of replicas.

        Keras sums gradients across replicas. For a mean loss each replica returns its mean
        divided by the number of replicas (:func:`mmcourse.training.replica_share`) so that the
        sum is the gradient of the global mean; for a summed loss the sum of the replicas'
        gradients of their own sums already *is* the gradient of the global batch's sum, so
        dividing would shrink every step by the number of replicas
        (``tests/test_embeddings.py`` shows both).
        """
        losses = as_float32(y_pred)
        self.pair_loss.update_state(losses)
        return ops.sum(losses)

    @property
    def metrics(self):
        # Only the loss per pair: Keras's own tracker of the returned (summed) loss is left
        # out, so the history's "loss" means the same as word2vec's and the paper's.
        return [self.pair_loss]

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, dim=self.dim, seed=self.seed)
        return config


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class SkipGramSettings:
    """The settings of one training run (the same names as gensim's ``Word2Vec`` where they exist)."""

    dim: int = 100  # vector length (gensim: vector_size)
    window: int = 5  # largest centre–context distance (dynamic window, as word2vec)
    negative: int = 5  # noise words per pair, K
    min_count: int = 5  # rarer words are dropped
    sample: float = 1e-3  # subsampling threshold t
    epochs: int = 5
    learning_rate: float = 0.025  # start of the linear decay (gensim: alpha)
    min_learning_rate: float = 1e-4  # end of the linear decay (gensim: min_alpha)
    batch_size: int = 1024  # pairs per SGD step (global: split across replicas)
    seed: int = 0


class TrainedVectors(WordVectors):
    """Word vectors from :func:`train_skipgram`, with how they were made.

    Attributes: ``model`` (the :class:`SkipGram`), ``vocabulary``, ``counts``, ``settings``,
    ``losses`` (mean loss per pair in each epoch, from Keras's history; NaN for an epoch
    that drew no pairs, which only a tiny corpus can do), ``seconds``
    (training wall time), ``words_per_second`` (corpus words processed per second, counting
    every token of every epoch, as gensim does), ``steps`` (SGD steps taken).
    """

    def __init__(self, words, matrix, *, model, vocabulary, counts, settings, losses, seconds, corpus_words, steps=None):
        super().__init__(words, matrix)
        self.model = model
        self.vocabulary = vocabulary
        self.counts = counts
        self.settings = settings
        self.losses = list(losses)
        self.seconds = float(seconds)
        self.steps = steps
        self.words_per_second = corpus_words * settings.epochs / max(seconds, 1e-9)


#: SGD steps per call of Keras's compiled training function: one trip through Python per 32
#: steps (a step on Lee takes a few milliseconds on a CPU, far less on a GPU, so Python's
#: share per step matters). Keras then calls callbacks' batch hooks once per 32 steps.
STEPS_PER_EXECUTION = 32


def learning_rate_schedule(settings: SkipGramSettings, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """word2vec's learning rate: linear from ``learning_rate`` to ``min_learning_rate`` over
    ``total_steps`` SGD steps, then constant (a ``PolynomialDecay`` of power 1)."""
    return keras.optimizers.schedules.PolynomialDecay(
        settings.learning_rate, decay_steps=max(1, int(total_steps)), end_learning_rate=settings.min_learning_rate, power=1.0
    )


def epoch_pairs(ids, owner, keep, noise, settings: SkipGramSettings, rng: np.random.Generator):
    """One epoch of training data, drawn as word2vec draws it: subsampling, dynamic windows,
    a shuffle and the noise words. Returns ``(centres, contexts, negatives)``."""
    sub_ids, sub_owner = subsample(ids, owner, keep, rng)
    centres, contexts = context_pairs(sub_ids, sub_owner, settings.window, rng)
    order = rng.permutation(len(centres))
    centres, contexts = centres[order], contexts[order]
    negatives = draw_negatives(noise, (len(centres), settings.negative), rng)
    return centres, contexts, negatives


def pair_dataset(centres, contexts, negatives, batch_size: int) -> tf.data.Dataset:
    """One epoch's pairs as a ``tf.data`` pipeline of batches of ``batch_size`` pairs
    (the last one shorter), in the order given.

    Elements are ``((centre, context, negatives),)``: Keras reads them as inputs with no
    targets. The dataset's length is known, so Keras's ``fit`` runs exactly its batches
    (Keras caps later epochs of a dataset of unknown length at the first epoch's number of
    batches, which would cut word2vec's epochs, whose lengths vary).
    """
    data = tf.data.Dataset.from_tensor_slices(((centres, contexts, negatives),))
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


class _EpochEnd(keras.callbacks.Callback):
    """At the end of each epoch (not each step: no host sync per batch): move the progress
    bar by the epoch's words, show the loss and learning rate, and stop a diverged run."""

    def __init__(self, bar, words_per_epoch: int, settings: SkipGramSettings):
        super().__init__()
        self.bar, self.words, self.settings = bar, words_per_epoch, settings

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get("loss", float("nan")))
        lr = float(ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.bar.update(self.words)
        self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.4f}")
        if not math.isfinite(loss):
            s = self.settings
            raise FloatingPointError(
                f"training diverged in epoch {epoch + 1} (the loss is {loss}); lower learning_rate "
                f"(now {s.learning_rate}) or batch_size (now {s.batch_size}) — with a small vocabulary each batch "
                "sums many updates of the same word — or subsample frequent words more (sample=1e-3)"
            )


def train_skipgram(
    sentences: Sequence[Sequence[str]],
    settings: SkipGramSettings | None = None,
    *,
    progress: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    **overrides,
) -> TrainedVectors:
    """Train skip-gram with negative sampling on tokenised sentences.

    Each epoch draws fresh subsampling, dynamic windows and noise words and shuffles the
    pairs (in NumPy, from a generator seeded by ``settings.seed``: :func:`epoch_pairs`);
    Keras's ``fit`` (one call per epoch, the compiled step traced once) then takes SGD
    steps of ``batch_size`` pairs from a ``tf.data`` pipeline (:func:`pair_dataset`), with no
    Python and no host sync per step. The learning rate falls
    linearly from ``learning_rate`` to ``min_learning_rate`` over the whole run, as in
    word2vec (:func:`learning_rate_schedule`; the number of steps is estimated from one
    extra draw of the pairs).

    The model is built and compiled in ``mmcourse.device.strategy().scope()``, so inside
    ``with mmcourse.device.use(precision, cpu_replicas):`` it trains under that precision and
    on those replicas (``batch_size`` is the global batch). The caller's random state
    (Python, NumPy, Keras) is left as it was.

    Args:
        sentences: lists of words (e.g. ``mmcourse.data.text.load_corpus("lee")``).
        settings: a :class:`SkipGramSettings`; keyword ``overrides`` replace its fields
            (``train_skipgram(corpus, epochs=20, dim=50)``).
        progress: show a tqdm progress bar (words processed, updated once per epoch) and the loss.
        callbacks: more Keras callbacks for ``fit`` (e.g. ``keras.callbacks.TensorBoard``);
            ``fit`` is called once per epoch, with ``initial_epoch`` set, so they see every epoch.

    Raises:
        FloatingPointError: the loss became infinite or NaN (it says what to change).
    """
    from dataclasses import replace

    settings = replace(settings or SkipGramSettings(), **overrides)
    for name in ("dim", "window", "negative", "epochs", "batch_size", "min_count"):
        check_positive_int(getattr(settings, name), name)
    seed = check_seed(settings.seed)
    vocab, counts = build_vocabulary(sentences, settings.min_count)
    ids, owner = encode_sentences(sentences, vocab)
    keep = keep_probabilities(counts, settings.sample)
    noise = noise_distribution(counts)
    rng = np.random.default_rng(seed)

    # Total steps, for the linear decay: estimated from the expected pairs per epoch.
    expected_pairs = _expected_pairs(ids, owner, keep, settings.window, rng=np.random.default_rng(seed + 1))
    if expected_pairs == 0:
        raise ValueError("the corpus gives no (centre, context) pairs: it needs sentences of two words or more")
    total_steps = settings.epochs * math.ceil(expected_pairs / settings.batch_size)

    with device.strategy().scope(), seeded(seed):
        model = SkipGram(len(vocab), settings.dim, seed=seed)
        model.build()
        compile_model(model, keras.optimizers.SGD(learning_rate=learning_rate_schedule(settings, total_steps)),
                      steps_per_execution=STEPS_PER_EXECUTION)

    from tqdm.auto import tqdm

    corpus_words = sum(len(s) for s in sentences)
    bar = tqdm(total=corpus_words * settings.epochs, unit="word", unit_scale=True, disable=not progress, desc="skip-gram")
    callbacks = [*callbacks, _EpochEnd(bar, corpus_words, settings)]
    losses = []
    start = time.perf_counter()
    try:
        for epoch in range(settings.epochs):
            centres, contexts, negatives = epoch_pairs(ids, owner, keep, noise, settings, rng)
            if len(centres) == 0:  # a tiny corpus can lose every pair to subsampling
                losses.append(float("nan"))
                bar.update(corpus_words)
                continue
            data = pair_dataset(centres, contexts, negatives, settings.batch_size)
            # One fit per epoch: each epoch has its own length (see pair_dataset).
            history = model.fit(data, initial_epoch=epoch, epochs=epoch + 1, verbose=0, shuffle=False,
                                callbacks=callbacks)
            losses.extend(history.history["loss"])
    finally:
        bar.close()
    seconds = time.perf_counter() - start

    words = vocab.words[len(Vocabulary().words) :]
    matrix = ops.convert_to_numpy(model.target)[len(vocab.words) - len(words) :]
    return TrainedVectors(
        words,
        matrix,
        model=model,
        vocabulary=vocab,
        counts=counts,
        settings=settings,
        losses=losses,
        seconds=seconds,
        corpus_words=corpus_words,
        steps=int(ops.convert_to_numpy(model.optimizer.iterations)),
    )


def _expected_pairs(ids, owner, keep, window, rng) -> int:
    sub_ids, sub_owner = subsample(ids, owner, keep, rng)
    return len(context_pairs(sub_ids, sub_owner, window, rng)[0])


# --------------------------------------------------------------------------- command line

# Settings per corpus for `mmcourse train embeddings`; --epochs/--dim/--seed override them.
CORPUS_DEFAULTS = {
    "shapes": SkipGramSettings(dim=16, window=3, min_count=1, sample=1e-3, epochs=5, batch_size=512),
    "lee": SkipGramSettings(dim=100, window=5, min_count=5, sample=1e-3, epochs=50),
}

#: Epochs in the quick profile (when ``epochs`` is not given): Lee trains 5 epochs instead of 50.
QUICK_EPOCHS = {"shapes": 5, "lee": 5}

VECTORS_FILE = "vectors.txt"


def save(vectors: WordVectors, out: str | Path) -> Path:
    """Write ``out/vectors.txt`` in word2vec text format (gensim's
    ``KeyedVectors.load_word2vec_format`` reads it); return its path."""
    return vectors.save_word2vec_format(Path(out) / VECTORS_FILE)


def load(folder: str | Path | None = None) -> WordVectors:
    """The word vectors a :func:`train_command` run wrote into ``folder``.

    No word vectors ship with the course (training them on Lee takes seconds), so ``folder``
    is needed; ``None`` says how to make them.
    """
    if folder is None:
        raise ValueError("no word vectors ship with the course: train them with "
                         "`mmcourse train embeddings --corpus lee --out DIR`, then load(DIR)")
    path = Path(folder) / VECTORS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; train word vectors with `mmcourse train embeddings --corpus lee --out {folder}`")
    return WordVectors.load_word2vec_format(path)


def train_command(
    out: str | Path,
    *,
    corpus: str,
    profile: str | None = None,
    seed: int = 0,
    precision: str = "auto",
    cpu_replicas: int | None = None,
    progress: bool = True,
    epochs: int | None = None,
    dim: int | None = None,
) -> dict:
    """What ``mmcourse train embeddings`` does: train, write ``vectors.txt`` and ``metrics.json``.

    The settings are ``CORPUS_DEFAULTS[corpus]`` with ``seed``, ``epochs`` and ``dim``
    replacing theirs. The ``quick`` profile only shortens training: without ``epochs``, Lee
    trains 5 epochs instead of 50 (:data:`QUICK_EPOCHS`); the ``full`` profile uses the
    defaults. ``vectors.txt`` is in word2vec text format (:func:`save`, :func:`load`).
    ``metrics.json`` (written by :func:`mmcourse.artifacts.write_metrics`) holds the shared
    keys (``train_seconds``: the wall time of ``fit``), then ``corpus``, ``words``,
    ``settings``, ``words_per_second``, ``loss_per_epoch`` and, for ``lee``, the WordSim-353
    and SimLex-999 Spearman correlations and the analogy accuracy (see
    :mod:`mmcourse.wordsim`). Arguments are checked and ``out`` is created before any
    training. Returns the metrics.
    """
    from dataclasses import replace

    if corpus not in CORPUS_DEFAULTS:
        raise ValueError(f"unknown corpus {corpus!r}; choose one of: {', '.join(CORPUS_DEFAULTS)}")
    changes = {} if dim is None else {"dim": check_positive_int(dim, "dim")}
    if epochs is not None:
        check_positive_int(epochs, "epochs")
    chosen, seed, out = start_command(out, profile=profile, seed=seed, precision=precision, cpu_replicas=cpu_replicas)
    profile = chosen.name
    if epochs is None:
        epochs = QUICK_EPOCHS[corpus] if profile == "quick" else CORPUS_DEFAULTS[corpus].epochs
    changes.update(epochs=int(epochs), seed=seed)
    settings = replace(CORPUS_DEFAULTS[corpus], **changes)

    sentences = load_corpus(corpus, seed=seed) if corpus == "shapes" else load_corpus(corpus)
    with device.use(precision, cpu_replicas) as run:
        vectors = train_skipgram(sentences, settings, progress=progress)
    save(vectors, out)
    metrics: dict = {
        "corpus": corpus,
        "words": len(vectors),
        "settings": asdict(settings),
        "words_per_second": vectors.words_per_second,
        "loss_per_epoch": vectors.losses,
    }
    if corpus == "lee":
        from mmcourse.wordsim import evaluate_all

        metrics.update(evaluate_all(vectors))
    return artifacts.write_metrics(out, metrics, files=[VECTORS_FILE], run=run, profile=profile, seed=seed, test_seed=None, train_seconds=vectors.seconds)
