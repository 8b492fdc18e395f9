"""The Transformer's pieces, written from their formulas, as Keras layers.

Positional encodings (Vaswani et al., 2017), sinusoidal::

    PE[p, 2i] = sin(p / 10000^(2i/d)),   PE[p, 2i+1] = cos(p / 10000^(2i/d))

or learned (one trained vector per position, as in BERT and ViT). On a square grid of image
tokens, ``sinusoidal_2d`` gives half the features to the column and half to the row (each the
1-D table above), so every token carries its (x, y) in a form attention can compare.

The pre-LayerNorm block (Xiong et al., 2020; GPT-2, ViT), for a decoder with cross-attention::

    x ← x + SelfAttention(LN(x))            (causal in a decoder: position t sees 0 … t)
    x ← x + CrossAttention(LN(x), memory)    (decoder only: the image tokens)
    x ← x + FFN(LN(x)),   FFN(x) = W₂ GELU(W₁ x + b₁) + b₂

Normalising *before* each sub-layer keeps the residual path an identity, so deep stacks
train without the learning-rate warm-up the original post-LN block needed.

Decoding one word at a time recomputes nothing with a **key–value cache**: each layer keeps
the keys and values of the positions already decoded and appends the new position's
(:meth:`TransformerBlock.step`); cross-attention's keys and values come from the image and
are computed once (:meth:`TransformerBlock.memory_cache`).
"""

from __future__ import annotations

import warnings

import numpy as np

from mmcourse._tf import tensorflow
from mmcourse.checks import check_positive_int

tensorflow()
import keras  # noqa: E402
from keras import ops  # noqa: E402

from mmcourse.layers.attention import MultiHeadAttention, scaled_dot_product_attention  # noqa: E402

__all__ = ["sinusoidal_positions", "sinusoidal_positions_2d", "PositionalEmbedding", "FeedForward", "TransformerBlock"]


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """``(length, dim)`` float32: the sinusoidal encoding above (sin on even features, cos on odd)."""
    positions = np.arange(length, dtype=np.float64)[:, None]
    rates = 1.0 / 10000 ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    table = np.zeros((length, dim))
    table[:, 0::2] = np.sin(positions * rates)
    table[:, 1::2] = np.cos(positions * rates[: dim // 2])
    return table.astype(np.float32)


def sinusoidal_positions_2d(side: int, dim: int) -> np.ndarray:
    """``(side², dim)`` float32 for a ``side × side`` grid read row by row: the first ``dim // 2``
    features are the 1-D table of the column, the rest that of the row."""
    columns, rows = sinusoidal_positions(side, dim // 2), sinusoidal_positions(side, dim - dim // 2)
    return np.concatenate([np.tile(columns, (side, 1)), np.repeat(rows, side, axis=0)], axis=1)


def _caster(x):
    """Casts a weight to ``x``'s dtype (float16 under mixed precision)."""
    return lambda weight: ops.cast(weight, x.dtype)


KINDS = ("sinusoidal", "sinusoidal_2d", "learned")  # of PositionalEmbedding


@keras.saving.register_keras_serializable(package="mmcourse")
class PositionalEmbedding(keras.layers.Layer):
    """Adds a position's vector to each input vector: ``x[:, p] + PE[start + p]``.

    Args:
        max_length: the most positions it encodes.
        kind: ``"sinusoidal"`` (fixed, the formula above), ``"sinusoidal_2d"`` (fixed, for a square
            grid of ``max_length`` tokens read row by row) or ``"learned"`` (a trained table).

    Call: ``(x (batch, T, d), start=0)``; ``start`` offsets the positions, for decoding one
    word at a time (the word at step t is at position t).
    """

    def __init__(self, max_length: int, kind: str = "sinusoidal", stddev: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.stddev = float(stddev)  # of a learned table's initial values
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
        self.max_length, self.kind = check_positive_int(max_length, "max_length"), kind
        if kind == "sinusoidal_2d" and round(self.max_length ** 0.5) ** 2 != self.max_length:
            raise ValueError(f"sinusoidal_2d needs a square grid: max_length={max_length} is not a square number")
        self.supports_masking = True

    def build(self, input_shape):
        dim = input_shape[-1]
        if self.kind == "learned":
            self.table = self.add_weight(name="positions", shape=(self.max_length, dim),
                                         initializer=keras.initializers.RandomNormal(stddev=self.stddev))
        elif self.kind == "sinusoidal_2d":  # constants, not weights: nothing to train or save
            self.table = ops.convert_to_tensor(sinusoidal_positions_2d(round(self.max_length ** 0.5), dim))
        else:
            self.table = ops.convert_to_tensor(sinusoidal_positions(self.max_length, dim))

    def call(self, x, start=0):
        length = ops.shape(x)[1]
        positions = ops.slice(ops.cast(self.table, x.dtype), (start, 0), (length, ops.shape(self.table)[1]))
        return x + positions

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length, "kind": self.kind, "stddev": self.stddev}


@keras.saving.register_keras_serializable(package="mmcourse")
class FeedForward(keras.layers.Layer):
    """The position-wise feed-forward network ``W₂ GELU(W₁ x + b₁) + b₂`` (``hidden`` units inside)."""

    def __init__(self, hidden: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.dropout_rate = check_positive_int(hidden, "hidden"), float(dropout)
        self.supports_masking = True

    def build(self, input_shape):
        self.inner = keras.layers.Dense(self.hidden, activation="gelu", dtype=self.dtype_policy, name="inner")
        self.outer = keras.layers.Dense(input_shape[-1], dtype=self.dtype_policy, name="outer")
        self.drop = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy)
        self.inner.build(input_shape)
        self.outer.build((*input_shape[:-1], self.hidden))

    def call(self, x, training=None):
        return self.drop(self.outer(self.inner(x)), training=training)

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "dropout": self.dropout_rate}


@keras.saving.register_keras_serializable(package="mmcourse")
class TransformerBlock(keras.layers.Layer):
    """One pre-LayerNorm Transformer block (see the module's formulas).

    Args:
        num_heads: attention heads; each has ``d_model / num_heads`` dimensions.
        hidden: the feed-forward network's width (commonly 4 × d_model).
        causal: self-attention sees only earlier positions (a decoder).
        cross_attention: a second attention over ``memory`` (a decoder reading an encoder).
        dropout: on each sub-layer's output before it joins the residual path.

    Call: ``(x (batch, T, d), memory=None, mask=None, memory_mask=None, training=None)``;
    ``mask`` (batch, T) marks real tokens (Keras's convention: True where a token may be
    attended to), or (batch, T, T) which keys each position sees (it then replaces the causal
    mask: a prefix-LM's, say, whose prefix sees itself both ways). Returns ``x`` of the same
    shape; the attention weights of the last call are kept in ``self_weights`` (batch, heads, T, T) and ``cross_weights`` (batch, heads, T, T_mem).
    """

    def __init__(self, num_heads: int, hidden: int, *, causal: bool = False, cross_attention: bool = False,
                 dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.hidden = check_positive_int(num_heads, "num_heads"), check_positive_int(hidden, "hidden")
        self.causal, self.cross_attention, self.dropout_rate = bool(causal), bool(cross_attention), float(dropout)
        self.self_weights = self.cross_weights = None
        self.supports_masking = True  # a padding mask (e.g. an Embedding's) reaches call() and passes through

    def build(self, x_shape, memory_shape=None):
        input_shape = x_shape
        d = input_shape[-1]
        if d % self.num_heads:
            raise ValueError(f"the model width {d} must be a multiple of num_heads={self.num_heads}")
        key_dim = d // self.num_heads
        policy = self.dtype_policy  # sub-layers compute as the block does, whatever the global policy at load time
        self.norm_self = keras.layers.LayerNormalization(epsilon=1e-5, dtype=policy, name="norm_self")
        self.self_attention = MultiHeadAttention(self.num_heads, key_dim, dtype=policy, name="self_attention")
        self.norm_self.build(input_shape)
        self.self_attention.build(input_shape, input_shape)
        if self.cross_attention:
            memory_shape = memory_shape or input_shape
            self.norm_cross = keras.layers.LayerNormalization(epsilon=1e-5, dtype=policy, name="norm_cross")
            self.cross = MultiHeadAttention(self.num_heads, key_dim, dtype=policy, name="cross_attention")
            self.norm_cross.build(input_shape)
            self.cross.build(input_shape, memory_shape)
        self.norm_ff = keras.layers.LayerNormalization(epsilon=1e-5, dtype=policy, name="norm_ff")
        self.feed_forward = FeedForward(self.hidden, self.dropout_rate, dtype=policy, name="feed_forward")
        self.norm_ff.build(input_shape)
        self.feed_forward.build(input_shape)
        self.drop = keras.layers.Dropout(self.dropout_rate, dtype=policy)

    def call(self, x, memory=None, mask=None, memory_mask=None, training=None):
        full = mask is not None and len(mask.shape) == 3  # (batch, T, T): which key each query sees, causality included
        attend = None if mask is None else ops.cast(mask, "bool") if full else ops.expand_dims(ops.cast(mask, "bool"), 1)
        normed = self.norm_self(x)
        h, self.self_weights = self.self_attention(normed, normed, attention_mask=attend, use_causal_mask=self.causal and not full)
        x = x + self.drop(h, training=training)
        if self.cross_attention:
            if memory is None:
                raise ValueError("this block has cross-attention: pass memory (the encoder's tokens)")
            attend_memory = None if memory_mask is None else ops.expand_dims(ops.cast(memory_mask, "bool"), 1)
            h, self.cross_weights = self.cross(self.norm_cross(x), memory, attention_mask=attend_memory)
            x = x + self.drop(h, training=training)
        return x + self.feed_forward(self.norm_ff(x), training=training)

    # ----------------------------------------------------------------------------- decoding with a cache

    def memory_cache(self, memory):
        """Cross-attention's keys and values of ``memory``, ``(batch, heads, T_mem, d)`` each: computed once per image."""
        a, c = self.cross, _caster(memory)
        return a._project(memory, c(a.W_k), c(a.b_k)), a._project(memory, c(a.W_v), c(a.b_v))

    def step(self, x, cache=None, memory_cache=None, *, causal: bool | None = None):
        """Decode the new positions ``x (batch, t, d)`` given the keys and values of the positions
        before them (``cache = (keys, values)``, ``(batch, heads, T_before, d)`` each, or None).
        ``causal=False`` lets the new positions see each other in both directions (a prefix such
        as an image's tokens); by default the block's own ``causal``.

        Returns ``(output (batch, t, d), new cache)``: the same output :meth:`call` gives those
        positions on the whole sequence, without recomputing the earlier positions.
        """
        a, w = self.self_attention, _caster(x)  # outside call(), weights are not cast to the compute dtype for us
        normed = self.norm_self(x)
        keys, values = a._project(normed, w(a.W_k), w(a.b_k)), a._project(normed, w(a.W_v), w(a.b_v))
        if cache is not None:
            keys, values = ops.concatenate([cache[0], keys], axis=2), ops.concatenate([cache[1], values], axis=2)
        t, total = ops.shape(x)[1], ops.shape(keys)[2]
        # the new position p (of t) sits at total - t + p and sees every key up to itself
        rows = ops.expand_dims(ops.arange(t) + (total - t), 1)
        mask = ops.greater_equal(rows, ops.expand_dims(ops.arange(total), 0)) if (self.causal if causal is None else causal) else None
        with warnings.catch_warnings():  # the first word has one key: Keras warns about a softmax over one number
            warnings.filterwarnings("ignore", message="You are using a softmax over axis -1 of a tensor of shape")
            heads, self.self_weights = scaled_dot_product_attention(a._project(normed, w(a.W_q), w(a.b_q)), keys, values, mask)
        x = x + ops.einsum("bhtk,hkd->btd", heads, w(a.W_o)) + w(a.b_o)
        if self.cross_attention:
            c = self.cross
            heads, self.cross_weights = scaled_dot_product_attention(c._project(self.norm_cross(x), w(c.W_q), w(c.b_q)), *memory_cache)
            x = x + ops.einsum("bhtk,hkd->btd", heads, w(c.W_o)) + w(c.b_o)
        return x + self.feed_forward(self.norm_ff(x)), (keys, values)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "hidden": self.hidden, "causal": self.causal,
                "cross_attention": self.cross_attention, "dropout": self.dropout_rate}

