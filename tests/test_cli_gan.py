"""`mmcourse train gan`: the files it writes, re-read. Tiny sizes: what is checked is that the
command writes what it measured and a model that loads, not how well it draws."""

import dataclasses

import numpy as np
import pytest

from mmcourse import artifacts, config
from mmcourse.cli import main
from mmcourse.models import gan as GAN
from mmcourse.models import generative as G


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(GAN.TRAIN_SIZES, "quick", (64, 1))
    monkeypatch.setitem(G.JUDGE_SIZES, "quick", (64, 1))
    monkeypatch.setitem(config.PROFILES, "quick", dataclasses.replace(config.PROFILES["quick"], n_test=32))


def test_train_gan_writes_a_model_that_loads_and_what_it_measured(tmp_path, capsys, tiny):
    assert main(["train", "gan", "--out", str(tmp_path), "--profile", "quick", "--seed", "1"]) == 0
    written = artifacts.read_metrics(tmp_path)
    assert written["profile"] == "quick" and written["seed"] == 1 and written["train_images"] == 64
    assert written["steps"] == 64 // GAN.BATCH_SIZE and written["loss"] == "hinge" and written["spectral_norm"] is True
    for key in ("one_object", "clean"):
        assert 0 <= written[f"samples_{key}"] <= 1 and 0 <= written[f"real_{key}"] <= 1
    assert 0 <= written["samples_kinds"] <= 18 and np.isfinite(written["final_d_loss"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SHA256", "gan.keras", "metrics.json"]
    model = GAN.load(tmp_path)
    assert model.spectral_norm and model.loss_name == "hinge"
    images = model.sample(3, seed=0)
    assert images.shape == (3, 64, 64, 3) and images.min() >= 0 and images.max() <= 1
    np.testing.assert_array_equal(images, model.sample(3, seed=0))
    printed = capsys.readouterr().out
    assert "samples with one object" in printed and "of 18" in printed


def test_load_names_the_command_when_the_folder_has_no_gan(tmp_path):
    with pytest.raises(FileNotFoundError, match="mmcourse train gan"):
        GAN.load(tmp_path)


def test_a_saved_gan_keeps_neither_of_its_optimizers(tmp_path):
    """The GAN's two optimizers (Adam: two slots per weight) would triple its file."""
    import keras

    from mmcourse.artifacts import save_model

    trained = GAN.GAN(8)
    trained.compile()
    trained.fit(np.random.default_rng(0).random((32, 64, 64, 3), dtype=np.float32), epochs=1, batch_size=32, verbose=0)
    fresh = GAN.GAN(8)
    sizes = [save_model(model, tmp_path / f"{name}.keras").stat().st_size for name, model in (("trained", trained), ("fresh", fresh))]
    assert abs(sizes[0] - sizes[1]) < 2_000, sizes
    assert trained.d_optimizer is not None and trained.g_optimizer is not None  # given back after saving
    assert isinstance(keras.saving.load_model(tmp_path / "trained.keras", safe_mode=True, compile=False), GAN.GAN)
