"""The course's captioner and dual encoder trained on real captioned photographs.

``mmcourse train captioner --data …`` and ``mmcourse train retrieval --data …`` land here. A
dataset in Flickr8k or COCO format (:func:`mmcourse.data.photos.load_dataset`) is split into
train and test images; a ``keras.applications`` backbone (frozen, ImageNet weights only when
asked for; random ones first take their BatchNorm statistics from training photographs,
:func:`mmcourse.models.vision.calibrate_batch_norm`) turns every photograph into an 8×8 grid
once, cached on disk (:mod:`mmcourse.data.features`); then the decoder of notebook 06 or 09 (or the dual encoder's
heads, notebook 07) trains on the grids through ``tf.data``, under the device strategy and
mixed precision like every model of the course. The ``shapes`` backbone is the course's own
CNN on 64×64 images, trained with the decoder (no cache: it changes as it learns).

The vocabulary comes from the training captions (the most frequent words, up to
``max_vocabulary``; rarer ones read as ``<unk>``), and captions are cut to ``max_words``.
The saved model holds the backbone, so ``mmcourse caption --model DIR photo.jpg`` needs
nothing else.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcourse import artifacts, device
from mmcourse import training as training_lib
from mmcourse.data import photos as photo_data
from mmcourse.data.text import Vocabulary

__all__ = ["WEIGHTS", "TRAIN_SIZES", "epochs_for", "check_weights", "local_weights", "PhotoChoice", "course_photo_data", "blind_caption",
           "photo_vocabulary", "cut_captions", "PhotoData", "prepare", "train_captioner_command", "train_retrieval_command"]

#: ``--weights`` besides a file's path.
WEIGHTS = ("imagenet", "none")
#: per profile: at most this many images (None: all), epochs (more if they would make fewer than
#: ``min_steps`` steps: a small folder still trains), the vocabulary's size cap, words a caption keeps
TRAIN_SIZES = {"quick": dict(limit=500, epochs=3, min_steps=10, max_vocabulary=2000, max_words=20),
               "full": dict(limit=None, epochs=15, min_steps=400, max_vocabulary=5000, max_words=20)}
BATCH_SIZE, LEARNING_RATE = 64, 2e-3
#: a random backbone's BatchNorm statistics come from this many training photographs
CALIBRATION_IMAGES = 64
#: the decoders' widths on photographs (a bigger vocabulary and vaguer captions than Shapes')
DECODER_SIZES = {"gru": dict(embed_dim=128, units=256, attention_units=128, attention_weight=0.0),
                 "transformer": dict(d_model=128, num_heads=4, layers=2, hidden=256)}
RETRIEVAL_SIZES = dict(dim=128, embed_dim=128, units=256)


def check_weights(weights: str, backbone: str) -> str:
    """``weights`` checked before anything loads: ``imagenet``, ``none`` or an existing file."""
    weights = str(weights)
    if backbone == "shapes" and weights != "none":
        raise ValueError("the shapes backbone is the course's CNN, trained with the decoder: use --weights none")
    if weights in WEIGHTS:
        return weights
    if not Path(weights).is_file():
        raise FileNotFoundError(f"--weights {weights}: no such file (pass imagenet, none, or a weights file of the {backbone} network)")
    return weights


def local_weights(backbone: str = "mobilenet_v3_small") -> str:
    """``"imagenet"`` when Keras already holds ``backbone``'s ImageNet weights (without the
    classifier) in its cache, ``~/.keras/models`` (``KERAS_HOME`` moves it), else ``"none"``: what
    a notebook passes as ``weights`` so that it never downloads."""
    import os

    from mmcourse.models import vision

    constructor = vision.BACKBONES[backbone][0]
    stem = {"MobileNetV3Small": "weights_mobilenet_v3_small", "MobileNetV3Large": "weights_mobilenet_v3_large",
            "EfficientNetB0": "efficientnetb0_notop", "MobileNetV2": "mobilenet_v2_weights"}[constructor]
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    found = [f for f in cache.glob(f"{stem}*") if "no_top" in f.name or "notop" in f.name] if cache.is_dir() else []
    return "imagenet" if found else "none"


@dataclass(frozen=True)
class PhotoChoice:
    """What a notebook's real-photograph section runs on: ``data`` for ``--data``, the
    ``backbone`` and its ``weights``, ``ran_on`` (which data, in words); :attr:`says` names them."""

    data: object
    backbone: str
    weights: str
    ran_on: str

    @property
    def says(self) -> str:
        from mmcourse.models import vision

        name = vision.BACKBONES[self.backbone][0].replace("V3", "V3-")
        weights = "ImageNet weights" if self.weights == "imagenet" else "random weights (ImageNet's are not on this machine)"
        return f"this section runs on {self.ran_on}, through {name} with {weights}"


def course_photo_data(folder, backbone: str = "mobilenet_v3_small", *, shapes_images: int = 160) -> PhotoChoice:
    """Flickr8k when it is in the data directory (``mmcourse doctor`` says where it looks),
    otherwise a small folder in Flickr8k's format made in ``folder``
    (:func:`mmcourse.data.photos.make_flickr8k_folder`, with ``shapes_images`` Shapes scenes): the
    same code runs on either, and :attr:`PhotoChoice.says` tells which. ImageNet weights only when
    Keras already holds them (nothing downloads)."""
    try:
        photo_data.load_dataset("flickr8k", limit=1)
        data, ran_on = "flickr8k", "Flickr8k, from the data directory"
    except photo_data.DatasetMissing:
        data = photo_data.make_flickr8k_folder(Path(folder) / "made_flickr8k", shapes_images=shapes_images)
        ran_on = (f"a folder made here in Flickr8k's format ({len(photo_data.SAMPLE_CAPTIONS)} scikit-image photographs with "
                  f"hand-written captions, {shapes_images} Shapes scenes with theirs), because Flickr8k is not on this machine")
    return PhotoChoice(data, backbone, local_weights(backbone), ran_on)


def blind_caption(captions) -> str:
    """The most common caption of the training references: what a captioner that never looks at
    the image would say of every one (the baseline a photo captioner must beat)."""
    from collections import Counter

    counts = Counter(c for caps in captions for c in caps)
    return min(counts, key=lambda c: (-counts[c], c))


def _weights_id(weights: str, seed: int) -> str:
    """What the cache key and metrics.json say about the weights: a file is named by its content."""
    if weights == "none":
        return f"random (seed {seed}), BatchNorm statistics of up to {CALIBRATION_IMAGES} training photographs"
    return "imagenet" if weights == "imagenet" else f"file {Path(weights).name} sha256 {artifacts.file_sha256(Path(weights))}"


def epochs_for(profile: str, train_images: int, batch_size: int, epochs: int | None = None) -> int:
    """``epochs`` if given, else the profile's, raised until they make ``min_steps`` steps."""
    if epochs is not None:
        return epochs
    sizes = TRAIN_SIZES[profile]
    steps_per_epoch = max(1, train_images // batch_size)
    return max(sizes["epochs"], -(-sizes["min_steps"] // steps_per_epoch))


def cut_captions(captions, max_words: int) -> list[list[str]]:
    """Each caption cut to its first ``max_words`` words."""
    return [[" ".join(c.split()[:max_words]) for c in caps] for caps in captions]


def photo_vocabulary(captions, max_size: int) -> Vocabulary:
    """The words of the captions (lists of references), most frequent first, at most ``max_size`` with the four specials."""
    return Vocabulary.build([c for caps in captions for c in caps], max_size=max_size)


@dataclass
class PhotoData:
    """A dataset made ready to train on: ``inputs`` are the backbone's grids (or, for the
    ``shapes`` backbone, the 64×64 images) of the readable photographs, ``captions`` theirs
    (cut to ``max_words``), ``train`` and ``test`` indices into both; ``encoder`` the backbone."""

    photos: photo_data.CaptionedPhotos
    paths: list
    inputs: np.ndarray
    captions: list
    train: np.ndarray
    test: np.ndarray
    skipped: list
    encoder: object
    feature_seconds: float
    cached: bool
    max_words: int

    def metrics(self, *, data, backbone: str, weights: str, seed: int) -> dict:
        """What both commands' ``metrics.json`` say about the data and the features."""
        readable = len(self.paths)
        return {"data": str(data), "dataset": self.photos.name, "backbone": backbone, "weights": _weights_id(weights, seed),
                "image_size": int(self.encoder.input.shape[1]), "images": len(self.photos), "missing_files": self.photos.missing,
                "skipped_files": [{"path": path, "reason": reason} for path, reason in self.skipped],
                "train_images": len(self.train), "test_images": len(self.test), "max_words": self.max_words,
                "feature_seconds": self.feature_seconds, "features_cached": self.cached,
                "feature_images_per_second": readable / self.feature_seconds if self.feature_seconds else None}


def prepare(data, *, split: str = "val2017", profile: str = "quick", seed: int = 0, backbone: str = "mobilenet_v3_small",
            weights: str = "none", cache_dir=None, limit: int | None = None, progress: bool = True) -> PhotoData:
    """Load ``data`` (:func:`mmcourse.data.photos.load_dataset`), split it into train and test
    images, build the backbone (in the device strategy's scope, from ``seed``) with its
    ``weights`` (random ones get BatchNorm statistics from training photographs:
    :func:`mmcourse.models.vision.calibrate_batch_norm`), compute or read its grids of every
    photograph, and keep the readable ones."""
    from mmcourse.data.features import backbone_grids
    from mmcourse.models import vision

    sizes = TRAIN_SIZES[profile]
    photos = photo_data.load_dataset(data, split=split, limit=limit if limit is not None else sizes["limit"])
    root = Path(data) if Path(str(data)).is_dir() else None
    # split before reading a pixel: a damaged file drops out of its side without moving the others
    train_listed, test_listed = photo_data.train_test_split(photos, seed=seed, root=root)
    with device.strategy().scope(), training_lib.seeded(seed):
        encoder = vision.build_backbone(backbone, weights=weights)
    if backbone == "shapes":  # the course's CNN trains with the decoder: it reads images, not cached grids
        images, kept, skipped = [], [], []
        for i, path in enumerate(photos.image_paths):
            try:
                images.append(photo_data.load_image(path, 64))
                kept.append(i)
            except (FileNotFoundError, ValueError) as error:
                skipped.append((str(path), str(error)))
        inputs, kept, seconds, cached = (np.stack(images) if images else np.zeros((0, 64, 64, 3), np.uint8)), np.array(kept, int), 0.0, False
    else:
        if weights == "none":
            size = int(encoder.input.shape[1])
            vision.calibrate_batch_norm(encoder, _readable_images(photos, train_listed, size, CALIBRATION_IMAGES, seed))
        what = {"backbone": backbone, "weights": _weights_id(weights, seed), "precision": encoder.dtype_policy.name}
        grids = backbone_grids(encoder, photos, what=what, cache_dir=cache_dir, progress=progress)
        inputs, kept, skipped, seconds, cached = grids.grids, grids.kept, grids.skipped, grids.seconds, grids.cached
    position = {int(i): k for k, i in enumerate(kept)}  # dataset index → row of inputs
    train = np.array([position[i] for i in train_listed if i in position], int)
    test = np.array([position[i] for i in test_listed if i in position], int)
    if not len(train) or not len(test):
        raise ValueError(f"{photos.name}: {len(kept)} readable image(s), {len(train)} of them to train on and {len(test)} to test; "
                         "at least one of each is needed")
    paths = [photos.image_paths[i] for i in kept]
    captions = cut_captions([photos.captions[i] for i in kept], sizes["max_words"])
    return PhotoData(photos, paths, inputs, captions, train, test, skipped, encoder, seconds, cached, sizes["max_words"])


def _readable_images(photos, indices, size: int, count: int, seed: int) -> np.ndarray:
    """Up to ``count`` of ``photos``' images at ``indices`` (in a seeded order), skipping unreadable files."""
    images = []
    for i in np.random.default_rng(seed).permutation(np.asarray(indices, int)):
        try:
            images.append(photo_data.load_image(photos.image_paths[i], size))
        except (FileNotFoundError, ValueError):
            continue
        if len(images) == count:
            break
    if not images:
        raise ValueError(f"{photos.name}: none of the training images could be read")
    return np.stack(images)


@contextmanager
def _photo_run(out, *, data, split, backbone, weights, profile, seed, precision, cpu_replicas, cache_dir, limit, progress):
    """Both commands' start: check the weights, the options and ``out`` (before anything loads),
    then, under the device's precision and replicas, :func:`prepare` the data. Yields
    ``(profile, seed, out, run, data)``; ``run`` is :func:`mmcourse.device.use`'s record."""
    weights = check_weights(weights, backbone)
    chosen, seed, out = training_lib.start_command(out, profile=profile, seed=seed, precision=precision, cpu_replicas=cpu_replicas)
    with device.use(precision, cpu_replicas) as run:
        yield chosen, seed, out, run, prepare(data, split=split, profile=chosen.name, seed=seed, backbone=backbone, weights=weights,
                                              cache_dir=cache_dir, limit=limit, progress=progress)


def _training_plan(d: PhotoData, profile: str, epochs: int | None):
    """The training images' captions, their vocabulary, the batch size and the epochs (:func:`epochs_for`)."""
    train_captions = [d.captions[i] for i in d.train]
    vocabulary = photo_vocabulary(train_captions, TRAIN_SIZES[profile]["max_vocabulary"])
    batch = min(BATCH_SIZE, len(d.train))
    return train_captions, vocabulary, batch, epochs_for(profile, len(d.train), batch, epochs)


def train_captioner_command(out, *, data, split: str = "val2017", backbone: str = "mobilenet_v3_small", weights: str = "none",
                            decoder: str = "gru", profile: str | None = None, seed: int = 0, precision: str = "auto",
                            cpu_replicas: int | None = None, progress: bool = True, cache_dir=None, limit: int | None = None,
                            epochs: int | None = None) -> dict:
    """What ``mmcourse train captioner --data DATA`` does (see the module's docstring): writes the
    captioner (backbone inside), its vocabulary and ``metrics.json`` with BLEU-1…4 (0–100),
    CIDEr-D and ROUGE-L (0–1) on the test images, the timings, and example captions. Returns the metrics."""
    from mmcourse import metrics as M
    from mmcourse.models import captioning

    if decoder not in captioning.DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(captioning.DECODERS)}; got {decoder!r}")
    with _photo_run(out, data=data, split=split, backbone=backbone, weights=weights, profile=profile, seed=seed, precision=precision,
                    cpu_replicas=cpu_replicas, cache_dir=cache_dir, limit=limit, progress=progress) as (chosen, seed, out, run, d):
        train_captions, vocabulary, batch, n_epochs = _training_plan(d, chosen.name, epochs)
        model, history, seconds = captioning.train_captioner(
            d.inputs[d.train], train_captions, vocabulary, epochs=n_epochs, batch_size=batch, learning_rate=LEARNING_RATE, seed=seed,
            progress=progress, encoder=None if backbone == "shapes" else d.encoder, decoder=decoder, backbone=backbone,
            caption_length=d.max_words + 2, **DECODER_SIZES[decoder])
        hypotheses, _ = captioning.greedy_decode(model, d.inputs[d.test], vocabulary)
    references = [d.captions[i] for i in d.test]
    scores = {f"bleu{n}": M.corpus_bleu(hypotheses, references, max_n=n) for n in range(1, 5)}
    scores.update(cider_d=M.cider_d(hypotheses, references), rouge_l=M.rouge_l(hypotheses, references))
    blind = [blind_caption(train_captions)] * len(references)  # the same metrics for a captioner that never looks
    scores.update(blind_caption=blind[0], blind_bleu4=M.corpus_bleu(blind, references), blind_cider_d=M.cider_d(blind, references),
                  blind_rouge_l=M.rouge_l(blind, references))
    captioning.save(model, vocabulary, out)
    metrics = d.metrics(data=data, backbone=backbone, weights=weights, seed=seed)
    metrics.update(decoder=decoder, vocabulary_size=len(vocabulary), epochs=n_epochs, batch_size=batch, decoder_seconds=seconds,
                   decoder_images_per_second=len(d.train) * n_epochs / seconds, final_loss=float(history["loss"][-1]), **scores,
                   examples=[{"image": str(d.paths[i]), "caption": h, "references": d.captions[i]} for i, h in zip(d.test[:12], hypotheses[:12])])
    return artifacts.write_metrics(out, metrics, files=[captioning.MODEL_FILE, captioning.VOCABULARY_FILE], run=run, profile=chosen.name,
                                   seed=seed, test_seed=[seed], train_seconds=d.feature_seconds + seconds)


def retrieval_batches(grids, captions, vocabulary: Vocabulary, *, text_length: int, batch_size: int, epochs: int, seed: int):
    """A ``tf.data`` stream of ``((grids, tokens),)`` batches, every image with one of its
    captions drawn afresh at every step; no ``y``: the loss pairs each image with its own
    caption. Full batches only (a contrastive batch needs its negatives)."""
    from mmcourse._tf import tensorflow
    from mmcourse.data import pipeline

    tf = tensorflow()
    refs = max(len(c) for c in captions)
    tokens = np.stack([vocabulary.encode_batch([c[k % len(c)] for k in range(refs)], length=text_length, bounds=False) for c in captions])
    grids_t, tokens_t = tf.constant(np.asarray(grids)), tf.constant(tokens)

    def gather(step, rows):
        chosen = pipeline.take(tokens_t, rows, pipeline.pick_reference(rows, refs, seed=seed, step=step))
        return ((pipeline.take(grids_t, rows), chosen),)

    return pipeline.batches(len(tokens), gather, batch_size=batch_size, epochs=epochs, seed=seed, full_batches=True)


def train_retrieval_command(out, *, data, split: str = "val2017", backbone: str = "mobilenet_v3_small", weights: str = "none",
                            text_encoder: str = "gru", profile: str | None = None, seed: int = 0, precision: str = "auto",
                            cpu_replicas: int | None = None, progress: bool = True, cache_dir=None, limit: int | None = None,
                            epochs: int | None = None) -> dict:
    """What ``mmcourse train retrieval --data DATA`` does: the dual encoder of notebook 07 with
    the backbone frozen under its image tower, trained with InfoNCE on the cached grids; writes
    the model, its vocabulary and ``metrics.json`` with Recall@1, 5 and 10 both ways on the test
    images (every test caption a query for text → image; every test image one for image → text,
    any of its captions counting). Returns the metrics."""
    from mmcourse import metrics as M
    from mmcourse.models import retrieval

    if text_encoder not in retrieval.TEXT_ENCODERS:
        raise ValueError(f"text_encoder must be one of {', '.join(retrieval.TEXT_ENCODERS)}; got {text_encoder!r}")
    if backbone == "shapes":
        raise ValueError("retrieval on photographs reads a frozen keras.applications backbone: pass --backbone mobilenet_v3_small (or another)")
    with _photo_run(out, data=data, split=split, backbone=backbone, weights=weights, profile=profile, seed=seed, precision=precision,
                    cpu_replicas=cpu_replicas, cache_dir=cache_dir, limit=limit, progress=progress) as (chosen, seed, out, run, d):
        train_captions, vocabulary, batch, n_epochs = _training_plan(d, chosen.name, epochs)
        steps = len(d.train) // batch
        with device.strategy().scope(), training_lib.seeded(seed):
            model = retrieval.DualEncoder(len(vocabulary), text_encoder=text_encoder, backbone=backbone, text_length=d.max_words,
                                          semantic_positives=False, hard_negatives=False, **RETRIEVAL_SIZES)
            model.image_encoder.set_weights(d.encoder.get_weights())
            model.image_encoder.trainable = False
            training_lib.compile(model, _adam(LEARNING_RATE, steps * n_epochs))
        stream = retrieval_batches(d.inputs[d.train], train_captions, vocabulary, text_length=d.max_words, batch_size=batch,
                                   epochs=n_epochs, seed=seed)
        callbacks = []
        if progress:
            from tqdm.keras import TqdmCallback

            callbacks.append(TqdmCallback(verbose=0, desc=f"train {text_encoder} dual encoder"))
        start = time.perf_counter()
        history = model.fit(stream, epochs=n_epochs, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=callbacks)
        seconds = time.perf_counter() - start
        test_captions = [c for i in d.test for c in d.captions[i]]
        owner = np.repeat(np.arange(len(d.test)), [len(d.captions[i]) for i in d.test])
        x = retrieval.embed_images(model, d.inputs[d.test])
        y = retrieval.embed_captions(model, test_captions, vocabulary)
    similarity = y @ x.T  # (captions, images)
    ks = [k for k in (1, 5, 10) if k <= len(d.test)]
    scores = {}
    for way, s, relevant in (("t2i", similarity, M.instance_relevance(owner, np.arange(len(d.test)))),
                             ("i2t", similarity.T, M.instance_relevance(np.arange(len(d.test)), owner))):
        scores.update({f"recall@{k}_{way}": v for k, v in M.recall_at_k(s, relevant, ks).items()})
        scores.update({f"chance@{k}_{way}": v for k, v in M.chance_recall_at_k(relevant, ks).items()})  # a random ranking's
    retrieval.save(model, vocabulary, out)
    metrics = d.metrics(data=data, backbone=backbone, weights=weights, seed=seed)
    metrics.update(text_encoder=text_encoder, vocabulary_size=len(vocabulary), epochs=n_epochs, batch_size=batch, decoder_seconds=seconds,
                   final_loss=float(history.history["loss"][-1]), temperature=model.logit_scale.temperature, test_captions=len(test_captions), **scores)
    return artifacts.write_metrics(out, metrics, files=[retrieval.MODEL_FILE, retrieval.VOCABULARY_FILE], run=run, profile=chosen.name,
                                   seed=seed, test_seed=[seed], train_seconds=d.feature_seconds + seconds)


def _adam(learning_rate: float, steps: int):
    """Adam with its step falling along a half cosine over ``steps`` (the course's optimizer)."""
    import keras

    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, max(1, steps)))
