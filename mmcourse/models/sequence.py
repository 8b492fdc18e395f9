"""Recurrent networks: the RNN cell from its formula, gradients through time,
a word-level caption language model with temperature sampling, and a text classifier.

The cell follows Keras's ``SimpleRNN`` layout, so weights move between the two::

    h_t = tanh(x_t W_xh + h_{t-1} W_hh + b)

with ``W_xh`` the layer's ``kernel`` (input_dim × units), ``W_hh`` its
``recurrent_kernel`` (units × units) and ``b`` its ``bias``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmcourse._tf import tensorflow

tf = tensorflow()
import keras  # noqa: E402

from mmcourse.data.text import Vocabulary  # noqa: E402

__all__ = [
    "rnn_step",
    "rnn_forward",
    "gradient_norms_through_time",
    "build_language_model",
    "language_model_loss",
    "sequence_nll",
    "perplexity",
    "sample_captions",
    "build_text_classifier",
    "bag_of_words",
]


# --------------------------------------------------------------------------- the cell by hand


def rnn_step(x_t: np.ndarray, h_prev: np.ndarray, W_xh: np.ndarray, W_hh: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One step of the Elman cell: ``h_t = tanh(x_t W_xh + h_{t-1} W_hh + b)`` (batched rows)."""
    return np.tanh(x_t @ W_xh + h_prev @ W_hh + b)


def rnn_forward(xs: np.ndarray, W_xh: np.ndarray, W_hh: np.ndarray, b: np.ndarray, h0: np.ndarray | None = None) -> np.ndarray:
    """Run the cell over ``xs`` of shape (batch, time, input_dim); return every ``h_t`` (batch, time, units)."""
    xs = np.asarray(xs)
    xs = xs.astype(np.result_type(xs.dtype, np.float32), copy=False)  # float32, or float64 if given
    if xs.ndim != 3 or xs.shape[-1] != W_xh.shape[0]:
        raise ValueError(f"xs must be (batch, time, {W_xh.shape[0]}), got shape {xs.shape}")
    h = np.zeros((xs.shape[0], W_hh.shape[0]), xs.dtype) if h0 is None else h0
    states = []
    for t in range(xs.shape[1]):
        h = rnn_step(xs[:, t], h, W_xh, W_hh, b)
        states.append(h)
    return np.stack(states, axis=1)


# --------------------------------------------------------------------------- gradients through time


def _recurrent_layer(cell: str, units: int, recurrent_scale: float | None, seed: int):
    cells = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    if cell not in cells:
        raise ValueError(f"unknown cell {cell!r}; choose one of: {', '.join(cells)}")
    gain = 1.0 if recurrent_scale is None else recurrent_scale
    return cells[cell](
        units,
        return_sequences=True,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        recurrent_initializer=keras.initializers.Orthogonal(gain=gain, seed=seed + 1),
    )


def gradient_norms_through_time(
    cell: str = "rnn",
    *,
    steps: int = 50,
    units: int = 32,
    input_dim: int = 8,
    batch: int = 16,
    recurrent_scale: float | None = None,
    gate_bias: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """How much the last state depends on each input: ``‖∂h_T/∂x_t‖`` for t = 1 … T.

    Returned in order of distance ``T − t`` (index 0 is the last step), averaged over a
    random batch. For a plain RNN it decays (or explodes) geometrically with the distance,
    at a rate set by the recurrent weights' scale (``recurrent_scale`` sets an orthogonal
    initialiser's gain). LSTM and GRU carry their memory along an additive path whose
    gate decides how much is kept: ``gate_bias`` sets the bias of the LSTM's forget gate
    or the GRU's update gate, and a gate held open keeps the gradient alive far longer.
    """
    layer = _recurrent_layer(cell, units, recurrent_scale, seed)
    rng = np.random.default_rng(seed)
    xs = tf.constant(rng.normal(size=(batch, steps, input_dim)).astype(np.float32))
    layer.build(xs.shape)
    if gate_bias is not None:
        if cell == "rnn":
            raise ValueError("gate_bias applies to 'lstm' and 'gru'; a plain RNN has no gates")
        cell_layer = layer.cell
        bias = cell_layer.bias.numpy()
        # Keras orders LSTM biases [input, forget, candidate, output] and GRU biases [update, reset, candidate].
        gate = slice(units, 2 * units) if cell == "lstm" else slice(0, units)
        if bias.ndim == 2:  # GRU with reset_after keeps an input and a recurrent bias row
            bias[0, gate] = gate_bias
            bias[1, gate] = 0.0
        else:
            bias[gate] = gate_bias
        cell_layer.bias.assign(bias)
    with tf.GradientTape() as tape:
        tape.watch(xs)
        hs = layer(xs)
        # A random projection of the final state: its gradient is a typical row of ∂h_T/∂x_t.
        probe = tf.constant(rng.normal(size=(units,)).astype(np.float32))
        y = tf.reduce_sum(hs[:, -1] * probe)
    grads = tape.gradient(y, xs).numpy()  # (batch, steps, input_dim)
    norms = np.linalg.norm(grads, axis=-1).mean(axis=0)
    return norms[::-1]


# --------------------------------------------------------------------------- a caption language model


def build_language_model(vocab_size: int, *, embed_dim: int = 64, units: int = 256, cell: str = "lstm", name: str = "caption_lm") -> keras.Model:
    """Word-level language model: embedding (padding masked) → LSTM/GRU → logits over the vocabulary.

    Input: token ids (batch, time) with 0 as padding. Output: logits (batch, time, vocab_size)
    predicting the next token at every position (teacher forcing at training time).
    """
    if vocab_size < 5:
        raise ValueError(f"vocab_size must count the 4 special tokens and at least one word, got {vocab_size}")
    recurrent = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    if cell not in recurrent:
        raise ValueError(f"unknown cell {cell!r}; choose 'lstm' or 'gru'")
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True, name="embedding")(tokens)
    x = recurrent[cell](units, return_sequences=True, name=cell)(x)
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    return keras.Model(tokens, logits, name=name)


def language_model_loss() -> keras.losses.Loss:
    """Cross-entropy over the next tokens, counting only targets that are not ``<pad>``.

    ``mask_zero=True`` gives Keras a mask of the *inputs*, which is one step out of line with
    the targets: the input ``<end>`` is unmasked but its target is ``<pad>``. Left alone,
    the loss would also train the model to predict padding after ``<end>``. ``ignore_class=0``
    masks by the targets instead.
    """
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)


def sequence_nll(model: keras.Model, token_ids: np.ndarray, batch_size: int = 512) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of the next tokens, and how many were predicted.

    ``token_ids`` are padded sequences ``<start> w1 … wn <end> <pad> …``: inputs are all but
    the last position, targets all but the first; padding targets are not counted.
    """
    token_ids = np.asarray(token_ids)
    total, count = 0.0, 0
    for start in range(0, len(token_ids), batch_size):
        chunk = token_ids[start : start + batch_size]
        inputs, targets = chunk[:, :-1], chunk[:, 1:]
        logits = model(inputs, training=False)
        nll = keras.ops.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        mask = targets != 0
        total += float(np.sum(np.asarray(nll) * mask))
        count += int(mask.sum())
    return total, count


def perplexity(model: keras.Model, token_ids: np.ndarray, batch_size: int = 512) -> float:
    """``exp`` of the mean negative log-likelihood per predicted token (``<end>`` included)."""
    total, count = sequence_nll(model, token_ids, batch_size)
    if count == 0:
        raise ValueError("no tokens to score: token_ids holds only padding")
    return float(np.exp(total / count))


def sample_captions(
    model: keras.Model,
    vocab: Vocabulary,
    n: int,
    *,
    temperature: float = 1.0,
    prefix: str | Sequence[str] = "",
    max_length: int = 20,
    seed: int | None = None,
) -> list[str]:
    """Sample ``n`` captions word by word from ``softmax(logits / temperature)``.

    Low temperatures approach greedy decoding (the most likely word each time); high ones
    approach uniform choice. A ``prefix`` (words the caption must start with) is fed first;
    a prefix word outside the vocabulary raises an error that names it.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    words = prefix.split() if isinstance(prefix, str) else list(prefix)
    unknown = [w for w in words if w not in vocab]
    if unknown:
        raise ValueError(f"prefix word {unknown[0]!r} is not in the vocabulary; known words include: {', '.join(vocab.words[4:16])}")
    rng = np.random.default_rng(seed)
    tokens = np.array([[vocab.start_id] + [vocab.index(w) for w in words]] * n, np.int32)
    done = np.zeros(n, bool)
    for _ in range(max_length - len(words)):
        logits = np.asarray(model(tokens, training=False)[:, -1], np.float64) / temperature
        logits[:, : vocab.start_id + 1] = -np.inf  # never <pad> or <start>
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        # Inverse-CDF sampling, one uniform number per row.
        nxt = (probs.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
        nxt = np.minimum(nxt, probs.shape[1] - 1)
        nxt[done] = vocab.pad_id
        tokens = np.concatenate([tokens, nxt[:, None].astype(np.int32)], axis=1)
        done |= nxt == vocab.end_id
        if done.all():
            break
    return [vocab.decode(row) for row in tokens]


# --------------------------------------------------------------------------- text classification


def build_text_classifier(vocab_size: int, *, embed_dim: int = 32, units: int = 32, dropout: float = 0.3, name: str = "text_classifier") -> keras.Model:
    """A small recurrent sentence classifier: embedding → bidirectional GRU → dropout → P(positive)."""
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True, name="embedding")(tokens)
    x = keras.layers.Bidirectional(keras.layers.GRU(units), name="bigru")(x)
    x = keras.layers.Dropout(dropout)(x)
    prob = keras.layers.Dense(1, activation="sigmoid", name="positive")(x)
    return keras.Model(tokens, prob, name=name)


def bag_of_words(sentences: Sequence[Sequence[str]], vocab: Vocabulary) -> np.ndarray:
    """Word counts per sentence, ``(n, len(vocab))`` float32 (unknown words count as ``<unk>``)."""
    out = np.zeros((len(sentences), len(vocab)), np.float32)
    for i, words in enumerate(sentences):
        for w in words:
            out[i, vocab.index(w)] += 1
    return out
