"""What TensorFlow runs on, and how every model of the course uses it: CPU, one GPU or several.

Three settings decide how a model trains, and every ``train_*`` function and ``mmcourse
train`` target takes them the same way:

* **precision** — ``"auto"`` (mixed precision on a GPU, float32 on a CPU), ``"float32"``
  or ``"mixed"`` (Keras's ``mixed_float16`` policy: float16 compute, float32 weights and
  losses, and a loss-scaling optimizer so small gradients survive float16);
* **the strategy** — :func:`strategy`: ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG``
  names several machines, ``MirroredStrategy`` over several GPUs, else the default strategy;
* **CPU replicas** — :func:`split_cpu` divides the CPU into logical devices so that the
  several-device path (gradients averaged across replicas) runs and is tested on a laptop.

:func:`use` applies them for a block of code (``with device.use(precision="mixed",
cpu_replicas=2) as run:``); models are built and compiled inside ``run.strategy.scope()``,
and ``run.record()`` is what ``metrics.json`` says about where the model trained.

:func:`setup` is what a notebook's setup cell calls: memory growth on every GPU (so
TensorFlow does not grab all GPU memory at once; the default here, see :mod:`mmcourse._tf`),
the precision policy, and a line that says truthfully what took effect.

Several machines: set ``TF_CONFIG`` on each (TensorFlow's own format, e.g.
``{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker",
"index": 0}}``) and run the same ``mmcourse train`` command on each; :func:`strategy` then
returns a ``MultiWorkerMirroredStrategy`` and TensorFlow's collective ops average the
gradients. Batch sizes everywhere are global: each replica sees ``batch / replicas``.
A caveat measured here: Keras 3 (3.15) ``fit`` fails under ``MultiWorkerMirroredStrategy`` at
its first batch (keras-team/keras#20585, open; ``tests/test_device.py`` runs two local workers
and will say when a Keras release fixes it). Until then, train on one machine's GPUs.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

from mmcourse.checks import check_positive_int
from mmcourse._tf import growth_from_environment, runtime_started, tensorflow

tf = tensorflow()

__all__ = [
    "PRECISIONS", "gpus", "describe", "enable_memory_growth", "memory_growth", "precision_policy", "resolve_precision",
    "split_cpu", "strategy", "use", "Run", "setup",
]

PRECISIONS = ("auto", "float32", "mixed")


def gpus() -> list:
    """The GPUs TensorFlow can see (physical devices: looking does not start the runtime)."""
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
    return f"TensorFlow {tf.__version__}, Keras {_keras_version()} · {device_line()}"


def device_line() -> str:
    """The hardware in a few words: ``CPU only (2 cores)`` or ``2 GPUs: NVIDIA H100 (compute 9.0)``."""
    found = gpus()
    if not found:
        return f"CPU only ({os.cpu_count() or 1} cores)"
    names = sorted({_gpu_name(d) for d in found})
    return f"{len(found)} GPU{'s' if len(found) > 1 else ''}: {', '.join(names)}"


def _keras_version() -> str:
    import keras

    return keras.__version__


def memory_growth() -> bool | None:
    """Whether every GPU's memory grows as needed (``None`` without a GPU): what
    ``TF_FORCE_GPU_ALLOW_GROWTH`` decided when the runtime started, else ``set_memory_growth``."""
    found = gpus()
    if not found:
        return None
    decided = growth_from_environment()
    if decided is not None:
        return decided
    return all(tf.config.experimental.get_memory_growth(d) for d in found)


def enable_memory_growth() -> int:
    """Let every GPU's memory grow as needed; return how many GPUs have it on.

    It must happen before TensorFlow's runtime starts. Importing :mod:`mmcourse` does not
    start it, and sets ``TF_FORCE_GPU_ALLOW_GROWTH=true`` unless you set it otherwise, so
    growth is normally already on. Raises ``RuntimeError`` saying what to do when it cannot
    be on: the runtime started with growth off (restart the kernel and call this first), or
    ``TF_FORCE_GPU_ALLOW_GROWTH`` is set to something other than ``true``.
    """
    found = gpus()
    decided = growth_from_environment()
    if decided is True:
        return len(found)
    if decided is False and found:
        raise RuntimeError(
            f"GPU memory growth is off: TF_FORCE_GPU_ALLOW_GROWTH={os.environ.get('TF_FORCE_GPU_ALLOW_GROWTH')!r} "
            "in the environment overrides it. Unset it (or set it to true) and restart the kernel"
        )
    for d in found:
        try:
            if not tf.config.experimental.get_memory_growth(d):
                tf.config.experimental.set_memory_growth(d, True)
        except RuntimeError as error:
            raise RuntimeError(
                "too late to turn on GPU memory growth: TensorFlow has already started and took the GPU's memory. "
                "Restart the kernel and call mmcourse.device.setup() before anything else uses TensorFlow "
                "(or set TF_FORCE_GPU_ALLOW_GROWTH=true before starting Python)"
            ) from error
    return len(found)


def resolve_precision(precision: str = "auto") -> str:
    """Keras's policy name for a precision setting: ``"mixed_float16"`` or ``"float32"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        return "mixed_float16" if gpus() else "float32"
    return "mixed_float16" if precision == "mixed" else "float32"


def precision_policy(mixed: bool | None = None) -> str:
    """Set and return Keras's global dtype policy: ``mixed_float16`` on a GPU, ``float32`` on a CPU.

    ``mixed=None`` decides by the hardware; ``True``/``False`` force it (mixed precision on
    a CPU runs, slowly: it is how the course tests that path without a GPU).
    """
    import keras

    name = resolve_precision("auto" if mixed is None else "mixed" if mixed else "float32")
    keras.mixed_precision.set_global_policy(name)
    return name


def split_cpu(replicas: int) -> list[str]:
    """Divide the CPU into ``replicas`` logical devices (once, before TensorFlow's runtime starts);
    return their names. They share the same cores: this tests the several-device path, it does
    not speed anything up."""
    check_positive_int(replicas, "cpu_replicas")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) >= replicas:
        return [f"/cpu:{i}" for i in range(replicas)]
    if runtime_started():
        have = len(current) if current else 1
        raise RuntimeError(
            f"cannot split the CPU into {replicas} devices: TensorFlow has already started with {have}. "
            "Split it first thing in a fresh process (`mmcourse train ... --cpu-replicas N` does)"
        )
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
    return [f"/cpu:{i}" for i in range(replicas)]


_STRATEGIES: dict = {}


def strategy(cpu_replicas: int | None = None) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy to build, compile and train models under.

    ``TF_CONFIG`` with several workers → ``MultiWorkerMirroredStrategy``; several GPUs →
    ``MirroredStrategy``; ``cpu_replicas=N > 1`` (CPU only, see :func:`split_cpu`) →
    ``MirroredStrategy`` over N logical CPUs; otherwise TensorFlow's default strategy. Inside
    :func:`use` it returns the strategy of that block. The same strategy object is returned
    for the same setting (a model must be used with the strategy it was built under).
    """
    if cpu_replicas is None and _ACTIVE:
        return _ACTIVE[-1].strategy
    if cpu_replicas and cpu_replicas > 1:
        if gpus():
            raise ValueError("cpu_replicas is for testing several devices on a CPU; this machine has GPUs: leave it unset")
        devices = split_cpu(cpu_replicas)
        key = ("cpu", cpu_replicas)
        if key not in _STRATEGIES:
            _STRATEGIES[key] = tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
        return _STRATEGIES[key]
    if _workers() > 1:
        if "workers" not in _STRATEGIES:
            _STRATEGIES["workers"] = tf.distribute.MultiWorkerMirroredStrategy()
        return _STRATEGIES["workers"]
    if len(gpus()) > 1:
        if "gpus" not in _STRATEGIES:
            _STRATEGIES["gpus"] = tf.distribute.MirroredStrategy()
        return _STRATEGIES["gpus"]
    return tf.distribute.get_strategy()


def _workers() -> int:
    text = os.environ.get("TF_CONFIG")
    if not text:
        return 1
    try:
        cluster = json.loads(text).get("cluster", {})
    except (json.JSONDecodeError, AttributeError) as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


@dataclass(frozen=True)
class Run:
    """Where and how a model trains: the strategy, the policy name, the device line."""

    strategy: tf.distribute.Strategy
    precision: str
    device: str

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def record(self) -> dict:
        """What ``metrics.json`` says about it: ``precision``, ``replicas``, ``device``."""
        return {"precision": self.precision, "replicas": self.replicas, "device": self.device}


_ACTIVE: list[Run] = []


@contextlib.contextmanager
def use(precision: str = "auto", cpu_replicas: int | None = None):
    """Train under a precision and strategy for the length of a ``with`` block, then restore
    Keras's dtype policy. Yields a :class:`Run`. Inside, :func:`strategy` returns its strategy,
    so library functions that build models in ``strategy().scope()`` pick it up."""
    import keras

    name = resolve_precision(precision)
    chosen = strategy(cpu_replicas) if cpu_replicas else strategy()
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    replicas = int(chosen.num_replicas_in_sync)
    where = device_line() + (f" split into {replicas} logical devices" if cpu_replicas and cpu_replicas > 1 else "")
    run = Run(chosen, name, where)
    _ACTIVE.append(run)
    try:
        yield run
    finally:
        _ACTIVE.pop()
        keras.mixed_precision.set_global_policy(previous)


def setup(mixed_precision: bool | None = None) -> str:
    """Memory growth, the precision policy and a line saying what took effect (for the setup cell)."""
    growth = ""
    if gpus():
        try:
            enable_memory_growth()
            growth = " · GPU memory grows as needed"
        except RuntimeError as error:
            growth = f" · GPU memory growth OFF ({error})"
    policy = precision_policy(mixed_precision)
    replicas = strategy().num_replicas_in_sync
    return f"{describe()} · policy {policy} · {replicas} replica{'s' if replicas > 1 else ''}{growth}"
