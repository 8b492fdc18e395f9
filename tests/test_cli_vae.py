"""`mmcourse train vae`: files written, metrics measured, the model loads safely."""

import json

import keras
import numpy as np

from mmcourse.cli import main


def test_train_vae_writes_a_loadable_model_and_metrics(tmp_path, capsys):
    assert main(["train", "vae", "--out", str(tmp_path), "--profile", "quick", "--seed", "1"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["profile"] == "quick" and metrics["seed"] == 1 and not metrics["conditional"]
    assert np.isclose(metrics["test_elbo"], metrics["test_reconstruction"] - metrics["test_kl"], rtol=1e-4)
    assert metrics["test_kl"] >= 0 and metrics["train_seconds"] > 0
    assert 0.0 <= metrics["samples_clean"] <= metrics["samples_one_object"] <= 1.0 and 0 <= metrics["samples_kinds"] <= 18
    vae = keras.saving.load_model(tmp_path / "vae.keras", safe_mode=True)
    assert vae.sample(2).shape == (2, 64, 64, 3) and vae.decoder_kind == "broadcast"
    printed = capsys.readouterr().out
    assert "test ELBO" in printed and "prior samples with one object" in printed


def test_train_conditional_vae_measures_truth_to_caption(tmp_path):
    assert main(["train", "vae", "--conditional", "--out", str(tmp_path), "--profile", "quick"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["conditional"] and metrics["beta"] == 1.0
    assert 0.0 <= metrics["true_to_caption"] <= 1.0 and 0.0 <= metrics["judge_read_accuracy"] <= 1.0
    assert 0.0 <= metrics["reconstructions_true_to_caption"] <= 1.0
    assert (tmp_path / "vocabulary.json").exists()
    vae = keras.saving.load_model(tmp_path / "vae.keras", safe_mode=True)
    assert vae.draw("a small red circle", 2).shape == (2, 64, 64, 3)
