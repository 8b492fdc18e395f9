"""Device handling: real on this CPU, and the GPU branches by their logic."""

import keras
import pytest
import tensorflow as tf

from mmcourse import device


@pytest.fixture(autouse=True)
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


class FakeGPU:
    def __init__(self, i):
        self.name = f"/physical_device:GPU:{i}"
        self.device_type = "GPU"


def test_on_this_cpu():
    assert "CPU only" in device.describe() and tf.__version__ in device.describe()
    assert device.enable_memory_growth() == 0
    assert device.precision_policy() == "float32"
    assert device.strategy() is tf.distribute.get_strategy()
    line = device.setup()
    assert "policy float32" in line and "1 replica" in line


def test_memory_growth_is_set_on_every_gpu(monkeypatch):
    fakes = [FakeGPU(0), FakeGPU(1), FakeGPU(2)]
    calls = []

    def set_growth(dev, on):
        if dev is fakes[2]:
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        calls.append((dev, on))

    monkeypatch.setattr(device, "gpus", lambda: fakes)
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", set_growth)
    assert device.enable_memory_growth() == 2
    assert calls == [(fakes[0], True), (fakes[1], True)]


def test_mixed_precision_only_on_a_gpu(monkeypatch):
    monkeypatch.setattr(device, "gpus", lambda: [FakeGPU(0)])
    assert device.precision_policy() == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    monkeypatch.setattr(device, "gpus", lambda: [])
    assert device.precision_policy() == "float32"
    assert device.precision_policy(mixed=True) == "mixed_float16"


def test_several_gpus_give_a_mirrored_strategy(monkeypatch):
    made = []
    monkeypatch.setattr(device, "gpus", lambda: [FakeGPU(0), FakeGPU(1)])
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", lambda: made.append("mirrored") or "mirrored")
    assert device.strategy() == "mirrored" and made == ["mirrored"]
    monkeypatch.setattr(device, "gpus", lambda: [FakeGPU(0)])
    assert device.strategy() is tf.distribute.get_strategy()


def test_describe_names_the_gpus(monkeypatch):
    monkeypatch.setattr(device, "gpus", lambda: [FakeGPU(0), FakeGPU(1)])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda d: {"device_name": "NVIDIA H100", "compute_capability": (9, 0)})
    assert "2 GPUs: NVIDIA H100 (compute 9.0)" in device.describe()
