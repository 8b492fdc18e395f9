import os

# Before anything imports TensorFlow: keep its C++ log lines out of test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import hashlib  # noqa: E402

import pytest  # noqa: E402

from mmcourse import device  # noqa: E402

# Two logical CPUs in every test process, before TensorFlow's runtime starts, so that tests can
# train the same model on one device and on two replicas (`device.use(cpu_replicas=2)`) and
# compare. Ops without a strategy still run on /cpu:0 with all the cores.
device.split_cpu(2)


@pytest.fixture
def assert_shipped_unchanged():
    """Check files of a shipped model folder against the SHA-256 sums listed in its SHA256 file."""

    def check(folder, names):
        listed = dict(line.split()[::-1] for line in (folder / "SHA256").read_text().splitlines() if line.strip())
        for name in names:
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == listed[name], f"{name} changed since it was shipped"

    return check
