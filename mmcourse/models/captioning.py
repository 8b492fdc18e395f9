"""Fused image captioning: the CNN encoder of notebook 02, a GRU decoder, and three ways to fuse them.

At step t the decoder reads the previous word w_{t−1} and its state h_{t−1}:

- ``inject``: the image only sets the first state, h_0 = tanh(W_init · pooled);
- ``merge``: as inject, and the pooled vector is joined to the decoder's output before the
  word classifier;
- ``attention`` (show, attend and tell, Xu et al. 2015): at every step the state attends over
  the 8×8 grid, ``α_t = softmax_j(vᵀ tanh(W_q h_{t−1} + W_k g_j))``, ``c_t = Σ_j α_tj g_j``;
  c_t enters the GRU with the word and the classifier with the state. With ``looks=2`` (the
  default) the new state h_t looks again, ``c'_t`` (Luong et al. 2015), and the classifier sees
  ``[h_t, c_t, c'_t]``: the first look finds what to write next, the second what to compare it
  with; naming the relation between two objects needs both of them.

The encoder is trained with the decoder (end to end), or pre-trained with dense per-cell
labels and frozen (:func:`mmcourse.models.vision.pretrain_image_encoder`): then its grids are
computed once and only the decoder trains, many times faster (``train_captioner(encoder=...)``).

Training is teacher forcing with a masked cross-entropy (padding after ``<end>`` is not
counted) plus, for attention, the regulariser ``λ Σ_j (1 − Σ_t α_tj)²`` that asks every
region to be looked at about once over a caption. Decoding is greedy or beam search; both
return the attention weights of every generated word.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mmcourse import artifacts, device, imageops
from mmcourse import training as training_lib
from mmcourse.checks import check_positive_int, check_seed
from mmcourse._tf import tensorflow
from mmcourse.data import pipeline, shapes
from mmcourse.data.text import Vocabulary
from mmcourse.layers.attention import AdditiveAttention
from mmcourse.models import vision

tf = tensorflow()
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = [
    "FUSIONS",
    "CAPTION_LENGTH",
    "DECODERS",
    "Captioner",
    "CaptionLoss",
    "grid_cells",
    "teacher_forcing_pairs",
    "greedy_decode",
    "beam_search",
    "evaluate",
    "caption_dataset",
    "train_captioner",
    "train_command",
    "save",
    "load",
    "caption_files",
]

FUSIONS = ("inject", "merge", "attention")
CAPTION_LENGTH = shapes.CAPTION_LENGTH  # <start> + the longest caption (13 words) + <end>, padded
# the centre (x, y) of each of the 64 grid cells, scaled to [−1, 1], row by row as the grid is flattened
GRID_POSITIONS = np.stack(np.meshgrid(np.linspace(-0.875, 0.875, 8), np.linspace(-0.875, 0.875, 8)), -1).reshape(64, 2).astype(np.float32)


def teacher_forcing_pairs(captions, vocabulary: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Decoder inputs ``<start> w_1 … w_n`` and targets ``w_1 … w_n <end>``, padded with 0:
    two ``(n, CAPTION_LENGTH − 1)`` int arrays."""
    ids = vocabulary.encode_batch(list(captions), length=CAPTION_LENGTH)
    return ids[:, :-1], ids[:, 1:]


def grid_cells(encoder, channels: int, images, training=False):
    """``(grid (batch, 64, C + 2), pooled (batch, C))``: the encoder's 8×8 grid of uint8 or [0, 1]
    images (or grids ``(batch, 8, 8, C)`` it made beforehand), each cell followed by its
    position (x, y), and the mean over the cells."""
    x = ops.convert_to_tensor(images)
    if x.shape[-1] == 3:  # images: run the encoder
        grid = encoder(imageops.to_unit_tensor(x), training=training)["grid"]
    elif tuple(x.shape[1:]) == (8, 8, channels):  # the encoder's grids, computed beforehand
        grid = ops.cast(x, "float32")
    else:
        raise ValueError(f"expected images (n, size, size, 3) or encoder grids (n, 8, 8, {channels}), got shape {tuple(x.shape)}")
    grid = ops.reshape(grid, (-1, 64, channels))
    pooled = ops.mean(grid, axis=1)  # the encoder's "pooled" output: the mean over the 64 cells
    # each cell also carries where it is, (x, y) in [−1, 1]: attention's weighted sum then
    # says *where* the model looked, which "left of" and "above" need (convolution and
    # pooling alone keep almost none of it)
    where = ops.broadcast_to(ops.convert_to_tensor(GRID_POSITIONS)[None], (ops.shape(grid)[0], 64, 2))
    return ops.concatenate([grid, where], axis=-1), pooled


class CaptionLoss:
    """Teacher forcing's masked word loss, shared by the GRU and Transformer captioners (a model
    with ``fusion``, ``attention_weight`` and ``trackers``, whose ``call`` gives ``(logits, weights)``)."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The masked word loss (plus, for attention, the regulariser) of the *global* batch, in
        float32, for Keras's ``fit``: ``y`` are the targets, ``y_pred`` what :meth:`call` gave."""
        logits, weights = y_pred
        terms = self.loss_terms(y, logits, weights)
        self.trackers["word_loss"].update_state(terms["word_loss"])
        self.trackers["word_accuracy"].update_state(terms["word_accuracy"])
        return training_lib.replica_share(terms["loss"])

    def loss_terms(self, targets, logits, weights) -> dict:
        """``{"loss", "word_loss", "word_accuracy"}`` of a batch, in float32.

        ``word_loss`` is the cross-entropy averaged over the real words (and ``<end>``) of the
        batch, padding left out; ``loss`` adds ``λ · mean_i Σ_j (1 − Σ_t α_tij)² / 64`` for
        attention. On several replicas the per-caption sums are gathered from every replica
        first, so each replica returns the loss of the whole global batch (the same number as
        on one device, whatever the captions' lengths on each replica).
        """
        logits, weights = training_lib.as_float32(logits, weights)
        mask = ops.cast(ops.not_equal(targets, 0), "float32")
        per_word = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        correct = ops.cast(ops.equal(ops.argmax(logits, axis=-1), ops.cast(targets, "int64")), "float32")
        columns = [ops.sum(per_word * mask, axis=1), ops.sum(correct * mask, axis=1), ops.sum(mask, axis=1)]
        regularise = self.fusion == "attention" and bool(self.attention_weight)
        if regularise:
            seen = ops.sum(weights * mask[..., None], axis=1)  # Σ_t α_tj over real words
            columns.append(ops.sum(ops.square(1.0 - seen), axis=-1))
        sums = training_lib.gather_replicas(ops.stack(columns, axis=-1))  # (global batch, 3 or 4)
        total = ops.sum(sums, axis=0)
        word_loss, accuracy = total[0] / total[2], total[1] / total[2]
        loss = word_loss
        if regularise:
            loss = loss + self.attention_weight * total[3] / ops.cast(ops.shape(sums)[0], "float32") / 64.0
        return {"loss": loss, "word_loss": word_loss, "word_accuracy": accuracy}

    def _loss_terms(self, images, words, targets, training=False):
        """``(loss, word_loss, word_accuracy)`` of images, decoder inputs and targets (notebook 06)."""
        logits, weights = self((images, words), training=training)
        terms = self.loss_terms(targets, logits, weights)
        return terms["loss"], terms["word_loss"], terms["word_accuracy"]


@keras.saving.register_keras_serializable(package="mmcourse")
class Captioner(CaptionLoss, keras.Model):
    """Image → caption. ``call((images, inputs))`` gives the logits ``(batch, T, vocab)`` and the
    attention weights ``(batch, T, 64)`` (zeros for ``inject`` and ``merge``).

    Args:
        vocab_size: number of tokens (``len(shapes.caption_vocabulary())``).
        fusion: ``"inject"``, ``"merge"`` or ``"attention"``.
        channels: width of the image encoder's grid vectors.
        units: GRU state size.
        attention_weight: λ of the attention regulariser (attention only).
        looks: 1 (show, attend and tell) or 2 (also look again with the new state); attention only.
        backbone: the image encoder, ``"shapes"`` (the course's CNN, 64×64 images) or a
            ``keras.applications`` network (:data:`mmcourse.models.vision.BACKBONES`) on
            ``image_size`` photographs; its width then sets ``channels``.
        caption_length: tokens of the longest caption with ``<start>`` and ``<end>`` (decoding
            stops one short of it).

    ``call`` and :meth:`encode` take images ``(n, 64, 64, 3)`` or the encoder's grids ``(n, 8, 8,
    channels)`` computed beforehand (a frozen encoder's grids, once for the whole dataset).
    """

    decoder = "gru"

    def __init__(self, vocab_size: int, *, fusion: str = "attention", channels: int = 64, embed_dim: int = 32,
                 units: int = 128, attention_units: int = 64, attention_weight: float = 0.1, looks: int = 2, backbone: str = "shapes",
                 image_size: int | None = None, caption_length: int = CAPTION_LENGTH, **kwargs):
        super().__init__(**kwargs)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}; got {fusion!r}")
        check_positive_int(vocab_size, "vocab_size (the vocabulary's length)", minimum=5)
        self.vocab_size, self.fusion = int(vocab_size), fusion
        self.backbone, self.image_size = backbone, image_size
        self.caption_length = check_positive_int(caption_length, "caption_length", minimum=3)
        self.embed_dim, self.units, self.attention_units = int(embed_dim), int(units), int(attention_units)
        self.attention_weight = float(attention_weight)
        if looks not in (1, 2):
            raise ValueError(f"looks must be 1 or 2, got {looks!r}")
        self.looks = int(looks) if fusion == "attention" else 0
        # every layer takes the model's dtype policy (so a model trained in mixed precision loads as it trained)
        policy = self.dtype_policy
        self.encoder = vision.build_backbone(backbone, channels=channels, image_size=image_size, dtype=policy)
        self.channels = int(self.encoder.output["grid"].shape[-1])
        self.embedding = keras.layers.Embedding(self.vocab_size, self.embed_dim, dtype=policy, name="word_vectors")
        self.init_state = keras.layers.Dense(self.units, activation="tanh", dtype=policy, name="init_state")
        self.cell = keras.layers.GRUCell(self.units, dtype=policy, name="decoder_cell")
        self.attention = AdditiveAttention(self.attention_units, dtype=policy, name="attention") if fusion == "attention" else None
        self.second_look = AdditiveAttention(self.attention_units, dtype=policy, name="second_look") if self.looks == 2 else None
        self.hidden = keras.layers.Dense(self.units, activation="tanh", dtype=policy, name="pre_output")
        self.classifier = keras.layers.Dense(self.vocab_size, name="next_word", dtype="float32")  # logits in float32
        # Keras tracks the loss itself; these two are reported beside it (over the global batch)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("word_loss", "word_accuracy")}
        # every weight now, where the model is made: inside `training.seeded` (the attention layers
        # draw their initial weights when built) and inside the strategy scope it trains under
        self.build()

    def build(self, input_shape=None):
        """Create every weight now (shapes follow from the arguments), so that a saved model
        loads its weights into layers that exist, whatever the input shape recorded."""
        if self.built:
            return
        self.embedding.build((None,))
        self.init_state.build((None, self.channels))
        cell_dim = self.channels + GRID_POSITIONS.shape[1]  # a grid vector: features, then (x, y)
        attended = cell_dim if self.attention is not None else 0
        self.cell.build((None, self.embed_dim + attended))
        if self.attention is not None:
            grid = (None, 64, cell_dim)
            self.attention.build((None, self.units), grid, grid)
        if self.second_look is not None:
            self.second_look.build((None, self.units), grid, grid)
        joined = self.units + {"inject": 0, "merge": self.channels, "attention": cell_dim * self.looks}[self.fusion]
        self.hidden.build((None, joined))
        self.classifier.build((None, self.units))
        self.built = True

    # -- the pieces decoding reuses
    def encode(self, images, training=False):
        """``(grid (batch, 64, C + 2), pooled (batch, C), h_0 (batch, units))`` for uint8 or [0, 1]
        images, or for grids ``(batch, 8, 8, C)`` the encoder made beforehand; the last two
        numbers of each grid vector are the cell's position (x, y)."""
        grid, pooled = grid_cells(self.encoder, self.channels, images, training=training)
        return grid, pooled, self.init_state(pooled)

    def step(self, words, state, grid, pooled):
        """One decoding step: ``(logits (batch, vocab), new state, weights (batch, 64))``; with two
        looks the weights are the mean of the two maps."""
        x = self.embedding(ops.cast(words, "int32"))
        if self.attention is not None:
            context, weights = self.attention(state, grid, grid)
            x = ops.concatenate([x, context], axis=-1)
        else:
            context, weights = None, ops.zeros((ops.shape(state)[0], 64))
        output, new_state = self.cell(x, [state])
        new_state = new_state[0] if isinstance(new_state, (list, tuple)) else new_state
        if self.second_look is not None:
            second, second_weights = self.second_look(new_state, grid, grid)
            output = ops.concatenate([output, context, second], axis=-1)
            weights = (weights + second_weights) / 2
        elif self.fusion == "attention":
            output = ops.concatenate([output, context], axis=-1)
        elif self.fusion == "merge":
            output = ops.concatenate([output, pooled], axis=-1)
        return self.classifier(self.hidden(output)), new_state, weights

    def call(self, inputs, training=False):
        images, words = inputs
        grid, pooled, state = self.encode(images, training=training)

        def step(previous, word):  # previous: (state, logits, weights) of the step before
            logits, state, weights = self.step(word, previous[0], grid, pooled)
            return state, logits, ops.cast(weights, "float32")

        n = ops.shape(state)[0]
        start = (state, tf.zeros((n, self.vocab_size), "float32"), tf.zeros((n, 64), "float32"))
        # a loop in the graph, not 15 copies of the step: traced once, so a new model starts training in
        # half the time (gradients and results are the same as unrolling it)
        _, logits, weights = tf.scan(step, tf.transpose(ops.convert_to_tensor(words)), initializer=start)
        return ops.transpose(logits, (1, 0, 2)), ops.transpose(weights, (1, 0, 2))

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, fusion=self.fusion, channels=self.channels, embed_dim=self.embed_dim,
                      units=self.units, attention_units=self.attention_units, attention_weight=self.attention_weight,
                      looks=self.looks or 1, backbone=self.backbone, image_size=self.image_size, caption_length=self.caption_length)
        return config


# --------------------------------------------------------------------------- decoding


def greedy_decode(model: Captioner, images, vocabulary: Vocabulary, *, max_words: int | None = None, batch_size: int = 256):
    """The most likely word at every step. Returns ``(captions, attention)``: strings, and per
    caption an array ``(words + 1, 8, 8)``: one map per word, then the one that chose ``<end>``
    (``(words, 8, 8)`` when ``max_words``, by default the model's ``caption_length − 1``, ran out first)."""
    max_words = _max_words(model, max_words)
    start, end = vocabulary.index("<start>"), vocabulary.index("<end>")
    captions, maps = [], []
    images = np.asarray(images)
    for lo in range(0, len(images), batch_size):
        grid, pooled, state = model.encode(images[lo : lo + batch_size])
        n = int(ops.shape(grid)[0])
        words = np.full(n, start, np.int32)
        chosen, weights = [], []
        for _ in range(max_words):
            logits, state, alpha = model.step(words, state, grid, pooled)
            words = ops.convert_to_numpy(ops.argmax(logits, axis=-1)).astype(np.int32)
            chosen.append(words)
            weights.append(ops.convert_to_numpy(alpha))
        chosen, weights = np.stack(chosen, 1), np.stack(weights, 1)
        for i in range(n):
            length = int(np.argmax(chosen[i] == end)) if (chosen[i] == end).any() else max_words
            captions.append(vocabulary.decode(chosen[i, :length]))
            maps.append(weights[i, : length + 1].reshape(-1, 8, 8))
    return captions, maps


def _max_words(model, max_words: int | None) -> int:
    return getattr(model, "caption_length", CAPTION_LENGTH) - 1 if max_words is None else check_positive_int(max_words, "max_words")


def beam_search(model: Captioner, image, vocabulary: Vocabulary, *, beam_width: int = 3, max_words: int | None = None):
    """Keep the ``beam_width`` most likely partial captions (by summed log-probability) at
    every step; a caption ends at ``<end>``. Returns ``(caption, attention (words + 1, 8, 8),
    log_probability)`` of the best finished caption. ``beam_width = 1`` is greedy decoding."""
    check_positive_int(beam_width, "beam_width")
    max_words = _max_words(model, max_words)
    start, end = vocabulary.index("<start>"), vocabulary.index("<end>")
    grid, pooled, state = model.encode(np.asarray(image)[None])
    # a state is a tensor (the GRU's) or a nest of them (the Transformer's caches): kept per beam
    beams = [(0.0, [start], keras.tree.map_structure(lambda s: ops.convert_to_numpy(s)[0], state), [])]  # (log p, tokens, state, maps)
    finished = []
    for _ in range(max_words):
        k = len(beams)
        words = np.array([b[1][-1] for b in beams], np.int32)
        states = keras.tree.map_structure(lambda *per_beam: np.stack(per_beam), *[b[2] for b in beams])
        logits, new_states, alpha = model.step(words, states, ops.repeat(grid, k, axis=0), ops.repeat(pooled, k, axis=0))
        log_probs = ops.convert_to_numpy(ops.log_softmax(logits, axis=-1))
        new_states, alpha = keras.tree.map_structure(ops.convert_to_numpy, new_states), ops.convert_to_numpy(alpha)
        candidates = []
        for b, (score, tokens, _, maps) in enumerate(beams):
            beam_state = keras.tree.map_structure(lambda s, b=b: s[b], new_states)
            for w in np.argsort(-log_probs[b])[:beam_width]:
                candidates.append((score + float(log_probs[b, w]), tokens + [int(w)], beam_state, maps + [alpha[b]]))
        candidates.sort(key=lambda c: -c[0])
        beams = []
        for candidate in candidates[:beam_width]:
            (finished if candidate[1][-1] == end else beams).append(candidate)
        if not beams or (finished and max(f[0] for f in finished) >= beams[0][0]):
            break  # no live beam can still beat the best finished caption: scores only fall
    best = max(finished or beams, key=lambda c: c[0])
    words = [t for t in best[1][1:] if t != end]
    return vocabulary.decode(words), np.stack(best[3]).reshape(-1, 8, 8), best[0]


# --------------------------------------------------------------------------- training and evaluation

# `mmcourse train captioner`: (captioned images, decoder epochs, encoder pre-training images, its epochs)
TRAIN_SIZES = {"quick": (2_000, 10, 2_000, 3), "full": (12_000, 20, 6_000, 4)}
ATTENTION_WEIGHT = 0.0  # λ of the shipped captioner (notebook 06, exercise 1, measures λ = 0.1)
BATCH_SIZE, LEARNING_RATE = 128, 5e-3  # of `mmcourse train captioner`: big batches keep the CPU busy
MODEL_FILE, VOCABULARY_FILE = "captioner.keras", "vocabulary.json"
#: The Transformer of `mmcourse train captioner --decoder transformer` (about 140,000 weights besides the encoder's)
TRANSFORMER_SIZES = {"d_model": 64, "num_heads": 4, "layers": 2, "hidden": 128}
#: its decoder's passes over the images, per profile: in 10 it captions as the GRU does in 20, in about the GRU's time
TRANSFORMER_EPOCHS = {"quick": 10, "full": 10}


def caption_dataset(images, captions, vocabulary: Vocabulary, *, batch_size: int = 64, seed: int = 0, epochs: int = 1,
                    length: int = CAPTION_LENGTH):
    """A ``tf.data`` stream of ``((images, inputs), targets)`` batches for ``epochs`` passes over
    the images, each pass in its own order drawn from ``seed`` (:func:`mmcourse.data.pipeline.row_batches`;
    ``⌈n / batch_size⌉`` batches a pass, the last one smaller), in which every image (or its
    precomputed grid) comes with one of its reference captions, drawn afresh at every step.

    Orders and draws are fixed before the batches are split between replicas, so one device
    and several train on the same batches. Captions are padded (or cut) to ``length`` tokens;
    images with fewer references than the most have theirs cycled to fill the rows (with 3 of 5, the
    first two are drawn twice as often)."""
    images = np.asarray(images)
    refs = max(len(c) for c in captions)
    ids = np.stack([vocabulary.encode_batch([c[k % len(c)] for k in range(refs)], length=length) for c in captions])  # (n, refs, T)
    images_t, ids_t = tf.constant(images), tf.constant(ids.astype(np.int32))

    def gather(step, rows):
        chosen = pipeline.take(ids_t, rows, pipeline.pick_reference(rows, ids.shape[1], seed=seed, step=step))
        return (pipeline.take(images_t, rows), chosen[:, :-1]), chosen[:, 1:]

    return pipeline.batches(len(images), gather, batch_size=batch_size, epochs=epochs, seed=seed)


DECODERS = ("gru", "transformer")


def train_captioner(images, captions, vocabulary: Vocabulary, *, fusion: str = "attention", epochs: int = 6, batch_size: int = 64,
                    learning_rate: float = 3e-3, seed: int = 0, progress: bool = True, encoder: keras.Model | None = None,
                    decoder: str = "gru", **model_args):
    """Build and train a :class:`Captioner` (``decoder="gru"``, with ``fusion``) or a
    :class:`~mmcourse.models.transformer_captioner.TransformerCaptioner` (``decoder="transformer"``)
    by teacher forcing. Returns ``(model, history, seconds)``.

    With ``encoder`` (a pre-trained image encoder, e.g. from
    :func:`mmcourse.models.vision.pretrain_image_encoder`, or a photo backbone) the captioner
    takes its weights and keeps them frozen: the grids of all the images are computed once
    (or ``images`` are those grids already, ``(n, 8, 8, C)``) and only the decoder trains. Without it, encoder and decoder train together from scratch. ``seconds`` counts
    the grids' computation too.

    The model is built from ``seed`` (without touching the global random state) and compiled
    in :func:`mmcourse.device.strategy`'s scope, so inside ``device.use(precision, cpu_replicas)``
    it trains under that precision and on those replicas; ``batch_size`` is the global batch.
    """
    seed = check_seed(seed)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}; got {decoder!r}")
    with device.strategy().scope(), training_lib.seeded(seed):
        if decoder == "transformer":
            from mmcourse.models.transformer_captioner import TransformerCaptioner

            model = TransformerCaptioner(len(vocabulary), **model_args)  # built where it is made
        else:
            model = Captioner(len(vocabulary), fusion=fusion, **model_args)
        steps = -(-len(images) // batch_size) * epochs
        # the step size falls along a half cosine, η₀ · ½(1 + cos(π s / S)): big steps first, then the weights settle
        training_lib.compile(model, keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps)))
    start = time.perf_counter()
    inputs = images
    if encoder is not None:
        model.encoder.set_weights(encoder.get_weights())
        model.encoder.trainable = False
        if np.shape(images)[-1] == 3:  # images: their grids, once (grids made beforehand are used as they are)
            inputs = vision.encode(model.encoder, images, output="grid")  # (n, 8, 8, C)
    data = caption_dataset(inputs, captions, vocabulary, batch_size=batch_size, seed=seed, epochs=epochs, length=model.caption_length)
    callbacks = []
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc=f"train {'transformer' if decoder == 'transformer' else fusion} captioner"))
    # the stream shuffles itself, every pass in its own order
    history = model.fit(data, epochs=epochs, steps_per_epoch=-(-len(images) // batch_size), verbose=0, callbacks=callbacks, shuffle=False)
    return model, history.history, time.perf_counter() - start


def evaluate(model: Captioner, data: shapes.ShapesDataset, vocabulary: Vocabulary) -> dict:
    """Greedy captions of ``data`` scored against its references and its scenes: ``bleu1`` …
    ``bleu4`` (0–100), ``exact_match``, ``object_precision``, ``object_recall``, ``hallucination_rate``,
    attention ``grounding`` (attention fusion only), and the ``captions`` themselves."""
    from mmcourse import metrics

    captions, maps = greedy_decode(model, data.images, vocabulary)
    scores = {f"bleu{n}": metrics.corpus_bleu(captions, data.captions, max_n=n) for n in range(1, 5)}
    scores["exact_match"] = float(metrics.exact_match(captions, data.scenes).mean())
    objects = metrics.object_scores(captions, data.scenes)
    scores.update(object_precision=objects["precision"], object_recall=objects["recall"], hallucination_rate=objects["hallucination_rate"])
    if model.fusion == "attention":
        scores["grounding"] = metrics.attention_grounding(captions, maps, data.scenes)["grounding"]
    scores["captions"], scores["attention"] = captions, maps
    return scores


def save(model: Captioner, vocabulary: Vocabulary, out) -> Path:
    """Write ``captioner.keras`` (without optimizer state) and ``vocabulary.json`` into the folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    artifacts.save_model(model, out / MODEL_FILE)
    vocabulary.save(out / VOCABULARY_FILE)
    return out


#: the captioner shipped in data/ for each decoder
SHIPPED = {"gru": "captioner", "transformer": "transformer_captioner"}


def load(folder=None, *, decoder: str = "gru") -> tuple[Captioner, Vocabulary]:
    """The captioner and vocabulary saved in ``folder`` by :func:`save`, loaded with
    ``safe_mode=True``; ``folder=None``: the one shipped for ``decoder`` (``data/captioner``,
    the GRU, or ``data/transformer_captioner``), its files first checked against their SHA-256 sums."""
    if decoder not in SHIPPED:
        raise ValueError(f"decoder must be one of {', '.join(SHIPPED)}; got {decoder!r}")
    folder = artifacts.shipped(SHIPPED[decoder]) if folder is None else Path(folder)
    import mmcourse.models.transformer_captioner  # noqa: F401  (registers the class a saved Transformer captioner names)

    for name in (MODEL_FILE, VOCABULARY_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"no {name} in {folder}: pass the folder `mmcourse train captioner --out DIR` wrote")
    return artifacts.load_model(folder / MODEL_FILE), Vocabulary.load(folder / VOCABULARY_FILE)


def train_command(out, *, profile: str | None = None, seed: int = 0, precision: str = "auto", cpu_replicas: int | None = None,
                  progress: bool = True, fusion: str = "attention", decoder: str = "gru") -> dict:
    """What ``mmcourse train captioner`` does: pre-train the image encoder on dense cell labels,
    freeze it, train a decoder on its grids (a GRU with attention fusion by default, or a
    Transformer with ``decoder="transformer"``: :data:`TRANSFORMER_SIZES`), measure the captioner
    on a freshly generated test split, and write the model, its vocabulary and ``metrics.json``
    (``train_seconds`` counts both stages). Returns what ``metrics.json`` holds.

    The arguments are checked and ``out`` is created (or found writable) before anything trains.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}; got {fusion!r}")
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}; got {decoder!r}")
    chosen, seed, out = training_lib.start_command(out, profile=profile, seed=seed, precision=precision, cpu_replicas=cpu_replicas)
    n, epochs, n_encoder, encoder_epochs = TRAIN_SIZES[chosen.name]
    if decoder == "transformer":
        epochs = TRANSFORMER_EPOCHS[chosen.name]
    with device.use(precision, cpu_replicas) as run:
        encoder, _, encoder_seconds = vision.pretrain_image_encoder(n_encoder, encoder_epochs, seed=seed, progress=progress)
        train = shapes.generate(n, seed=(seed, 1))
        test = shapes.generate(chosen.n_test, seed=(seed, 2))
        vocabulary = shapes.caption_vocabulary()
        shape = dict(TRANSFORMER_SIZES) if decoder == "transformer" else dict(fusion=fusion, attention_weight=ATTENTION_WEIGHT)
        model, history, seconds = train_captioner(train.images, train.captions, vocabulary, epochs=epochs, seed=seed, encoder=encoder,
                                                  batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE, progress=progress, decoder=decoder,
                                                  **shape)
        scores = evaluate(model, test, vocabulary)
    save(model, vocabulary, out)
    metrics = {"decoder": model.decoder, "fusion": model.fusion, "looks": model.looks, "train_images": n, "epochs": epochs, "encoder_images": n_encoder,
               "encoder_epochs": encoder_epochs, "batch_size": BATCH_SIZE, "test_images": len(test), "encoder_seconds": encoder_seconds,
               "decoder_seconds": seconds, "final_loss": float(history["loss"][-1]), "final_word_loss": float(history["word_loss"][-1])}
    metrics.update({k: v for k, v in scores.items() if k not in ("captions", "attention")})
    return artifacts.write_metrics(out, metrics, files=[MODEL_FILE, VOCABULARY_FILE], run=run, profile=chosen.name, seed=seed, test_seed=[seed, 2],
                                   train_seconds=encoder_seconds + seconds)


def caption_files(folder, paths) -> list[tuple[str, str | None, str | None]]:
    """What ``mmcourse caption`` does: for each image file ``(path, caption, None)``, or
    ``(path, None, reason)`` when it is missing, not an image, or truncated. PNG or JPEG of any
    size is resized to the model's input size (64×64 on Shapes, 256×256 through a photo backbone)
    with alpha dropped. Raises ``FileNotFoundError`` when ``folder``
    holds no captioner; ``folder=None`` captions with the shipped one."""
    from mmcourse.data.photos import load_image

    model, vocabulary = load(folder)
    size = int(model.encoder.input.shape[1])
    loaded, results = {}, []
    for i, path in enumerate(paths):
        try:
            loaded[i] = load_image(path, size)
            results.append([str(path), None, None])
        except FileNotFoundError:
            results.append([str(path), None, "no such file"])
        except ValueError as error:
            reason = "not an image" if "not an image" in str(error) else "damaged or truncated image"
            results.append([str(path), None, reason])
    if loaded:
        captions, _ = greedy_decode(model, np.stack(list(loaded.values())), vocabulary)
        for i, caption in zip(loaded, captions):
            results[i][1] = caption
    return [tuple(r) for r in results]
