"""`mmcourse train diffusion` on a tiny budget, then `mmcourse draw` with that model (through a
real subprocess: exit status, files and stderr as a shell sees them); the drawings and
figures are the ones drawing in this process gives. Also the pieces the command is made of:
the kinds of prompt, the judge's stricter verdict, the moving-average weights the curve draws with."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mmcourse import artifacts, cli, config
from mmcourse.data import shapes
from mmcourse.models import latent_diffusion as LD

TINY = {profile: dict(ae_images=64, ae_epochs=1, ae_width=4, images=64, epochs=2, width=8, layout_epochs=1, curve_every=1, curve_prompts=8,
                      test_prompts=12) for profile in ("quick", "full")}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """`mmcourse train diffusion --profile quick` with every size made tiny (what it draws does not
    matter here: the tests compare the command's files with drawing in this process), on two CPU
    replicas: the several-device path, the moving average swapped in and out of mirrored weights."""
    out = tmp_path_factory.mktemp("diffusion")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LD, "TRAIN_SIZES", TINY)
        assert cli.main(["train", "diffusion", "--profile", "quick", "--seed", "2", "--cpu-replicas", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def model(model_dir):
    return LD.load(model_dir)


def run_cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "mmcourse", *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def test_the_train_command_writes_a_model_and_every_metric(model_dir, model):
    saved = artifacts.read_metrics(model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(["SHA256", "metrics.json", LD.AUTOENCODER_FILE, LD.DENOISER_FILE, LD.GROUNDED_FILE,
                                                                   LD.LAYOUTS_FILE, LD.VOCABULARY_FILE])
    assert model.grounded and not LD.load(model_dir, grounded=False).grounded and len(model.layouts) == 64
    assert (saved["train_images"], saved["test_images"], saved["prompts"], saved["guidance"], saved["steps"]) == (64, 12, 12, LD.GUIDANCE, LD.STEPS)
    assert saved["replicas"] == 2
    for scores in (saved, saved["caption_only"], saved["oracle_layout"]):
        for reader in ("judge", "read_back"):
            for kind in ("true", "one_object", "two_objects"):
                assert 0 <= scores[f"{reader}_{kind}"] <= 1, (reader, kind)
    for key in ("train_seconds", "autoencoder_seconds", "denoiser_seconds", "grounded_seconds", "seconds_per_image", "reconstructions_read_back",
                "originals_read_back"):
        assert isinstance(saved[key], float) and saved[key] >= 0, key
    assert saved["originals_read_back"] > 0.8  # the shipped captioner reads real scenes
    assert [(p["stage"], p["epoch"]) for p in saved["curve"]] == [("caption only", 1), ("caption only", 2), ("grounded", 1)]
    assert saved["curve"][0]["train_seconds"] < saved["curve"][1]["train_seconds"] < saved["curve"][2]["train_seconds"]
    assert saved["train_seconds"] == pytest.approx(saved["autoencoder_seconds"] + saved["denoiser_seconds"] + saved["grounded_seconds"])
    assert model.autoencoder.latent_shape == (16, 16, 4) and float(np.asarray(model.autoencoder.scale)) == saved["latent_scale"] != 1.0
    # re-measured on the saved model: the same drawings, so the same verdicts
    prompts = [c[0] for c in shapes.generate(12, seed=(2, 2)).captions]
    for scores, again in ((saved, LD.measure(model, prompts, seed=2)), (saved["caption_only"], LD.measure(LD.load(model_dir, grounded=False), prompts, seed=2))):
        for key in ("judge_true", "read_back_true", "judge_one_object", "read_back_two_objects"):
            assert again[key] == scores[key], key


def test_start_from_fine_tunes_a_trained_model_and_keeps_its_first_stages(model_dir, tmp_path):
    out = tmp_path / "again"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LD, "TRAIN_SIZES", TINY)
        assert cli.main(["train", "diffusion", "--profile", "quick", "--seed", "2", "--start-from", str(model_dir), "--out", str(out)]) == 0
    first, second = artifacts.read_metrics(model_dir), artifacts.read_metrics(out)
    for key in ("autoencoder_seconds", "denoiser_seconds", "final_loss"):
        assert second[key] == first[key], key
    assert second["start_from"] == str(model_dir) and second["curve"][:2] == first["curve"][:2]
    assert second["train_seconds"] == pytest.approx(first["autoencoder_seconds"] + first["denoiser_seconds"] + second["grounded_seconds"])
    kept, earlier = LD.load(out, grounded=False), LD.load(model_dir, grounded=False)
    for a, b in ((kept.autoencoder, earlier.autoencoder), (kept.denoiser, earlier.denoiser)):
        assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_draw_writes_each_caption_and_names_a_bad_one(model_dir, model, tmp_path):
    good = ["a small red circle", "There is a large blue square left of a small green triangle"]
    listed = tmp_path / "captions.txt"
    listed.write_text("a small purple circle\n\n")
    result = run_cli("draw", "--model", model_dir, "--out", tmp_path / "out", "--n", 2, "--seed", 4, "--captions", listed,
                     good[0], "a small red blob", good[1])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = result.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith("caption 1: ") and "'blob'" in errors[0], errors
    rows = (tmp_path / "out" / "captions.tsv").read_text().splitlines()
    names = ["000-0.png", "000-1.png", "002-0.png", "002-1.png", "003-0.png", "003-1.png"]
    wanted = [good[0], good[0], good[1].lower(), good[1].lower(), "a small purple circle", "a small purple circle"]
    assert rows == ["file\tcaption", *[f"{n}\t{c}" for n, c in zip(names, wanted)]]
    drawn = np.stack([np.asarray(Image.open(tmp_path / "out" / n)) for n in names])
    assert drawn.shape == (6, 64, 64, 3) and drawn.dtype == np.uint8
    assert np.array_equal(drawn, model.draw(wanted, seed=4))  # what this process draws for the same captions and seed
    assert not np.array_equal(drawn[0], drawn[1])  # two samples of one caption differ


def test_draw_refuses_bad_usage_in_one_line(model_dir, tmp_path, capsys):
    for argv, message in ((["draw", "--model", str(model_dir), "--out", str(tmp_path / "o")], "give captions to draw"),
                          (["draw", "--model", str(model_dir), "--out", str(tmp_path / "o"), "--captions", str(tmp_path / "none.txt")],
                           "no captions file at"),
                          (["draw", "--model", str(model_dir), "--out", str(tmp_path / "o"), "--guidance", "-1", "a small red circle"],
                           "--guidance must be at least 0"),
                          (["draw", "--model", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "a small red circle"],
                           "mmcourse train diffusion --out DIR")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err


def test_prompt_kinds_sort_prompts_by_what_they_ask():
    prompts = ["a small red circle", "a large blue square below a small green triangle", "there is a small blue triangle",
               "a small red square right of a large red circle"]
    kinds = LD.prompt_kinds(prompts)
    assert kinds["one_object"].tolist() == [True, False, True, False]
    assert kinds["two_objects"].tolist() == [False, True, False, True]
    assert kinds["above"].tolist() == [False, True, False, False] and kinds["left_of"].tolist() == [False, False, False, True]
    assert kinds["held_out"].tolist() == [True, False, True, True]


def test_the_judge_describes_only_complete_descriptions():
    from mmcourse.metrics.judge import SceneJudge

    data = shapes.generate(40, seed=9, objects=(2,))
    judge = SceneJudge.load()
    first_object = [s.objects[0].phrase for s in data.scenes]  # true of the scene, but leaves an object out
    full = [c[0] for c in data.captions]
    partial_true, partial_complete = judge.is_true(data.images, first_object), judge.describes(data.images, first_object)
    assert partial_true.mean() > 0.9 and not partial_complete.any()
    assert judge.describes(data.images, full).mean() > 0.9


def test_the_curve_draws_with_the_moving_average_and_restores_the_weights():
    from mmcourse.models import diffusion

    data = shapes.generate(32, seed=4)
    latents = np.random.default_rng(0).normal(size=(32, 8, 8, 2)).astype("float32")
    denoiser, _, _ = diffusion.train_denoiser(latents, LD.caption_table(data), sched=diffusion.schedule(50), epochs=1, batch_size=16, ema=0.5,
                                              progress=False, width=8, text_width=8, num_heads=2)
    # fit's end leaves the average in the weights; move them away to tell the two apart
    for v in denoiser.trainable_variables:
        v.assign(v + 1.0)
    before = [v.numpy() for v in denoiser.trainable_variables]
    averages = [a.numpy() for a in denoiser.optimizer._model_variables_moving_average]
    with LD._average_weights(denoiser):
        inside = [v.numpy() for v in denoiser.trainable_variables]
    assert all(np.array_equal(i, a) for i, a in zip(inside, averages)) and not all(np.array_equal(i, b) for i, b in zip(inside, before))
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(denoiser.trainable_variables, before))
