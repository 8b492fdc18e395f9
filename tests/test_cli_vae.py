"""`mmcourse train vae`: the files it writes, re-read and re-measured.

Tiny sizes (64 training images × 1 epoch, 32 test images, a judge of 64 images × 1 epoch):
what is checked is that the command writes what it measured, not how good the model is.
"""

import dataclasses

import numpy as np
import pytest

from mmcourse import artifacts, config
from mmcourse.cli import main
from mmcourse.data import shapes
from mmcourse.models import generative as G


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(G.TRAIN_SIZES, "quick", {"plain": (64, 1), "conditional": (64, 1)})
    monkeypatch.setitem(G.JUDGE_SIZES, "quick", (64, 1))
    monkeypatch.setitem(config.PROFILES, "quick", dataclasses.replace(config.PROFILES["quick"], n_test=32))


def _remeasured(folder, written, conditional):
    """The ELBO of the model saved in ``folder`` (its files checked against SHA256), re-measured
    on the test images ``metrics.json`` names."""
    test = shapes.generate(written["test_images"], seed=tuple(written["test_seed"]), objects=(1, 2) if conditional else (1,))
    return G.measure_elbo(G.load(folder), test)


def test_train_vae_writes_what_it_measured(tmp_path, capsys, tiny):
    assert main(["train", "vae", "--out", str(tmp_path), "--profile", "quick", "--seed", "1"]) == 0
    written = artifacts.read_metrics(tmp_path)
    assert written["profile"] == "quick" and written["seed"] == 1 and written["test_seed"] == [1, 2] and not written["conditional"]
    assert written["precision"] == "float32" and written["replicas"] == 1 and written["train_images"] == 64
    remeasured = _remeasured(tmp_path, written, False)
    for key in ("test_elbo", "test_reconstruction", "test_kl"):
        assert remeasured[key] == pytest.approx(written[key], rel=1e-5), key
    assert np.isclose(written["test_elbo"], written["test_reconstruction"] - written["test_kl"], rtol=1e-4)
    assert G.load(tmp_path).decoder_kind == "broadcast" and sorted(p.name for p in tmp_path.iterdir()) == ["SHA256", "metrics.json", "vae.keras"]
    printed = capsys.readouterr().out
    assert "test ELBO" in printed and "prior samples with one object" in printed


def test_train_conditional_vae_on_two_replicas_in_mixed_precision(tmp_path, tiny, monkeypatch):
    """The several-device, mixed-precision path of the command, end to end: it records where it
    trained. Tinier still (one step of 8 images, 8 test images, a judge of 32): this CPU runs
    float16 convolutions emulated, about 0.5 s per image and step."""
    monkeypatch.setitem(G.TRAIN_SIZES, "quick", {"plain": (8, 1), "conditional": (8, 1)})
    monkeypatch.setitem(G.JUDGE_SIZES, "quick", (32, 1))
    monkeypatch.setitem(config.PROFILES, "quick", dataclasses.replace(config.PROFILES["quick"], n_test=8))
    assert main(["train", "vae", "--conditional", "--out", str(tmp_path), "--profile", "quick",
                 "--precision", "mixed", "--cpu-replicas", "2"]) == 0
    written = artifacts.read_metrics(tmp_path)
    assert written["conditional"] and written["precision"] == "mixed_float16" and written["replicas"] == 2
    assert np.isfinite(written["train_loss"]) and (tmp_path / "vocabulary.json").is_file()
    # it loads as it trained (float16 layers, float32 heads), whatever the global policy now is
    cvae = G.load(tmp_path)
    assert cvae.dtype_policy.name == "mixed_float16" and cvae.draw("a small red circle", 2).shape == (2, 64, 64, 3)
    assert _remeasured(tmp_path, written, True)["test_elbo"] == pytest.approx(written["test_elbo"], rel=1e-5)
