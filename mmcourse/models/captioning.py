"""Fused image captioning: the CNN encoder of notebook 02, a GRU decoder, and three ways to fuse them.

At step t the decoder reads the previous word w_{t−1} and its state h_{t−1}:

- ``inject``: the image only sets the first state, h_0 = tanh(W_init · pooled);
- ``merge``: as inject, and the pooled vector is joined to the decoder's output before the
  word classifier;
- ``attention`` (show, attend and tell, Xu et al. 2015): at every step the state attends over
  the 8×8 grid, ``α_t = softmax_j(vᵀ tanh(W_q h_{t−1} + W_k g_j))``, ``c_t = Σ_j α_tj g_j``;
  c_t enters the GRU with the word and the classifier with the state.

Training is teacher forcing with a masked cross-entropy (padding after ``<end>`` is not
counted) plus, for attention, the regulariser ``λ Σ_j (1 − Σ_t α_tj)²`` that asks every
region to be looked at about once over a caption. Decoding is greedy or beam search; both
return the attention weights of every generated word.
"""

from __future__ import annotations

import numpy as np

from mmcourse._tf import tensorflow
from mmcourse.data import shapes
from mmcourse.data.text import Vocabulary
from mmcourse.layers.attention import AdditiveAttention
from mmcourse.models import vision

tf = tensorflow()
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = ["FUSIONS", "CAPTION_LENGTH", "caption_vocabulary", "Captioner", "teacher_forcing_pairs", "greedy_decode", "beam_search"]

FUSIONS = ("inject", "merge", "attention")
CAPTION_LENGTH = 16  # <start> + the longest caption (13 words) + <end>, padded


def caption_vocabulary() -> Vocabulary:
    """``<pad>``, ``<start>``, ``<end>``, ``<unk>`` and every word of the Shapes grammar."""
    return Vocabulary(shapes.vocabulary_words())


def teacher_forcing_pairs(captions, vocabulary: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Decoder inputs ``<start> w_1 … w_n`` and targets ``w_1 … w_n <end>``, padded with 0:
    two ``(n, CAPTION_LENGTH − 1)`` int arrays."""
    ids = vocabulary.encode_batch(list(captions), length=CAPTION_LENGTH)
    return ids[:, :-1], ids[:, 1:]


@keras.saving.register_keras_serializable(package="mmcourse")
class Captioner(keras.Model):
    """Image → caption. ``call((images, inputs))`` gives the logits ``(batch, T, vocab)`` and the
    attention weights ``(batch, T, 64)`` (zeros for ``inject`` and ``merge``).

    Args:
        vocab_size: number of tokens (``len(caption_vocabulary())``).
        fusion: ``"inject"``, ``"merge"`` or ``"attention"``.
        channels: width of the image encoder's grid vectors.
        units: GRU state size.
        attention_weight: λ of the attention regulariser (attention only).
    """

    def __init__(self, vocab_size: int, *, fusion: str = "attention", channels: int = 64, embed_dim: int = 32,
                 units: int = 128, attention_units: int = 64, attention_weight: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}; got {fusion!r}")
        if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 5:
            raise ValueError(f"vocab_size must be the vocabulary's length (at least 5), got {vocab_size!r}")
        self.vocab_size, self.fusion, self.channels = int(vocab_size), fusion, int(channels)
        self.embed_dim, self.units, self.attention_units = int(embed_dim), int(units), int(attention_units)
        self.attention_weight = float(attention_weight)
        self.encoder = vision.build_image_encoder(channels=self.channels)
        self.embedding = keras.layers.Embedding(self.vocab_size, self.embed_dim, name="word_vectors")
        self.init_state = keras.layers.Dense(self.units, activation="tanh", name="init_state")
        self.cell = keras.layers.GRUCell(self.units, name="decoder_cell")
        self.attention = AdditiveAttention(self.attention_units, name="attention") if fusion == "attention" else None
        self.hidden = keras.layers.Dense(self.units, activation="tanh", name="pre_output")
        self.classifier = keras.layers.Dense(self.vocab_size, name="next_word")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "word_loss", "word_accuracy")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    # -- the pieces decoding reuses
    def encode(self, images, training=False):
        """``(grid (batch, 64, C), pooled (batch, C), h_0 (batch, units))`` for uint8 or [0, 1] images."""
        x = ops.convert_to_tensor(images)
        if x.dtype == "uint8":
            x = ops.cast(x, "float32") / 255.0
        features = self.encoder(x, training=training)
        grid = ops.reshape(features["grid"], (-1, 64, self.channels))
        return grid, features["pooled"], self.init_state(features["pooled"])

    def step(self, words, state, grid, pooled):
        """One decoding step: ``(logits (batch, vocab), new state, weights (batch, 64))``."""
        x = self.embedding(ops.cast(words, "int32"))
        if self.attention is not None:
            context, weights = self.attention(state, grid, grid)
            x = ops.concatenate([x, context], axis=-1)
        else:
            context, weights = None, ops.zeros((ops.shape(state)[0], 64))
        output, new_state = self.cell(x, [state])
        new_state = new_state[0] if isinstance(new_state, (list, tuple)) else new_state
        if self.fusion == "attention":
            output = ops.concatenate([output, context], axis=-1)
        elif self.fusion == "merge":
            output = ops.concatenate([output, pooled], axis=-1)
        return self.classifier(self.hidden(output)), new_state, weights

    def call(self, inputs, training=False):
        images, words = inputs
        grid, pooled, state = self.encode(images, training=training)
        logits, weights = [], []
        for t in range(words.shape[1]):
            step_logits, state, alpha = self.step(words[:, t], state, grid, pooled)
            logits.append(step_logits)
            weights.append(alpha)
        return ops.stack(logits, axis=1), ops.stack(weights, axis=1)

    # -- training
    def _loss_terms(self, images, words, targets, training):
        logits, weights = self((images, words), training=training)
        mask = ops.cast(ops.not_equal(targets, 0), "float32")
        per_word = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        word_loss = ops.sum(per_word * mask) / ops.sum(mask)
        correct = ops.cast(ops.equal(ops.argmax(logits, axis=-1), ops.cast(targets, "int64")), "float32")
        accuracy = ops.sum(correct * mask) / ops.sum(mask)
        loss = word_loss
        if self.attention is not None and self.attention_weight:
            seen = ops.sum(weights * mask[..., None], axis=1)  # Σ_t α_tj over real words
            loss = loss + self.attention_weight * ops.mean(ops.sum(ops.square(1.0 - seen), axis=-1)) / 64.0
        return loss, word_loss, accuracy

    def train_step(self, data):
        (images, words), targets = data
        with tf.GradientTape() as tape:
            loss, word_loss, accuracy = self._loss_terms(images, words, targets, training=True)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._update(loss, word_loss, accuracy)

    def test_step(self, data):
        (images, words), targets = data
        return self._update(*self._loss_terms(images, words, targets, training=False))

    def _update(self, loss, word_loss, accuracy):
        for name, value in zip(("loss", "word_loss", "word_accuracy"), (loss, word_loss, accuracy)):
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, fusion=self.fusion, channels=self.channels, embed_dim=self.embed_dim,
                      units=self.units, attention_units=self.attention_units, attention_weight=self.attention_weight)
        return config


# --------------------------------------------------------------------------- decoding


def greedy_decode(model: Captioner, images, vocabulary: Vocabulary, *, max_words: int = CAPTION_LENGTH - 1, batch_size: int = 256):
    """The most likely word at every step. Returns ``(captions, attention)``: strings, and per
    caption an array ``(words + 1, 8, 8)``: one map per word, then the one that chose ``<end>``
    (``(words, 8, 8)`` when ``max_words`` ran out first)."""
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


def beam_search(model: Captioner, image, vocabulary: Vocabulary, *, beam_width: int = 3, max_words: int = CAPTION_LENGTH - 1):
    """Keep the ``beam_width`` most likely partial captions (by summed log-probability) at
    every step; a caption ends at ``<end>``. Returns ``(caption, attention (words + 1, 8, 8),
    log_probability)`` of the best finished caption. ``beam_width = 1`` is greedy decoding."""
    if not isinstance(beam_width, (int, np.integer)) or beam_width < 1:
        raise ValueError(f"beam_width must be a positive whole number, got {beam_width!r}")
    start, end = vocabulary.index("<start>"), vocabulary.index("<end>")
    grid, pooled, state = model.encode(np.asarray(image)[None])
    beams = [(0.0, [start], ops.convert_to_numpy(state)[0], [])]  # (log p, tokens, state, attention maps)
    finished = []
    for _ in range(max_words):
        k = len(beams)
        words = np.array([b[1][-1] for b in beams], np.int32)
        states = np.stack([b[2] for b in beams])
        logits, new_states, alpha = model.step(words, states, ops.repeat(grid, k, axis=0), ops.repeat(pooled, k, axis=0))
        log_probs = ops.convert_to_numpy(ops.log_softmax(logits, axis=-1))
        new_states, alpha = ops.convert_to_numpy(new_states), ops.convert_to_numpy(alpha)
        candidates = []
        for b, (score, tokens, _, maps) in enumerate(beams):
            for w in np.argsort(-log_probs[b])[:beam_width]:
                candidates.append((score + float(log_probs[b, w]), tokens + [int(w)], new_states[b], maps + [alpha[b]]))
        candidates.sort(key=lambda c: -c[0])
        beams = []
        for candidate in candidates[:beam_width]:
            (finished if candidate[1][-1] == end else beams).append(candidate)
        if not beams or (finished and max(f[0] for f in finished) >= beams[0][0]):
            break  # no live beam can still beat the best finished caption: scores only fall
    best = max(finished or beams, key=lambda c: c[0])
    words = [t for t in best[1][1:] if t != end]
    return vocabulary.decode(words), np.stack(best[3]).reshape(-1, 8, 8), best[0]
