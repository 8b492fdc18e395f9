"""The VAEs shipped in data/vae and data/cvae, re-measured by a judge trained here (about 30 s)."""

import json

import keras
import numpy as np
import pytest

from mmcourse.data import shapes
from mmcourse.models import generative as G
from mmcourse.models.judge import SceneJudge


@pytest.fixture(scope="module")
def judge():
    # The classifier's initial weights decide how well a judge reads: over six initialisations
    # (6,000 images × 5 epochs each) real scenes were read exactly 0.89-1.00. Seeded, so the
    # thresholds below measure the shipped models, not the luck of the draw.
    keras.utils.set_random_seed(0)
    return SceneJudge.train(seed=3)


def _tolerance(p: float, n: int) -> float:
    """Four standard errors of a proportion measured on n images: sampling noise, not drift."""
    return 4 * np.sqrt(max(p * (1 - p), 0.01) / n)


@pytest.mark.parametrize("conditional", [False, True])
def test_the_shipped_vaes_match_their_checksums(conditional, assert_shipped_unchanged):
    assert_shipped_unchanged(G.shipped_model_dir(conditional), [G.MODEL_FILE] + ([G.VOCABULARY_FILE] if conditional else []))


def test_the_judge_reads_real_images_and_their_outlines(judge):
    real = shapes.generate(300, seed=(3, 99))
    assert judge.read_accuracy(real) > 0.97
    single = shapes.generate(200, seed=(3, 98), objects=(1,))
    quality = G.sample_quality(judge, single.images)
    assert quality["one_object"] == 1.0 and quality["clean"] > 0.97 and quality["kinds"] == 18


def test_the_shipped_vae_draws_what_it_recorded(judge):
    folder = G.shipped_model_dir()
    recorded = json.loads((folder / G.METRICS_FILE).read_text())
    vae = G.load_vae(folder)
    n = 300
    quality = G.sample_quality(judge, vae.sample(n, seed=99))
    for key in ("one_object", "clean"):
        p = recorded[f"samples_{key}"]
        assert quality[key] >= p - _tolerance(p, n), key
    assert quality["kinds"] >= recorded["samples_kinds"] - 3
    # the bound it recorded, on fresh images (per-image ELBOs spread by a few hundred nats)
    test = G.to_unit(shapes.generate(200, seed=(3, 97), objects=(1,)).images)
    assert vae.elbo(test)["elbo"].mean() >= recorded["test_elbo"] - 300


def test_the_shipped_conditional_vae_draws_true_images_as_recorded(judge):
    folder = G.shipped_model_dir(conditional=True)
    recorded = json.loads((folder / G.METRICS_FILE).read_text())
    cvae = G.load_vae(folder, conditional=True)
    test = shapes.generate(300, seed=(3, 96))
    captions = [c[0] for c in test.captions]
    verdict = judge.is_true(cvae.sample(len(captions), G.encode_captions(captions), seed=99), captions)
    p = recorded["true_to_caption"]
    assert verdict.mean() >= p - _tolerance(p, len(captions))
    # a one-object caption is drawn true more often than chance: a random colour and shape is right 1 time in 36
    one = np.array([len(shapes.parse_caption(c).objects) == 1 for c in captions])
    assert verdict[one].mean() > 1 / 36
