"""`mmcourse caption`: good, missing, non-image and truncated files through a real subprocess
(exit status, stdout and stderr as a shell sees them); the other exits through `cli.main`."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mmcourse import cli, training
from mmcourse.data import shapes
from mmcourse.models import captioning as C


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An untrained captioner with seeded weights (the CLI only needs one that loads and decodes:
    whatever it says, the test compares it with decoding in this process)."""
    folder = tmp_path_factory.mktemp("captioner")
    with training.seeded(0):
        model = C.Captioner(len(shapes.caption_vocabulary()), channels=8, units=16, attention_units=8)
    C.save(model, shapes.caption_vocabulary(), folder)
    return folder


def run_cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "mmcourse", *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def test_caption_good_and_bad_files(model_dir, tmp_path):
    scene = shapes.generate(2, seed=5)
    good_png = tmp_path / "scene.png"
    Image.fromarray(scene.images[0]).resize((200, 150)).convert("RGBA").save(good_png)  # any size, alpha dropped
    good_jpg = tmp_path / "scene.jpg"
    Image.fromarray(scene.images[1]).save(good_jpg, quality=95)
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is text, not a picture")
    truncated = tmp_path / "cut.png"
    full = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full)
    truncated.write_bytes(full.read_bytes()[:400])
    missing = tmp_path / "nowhere.png"

    result = run_cli("caption", "--model", model_dir, good_png, missing, not_image, truncated, good_jpg)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(good_png), str(good_jpg)]
    assert all(len(line.split("\t")) == 2 and line.split("\t")[1].strip() for line in lines)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 3
    assert errors[0] == f"{missing}: no such file"
    assert errors[1] == f"{not_image}: not an image"
    assert errors[2] == f"{truncated}: damaged or truncated image"

    # the same captions as decoding in this process
    model, vocab = C.load(model_dir)
    expected, _ = C.greedy_decode(model, np.stack([read_like_cli(good_png), read_like_cli(good_jpg)]), vocab)
    assert [line.split("\t")[1] for line in lines] == expected


def read_like_cli(path):
    from mmcourse.data.photos import load_image

    return load_image(path, 64)


def test_caption_all_good_exits_zero(model_dir, tmp_path, capsys):
    path = tmp_path / "one.png"
    Image.fromarray(shapes.generate(1, seed=8).images[0]).save(path)
    assert cli.main(["caption", "--model", str(model_dir), str(path)]) == 0
    out = capsys.readouterr()
    model, vocab = C.load(model_dir)
    assert out.out == f"{path}\t{C.greedy_decode(model, read_like_cli(path)[None], vocab)[0][0]}\n" and not out.err.strip()


def test_caption_without_a_model_says_what_to_pass(tmp_path, capsys):
    path = tmp_path / "one.png"
    Image.fromarray(shapes.generate(1, seed=8).images[0]).save(path)
    assert cli.main(["caption", "--model", str(tmp_path / "empty"), str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback
    assert "no captioner.keras in" in err and "mmcourse train captioner --out DIR" in err
