"""The denoiser of latent diffusion: a small U-Net that reads a caption, ``ε̂(x_t, t, caption)``.

Inputs ``{"noisy": (n, s, s, c), "t": (n,) int32, "caption": (n, L) word ids}``; output the
predicted noise, ``(n, s, s, c)`` float32. For 16×16 latents::

    caption ids → word vectors + positions → 2 Transformer blocks        (the caption's tokens)
    t → sinusoidal code → MLP;  + the caption tokens' mean                (one vector: "when, and what")
    16×16: conv, ResBlock ────────────────────────────────┐ skip
     8×8:  ResBlock + attention (self, then cross to the words) ──┐ skip
     4×4:  ResBlock + attention, ResBlock                         │  │
     8×8:  ResBlock(concat skip) + attention ◄────────────────────┘  │
    16×16: ResBlock(concat skip) ◄───────────────────────────────────┘ → conv → ε̂

**Two ways in for the caption, for two jobs.** Every ResBlock is modulated by the time and
pooled-caption vector (FiLM: a per-channel scale and shift): cheap, and enough to say *how
noisy* and *which colours and shapes*. But a pooled vector cannot say which colour goes with
which shape, or which object is left of which: every cell of the image would receive the same
sentence-summary. Cross-attention lets each cell of the 8×8 and 4×4 grids ask the caption's
words what belongs *there* (Stable Diffusion's choice). The attention tokens carry a fixed 2-D
position code, and the input gains two coordinate channels, so "left of" and "above" have
somewhere to point.

The empty caption (``<start> <end>``, :func:`null_caption`) is the unconditional model of
classifier-free guidance: training replaces ~10 % of captions with it.
"""

from __future__ import annotations

import numpy as np

from mmcourse.checks import check_positive_int
from mmcourse._tf import tensorflow

tensorflow()
import keras  # noqa: E402
from keras import ops  # noqa: E402

from mmcourse.data import shapes  # noqa: E402
from mmcourse.layers.transformer import PositionalEmbedding, TransformerBlock, sinusoidal_positions, sinusoidal_positions_2d  # noqa: E402

__all__ = ["null_caption", "timestep_code", "FiLM", "GridAttention", "build_denoiser", "layout_channels", "with_layout"]


def null_caption(length: int = shapes.CAPTION_LENGTH) -> np.ndarray:
    """The empty caption's ids ``(length,)``: ``<start> <end>`` and padding."""
    ids = np.zeros(length, np.int32)
    ids[:2] = (shapes.caption_vocabulary().start_id, shapes.caption_vocabulary().end_id)
    return ids


def timestep_code(t, dim: int, *, max_period: float = 10_000.0):
    """The sinusoidal code of each step ``t`` (as a Transformer's positions): ``(n, dim)`` float32."""
    half = dim // 2
    freqs = np.exp(-np.log(max_period) * np.arange(half) / half).astype(np.float32)
    angles = ops.cast(ops.reshape(t, (-1, 1)), "float32") * freqs[None]
    return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)


@keras.saving.register_keras_serializable(package="mmcourse")
class FiLM(keras.layers.Layer):
    """``x · (1 + scale) + shift``, scale and shift per channel from a conditioning vector (zero at first)."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.proj = keras.layers.Dense(2 * channels, kernel_initializer="zeros", dtype=self.dtype_policy)

    def build(self, x_shape, condition_shape=None):
        self.proj.build(condition_shape)

    def call(self, x, condition):
        scale, shift = ops.split(ops.cast(self.proj(condition), x.dtype), 2, axis=-1)
        return x * (1 + scale[:, None, None]) + shift[:, None, None]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def _resblock(x, condition, width, dtype, name):
    skip = x if x.shape[-1] == width else keras.layers.Conv2D(width, 1, dtype=dtype, name=f"{name}_skip")(x)
    h = keras.layers.GroupNormalization(min(8, x.shape[-1]), dtype=dtype, name=f"{name}_norm1")(x)
    h = keras.layers.Conv2D(width, 3, padding="same", dtype=dtype, name=f"{name}_conv1")(keras.layers.Activation("silu", dtype=dtype)(h))
    h = keras.layers.GroupNormalization(min(8, width), dtype=dtype, name=f"{name}_norm2")(h)
    h = FiLM(width, dtype=dtype, name=f"{name}_film")(h, condition)
    h = keras.layers.Conv2D(width, 3, padding="same", dtype=dtype, name=f"{name}_conv2")(keras.layers.Activation("silu", dtype=dtype)(h))
    return keras.layers.Add(dtype=dtype, name=f"{name}_add")([skip, h])


@keras.saving.register_keras_serializable(package="mmcourse")
class GridAttention(keras.layers.Layer):
    """A grid's cells as tokens (plus a fixed 2-D position code) through one Transformer block with
    cross-attention to the caption's tokens, then back to a grid."""

    def __init__(self, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads

    def build(self, grid_shape, memory_shape=None, memory_mask_shape=None):
        side, width = grid_shape[1], grid_shape[-1]
        self.positions = sinusoidal_positions_2d(side, width).astype(np.float32)
        self.block = TransformerBlock(self.num_heads, 2 * width, cross_attention=True, dtype=self.dtype_policy, name="block")
        self.block.build((None, side * side, width), (None, memory_shape[1], width))

    def call(self, grid, memory, memory_mask):
        side, width = grid.shape[1], grid.shape[-1]
        tokens = ops.reshape(grid, (-1, side * side, width)) + ops.cast(self.positions, grid.dtype)
        tokens = self.block(tokens, memory=memory, memory_mask=memory_mask)
        return ops.reshape(tokens, (-1, side, side, width))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


def build_denoiser(latent_shape=(16, 16, 4), *, vocabulary_size: int | None = None, width: int = 64, text_width: int = 64,
                   num_heads: int = 4, caption_length: int = shapes.CAPTION_LENGTH, layout_channels: int = 0, dtype=None,
                   name: str = "denoiser") -> keras.Model:
    """The caption-conditioned U-Net described above (``width`` channels at full size, 2× below).

    With ``layout_channels`` it also takes ``"layout"``, what-is-where maps ``(n, s, s,
    layout_channels)`` (:mod:`mmcourse.models.layout`), added to the first features at full and
    half size through convolutions that start at zero (as ControlNet's): built on a trained
    caption-only denoiser's weights (:func:`with_layout`), it first draws exactly as that one did.

    ``vocabulary_size`` defaults to the Shapes caption vocabulary's. Layers take ``dtype``
    (Keras's global policy by default); the output layer computes in float32.
    """
    side, _, channels = latent_shape
    if side % 4:
        raise ValueError(f"the latent's side must be a multiple of 4 (two halvings), got {side}")
    width = check_positive_int(width, "width")
    vocabulary_size = vocabulary_size or len(shapes.caption_vocabulary())
    noisy = keras.Input(latent_shape, name="noisy")
    t = keras.Input((), dtype="int32", name="t")
    caption = keras.Input((caption_length,), dtype="int32", name="caption")

    # the caption: its tokens (for cross-attention) and their mean (for FiLM)
    real = ops.not_equal(caption, 0)
    words = keras.layers.Embedding(vocabulary_size, text_width, dtype=dtype, name="word_vectors")(caption)
    words = PositionalEmbedding(caption_length, kind="sinusoidal", dtype=dtype, name="word_positions")(words)
    for k in range(2):
        words = TransformerBlock(num_heads, 2 * text_width, dtype=dtype, name=f"text_block{k}")(words, mask=real)
    words = keras.layers.LayerNormalization(epsilon=1e-5, dtype=dtype, name="text_norm")(words)
    weights = ops.cast(real, words.dtype)[..., None]
    pooled = ops.sum(words * weights, axis=1) / ops.sum(weights, axis=1)

    code = timestep_code(t, width)
    condition = keras.layers.Dense(4 * width, activation="silu", dtype=dtype, name="time_mlp1")(code)
    condition = keras.layers.Dense(4 * width, dtype=dtype, name="time_mlp2")(condition)
    condition = keras.layers.Add(dtype=dtype)([condition, keras.layers.Dense(4 * width, dtype=dtype, name="caption_film")(pooled)])
    condition = keras.layers.Activation("silu", dtype=dtype)(condition)

    # the U
    coordinates = np.stack(np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side), indexing="xy"), -1).astype(np.float32)
    x = ops.concatenate([noisy, ops.zeros_like(noisy[..., :2]) + ops.cast(coordinates, noisy.dtype)], axis=-1)  # (x, y) of every cell
    x = keras.layers.Conv2D(width, 3, padding="same", dtype=dtype, name="in_conv")(x)
    inputs = {"noisy": noisy, "t": t, "caption": caption}
    if layout_channels:
        layout = inputs["layout"] = keras.Input((side, side, layout_channels), name="layout")
        x = x + keras.layers.Conv2D(width, 3, padding="same", kernel_initializer="zeros", dtype=dtype, name="layout_full")(layout)
    skip_full = x = _resblock(x, condition, width, dtype, "down_full")
    x = keras.layers.Conv2D(2 * width, 4, strides=2, padding="same", dtype=dtype, name="down1")(x)
    if layout_channels:
        half = keras.layers.AveragePooling2D(2, dtype=dtype)(layout)
        x = x + keras.layers.Conv2D(2 * width, 3, padding="same", kernel_initializer="zeros", dtype=dtype, name="layout_half")(half)
    x = _resblock(x, condition, 2 * width, dtype, "down_half")
    memory = keras.layers.Dense(2 * width, dtype=dtype, name="memory_proj")(words)
    skip_half = x = GridAttention(num_heads, dtype=dtype, name="attention_half")(x, memory, real)
    x = keras.layers.Conv2D(2 * width, 4, strides=2, padding="same", dtype=dtype, name="down2")(x)
    x = _resblock(x, condition, 2 * width, dtype, "middle1")
    x = GridAttention(num_heads, dtype=dtype, name="attention_middle")(x, memory, real)
    x = _resblock(x, condition, 2 * width, dtype, "middle2")
    x = keras.layers.UpSampling2D(2, dtype=dtype)(x)
    x = _resblock(keras.layers.Concatenate(dtype=dtype)([x, skip_half]), condition, 2 * width, dtype, "up_half")
    x = GridAttention(num_heads, dtype=dtype, name="attention_up")(x, memory, real)
    x = keras.layers.UpSampling2D(2, dtype=dtype)(x)
    x = _resblock(keras.layers.Concatenate(dtype=dtype)([x, skip_full]), condition, width, dtype, "up_full")
    x = keras.layers.GroupNormalization(8, dtype=dtype, name="out_norm")(x)
    x = keras.layers.Activation("silu", dtype=dtype)(x)
    eps = keras.layers.Conv2D(channels, 3, padding="same", kernel_initializer="zeros", dtype="float32", name="out_conv")(x)
    return keras.Model(inputs, eps, name=name)


def layout_channels(model: keras.Model) -> int:
    """How many what-is-where channels ``model`` takes (0: a caption-only denoiser)."""
    layout = model.input.get("layout") if isinstance(model.input, dict) else None
    return 0 if layout is None else int(layout.shape[-1])


def with_layout(denoiser: keras.Model, channels: int) -> keras.Model:
    """A denoiser like the caption-only ``denoiser`` (same sizes, read off its layers) that also
    takes ``channels`` what-is-where maps, every layer but the two new ones holding a copy of
    ``denoiser``'s weights."""
    model = build_denoiser(denoiser.input["noisy"].shape[1:], vocabulary_size=denoiser.get_layer("word_vectors").input_dim,
                           width=denoiser.get_layer("in_conv").filters, text_width=denoiser.get_layer("word_vectors").output_dim,
                           num_heads=denoiser.get_layer("attention_middle").num_heads, caption_length=denoiser.input["caption"].shape[-1],
                           layout_channels=channels, dtype=denoiser.dtype_policy, name=denoiser.name)
    for layer in denoiser.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    return model
