"""Import TensorFlow without its C++ start-up chatter.

On a machine without CUDA, TensorFlow's C++ core writes "Could not find cuda drivers"
and "failed call to cuInit" straight to file descriptor 2 before any Python setting can
stop it. Those lines end up in notebook outputs and trip ``nbval``, so the first import
and the first device query run with descriptor 2 pointed at /dev/null. Python errors
are unaffected: an import that fails still raises.
"""

from __future__ import annotations

import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


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


def tensorflow():
    """The ``tensorflow`` module, imported quietly the first time."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _stderr_to_devnull():
        import tensorflow as tf

        tf.config.list_logical_devices()  # starts the runtime, which logs cuInit failures
    return tf
