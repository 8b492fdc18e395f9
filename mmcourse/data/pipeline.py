"""Training batches as ``tf.data`` pipelines: which rows, in which order, and what each row brings.

Every model of the course trains from tables held in memory (images or their grids, caption
ids, answers, meaning codes). Its pipeline is two steps: batches of row numbers
(:func:`row_batches`), then a function that gathers those rows from the tables
(:func:`batches`, with :func:`take`); a model's module only says which tables it gathers.

Both steps are replica-safe: the order of every pass is drawn up front from a seed (not by
``tf.data``'s reshuffling), and a random choice inside a batch (:func:`pick_reference`) is a
function of the seed and the batch's number. One device and several replicas, which split
each global batch after it is made, therefore train on exactly the same batches.
"""

from __future__ import annotations

import numpy as np

from mmcourse.checks import check_positive_int

__all__ = ["row_batches", "batches", "table_batches", "take", "pick_reference"]


def row_batches(n: int, *, batch_size: int, epochs: int = 1, seed=None, full_batches: bool = False):
    """Batches of row numbers ``0 … n-1`` (int64) for ``epochs`` passes: in order (``seed=None``),
    or each pass in its own order drawn from ``seed``.

    A pass is ``⌈n / batch_size⌉`` batches, the last one smaller, or with ``full_batches`` the
    ``n // batch_size`` full ones (a contrastive batch needs all its negatives). Read it with
    one ``fit(..., epochs=epochs, steps_per_epoch=<batches a pass>)``.

    The orders are drawn up front, so they do not depend on how often the pipeline is iterated
    (TensorFlow's ``shuffle(reshuffle_each_iteration=True)`` does: a ``MirroredStrategy``
    iterates it a different number of times than one device does, and trains on other batches).
    """
    from mmcourse._tf import tensorflow

    tf = tensorflow()
    batch_size = check_positive_int(batch_size, "batch_size")
    epochs = check_positive_int(epochs, "epochs")
    if seed is None:
        orders = np.tile(np.arange(n, dtype=np.int64), (epochs, 1))
    else:
        rng = np.random.default_rng(seed)
        orders = np.stack([rng.permutation(n) for _ in range(epochs)]) if n else np.zeros((epochs, 0), np.int64)
    return tf.data.Dataset.from_tensor_slices(orders).flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=full_batches)
    )


def batches(n: int, gather, *, batch_size: int, epochs: int = 1, seed=None, full_batches: bool = False):
    """:func:`row_batches` with every batch turned into what the model reads by ``gather(step, rows)``,
    prefetched. ``step`` is the batch's number, counted over all passes (for :func:`pick_reference`);
    ``gather`` is plain tensor code (it is traced as it is, without AutoGraph)."""
    from mmcourse._tf import tensorflow

    tf = tensorflow()
    rows = row_batches(n, batch_size=batch_size, epochs=epochs, seed=seed, full_batches=full_batches)
    gather = tf.autograph.experimental.do_not_convert(gather)
    return rows.enumerate().map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def table_batches(tables, *, batch_size: int, epochs: int = 1, seed=None):
    """The rows of in-memory arrays in :func:`batches`: ``tables`` is an array, or a tuple or dict
    of them (nested as the batches should be), all with one row per example."""
    from mmcourse._tf import tensorflow

    tf = tensorflow()
    tables = tf.nest.map_structure(tf.constant, tables)
    n = len(tf.nest.flatten(tables)[0])
    return batches(n, lambda step, rows: take(tables, rows), batch_size=batch_size, epochs=epochs, seed=seed)


def take(tables, rows, reference=None):
    """The rows ``rows`` of every tensor in ``tables`` (a tensor, or a tuple or dict of them); with
    ``reference`` (one number per row, e.g. from :func:`pick_reference`), of tables that hold
    several entries per row, ``(rows, references, ...)``, each row's chosen entry."""
    from mmcourse._tf import tensorflow

    tf = tensorflow()
    if reference is None:
        return tf.nest.map_structure(lambda table: tf.gather(table, rows), tables)
    at = tf.stack([rows, reference], axis=-1)
    return tf.nest.map_structure(lambda table: tf.gather_nd(table, at), tables)


def pick_reference(rows, references: int, *, seed: int, step):
    """For every row of a batch, which of its ``references`` reference captions it brings (int64):
    uniform, drawn afresh at every step from ``(seed, step)``, so that over the passes every
    image is seen with all of its captions, and one device and several draw the same."""
    from mmcourse._tf import tensorflow

    tf = tensorflow()
    return tf.random.stateless_uniform(tf.shape(rows), seed=tf.stack([tf.cast(seed, tf.int64), step]), maxval=references, dtype=tf.int64)
