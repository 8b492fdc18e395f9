"""One small vision-language model (VLM) that captions and answers: a decoder-only Transformer
that reads the image as a prefix of tokens (as LLaVA and PaliGemma do), trained on several
tasks at once (multitask learning).

Every example is one sequence, and the prompt says which task it is::

    [64 image tokens]  caption:                                        →  a small red circle <end>
    [64 image tokens]  question: what colour is the circle answer:     →  red <end>

**Image tokens** are the Transformer captioner's: the frozen pre-trained encoder's 8×8 grid,
each cell with its (x, y) (:func:`~mmcourse.models.captioning.grid_cells`), a linear map to
``d_model``, a learned position per cell and a LayerNorm; then (``fixed_positions``) a fixed
2-D sinusoidal code of the cell's column c and row r is added,
``PE₂(r, c) = [PE(c), PE(r)]`` (each half ``d_model / 2`` wide, :func:`~mmcourse.layers.transformer.sinusoidal_positions_2d`),
so that where a cell lies stays as loud as what it shows. **Words** are embedded (× √d) with a
learned position each. ``layers`` pre-LayerNorm blocks run **causal** self-attention over the
whole sequence: a word sees every image token and the words before it. With
``attended_positions`` (off by default) each block also tells every word *where* each of its heads looked in
the image, ``p_h = Σ_j α_hj (x_j, y_j)`` over the cells (the GRU captioner's attended (x, y)),
added to the word's stream through a linear map.

**Loss**: teacher forcing, cross-entropy on the output tokens only (the prompt and the padding
are not scored), averaged over the output tokens of the global batch
(:class:`~mmcourse.models.captioning.CaptionLoss`).

**Training shares the image.** The image comes first and attention is causal, so the image
tokens' keys and values in every block do not depend on the text. A training row is one
image with one caption and ``k`` questions; the image runs through the blocks once, and each
of its ``k + 1`` texts reads those keys and values — the key–value cache of decoding
(:meth:`mmcourse.layers.transformer.TransformerBlock.step`), used in training: the same
numbers as running every ``[image, text]`` sequence whole, for ``k + 1`` times less work on
the image. :func:`generate` decodes greedily with the same cache.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from mmcourse import artifacts, device
from mmcourse import training as training_lib
from mmcourse._tf import tensorflow
from mmcourse.checks import check_positive_int, check_seed
from mmcourse.data import pipeline, shapes
from mmcourse.data.text import Vocabulary
from mmcourse.layers.transformer import PositionalEmbedding, TransformerBlock, sinusoidal_positions_2d
from mmcourse.models import vision
from mmcourse.models.captioning import GRID_POSITIONS, CaptionLoss, grid_cells
from mmcourse.models.vqa import ANSWERS, KINDS, QuestionError, accuracy_by_kind, vqa_pairs

tf = tensorflow()
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = [
    "TASK_WORDS",
    "TEXT_LENGTH",
    "vocabulary",
    "caption_prompt",
    "question_prompt",
    "encode_example",
    "decode_example",
    "task_tables",
    "TASKS",
    "task_batches",
    "VLM",
    "train_vlm",
    "generate",
    "generate_with_attention",
    "answer_questions",
    "caption_images",
    "evaluate",
    "save",
    "load",
    "train_command",
    "ask_files",
]

TASK_WORDS = ("caption:", "question:", "answer:")
#: Tokens of the longest text: ``question:`` + 12 words + ``answer:`` + the answer + ``<end>``
#: (a caption: ``caption:`` + at most 13 words + ``<end>``). The model reads one fewer.
TEXT_LENGTH = 16
QUESTION_WORDS = TEXT_LENGTH - 4  # the most words a question may have
ANSWER_TOKENS = 2  # an answer is one word, then <end>: decoding a question's answer stops after two tokens
_EXAMPLES = "e.g. 'what colour is the circle', 'how many squares are there', 'where is the circle relative to the square'"


# --------------------------------------------------------------------------- texts


def vocabulary() -> Vocabulary:
    """The VLM's words, in a fixed order: ``<pad> <start> <end> <unk>``, the task words
    ``caption: question: answer:``, the caption grammar's words, then the questions' and the
    answers' words not already there."""
    return Vocabulary([*TASK_WORDS, *shapes.vocabulary_words(), *shapes.question_vocabulary().words[4:], *ANSWERS])


def caption_prompt() -> str:
    """The prompt that asks for a caption."""
    return "caption:"


def question_prompt(question: str) -> str:
    """The prompt that asks ``question``: ``question: … answer:`` (lower case, a final ``?`` dropped)."""
    return f"question: {' '.join(question.lower().replace('?', ' ').split())} answer:"


def _prompt_ids(vocab: Vocabulary, prompt: str) -> list[int]:
    """Ids of a prompt (``caption:`` and any words that begin the caption, or ``question: … answer:``);
    :class:`~mmcourse.models.vqa.QuestionError` naming a word the model does not know."""
    words = prompt.split()
    if not words or words[0] not in TASK_WORDS[:2]:
        raise QuestionError(f"a prompt starts with 'caption:' or 'question:', got {prompt!r}")
    said = words[1:-1] if words[0] == "question:" and words[-1] == "answer:" else words[1:]
    if words[0] == "question:" and not said:
        raise QuestionError(f"the question is empty; ask something such as {_EXAMPLES}")
    for word in said:
        if word not in vocab or vocab.index(word) < 4 or word in TASK_WORDS:
            raise QuestionError(f"the word {word!r} in {' '.join(said)!r} is not in the model's vocabulary; "
                                f"it knows the Shapes questions' words ({_EXAMPLES})")
    if words[0] == "question:" and len(said) > QUESTION_WORDS:
        raise QuestionError(f"the question {' '.join(said)!r} has {len(said)} words; the model reads at most {QUESTION_WORDS}")
    if len(words) >= TEXT_LENGTH:
        raise QuestionError(f"the prompt {prompt!r} has {len(words)} words; the model reads at most {TEXT_LENGTH - 1}")
    return [vocab.index(w) for w in words]


def encode_example(vocab: Vocabulary, prompt: str, output: str, *, length: int = TEXT_LENGTH - 1) -> tuple[np.ndarray, np.ndarray]:
    """One example for teacher forcing: the sequence ``prompt output <end>`` as model inputs
    (all but its last token) and targets (all but its first), each ``(length,)`` int32, padded
    with 0. A target is 0 where it is not scored: every position that predicts a prompt word,
    and the padding. The first output word is predicted at the prompt's last word."""
    sequence = [vocab.index(w) for w in prompt.split()] + [vocab.index(w) for w in output.split()] + [vocab.end_id]
    if len(sequence) - 1 > length:
        raise ValueError(f"{prompt!r} + {output!r} is {len(sequence)} tokens; the model reads at most {length + 1}")
    inputs, targets = np.zeros(length, np.int32), np.zeros(length, np.int32)
    inputs[: len(sequence) - 1] = sequence[:-1]
    targets[: len(sequence) - 1] = sequence[1:]
    targets[: len(prompt.split()) - 1] = 0  # prompt words are read, not predicted
    return inputs, targets


def decode_example(vocab: Vocabulary, inputs, targets) -> tuple[str, str]:
    """``(prompt, output)`` back from :func:`encode_example`'s arrays (the output without ``<end>``)."""
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    first = int(np.argmax(targets != 0))  # the position that predicts the first output word
    output = vocab.decode(targets[first:])
    return " ".join(vocab.word(i) for i in inputs[: first + 1]), output


def task_tables(dataset: shapes.ShapesDataset, vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Every training text of ``dataset``, per image: ``caption_inputs``/``caption_targets``
    ``(n, 5, L)`` (the five reference captions), ``question_inputs``/``question_targets``
    ``(n, Q, L)`` (every question :func:`shapes.questions` asks of it, padded with empty rows)
    ``question_counts (n,)`` and ``question_where (n, Q)`` (which are "where is the A relative to
    the B" questions); L = ``TEXT_LENGTH − 1``."""
    n, length = len(dataset), TEXT_LENGTH - 1
    per_image = [shapes.questions(scene) for scene in dataset.scenes]
    most = max(len(q) for q in per_image)
    refs = len(dataset.captions[0])
    tables = {"caption_inputs": np.zeros((n, refs, length), np.int32), "caption_targets": np.zeros((n, refs, length), np.int32),
              "question_inputs": np.zeros((n, most, length), np.int32), "question_targets": np.zeros((n, most, length), np.int32),
              "question_counts": np.array([len(q) for q in per_image], np.int32),
              "question_where": np.zeros((n, most), bool)}
    cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def encode(prompt, output):  # the same texts recur thousands of times
        if (prompt, output) not in cache:
            cache[prompt, output] = encode_example(vocab, prompt, output)
        return cache[prompt, output]

    for i in range(n):
        for r, caption in enumerate(dataset.captions[i]):
            tables["caption_inputs"][i, r], tables["caption_targets"][i, r] = encode(caption_prompt(), caption)
        for q, qa in enumerate(per_image[i]):
            tables["question_inputs"][i, q], tables["question_targets"][i, q] = encode(question_prompt(qa.question), qa.answer)
            tables["question_where"][i, q] = "relative to" in qa.question
    return tables


TASKS = ("both", "captions", "questions")


def task_batches(images, tables: dict, *, questions: int = 8, batch_size: int = 32, seed: int = 0, epochs: int = 1,
                 where_weight: float = 1.0, tasks: str = "both"):
    """A ``tf.data`` stream of ``((images, texts), targets)`` batches for ``epochs`` passes over
    the images (each pass in its own order, :func:`mmcourse.data.pipeline.batches`); a row is
    one image (or its precomputed grid) with ``1 + questions`` texts, ``(batch, 1 + questions, L)``:
    one of its reference captions, then ``questions`` of its questions drawn with replacement,
    all drawn afresh at every step from ``(seed, step)`` (so one device and several replicas
    train on the same batches). A "where is the A relative to the B" question is drawn
    ``where_weight`` times as often as any other (1: uniformly). ``tasks="captions"`` or
    ``"questions"`` fills all ``1 + questions`` texts of a row from that task alone (captions
    drawn with replacement from the references): a specialist's data at the same number of texts."""
    questions = check_positive_int(questions, "questions")
    if not where_weight > 0:
        raise ValueError(f"where_weight must be positive, got {where_weight!r}")
    if tasks not in TASKS:
        raise ValueError(f"tasks is one of {TASKS}, got {tasks!r}")
    images_t = tf.constant(np.asarray(images))
    captions = tf.constant(tables["caption_inputs"]), tf.constant(tables["caption_targets"])
    asked = tf.constant(tables["question_inputs"]), tf.constant(tables["question_targets"])
    real = np.arange(tables["question_inputs"].shape[1])[None] < tables["question_counts"][:, None]
    weights = np.where(tables["question_where"], float(where_weight), 1.0)
    log_weights = tf.constant(np.where(real, np.log(weights), -np.inf).astype(np.float32))  # (n, Q): padding never drawn
    refs = tables["caption_inputs"].shape[1]

    n_questions = 1 + questions if tasks == "questions" else questions  # "captions" draws none

    def draw(table_pair, rows, logits, count, stream, step):
        key = tf.random.experimental.stateless_fold_in(tf.stack([tf.cast(seed, tf.int64), step]), stream)  # not pick_reference's stream
        chosen = tf.random.stateless_categorical(logits, count, seed=key)  # (batch, count)
        at = tf.stack([tf.broadcast_to(rows[:, None], tf.shape(chosen)), chosen], axis=-1)
        return [tf.gather_nd(table, at) for table in table_pair]

    def gather(step, rows):
        if tasks == "captions":
            texts, targets = draw(captions, rows, tf.zeros((tf.shape(rows)[0], refs)), 1 + questions, 2, step)
            return (pipeline.take(images_t, rows), texts), targets
        question_in, question_out = draw(asked, rows, tf.gather(log_weights, rows), n_questions, 1, step)
        if tasks == "questions":
            return (pipeline.take(images_t, rows), question_in), question_out
        caption_in, caption_out = pipeline.take(captions, rows, pipeline.pick_reference(rows, refs, seed=seed, step=step))
        texts = tf.concat([caption_in[:, None], question_in], axis=1)
        targets = tf.concat([caption_out[:, None], question_out], axis=1)
        return (pipeline.take(images_t, rows), texts), targets

    return pipeline.batches(len(tables["question_counts"]), gather, batch_size=batch_size, epochs=epochs, seed=seed)


# --------------------------------------------------------------------------- the model


@keras.saving.register_keras_serializable(package="mmcourse")
class VLM(CaptionLoss, keras.Model):
    """Image + prompt → output text, a decoder-only Transformer (see the module's docstring).

    ``call((images, texts))``: images ``(n, 64, 64, 3)`` or the encoder's grids ``(n, 8, 8,
    channels)``; texts ``(n, L)`` or ``(n, m, L)`` (m texts about each image) of word ids.
    Returns the next-token logits ``(n, L, vocab)`` or ``(n, m, L, vocab)``, float32.

    Args:
        words: the vocabulary's words after the four special tokens (``vocabulary().words[4:]``);
            kept in the model, so a saved model knows its words (:attr:`vocabulary`).
        channels: width of the image encoder's grid vectors.
        d_model, num_heads, layers, hidden: the blocks' width, heads, number and feed-forward width.
        encoder_layers: bidirectional self-attention blocks over the image tokens first.
        fixed_positions: add the fixed 2-D sinusoidal code of each cell after the image LayerNorm.
        word_positions: the words' positions, ``"learned"`` or ``"sinusoidal"``.
        attended_positions: after each block, add to every word a linear map of where each head
            looked in the image, ``Σ_j α_hj (x_j, y_j)`` (the GRU captioner's attended (x, y)).
        image_attention: ``"causal"``: an image token sees only the cells before it in reading
            order (one causal sequence, as LLaVA's); ``"full"``: in every block the image tokens
            see each other in both directions (a prefix-LM over the image, as PaliGemma's prefix).
            Either way the words see every image token and the words before them, and the image
            never sees the words. (On 3,000 images × 5 epochs, one seed, "full" did not help:
            VQA 0.870 against 0.890, captions' exact match 0.666 against 0.738; nor did image
            tokens that pass through no block, every block reading them as they entered, the
            captioner's way: 0.875 and 0.637.)

    "Where is the A relative to the B" stays near 0.48 in every variant tried (3,000 images
    × 5 epochs, one seed, "where" accuracy against 0.470 for this default): no learned image
    positions 0.481, ``attended_positions`` 0.485, "where" questions drawn 4 times as often 0.485,
    sinusoidal word positions 0.479, ``d_model`` 128 0.402, questions alone for 8 epochs 0.474.
    On 300 test images the shipped model names the axis (left/right or above/below) of every such question right,
    and for 0.89 of the images gives the same answer whichever of the two objects is asked
    about: it reads the pair's layout but does not bind the question's first name to its object.
    """

    fusion, attention_weight = "prefix", 0.0  # read by CaptionLoss: no attention regulariser here

    def __init__(self, words, *, channels: int = 64, d_model: int = 64, num_heads: int = 4, layers: int = 4, hidden: int = 256,
                 encoder_layers: int = 0, fixed_positions: bool = True, word_positions: str = "learned", attended_positions: bool = False,
                 image_attention: str = "causal", **kwargs):
        super().__init__(**kwargs)
        self.words = [str(w) for w in words]
        self.vocab_size = len(self.vocabulary)
        check_positive_int(self.vocab_size, "the vocabulary's length", minimum=5)
        self.channels, self.d_model = check_positive_int(channels, "channels"), check_positive_int(d_model, "d_model")
        self.num_heads, self.n_layers = check_positive_int(num_heads, "num_heads"), check_positive_int(layers, "layers")
        self.hidden, self.encoder_layers = check_positive_int(hidden, "hidden"), int(encoder_layers)
        self.fixed_positions, self.attended_positions = bool(fixed_positions), bool(attended_positions)
        self.word_position_kind = word_positions
        if image_attention not in ("full", "causal"):
            raise ValueError(f"image_attention is 'full' (the image tokens see each other both ways) or 'causal', got {image_attention!r}")
        self.image_attention = image_attention
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={d_model} must be a multiple of num_heads={num_heads}")
        if self.fixed_positions and self.d_model % 4:
            raise ValueError(f"fixed_positions needs d_model to be a multiple of 4, got {d_model}")
        policy = self.dtype_policy
        self.encoder = vision.build_image_encoder(channels=self.channels, dtype=policy)
        self.image_projection = keras.layers.Dense(self.d_model, dtype=policy, name="image_tokens")
        self.image_positions = PositionalEmbedding(64, kind="learned", stddev=1.0, dtype=policy, name="image_positions")
        self.image_blocks = [TransformerBlock(num_heads, hidden, dtype=policy, name=f"image_block_{i}") for i in range(self.encoder_layers)]
        self.image_norm = keras.layers.LayerNormalization(epsilon=1e-5, dtype=policy, name="image_norm")
        self.embedding = keras.layers.Embedding(self.vocab_size, self.d_model, dtype=policy, name="word_vectors")
        self.word_positions = PositionalEmbedding(TEXT_LENGTH, kind=word_positions, dtype=policy, name="word_positions")
        self.blocks = [TransformerBlock(num_heads, hidden, causal=True, dtype=policy, name=f"block_{i}") for i in range(self.n_layers)]
        # where each head of a block looked, Σ_j α_j (x_j, y_j) over the image cells, mapped into the words' stream
        self.where = [keras.layers.Dense(self.d_model, dtype=policy, name=f"attended_positions_{i}")
                      for i in range(self.n_layers if self.attended_positions else 0)]
        self.image_where = [keras.layers.Dense(self.d_model, dtype=policy, name=f"image_attended_positions_{i}")
                            for i in range(self.encoder_layers if self.attended_positions else 0)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, dtype=policy, name="final_norm")
        self.classifier = keras.layers.Dense(self.vocab_size, name="next_token", dtype="float32")  # logits in float32
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("word_loss", "word_accuracy")}
        self.build()

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(self.words)

    def build(self, input_shape=None):
        """Create every weight now (see :meth:`mmcourse.models.captioning.Captioner.build`)."""
        if self.built:
            return
        tokens, words = (None, 64, self.d_model), (None, None, self.d_model)
        self.image_projection.build((None, 64, self.channels + GRID_POSITIONS.shape[1]))
        self.image_positions.build(tokens)
        for block in self.image_blocks:
            block.build(tokens)
        self.image_norm.build(tokens)
        self.embedding.build((None, None))
        self.word_positions.build(words)
        for block in self.blocks:
            block.build(words)
        for where in self.where + self.image_where:
            where.build((None, None, 2 * self.num_heads))
        self.final_norm.build(words)
        self.classifier.build(words)
        self.built = True

    def image_tokens(self, images, training=False):
        """The image as the blocks read it: ``(n, 64, d_model)``."""
        grid, _ = grid_cells(self.encoder, self.channels, images, training=training)
        x = self.image_positions(self.image_projection(grid))
        for i, block in enumerate(self.image_blocks):
            x = block(x, training=training)
            if self.attended_positions:  # each cell learns where the others it looks at are
                x = x + self.image_where[i](self.attended_position(block.self_weights))
        x = self.image_norm(x)
        if self.fixed_positions:
            x = x + ops.cast(ops.convert_to_tensor(sinusoidal_positions_2d(8, self.d_model)), x.dtype)[None]
        return x

    def image_cache(self, images, training=False) -> list:
        """Per block, the keys and values of the 64 image tokens, ``(n, heads, 64, d_model / heads)``
        each: what every text about the image reads (computed once per image)."""
        x, cache = self.image_tokens(images, training=training), []
        for block in self.blocks:
            x, keys_values = block.step(x, causal=self.image_attention == "causal")
            cache.append(keys_values)
        return cache

    def read(self, tokens, cache, start: int = 0):
        """The texts' next-token logits ``(n, t, vocab)`` and the cache extended by them:
        ``tokens (n, t)`` at text positions ``start … start + t − 1``, after what ``cache`` holds."""
        x = self.embedding(ops.cast(tokens, "int32")) * ops.cast(np.sqrt(self.d_model), self.compute_dtype)
        x = self.word_positions(x, start=start)
        new_cache = []
        for i, (block, keys_values) in enumerate(zip(self.blocks, cache)):
            x, keys_values = block.step(x, keys_values)
            new_cache.append(keys_values)
            if self.attended_positions:
                x = x + self.where[i](self.attended_position(block.self_weights))
        return self.classifier(self.final_norm(x)), new_cache

    def attended_position(self, weights):
        """Where each head looked in the image: ``Σ_j α_hj (x_j, y_j)`` over the 64 cells, from a
        block's self-attention weights ``(n, heads, t, 64 + …)`` (image keys first) → ``(n, t, 2 · heads)``."""
        where = ops.einsum("nhtj,jc->nthc", weights[..., :64], ops.cast(ops.convert_to_tensor(GRID_POSITIONS), weights.dtype))
        return ops.reshape(where, (ops.shape(where)[0], ops.shape(where)[1], 2 * self.num_heads))

    def call(self, inputs, training=False):
        images, texts = inputs
        texts = ops.cast(texts, "int32")
        cache = self.image_cache(images, training=training)
        if len(texts.shape) == 2:
            return self.read(texts, cache)[0]
        m, length = texts.shape[1], ops.shape(texts)[2]  # m texts per image: each reads its image's cache
        cache = [(ops.repeat(k, m, axis=0), ops.repeat(v, m, axis=0)) for k, v in cache]
        logits, _ = self.read(ops.reshape(texts, (-1, length)), cache)
        return ops.reshape(logits, (-1, m, length, self.vocab_size))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """:class:`~mmcourse.models.captioning.CaptionLoss`'s on every text of the batch (targets 0 are not scored)."""
        length = ops.shape(y)[-1]
        logits = ops.reshape(y_pred, (-1, length, self.vocab_size))
        return super().compute_loss(x, ops.reshape(y, (-1, length)), (logits, None), sample_weight, training)

    def loss_of(self, images, texts, targets) -> dict:
        """``{"loss", "word_loss", "word_accuracy"}`` of texts and their targets about images."""
        logits = self((images, texts))
        length = ops.shape(targets)[-1]
        return self.loss_terms(ops.reshape(targets, (-1, length)), ops.reshape(logits, (-1, length, self.vocab_size)), None)

    def get_config(self):
        config = super().get_config()
        config.update(words=self.words, channels=self.channels, d_model=self.d_model, num_heads=self.num_heads, layers=self.n_layers,
                      hidden=self.hidden, encoder_layers=self.encoder_layers, fixed_positions=self.fixed_positions,
                      word_positions=self.word_position_kind, attended_positions=self.attended_positions,
                      image_attention=self.image_attention)
        return config


# --------------------------------------------------------------------------- training


def train_vlm(data: shapes.ShapesDataset, *, epochs: int = 10, batch_size: int = 8, questions: int = 8, where_weight: float = 1.0,
              learning_rate: float = 2e-3, seed: int = 0, progress: bool = True, encoder: keras.Model | None = None, tasks: str = "both",
              **model_args):
    """Build and train a :class:`VLM` on captions and questions about the images of ``data``
    (each step: one caption and ``questions`` questions per image, the "where" questions
    ``where_weight`` times as likely as the others: :func:`task_batches`; with ``tasks``
    ``"captions"`` or ``"questions"``, as many texts of that task alone).
    Returns ``(model, history, seconds)``.

    As :func:`mmcourse.models.captioning.train_captioner`: with ``encoder`` (pre-trained, e.g.
    :func:`mmcourse.models.vision.pretrain_image_encoder`) its weights are copied and frozen and
    the grids computed once (``seconds`` counts them); without it the encoder trains too. Built
    from ``seed`` and compiled in :func:`mmcourse.device.strategy`'s scope (so inside
    ``device.use(precision, cpu_replicas)`` it trains that way); ``batch_size`` counts images of
    the global batch; Adam, its step falling along a half cosine from ``learning_rate``.
    ``model_args`` go to :class:`VLM`.
    """
    seed = check_seed(seed)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    vocab = vocabulary()
    tables = task_tables(data, vocab)
    steps = -(-len(data) // batch_size)
    with device.strategy().scope(), training_lib.seeded(seed):
        model = VLM(vocab.words[4:], **model_args)
        training_lib.compile(model, keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps * epochs)))
    start = time.perf_counter()
    inputs = data.images
    if encoder is not None:
        model.encoder.set_weights(encoder.get_weights())
        model.encoder.trainable = False
        inputs = vision.encode(model.encoder, data.images, output="grid")  # (n, 8, 8, C), once
    stream = task_batches(inputs, tables, questions=questions, batch_size=batch_size, seed=seed, epochs=epochs, where_weight=where_weight,
                          tasks=tasks)
    callbacks = []
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc="train VLM"))
    history = model.fit(stream, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=callbacks, shuffle=False)
    return model, history.history, time.perf_counter() - start


# --------------------------------------------------------------------------- using it


def generate(model: VLM, images, prompts, *, image_index=None, max_tokens: int | None = None, batch_size: int = 128) -> list[str]:
    """Greedy decoding with the key–value cache: the output text (up to ``<end>``) for every prompt.

    ``prompts[j]`` is about ``images[j]``, or with ``image_index`` about ``images[image_index[j]]``
    (each image's cache is then computed once for all its prompts). Prompts of one length are
    decoded together; ``max_tokens`` (default: as many as the text positions allow) bounds the
    output. Raises :class:`~mmcourse.models.vqa.QuestionError` for a prompt with an unknown word.
    """
    vocab, images = model.vocabulary, np.asarray(images)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    index = np.arange(len(prompts)) if image_index is None else np.asarray(image_index, np.int64)
    if len(index) != len(prompts) or (len(index) and not 0 <= index.min() <= index.max() < len(images)):
        raise ValueError(f"{len(prompts)} prompts need one image each: pass as many images, or image_index into the {len(images)} images")
    ids = [_prompt_ids(vocab, p) for p in prompts]
    outputs: list[str] = [""] * len(prompts)
    for lo in range(0, len(images), batch_size):
        here = np.flatnonzero((index >= lo) & (index < lo + batch_size))
        if not len(here):
            continue
        cache = model.image_cache(images[lo : lo + batch_size])
        groups = defaultdict(list)
        for j in here:
            groups[len(ids[j])].append(j)
        for length, members in groups.items():
            rows = ops.convert_to_tensor(index[members] - lo)
            group_cache = [(ops.take(k, rows, axis=0), ops.take(v, rows, axis=0)) for k, v in cache]
            logits, group_cache = model.read(np.array([ids[j] for j in members], np.int32), group_cache)
            limit = TEXT_LENGTH - length if max_tokens is None else min(max_tokens, TEXT_LENGTH - length)
            chosen, position = [], length
            while True:
                words = ops.convert_to_numpy(ops.argmax(logits[:, -1], axis=-1)).astype(np.int32)
                chosen.append(words)
                finished = (np.stack(chosen, 1) == vocab.end_id).any(1)
                if len(chosen) >= limit or finished.all():
                    break
                logits, group_cache = model.read(words[:, None], group_cache, start=position)
                position += 1
            chosen = np.stack(chosen, 1)
            for j, row in zip(members, chosen):
                outputs[j] = vocab.decode(row)
    return outputs


def generate_with_attention(model: VLM, image, prompt: str, *, max_tokens: int | None = None) -> tuple[list[str], np.ndarray]:
    """Greedy decoding of one prompt about one image, as :func:`generate`, keeping where each
    output token looked: ``(tokens, maps)``, the output tokens (``<end>`` included when chosen)
    and ``maps (len(tokens), 8, 8)``, the last block's attention from the position that chose
    each token over the 64 image cells (mean of the heads; a row sums to the share of attention
    the image got, the rest went to the words)."""
    vocab = model.vocabulary
    ids = _prompt_ids(vocab, prompt)
    limit = TEXT_LENGTH - len(ids) if max_tokens is None else min(max_tokens, TEXT_LENGTH - len(ids))
    cache = model.image_cache(np.asarray(image)[None])
    logits, cache = model.read(np.array([ids], np.int32), cache)
    tokens, maps, position = [], [], len(ids)
    while True:
        weights = ops.convert_to_numpy(ops.cast(model.blocks[-1].self_weights[0, :, -1, :64], "float32"))  # (heads, 64)
        maps.append(weights.mean(0).reshape(8, 8))
        word = int(ops.convert_to_numpy(ops.argmax(logits[0, -1])))
        tokens.append(vocab.words[word])
        if word == vocab.end_id or len(tokens) >= limit:
            break
        logits, cache = model.read(np.array([[word]], np.int32), cache, start=position)
        position += 1
    return tokens, np.stack(maps)


def answer_questions(model: VLM, images, questions, *, image_index=None) -> list[str]:
    """The answer to each question (``questions[j]`` about ``images[j]``, or ``images[image_index[j]]``)."""
    questions = [questions] if isinstance(questions, str) else list(questions)
    return generate(model, images, [question_prompt(q) for q in questions], image_index=image_index, max_tokens=ANSWER_TOKENS)


def caption_images(model: VLM, images) -> list[str]:
    """A greedy caption of each image."""
    images = np.asarray(images)
    return generate(model, images, [caption_prompt()] * len(images))


def evaluate(model: VLM, data: shapes.ShapesDataset) -> dict:
    """Both tasks on ``data``: every question :func:`shapes.questions` asks — ``accuracy``
    overall and per kind (:data:`~mmcourse.models.vqa.KINDS`), the relation questions also
    split into ``relation_where`` ("where is the A relative to the B") and ``relation_yes_no``
    ("is the A left of the B", which a word-order shortcut can answer) — and greedy captions
    scored as :func:`mmcourse.models.captioning.evaluate` scores them: ``bleu1`` … ``bleu4``,
    ``exact_match``, ``object_precision``, ``object_recall``, ``hallucination_rate``. Also the
    ``answers`` and ``captions`` themselves, and ``test_questions``."""
    from mmcourse import metrics

    pairs = vqa_pairs(data)
    answers = answer_questions(model, data.images, pairs.questions, image_index=pairs.image_index)
    predicted = np.array([ANSWERS.index(a) if a in ANSWERS else -1 for a in answers])
    scores = accuracy_by_kind(predicted, pairs)
    right, relation = predicted == pairs.answers, pairs.kinds == KINDS.index("relation")
    where = np.array(["relative to" in q for q in pairs.questions], bool)
    for name, chosen in (("relation_where", relation & where), ("relation_yes_no", relation & ~where)):
        scores[name] = float(right[chosen].mean()) if chosen.any() else float("nan")
    captions = caption_images(model, data.images)
    scores.update({f"bleu{n}": metrics.corpus_bleu(captions, data.captions, max_n=n) for n in range(1, 5)})
    scores["exact_match"] = float(metrics.exact_match(captions, data.scenes).mean())
    objects = metrics.object_scores(captions, data.scenes)
    scores.update(object_precision=objects["precision"], object_recall=objects["recall"], hallucination_rate=objects["hallucination_rate"])
    scores.update(test_questions=len(pairs), answers=answers, captions=captions)
    return scores


# --------------------------------------------------------------------------- files and the command line

#: `mmcourse train vlm`: (images, epochs, encoder pre-training images, its epochs)
TRAIN_SIZES = {"quick": (1_000, 3, 2_000, 3), "full": (8_000, 8, 6_000, 4)}
#: The model of `mmcourse train vlm`
VLM_SIZES = {"d_model": 64, "num_heads": 4, "layers": 4, "hidden": 256}
QUESTIONS_PER_IMAGE, BATCH_SIZE, LEARNING_RATE = 8, 8, 2e-3  # a batch of 8 images is 72 texts
MODEL_FILE, VOCABULARY_FILE = "vlm.keras", "vocabulary.json"


def save(model: VLM, out) -> Path:
    """Write ``vlm.keras`` (without optimizer state) and ``vocabulary.json`` (the words the model
    also keeps in its config, for people and other tools) into the folder ``out``."""
    out = artifacts.prepare_out(out)
    artifacts.save_model(model, out / MODEL_FILE)
    model.vocabulary.save(out / VOCABULARY_FILE)
    return out


def load(folder=None) -> VLM:
    """The VLM saved in ``folder`` by :func:`save` (or ``mmcourse train vlm --out DIR``), loaded
    with ``safe_mode=True``, its files checked against their SHA-256 sums when listed;
    ``folder=None``: the one shipped in ``data/vlm``."""
    if folder is None:
        from mmcourse import config

        if not config.shipped_dir("vlm").is_dir():
            raise FileNotFoundError("no VLM ships with the course yet: pass --model DIR, a folder `mmcourse train vlm --out DIR` wrote")
        folder = artifacts.shipped("vlm")
    folder = Path(folder)
    if not (folder / MODEL_FILE).is_file():
        raise FileNotFoundError(f"no {MODEL_FILE} in {folder}: pass the folder `mmcourse train vlm --out DIR` wrote")
    return artifacts.load_model(folder / MODEL_FILE)


def train_command(out, *, profile: str | None = None, seed: int = 0, precision: str = "auto", cpu_replicas: int | None = None,
                  progress: bool = True) -> dict:
    """What ``mmcourse train vlm`` does: pre-train the image encoder on dense cell labels, freeze
    it, train a :class:`VLM` (:data:`VLM_SIZES`) on captions and questions together, measure
    both tasks on a freshly generated test split (:func:`evaluate`), and write the model, its
    vocabulary and ``metrics.json`` (``train_seconds`` counts both stages). Returns what
    ``metrics.json`` holds. The arguments are checked and ``out`` prepared before anything trains."""
    chosen, seed, out = training_lib.start_command(out, profile=profile, seed=seed, precision=precision, cpu_replicas=cpu_replicas)
    n, epochs, n_encoder, encoder_epochs = TRAIN_SIZES[chosen.name]
    with device.use(precision, cpu_replicas) as run:
        encoder, _, encoder_seconds = vision.pretrain_image_encoder(n_encoder, encoder_epochs, seed=seed, progress=progress)
        train = shapes.generate(n, seed=(seed, 1))
        test = shapes.generate(chosen.n_test, seed=(seed, 2))
        model, history, seconds = train_vlm(train, epochs=epochs, batch_size=BATCH_SIZE, questions=QUESTIONS_PER_IMAGE,
                                            learning_rate=LEARNING_RATE, seed=seed, progress=progress, encoder=encoder, **VLM_SIZES)
        scores = evaluate(model, test)
    save(model, out)
    metrics = {"train_images": n, "epochs": epochs, "questions_per_image": QUESTIONS_PER_IMAGE, "batch_size": BATCH_SIZE,
               "encoder_images": n_encoder, "encoder_epochs": encoder_epochs, **VLM_SIZES, "test_images": len(test),
               "encoder_seconds": encoder_seconds, "vlm_seconds": seconds, "final_loss": float(history["loss"][-1]),
               "final_word_loss": float(history["word_loss"][-1])}
    metrics.update({k: v for k, v in scores.items() if k not in ("answers", "captions")})
    return artifacts.write_metrics(out, metrics, files=[MODEL_FILE, VOCABULARY_FILE], run=run, profile=chosen.name, seed=seed,
                                   test_seed=[seed, 2], train_seconds=encoder_seconds + seconds)


def ask_files(folder, items) -> list[tuple[str, str, str | None, str | None]]:
    """What ``mmcourse ask`` does: for each ``(image path, question)`` — the question ``None`` or
    ``"caption:"`` asks for a caption — ``(path, question, answer, None)``, or ``(path, question,
    None, reason)`` when the image is missing, not an image or truncated, or the question has a
    word the model does not know (the reason names it). In the order given; the model is loaded
    once and each image read once. Raises ``FileNotFoundError`` when ``folder`` holds no VLM
    (``folder=None``: the shipped one)."""
    from mmcourse.data.photos import load_image

    model = load(folder)
    vocab, loaded, prompts, results = model.vocabulary, {}, {}, []
    for j, (path, question) in enumerate(items):
        question = caption_prompt() if question is None or question.strip() in ("", caption_prompt()) else question.strip()
        results.append([str(path), question, None, None])
        if str(path) not in loaded:
            try:
                loaded[str(path)] = load_image(path, 64)
            except FileNotFoundError:
                loaded[str(path)] = "no such file"
            except ValueError as error:
                loaded[str(path)] = "not an image" if "not an image" in str(error) else "damaged or truncated image"
        if isinstance(loaded[str(path)], str):
            results[j][3] = loaded[str(path)]
            continue
        prompt = caption_prompt() if question == caption_prompt() else question_prompt(question)
        try:
            _prompt_ids(vocab, prompt)
        except QuestionError as error:
            results[j][3] = str(error)
            continue
        prompts[j] = prompt
    if prompts:
        paths = [p for p, image in loaded.items() if not isinstance(image, str)]
        where, images = {p: i for i, p in enumerate(paths)}, np.stack([loaded[p] for p in paths])
        for asks_caption in (True, False):  # a caption runs to <end>; an answer is one word
            chosen = [j for j, prompt in prompts.items() if (prompt == caption_prompt()) == asks_caption]
            if chosen:
                outputs = generate(model, images, [prompts[j] for j in chosen], image_index=[where[results[j][0]] for j in chosen],
                                   max_tokens=None if asks_caption else ANSWER_TOKENS)
                for j, output in zip(chosen, outputs):
                    results[j][2] = output
    return [tuple(r) for r in results]
