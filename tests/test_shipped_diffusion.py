"""The shipped text-to-image model, data/diffusion: its files are the ones shipped, and on fresh
prompts it draws as many true drawings as its metrics.json records (within sampling noise),
read by the judge and by the shipped captioner alike."""

import numpy as np
import pytest

from mmcourse import artifacts
from mmcourse.data import shapes
from mmcourse.metrics.judge import SceneJudge
from mmcourse.models import latent_diffusion as LD

PROMPTS = 200


def _tolerance(p: float, n: int) -> float:
    """Four standard errors of a proportion measured on n prompts: sampling noise, not drift."""
    return 4 * np.sqrt(max(p * (1 - p), 0.01) / n)


@pytest.fixture(scope="module", params=["grounded", "caption_only"])
def remeasured(request):
    """Each shipped denoiser's drawings of fresh prompts, and what metrics.json recorded for it."""
    prompts = [c[0] for c in shapes.generate(PROMPTS, seed=(3, 95)).captions]  # not the prompts metrics.json was measured on
    recorded = artifacts.read_metrics(artifacts.shipped("diffusion"))
    grounded = request.param == "grounded"
    return (LD.measure(LD.load(grounded=grounded), prompts, judge=SceneJudge.load(), seed=5),
            recorded if grounded else recorded["caption_only"])


def test_the_shipped_diffusion_model_matches_its_checksums(assert_shipped_unchanged):
    folder = artifacts.shipped("diffusion")  # raises, naming the file, if one was altered
    assert_shipped_unchanged(folder, [LD.AUTOENCODER_FILE, LD.DENOISER_FILE, LD.GROUNDED_FILE, LD.LAYOUTS_FILE, LD.VOCABULARY_FILE])
    recorded = artifacts.read_metrics(folder)
    assert recorded["profile"] == "full" and recorded["precision"] == "float32" and recorded["replicas"] == 1
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 10 * 2**20  # the 10 MB


def test_the_shipped_diffusion_model_draws_as_true_as_it_recorded(remeasured):
    remeasured, recorded = remeasured
    for reader in ("judge", "read_back"):
        for kind, count in (("true", "prompts"), ("one_object", "prompts_one_object"), ("two_objects", "prompts_two_objects")):
            p = recorded[f"{reader}_{kind}"]
            assert remeasured[f"{reader}_{kind}"] >= p - _tolerance(p, remeasured[count]), (reader, kind)
    # what the autoencoder keeps: the captioner reads its reconstructions almost as it reads the originals
    recorded = artifacts.read_metrics(artifacts.shipped("diffusion"))
    assert recorded["reconstructions_read_back"] >= 0.95 and recorded["originals_read_back"] - recorded["reconstructions_read_back"] < 0.05
