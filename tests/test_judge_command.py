"""`mmcourse train judge`: the judge it writes loads (checksum-verified) and reads as recorded."""

import pytest

from mmcourse import artifacts
from mmcourse.data import shapes
from mmcourse.metrics import judge as J


def test_train_judge_writes_a_judge_that_reads_as_recorded(tmp_path, monkeypatch):
    monkeypatch.setitem(J.TRAIN_SIZES, "quick", (128, 1))  # a poor judge, but a real one: the figures must match
    metrics = J.train_command(tmp_path, profile="quick", seed=1, progress=False)
    assert metrics["train_images"] == 128 and metrics["precision"] == "float32" and metrics["replicas"] == 1
    assert (tmp_path / "SHA256").read_text().split()[1] == J.MODEL_FILE
    judge = J.SceneJudge.load(tmp_path)
    test = shapes.generate(metrics["test_images"], seed=tuple(metrics["test_seed"]))
    assert judge.read_accuracy(test) == pytest.approx(metrics["read_accuracy"], abs=1e-9)
    assert artifacts.read_metrics(tmp_path) == metrics
