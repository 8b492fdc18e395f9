"""`mmcourse train vlm` on a tiny budget, then `mmcourse ask` with that model: one question,
--caption, and --batch with a missing image, a damaged one and an unknown word (through a real
subprocess: exit status, stdout and stderr as a shell sees them); the answers are the ones
decoding in this process gives."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mmcourse import artifacts, cli, config
from mmcourse.data import shapes
from mmcourse.data.photos import load_image
from mmcourse.models import vlm as V

TINY = {"quick": (48, 1, 48, 1), "full": (48, 1, 48, 1)}  # (images, epochs, encoder images, encoder epochs)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """`mmcourse train vlm --profile quick` with every size made tiny (what it learns does not
    matter here: the tests compare the command's answers with decoding in this process)."""
    out = tmp_path_factory.mktemp("vlm")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(V, "TRAIN_SIZES", TINY)
        patch.setattr(V, "VLM_SIZES", {"d_model": 16, "num_heads": 2, "layers": 1, "hidden": 32})
        patch.setitem(config.PROFILES, "quick", dataclasses.replace(config.PROFILES["quick"], n_test=8))
        assert cli.main(["train", "vlm", "--profile", "quick", "--seed", "3", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def model(model_dir):
    return V.load(model_dir)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    data = shapes.generate(2, seed=5)
    paths = []
    for i, image in enumerate(data.images):
        paths.append(folder / f"scene{i}.png")
        Image.fromarray(image).resize((100, 100)).save(paths[-1])  # any size: resized to 64×64
    return paths


def run_cli(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "mmcourse", *map(str, args)], capture_output=True, text=True, env=env, timeout=300, cwd=cwd)


def test_the_train_command_writes_a_model_and_every_metric(model_dir, model):
    saved = artifacts.read_metrics(model_dir)
    assert (saved["train_images"], saved["test_images"], saved["test_questions"] > 0) == (48, 8, True)
    for key in ("accuracy", *V.KINDS, "relation_where", "relation_yes_no", "bleu4", "exact_match", "hallucination_rate", "train_seconds"):
        assert isinstance(saved[key], float), key
    test = shapes.generate(8, seed=(3, 2))
    assert V.evaluate(model, test)["exact_match"] == saved["exact_match"]
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(["SHA256", V.MODEL_FILE, "metrics.json", V.VOCABULARY_FILE])


def test_ask_one_question_and_a_caption(model_dir, model, scenes, capsys):
    image = load_image(scenes[0], 64)[None]
    assert cli.main(["ask", "--model", str(model_dir), str(scenes[0]), "What colour is the circle?"]) == 0
    out = capsys.readouterr()
    assert out.out == V.answer_questions(model, image, ["what colour is the circle"])[0] + "\n" and not out.err
    assert cli.main(["ask", "--model", str(model_dir), "--caption", str(scenes[0])]) == 0
    out = capsys.readouterr()
    assert out.out == V.caption_images(model, image)[0] + "\n" and not out.err


def test_ask_a_batch_keeps_the_order_and_names_each_failure(model_dir, model, scenes, tmp_path):
    missing, damaged = tmp_path / "nowhere.png", tmp_path / "cut.png"
    damaged.write_bytes(scenes[1].read_bytes()[:200])
    lines = [(scenes[0], "how many objects are there"), (missing, "what colour is the circle"), (scenes[1], "caption:"),
             (scenes[1], "what colour is the purpel square"), (damaged, "is there a red circle"), (scenes[1], "is there a red circle?")]
    batch = tmp_path / "questions.tsv"
    batch.write_text("\n".join(f"{image}\t{question}" for image, question in lines) + "\n\nno tab on this line\n")
    result = run_cli("ask", "--model", model_dir, "--batch", batch)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    answered = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(a[0], a[1]) for a in answered] == [(str(image), question) for image, question in (lines[0], lines[2], lines[5])]
    images = np.stack([load_image(scenes[0], 64), load_image(scenes[1], 64)])
    assert [a[2] for a in answered] == [V.answer_questions(model, images[:1], [lines[0][1]])[0], V.caption_images(model, images[1:])[0],
                                        V.answer_questions(model, images[1:], ["is there a red circle"])[0]]
    errors = result.stderr.splitlines()
    assert len(errors) == 4, errors
    assert errors[0] == f"{batch}:8: expected IMAGE<TAB>QUESTION (or IMAGE<TAB>caption:), got 'no tab on this line'"
    assert errors[1] == f"{missing}: no such file"
    assert errors[2].startswith(f"{scenes[1]}: the word 'purpel' in 'what colour is the purpel square' is not in the model's vocabulary")
    assert errors[3] == f"{damaged}: damaged or truncated image"


def test_ask_refuses_an_unknown_word_and_bad_usage_in_one_line(model_dir, scenes, tmp_path, capsys):
    assert cli.main(["ask", "--model", str(model_dir), str(scenes[0]), "what colour is the blob"]) == 1
    out = capsys.readouterr()
    assert not out.out and len(out.err.splitlines()) == 1 and "'blob'" in out.err
    for argv, message in ((["ask", "--model", str(model_dir), str(scenes[0])], 'give IMAGE "QUESTION"'),
                          (["ask", "--model", str(model_dir), "--batch", str(tmp_path / "none.tsv")], "no batch file at"),
                          (["ask", "--model", str(model_dir), "--caption", str(scenes[0]), "what"], "--caption takes one IMAGE"),
                          (["ask", "--model", str(tmp_path / "empty"), str(scenes[0]), "what colour is the circle"],
                           "mmcourse train vlm --out DIR")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
