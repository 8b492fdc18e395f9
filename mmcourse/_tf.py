"""Import TensorFlow without its C++ start-up chatter, and without starting its runtime.

On a machine without CUDA, TensorFlow's C++ core writes "Could not find cuda drivers"
and "failed call to cuInit" straight to file descriptor 2 before any Python setting can
stop it. Those lines end up in notebook outputs and trip ``nbval``, so the first import
and the first look at the *physical* devices (which calls cuInit) run with descriptor 2
pointed at /dev/null. Python errors are unaffected: an import that fails still raises.

Only physical devices are listed: listing *logical* devices would start TensorFlow's
runtime, after which memory growth and logical device splits can no longer be set
(:mod:`mmcourse.device` sets them). ``TF_FORCE_GPU_ALLOW_GROWTH=true`` is the default
here for the same reason: whichever code starts the runtime first, a GPU's memory grows
as needed instead of being taken whole (two kernels in one classroom can share a GPU).
"""

from __future__ import annotations

import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # 3, not 2: oneDNN logs "supports DT_BOOL only on platforms with AVX-512" at ERROR level mid-training


def _started_already() -> bool:
    """Whether TensorFlow's runtime started before this module was imported (without importing it)."""
    if "tensorflow" not in sys.modules:
        return False
    from tensorflow.python.eager import context

    return context.context()._context_handle is not None  # noqa: SLF001 - TensorFlow offers no public query


# TensorFlow reads TF_FORCE_GPU_ALLOW_GROWTH once, when its runtime starts, and the variable then
# overrides set_memory_growth. Remember whether the learner set it, and whether ours came in time.
_GROWTH_SET_BY_LEARNER = os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH")
_GROWTH_DEFAULT_TOO_LATE = _GROWTH_SET_BY_LEARNER is None and _started_already()
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


def growth_from_environment() -> bool | None:
    """What ``TF_FORCE_GPU_ALLOW_GROWTH`` decides for the runtime: ``True`` (memory grows),
    ``False`` (the learner set it to something else: growth stays off whatever
    ``set_memory_growth`` says), or ``None`` when it decides nothing (TensorFlow had started
    before :mod:`mmcourse` set it, so ``set_memory_growth`` before that start decided)."""
    if _GROWTH_DEFAULT_TOO_LATE:
        return None
    return os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "").lower() == "true"


@contextlib.contextmanager
def _stderr_to_devnull():
    fd = 2  # the C++ core writes to the process's descriptor 2, whatever sys.stderr is
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


_QUIETED = False


def tensorflow():
    """The ``tensorflow`` module, imported quietly the first time (its runtime not started)."""
    global _QUIETED
    if _QUIETED:
        return sys.modules["tensorflow"]
    with _stderr_to_devnull():
        import tensorflow as tf

        tf.config.list_physical_devices()  # cuInit, which logs its failure on a machine without CUDA
    _QUIETED = True
    return tf


def runtime_started() -> bool:
    """Whether TensorFlow's runtime has started (after which devices cannot be reconfigured)."""
    tensorflow()
    return _started_already()
