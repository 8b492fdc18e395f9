"""The one training idiom of the course, in the small pieces every model shares.

Every model trains through Keras ``fit``. A model whose loss is not a plain Keras loss
overrides ``compute_loss`` (Keras then scales the loss under mixed precision and averages
gradients across replicas for it); the loss is computed in float32 and returned through
:func:`replica_share`, exactly as Keras's own losses are. Models are built and compiled
inside ``mmcourse.device.strategy().scope()``; batch sizes are global.

Library functions take a ``seed`` and use it locally: :func:`seeded` fixes the random
state that Keras draws initial weights and dropout seeds from while a model is built, then
gives the learner's own random state back untouched.
"""

from __future__ import annotations

import contextlib
import functools
import random

import numpy as np

from mmcourse._tf import tensorflow
from mmcourse.checks import check_positive_int, check_seed

tf = tensorflow()

import keras  # noqa: E402  (after the quiet TensorFlow import)
from keras import ops  # noqa: E402

__all__ = ["start_command", "compile", "build_from_one_replica", "for_precision", "summed_sparse_gradients", "LossScaleOptimizer", "seeded", "replica_share", "replica_mean", "replica_normal", "as_float32", "gather_replicas", "TimeLimit"]


@contextlib.contextmanager
def seeded(seed: int):
    """Build models reproducibly from ``seed`` without touching the caller's random state.

    Keras gives a layer built without a seed one drawn from Python's ``random`` module (its
    initialisers and dropout layers) or its global seed generator (unseeded random ops);
    inside the block both start from ``seed``; afterwards Python's, NumPy's and Keras's
    global random states are what they were before.
    """
    seed = check_seed(seed)
    from keras.src.backend.common import global_state

    saved_python, saved_numpy = random.getstate(), np.random.get_state()
    saved_generator = global_state.get_global_attribute("global_seed_generator")
    random.seed(seed)
    np.random.seed(seed)
    global_state.set_global_attribute("global_seed_generator", keras.random.SeedGenerator(seed))
    try:
        yield seed
    finally:
        random.setstate(saved_python)
        np.random.set_state(saved_numpy)
        global_state.set_global_attribute("global_seed_generator", saved_generator)


def replica_share(loss):
    """A loss averaged over this replica's share of the global batch, made ready for Keras to sum
    gradients across replicas: divided by the number of replicas (as Keras's own losses are),
    so that the summed gradient is the gradient of the global mean when the shares are equal
    (a smaller last batch weighs its replicas' means equally, as Keras does). Cast to float32."""
    loss = ops.cast(loss, "float32")
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


def replica_mean(per_example):
    """:func:`replica_share` of the mean of a per-example loss over this replica's rows, and 0
    (not NaN) for a replica left without rows (a last batch with fewer rows than replicas), as
    Keras's own losses do."""
    per_example = ops.cast(ops.reshape(per_example, (-1,)), "float32")
    return replica_share(ops.divide_no_nan(ops.sum(per_example), ops.cast(ops.shape(per_example)[0], "float32")))


def as_float32(*tensors):
    """The tensors cast to float32: losses and metrics are computed in float32 under mixed precision."""
    cast = tuple(None if t is None else ops.cast(t, "float32") for t in tensors)
    return cast[0] if len(cast) == 1 else cast


def gather_replicas(x):
    """``x`` from every replica, concatenated along the batch axis (in the replica order of the
    global batch); ``x`` itself on one device. Gradients flow back to each replica's own part,
    so a loss over the whole batch (a contrastive loss) is the same on any number of replicas."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return x
    return context.all_gather(x, axis=0)


class LossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras's loss-scaling optimizer, made safe on several replicas.

    Keras decides whether to skip a step (gradients overflowed float16) from the first
    replica's gradients alone, before they are summed; when another replica overflowed, the
    infinite gradient is applied and the weights become ``inf`` (seen with two CPU replicas).
    Here every replica first learns whether any replica overflowed, so all skip together.
    """

    def apply(self, grads, trainable_variables=None):
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            overflowed = context.all_reduce("SUM", 1.0 - ops.cast(self.check_finite(grads), "float32"))  # replicas
            finite = 1.0 - ops.minimum(overflowed, 1.0)
            grads = [None if g is None else g / ops.cast(finite, g.dtype) for g in grads]  # x/0: not finite anywhere
        return super().apply(grads, trainable_variables)


def start_command(out, *, profile=None, seed=0, precision: str = "auto", cpu_replicas=None):
    """What every ``train_command`` does first, before any data or training: check the profile,
    seed, precision and replica count (and that the CPU can still be split into that many
    devices), and create (or check writable) ``out``.
    Returns ``(profile, seed, out)`` as a :class:`mmcourse.config.Profile`, an ``int`` and a ``Path``."""
    from mmcourse import artifacts, config, device

    chosen = config.profile(profile)
    seed = check_seed(seed)
    device.resolve_precision(precision)
    if cpu_replicas is not None:
        check_positive_int(cpu_replicas, "cpu_replicas")
        if cpu_replicas > 1:
            device.strategy(cpu_replicas)  # a machine with GPUs, or a runtime started unsplit, is refused now
    return chosen, seed, artifacts.prepare_out(out)


class _SummedSparseGradients:
    """Mixed into an optimizer's class by :func:`summed_sparse_gradients`."""

    def apply(self, grads, trainable_variables=None):
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]  # sums repeated rows
        return super().apply(grads, trainable_variables)


@functools.cache
def _summing_class(cls):
    return type(cls.__name__, (_SummedSparseGradients, cls), {"__module__": cls.__module__, "__doc__": cls.__doc__})


def summed_sparse_gradients(optimizer):
    """``optimizer``, made to apply an embedding's gradient as one dense gradient. Returns the same object.

    An ``Embedding`` layer's gradient reaches the optimizer as ``tf.IndexedSlices``: a row per
    word *occurrence*, so a word used k times in a batch has k rows. Keras 3's optimizers on
    TensorFlow square those rows one by one before they are summed, so Adam's second moment
    becomes Σ g_i² instead of (Σ g_i)²: a word repeated k times then moves up to √k times
    further than the learning rate allows (measured: 4.7× on the first step for a word used 24
    times). Summing the rows first gives Adam its own update; plain SGD is unchanged.
    """
    if not isinstance(optimizer, _SummedSparseGradients):
        optimizer.__class__ = _summing_class(type(optimizer))
    return optimizer


def for_precision(optimizer, policy: str, *, initial_scale: float = 2.0**15):
    """``optimizer`` ready for a model of dtype policy ``policy``: its sparse gradients summed
    (:func:`summed_sparse_gradients`) and, under ``mixed_float16``, wrapped in
    :class:`LossScaleOptimizer` (whose scale starts at ``initial_scale`` and adapts)."""
    optimizer = summed_sparse_gradients(keras.optimizers.get(optimizer))
    if policy == "mixed_float16" and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = LossScaleOptimizer(optimizer, initial_scale=initial_scale)
    return optimizer


def compile(model: keras.Model, optimizer, *, initial_scale: float = 2.0**15, **kwargs) -> keras.Model:
    """``model.compile(optimizer, **kwargs)`` with the optimizer :func:`for_precision` the model's
    policy, and built from one replica's share of a batch (:func:`build_from_one_replica`)."""
    model.compile(optimizer=for_precision(optimizer, model.dtype_policy.name, initial_scale=initial_scale), **kwargs)
    return build_from_one_replica(model)


def build_from_one_replica(model: keras.Model) -> keras.Model:
    """Let ``fit`` and ``evaluate`` start on several replicas whatever the first batch's size.

    Before its first step under a strategy, Keras (3.10-3.15) builds the model from the first
    batch *averaged across replicas* (``strategy.reduce("MEAN", ...)``), only to learn its
    shapes. When that batch does not split evenly (fewer rows than the global batch, or a batch
    size that is not a multiple of the replicas: 199 questions on 2 replicas are 100 + 99) the
    average fails with "AddN must have the same size and shape". The first replica's share has
    the same shapes and always exists, so this model is built from it instead.

    On one device Keras builds nothing before the first step: the optimizer's moments (and
    compiled metrics) are created while the step is being traced, and TensorFlow, having seen
    variables created, traces the whole step a second time (measured: the VLM's first step
    took 29 s instead of 15). A model whose layers are built has the rest built here first.
    """
    def maybe_symbolic_build(iterator=None, data_batch=None):
        strategy = model._distribute_strategy
        if strategy is None and iterator is not None and all(layer.built for layer in model._flatten_layers()):
            for _, _, batches in iterator:
                model._symbolic_build(data_batch=next(batches))
                return
        if strategy is None or iterator is None:
            return keras_maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = tf.nest.map_structure(
                lambda v: strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v, next(batches))
            break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    keras_maybe_symbolic_build = model._maybe_symbolic_build
    model._maybe_symbolic_build = maybe_symbolic_build
    return model


def replica_normal(n, dim: int, seed):
    """Standard normal noise ``(n, dim)`` for this replica's ``n`` rows of the global batch.

    On one device: ``keras.random.normal((n, dim), seed=seed)``. On several replicas each
    one draws the noise of the *whole* global batch from the same seed (a
    ``keras.random.SeedGenerator`` advances in step on every replica) and keeps its own rows,
    so a model trained on two replicas draws exactly the noise it would draw on one device,
    and the two runs can be compared number for number.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return keras.random.normal((n, dim), seed=seed)
    sizes = context.all_gather(ops.reshape(ops.cast(n, "int32"), (1,)), axis=0)  # every replica's rows, in batch order
    start = ops.sum(sizes[: context.replica_id_in_sync_group])
    noise = keras.random.normal((ops.sum(sizes), dim), seed=seed)
    return ops.slice(noise, (start, 0), (n, dim))


class TimeLimit(keras.callbacks.Callback):
    """Stop ``fit`` after the batch that passes ``seconds`` of training: to compare models at the
    same wall time rather than the same number of steps. The clock starts after the first step,
    which traces the step's graph (seconds that depend on the model's size, not on its training).
    ``seconds_used`` and ``steps`` (those after the first) say where it stopped."""

    def __init__(self, seconds: float):
        super().__init__()
        if not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds!r}")
        self.seconds, self.seconds_used, self.steps = float(seconds), 0.0, 0
        self._start = None

    def on_train_begin(self, logs=None):
        self._start, self.steps, self.seconds_used = None, 0, 0.0

    def on_train_batch_end(self, batch, logs=None):
        import time

        if self._start is None:  # the first step: traced, not timed
            self._start = time.perf_counter()
            return
        self.steps += 1
        self.seconds_used = time.perf_counter() - self._start
        if self.seconds_used >= self.seconds:
            self.model.stop_training = True
