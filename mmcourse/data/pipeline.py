"""From arrays to ``tf.data`` pipelines: shuffled, batched, prefetched."""

from __future__ import annotations

import numpy as np

from mmcourse.checks import check_positive_int

__all__ = ["image_caption_dataset"]


def image_caption_dataset(
    images: np.ndarray,
    tokens: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int | None = None,
    teacher_forcing: bool = False,
    drop_remainder: bool = False,
):
    """A ``tf.data.Dataset`` of image–caption batches.

    Args:
        images: ``(n, H, W, 3)`` uint8; batches carry them as float32 in ``[0, 1]``.
        tokens: encoded captions, ``(n, L)`` (one per image) or ``(n, k, L)`` (k per image;
            each image is paired with each of its captions, without copying the images).
        batch_size: pairs per batch.
        shuffle: reshuffle the pairs every epoch (with ``seed`` for a repeatable order).
        teacher_forcing: yield ``((image, tokens[:-1]), tokens[1:])``, the inputs and targets
            of a captioning decoder; otherwise ``(image, tokens)``.
    """
    from mmcourse._tf import tensorflow

    tf = tensorflow()

    images = np.asarray(images)
    tokens = np.asarray(tokens)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (n, height, width, 3), got shape {images.shape}")
    if tokens.ndim not in (2, 3) or len(tokens) != len(images):
        raise ValueError(
            f"tokens must be (n, length) or (n, captions, length) with n = {len(images)} images, got shape {tokens.shape}"
        )
    check_positive_int(batch_size, "batch_size")
    per_image = 1 if tokens.ndim == 2 else tokens.shape[1]
    flat_tokens = tf.constant(tokens.reshape(-1, tokens.shape[-1]).astype(np.int32))
    image_table = tf.constant(images)
    ds = tf.data.Dataset.range(len(flat_tokens))
    if shuffle:
        ds = ds.shuffle(len(flat_tokens), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def gather(pair_index):
        image = tf.cast(tf.gather(image_table, pair_index // per_image), tf.float32) / 255.0
        caption = tf.gather(flat_tokens, pair_index)
        if teacher_forcing:
            return (image, caption[:, :-1]), caption[:, 1:]
        return image, caption

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
