"""Profiles, seeding, the data directory, and an import with no side effects."""

import subprocess
import sys

import numpy as np
import pytest

from mmcourse import config


def test_default_profile_is_full(monkeypatch):
    monkeypatch.delenv("MMCOURSE_PROFILE", raising=False)
    assert config.profile().name == "full"


def test_profile_follows_the_environment(monkeypatch):
    monkeypatch.setenv("MMCOURSE_PROFILE", "quick")
    p = config.profile()
    assert p.name == "quick" and p.is_quick
    assert p.n_train < config.PROFILES["full"].n_train


def test_profiles_are_frozen():
    with pytest.raises(Exception):
        config.PROFILES["quick"].epochs = 99


def test_unknown_profile_says_what_to_choose(monkeypatch):
    monkeypatch.setenv("MMCOURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match=r"MMCOURSE_PROFILE='fast' is not a profile; choose one of: quick, full"):
        config.profile()
    with pytest.raises(ValueError, match="'medium' is not a profile"):
        config.profile("medium")


def test_seed_everything_makes_numpy_and_tensorflow_repeat():
    import tensorflow as tf

    config.seed_everything(5)
    a = np.random.rand(3), tf.random.uniform((3,)).numpy()
    config.seed_everything(5)
    b = np.random.rand(3), tf.random.uniform((3,)).numpy()
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="non-negative integer"):
        config.seed_everything(-1)


def test_data_dir_is_the_checkout_data_folder_or_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("MMCOURSE_DATA", raising=False)
    assert config.data_dir().name == "data" and (config.data_dir().parent / "pyproject.toml").exists()
    monkeypatch.setenv("MMCOURSE_DATA", str(tmp_path / "d"))
    assert config.data_dir(create=True) == tmp_path / "d" and (tmp_path / "d").is_dir()


def test_importing_mmcourse_sets_no_seed_and_no_plot_style():
    code = (
        "import numpy as np, matplotlib as mpl\n"
        "state = np.random.get_state()[1].copy(); rc = dict(mpl.rcParams)\n"
        "import mmcourse, mmcourse.config, mmcourse.data.shapes, mmcourse.viz, mmcourse.widgets\n"
        "mmcourse.data.shapes.generate(10)\n"
        "assert (np.random.get_state()[1] == state).all(), 'numpy seed changed'\n"
        "assert dict(mpl.rcParams) == rc, 'plot style changed'\n"
        "import sys; assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_models_stay_in_the_checkout_whatever_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("MMCOURSE_DATA", str(tmp_path))
    assert config.data_dir() == tmp_path  # downloaded datasets move with $MMCOURSE_DATA ...
    assert (config.shipped_dir("captioner") / "captioner.keras").is_file()  # ... the shipped models do not
    assert (config.shipped_dir("retrieval") / "dual_encoder.keras").is_file()
