"""What TensorFlow runs on, and how to use it well: CPU, one GPU or several.

:func:`setup` is what a notebook's setup cell calls: memory growth on every GPU (so
TensorFlow does not grab all GPU memory at once), mixed precision only on a GPU (on a
CPU float16 is slower and less accurate), and a one-line description to print.
"""

from __future__ import annotations

import os

from mmcourse._tf import tensorflow

tf = tensorflow()

__all__ = ["gpus", "describe", "enable_memory_growth", "precision_policy", "strategy", "setup"]


def gpus() -> list:
    """The GPUs TensorFlow can see."""
    return tf.config.list_physical_devices("GPU")


def _gpu_name(device) -> str:
    try:
        details = tf.config.experimental.get_device_details(device)
    except (ValueError, RuntimeError, TypeError):
        details = {}
    name = details.get("device_name") or device.name
    cc = details.get("compute_capability")
    return f"{name} (compute {cc[0]}.{cc[1]})" if cc else name


def describe() -> str:
    """One line: TensorFlow's version and the devices it will use."""
    found = gpus()
    cpus = os.cpu_count() or 1
    if not found:
        where = f"CPU only ({cpus} cores)"
    else:
        names = sorted({_gpu_name(d) for d in found})
        where = f"{len(found)} GPU{'s' if len(found) > 1 else ''}: {', '.join(names)}"
    return f"TensorFlow {tf.__version__}, Keras {_keras_version()} · {where}"


def _keras_version() -> str:
    import keras

    return keras.__version__


def enable_memory_growth() -> int:
    """Let every GPU's memory grow as needed; return how many GPUs were set.

    Must run before TensorFlow touches the GPU; when it is too late TensorFlow raises
    ``RuntimeError``, and the GPU keeps its current setting (which still works).
    """
    count = 0
    for device in gpus():
        try:
            tf.config.experimental.set_memory_growth(device, True)
            count += 1
        except RuntimeError:
            pass  # already initialised: the setting cannot change any more
    return count


def precision_policy(mixed: bool | None = None) -> str:
    """Set and return Keras's dtype policy: ``mixed_float16`` on a GPU, ``float32`` on a CPU.

    ``mixed=None`` decides by the hardware; ``True``/``False`` force it (forcing mixed
    precision on a CPU is allowed, but slow).
    """
    import keras

    use_mixed = bool(gpus()) if mixed is None else mixed
    name = "mixed_float16" if use_mixed else "float32"
    keras.mixed_precision.set_global_policy(name)
    return name


def strategy() -> tf.distribute.Strategy:
    """``MirroredStrategy`` over several GPUs; otherwise TensorFlow's default strategy.

    Build and compile models inside ``with strategy().scope():`` and the same code runs
    on a laptop CPU, one GPU or several.
    """
    found = gpus()
    if len(found) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def setup(mixed_precision: bool | None = None) -> str:
    """Memory growth, the precision policy and a line describing it all (for the setup cell)."""
    enable_memory_growth()
    policy = precision_policy(mixed_precision)
    replicas = strategy().num_replicas_in_sync
    return f"{describe()} · policy {policy} · {replicas} replica{'s' if replicas > 1 else ''}"
