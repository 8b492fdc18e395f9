"""What a trained model leaves on disk: --out checked first, models without optimizer state, one
metrics.json schema, checksums verified before loading; and commands that fail fast."""

import os
import shutil
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from mmcourse import artifacts, config, device


def _model():
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(512), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-3), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 64)).astype("float32")
    model.fit(x, x[:, :1], epochs=1, verbose=0)  # Adam now holds two moments per weight
    return model, x


def test_prepare_out_creates_or_refuses_clearly(tmp_path):
    assert artifacts.prepare_out(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        artifacts.prepare_out(tmp_path / "file")
    with pytest.raises(ValueError, match="cannot write into --out"):
        artifacts.prepare_out(tmp_path / "file" / "inside")


def test_models_are_saved_without_optimizer_state(tmp_path):
    model, x = _model()
    model.save(tmp_path / "with.keras")
    artifacts.save_model(model, tmp_path / "without.keras")
    assert model.optimizer is not None and model.compiled  # the model itself keeps training state
    with_size, without_size = (os.path.getsize(tmp_path / f) for f in ("with.keras", "without.keras"))
    assert without_size < 0.4 * with_size  # Adam's two moments per weight are gone
    loaded = artifacts.load_model(tmp_path / "without.keras")
    assert np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert not loaded.compiled


def test_metrics_have_one_schema_and_a_checksum_list(tmp_path):
    model, _ = _model()
    artifacts.save_model(model, tmp_path / "m.keras")
    (tmp_path / "notes.txt").write_text("the learner's own file, in the same folder")
    with device.use("float32") as run:
        written = artifacts.write_metrics(tmp_path, {"accuracy": 0.5}, files=["m.keras"], run=run, profile="quick", seed=3, test_seed=[3, 2],
                                          train_seconds=1.5)
    on_disk = artifacts.read_metrics(tmp_path)
    assert on_disk == written
    assert list(on_disk)[:9] == ["profile", "seed", "test_seed", "train_seconds", "precision", "replicas", "device", "versions", "command"]
    assert on_disk["precision"] == "float32" and on_disk["replicas"] == 1 and on_disk["accuracy"] == 0.5
    assert on_disk["versions"]["keras"] == keras.__version__
    assert (tmp_path / "SHA256").read_text().split()[1::2] == ["m.keras"]  # the learner's notes.txt is theirs
    with pytest.raises(ValueError, match=r"\['precision'\] clash"):
        artifacts.write_metrics(tmp_path, {"precision": 1.0}, files=["m.keras"], run=run, profile="quick", seed=3, test_seed=[3, 2],
                                train_seconds=1.5)


def test_a_model_file_altered_by_one_byte_is_refused_naming_it(tmp_path, monkeypatch):
    folder = tmp_path / "captioner"
    shutil.copytree(config.shipped_dir("captioner"), folder)
    artifacts.verify(folder, "captioner")  # a copy, as shipped
    trained_here = folder.parent / "copy"
    shutil.copytree(folder, trained_here)
    monkeypatch.setattr(config, "shipped_dir", lambda name: tmp_path / name)  # the copy stands for data/captioner
    data = bytearray((folder / "captioner.keras").read_bytes())
    data[len(data) // 2] ^= 1
    (folder / "captioner.keras").write_bytes(bytes(data))
    with pytest.raises(artifacts.ShippedModelError) as error:
        artifacts.load_model(folder / "captioner.keras")
    message = str(error.value)
    assert "\n" not in message and str(folder / "captioner.keras") in message
    assert "mmcourse train captioner --profile full --out data/captioner" in message
    shutil.copy(trained_here / "captioner.keras", folder)
    (folder / "vocabulary.json").unlink()
    with pytest.raises(artifacts.ShippedModelError, match="vocabulary.json is missing"):
        artifacts.verify(folder, "captioner")
    # a folder the learner trained is not told to restore a shipped file
    (trained_here / "vocabulary.json").write_text("{}")
    with pytest.raises(artifacts.ShippedModelError, match=f"vocabulary.json is not the file that was saved there .*train the model into {trained_here} again"):
        artifacts.load_model(trained_here / "captioner.keras")


def test_a_missing_shipped_folder_says_where_models_are_expected(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "shipped_dir", lambda name: tmp_path / "site-packages" / "data" / name)
    with pytest.raises(artifacts.ShippedModelError, match="is not at .*does not exist.*source checkout.*mmcourse train vae"):
        artifacts.shipped("vae")


def _mmcourse(*args, env=None):
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mmcourse", *args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **(env or {})})
    return out, time.perf_counter() - start


@pytest.mark.parametrize("case", ["unwritable", "file", "seed", "fusion", "profile", "replicas", "judge"])
def test_train_commands_fail_fast_with_one_line(tmp_path, case):
    """Checked before TensorFlow loads: one line on stderr, exit status 2, no traceback, in seconds."""
    (tmp_path / "file").write_text("x")
    target, env = ["captioner", "--out", str(tmp_path / "out")], {}
    args = {
        "unwritable": ["vae", "--out", str(tmp_path / "file" / "inside")],
        "file": ["retrieval", "--out", str(tmp_path / "file")],
        "seed": [*target, "--seed", "-1"],
        "fusion": ["vqa", "--out", str(tmp_path / "out"), "--fusion", "sideways"],
        "profile": target,
        "replicas": [*target, "--cpu-replicas", "0"],
        "judge": ["judge", "--out", str(tmp_path / "out"), "--precision", "half"],
    }[case]
    if case == "profile":
        env = {"MMCOURSE_PROFILE": "fast"}
    out, seconds = _mmcourse("train", *args, env=env)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmcourse train "), out.stderr
    assert "Traceback" not in out.stderr and seconds < 20
    assert not (tmp_path / "out").exists() or case != "seed"  # nothing written on a bad argument
    expected = {"unwritable": "cannot write into --out", "file": "is a file, not a folder", "seed": "must be at least 0",
                "fusion": "invalid choice: 'sideways'", "profile": "MMCOURSE_PROFILE='fast' is not a profile",
                "replicas": "must be positive", "judge": "invalid choice: 'half'"}[case]
    assert expected in lines[0]
