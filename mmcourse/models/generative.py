"""Training and measuring the generative models: ``mmcourse train vae``, and what it records.

The models live one per module:

- :mod:`mmcourse.models.autoencoder` — the image encoder and decoders, the plain autoencoder;
- :mod:`mmcourse.models.vae` — the VAE and conditional VAE, the terms of the ELBO, captions as conditions;
- :mod:`mmcourse.models.gan` — the GAN.

This module trains a VAE from the command line (:func:`train_command`), saves and loads it
(:func:`save`, :func:`load`; ``load()`` gives the shipped model), and measures what it
draws with a scene judge (:func:`sample_quality`, :func:`measure`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mmcourse.checks import check_positive_int
from mmcourse import artifacts, device
from mmcourse._tf import tensorflow
from mmcourse.data import pipeline, shapes
from mmcourse.data.text import Vocabulary
from mmcourse.imageops import to_unit
from mmcourse.models.vae import VAE
from mmcourse.training import seeded, start_command

tensorflow()  # quietly, before Keras imports it
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = ["TRAIN_SIZES", "JUDGE_SIZES", "LATENT_DIM", "train_command", "save", "load", "measure", "measure_elbo", "sample_quality"]

# Training sizes of `mmcourse train vae` per profile: (images, epochs); the conditional model
# trains on one- and two-object captioned images, the plain one on single objects.
TRAIN_SIZES = {"quick": {"plain": (400, 2), "conditional": (600, 2)}, "full": {"plain": (12_000, 16), "conditional": (12_000, 16)}}
# The judge that measures a model's drawings: (single-object images, epochs) per profile.
JUDGE_SIZES = {"quick": (1_500, 3), "full": (6_000, 5)}
BATCH_SIZE = 64  # global: split across replicas
LEARNING_RATE = 2e-3
LATENT_DIM = 8  # the shipped models' code size: 16 gave no better samples in our runs
CONDITIONAL_BETA = 1.0  # the true bound; with the learned prior, β = 10 drew no more true images in our runs
MODEL_FILE, VOCABULARY_FILE = "vae.keras", "vocabulary.json"


def save(model: VAE, out, vocabulary: Vocabulary | None = None) -> Path:
    """Write ``out/vae.keras`` (no optimizer state) and, for a conditional model, ``out/vocabulary.json``."""
    out = Path(out)
    artifacts.save_model(model, out / MODEL_FILE)
    if vocabulary is not None:
        vocabulary.save(out / VOCABULARY_FILE)
    return out


def load(folder=None, *, conditional: bool = False) -> VAE:
    """The VAE saved in ``folder`` by :func:`save`, loaded with ``safe_mode=True``.

    ``folder=None``: the shipped model, ``data/vae`` (or ``data/cvae`` with
    ``conditional=True``), its files checked against their SHA-256 sums first.
    """
    if folder is None:
        folder = artifacts.shipped("cvae" if conditional else "vae")
    folder = Path(folder)
    if not (folder / MODEL_FILE).is_file():
        raise FileNotFoundError(f"no {MODEL_FILE} in {folder}: pass the folder `mmcourse train vae --out DIR` wrote")
    return artifacts.load_model(folder / MODEL_FILE)


def sample_quality(judge, images) -> dict[str, float]:
    """How much a set of single-object images (e.g. prior samples) looks like the Shapes world, as the judge reads it.

    ``one_object``: the fraction in which it finds exactly one object; ``clean``: one object
    whose outline is the shape it reads (:meth:`SceneJudge.outline_match` ≥ 0.8, as every
    real object is); ``kinds``: how many of the 18 colour–shape kinds appear among the one-object reads.
    """
    images = np.asarray(images)
    images = to_unit(images) if images.dtype == np.uint8 else np.clip(images, 0.0, 1.0)  # decoders may overshoot by rounding
    scenes, outline = judge.read(images), judge.outline_match(images)
    one = np.array([s is not None and len(s.objects) == 1 for s in scenes])
    kinds = {(s.objects[0].colour, s.objects[0].shape) for s, o in zip(scenes, one) if o}
    return {"one_object": float(one.mean()), "clean": float((one & (outline >= 0.8)).mean()), "kinds": len(kinds)}


def train_command(out, *, profile: str | None = None, seed: int = 0, precision: str = "auto", cpu_replicas: int | None = None,
                  progress: bool = True, conditional: bool = False, latent_dim: int = LATENT_DIM) -> dict:
    """What ``mmcourse train vae`` does: train, write ``vae.keras`` and ``metrics.json``; return the metrics.

    The metrics are measured on a freshly generated test split (``test_seed``): the test
    ELBO and its two terms (nats per image, β = 1); then a judge
    (:class:`mmcourse.metrics.judge.SceneJudge`, its exact-read rate on the real test images
    recorded) reads the model's drawings: for the plain model, :func:`sample_quality` of
    as many prior samples as test images; for the conditional model, the fraction of images
    drawn from the test captions that it finds true to them and, as a ceiling, the fraction
    of the model's reconstructions of the test images that are. ``train_seconds`` covers
    ``fit`` and the calibration of batch normalisation.
    """
    latent_dim = check_positive_int(latent_dim, "latent_dim")
    profile, seed, out = start_command(out, profile=profile, seed=seed, precision=precision, cpu_replicas=cpu_replicas)
    kind = "conditional" if conditional else "plain"
    n, epochs = TRAIN_SIZES[profile.name][kind]

    with device.use(precision, cpu_replicas) as run:
        data = shapes.splits(train=n, test=profile.n_test, seed=seed, objects=(1, 2) if conditional else (1,))
        x_train = to_unit(data["train"].images)
        vocab = shapes.caption_vocabulary()
        train_ids = None
        if conditional:
            rng = np.random.default_rng(seed)
            train_ids = shapes.encode_captions([c[rng.integers(5)] for c in data["train"].captions], vocab)
        with run.strategy.scope(), seeded(seed):
            model = VAE(latent_dim, beta=CONDITIONAL_BETA, vocab_size=len(vocab)) if conditional else VAE(latent_dim)
            model.compile(keras.optimizers.Adam(LEARNING_RATE))  # VAE.compile: a loss scale that suits its loss in nats
        callbacks = []
        if progress:
            from tqdm.keras import TqdmCallback

            callbacks.append(TqdmCallback(verbose=0, desc=f"train {kind} VAE"))
        start = time.perf_counter()
        # fit's x: the images, or the pair (images, ids) in a 1-tuple (there is no target); each pass in
        # its own order drawn from seed, the same on one device and on several
        tables = x_train if train_ids is None else ((x_train, train_ids),)
        batches = pipeline.table_batches(tables, batch_size=BATCH_SIZE, epochs=epochs, seed=seed)
        steps = -(-len(x_train) // BATCH_SIZE)
        history = model.fit(batches, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=callbacks).history
        model.calibrate(x_train, train_ids, seed=seed)  # its noise follows --seed too (seed 0: as before)
        seconds = time.perf_counter() - start
        metrics = {"conditional": conditional, "train_images": n, "epochs": epochs, "batch_size": BATCH_SIZE, "latent_dim": latent_dim,
                   "decoder": model.decoder_kind, "beta": model.beta, "train_loss": float(history["loss"][-1])}
        metrics.update(measure(model, data["test"], quick=profile.is_quick, seed=seed))
    save(model, out, vocab if conditional else None)
    return artifacts.write_metrics(out, metrics, files=[MODEL_FILE, *([VOCABULARY_FILE] if conditional else [])], run=run, profile=profile.name, seed=seed, test_seed=[seed, 2], train_seconds=seconds)


def measure_elbo(model: VAE, test: shapes.ShapesDataset) -> dict:
    """``test_images`` and the test ELBO and its terms in nats per image (β = 1; ``z`` drawn 4 times
    per image from fixed seeds, so the same model and images give the same figures); the
    conditional model is given each image's first caption."""
    ids = shapes.encode_captions([c[0] for c in test.captions]) if model.conditional else None
    terms = model.elbo(to_unit(test.images), ids, n_samples=4)
    return {"test_images": len(test), "test_elbo": float(terms["elbo"].mean()),
            "test_reconstruction": float(terms["reconstruction"].mean()), "test_kl": float(terms["kl"].mean())}


def measure(model: VAE, test: shapes.ShapesDataset, *, quick: bool = False, seed: int = 0) -> dict:
    """The figures ``mmcourse train vae`` records, on a test split: the ELBO and its terms
    (:func:`measure_elbo`), and what a judge reads.

    A judge is trained (:meth:`SceneJudge.train`, sizes from :data:`JUDGE_SIZES`, with its
    exact-read rate on ``test`` recorded; always in float32, on the current device or
    replicas), then reads :func:`sample_quality` of ``len(test)``
    prior samples (plain model), or whether images drawn from each test image's first
    caption are true to it, with the reconstructions as a ceiling (conditional model).
    """
    from mmcourse.metrics.judge import SceneJudge

    x_test = to_unit(test.images)
    test_captions = [c[0] for c in test.captions]
    test_ids = shapes.encode_captions(test_captions) if model.conditional else None
    metrics = measure_elbo(model, test)
    judge_images, judge_epochs = JUDGE_SIZES["quick" if quick else "full"]
    with device.use("float32"):  # the instrument is the same whatever precision the model trained in
        judge = SceneJudge.train(n=judge_images, epochs=judge_epochs, seed=seed)
    metrics["judge_read_accuracy"] = judge.read_accuracy(test)
    if model.conditional:
        drawn = model.sample(len(test_ids), test_ids, seed=seed)
        rebuilt = ops.convert_to_numpy(model((x_test, test_ids)))
        verdict = judge.is_true(drawn, test_captions)
        n_objects = np.array([len(shapes.parse_caption(c).objects) for c in test_captions])
        metrics["true_to_caption"] = float(verdict.mean())
        metrics["true_to_caption_one_object"] = float(verdict[n_objects == 1].mean())
        metrics["true_to_caption_two_objects"] = float(verdict[n_objects == 2].mean())
        metrics["reconstructions_true_to_caption"] = float(judge.is_true(rebuilt, test_captions).mean())
    else:
        samples = sample_quality(judge, model.sample(len(x_test), seed=seed))
        metrics.update({f"samples_{key}": value for key, value in samples.items()})
    return metrics
