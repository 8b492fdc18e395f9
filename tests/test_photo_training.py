"""Training on real captioned photographs (`mmcourse train captioner|retrieval --data`): on small
datasets made here in both formats, with the awkward things real folders hold (photographs of
their own sizes in JPEG and PNG, a listed file that is missing, a corrupt one, punctuation and
capitals, an image listed twice). Random backbone weights (`--weights none`): nothing downloads."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mmcourse.data import photos
from mmcourse.data.features import backbone_grids
from mmcourse.models import captioning as C
from mmcourse.models import photo_training as P
from mmcourse.models import retrieval as R
from mmcourse.models import vision

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "motorcycle_left", "hubble_deep_field"]


def run_cli(*args, env=None):
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mmcourse", *map(str, args)], capture_output=True, text=True, env=full_env, timeout=600)


def _write_photos(folder, extension_of):
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        Image.fromarray(photos._sample_photo(name)).save(folder / f"{name}.{extension_of(name)}")


@pytest.fixture(scope="module")
def flickr(tmp_path_factory):
    """Flickr8k format: captions.txt and Images/ (JPEG and PNG at their own sizes), a missing file, a corrupt one."""
    root = tmp_path_factory.mktemp("flickr")
    _write_photos(root / "Images", lambda name: "png" if name in ("camera", "coins") else "jpg")
    (root / "Images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    rows = [("image", "caption")]
    for name in PHOTOS:
        ext = "png" if name in ("camera", "coins") else "jpg"
        rows += [(f"{name}.{ext}", c) for c in photos.SAMPLE_CAPTIONS[name]]
    rows += [("astronaut.jpg", "An ASTRONAUT, smiling; in front of a FLAG!")]  # punctuation and capitals, the image listed again
    rows += [("gone.jpg", "a photo that is not in the folder"), ("broken.jpg", "a file that is not an image")]
    with open(root / "captions.txt", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return root


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """COCO format: annotations/captions_val2017.json and val2017/, an image listed twice and a missing one."""
    root = tmp_path_factory.mktemp("coco")
    _write_photos(root / "val2017", lambda name: "jpg")
    images = [{"id": i, "file_name": f"{name}.jpg"} for i, name in enumerate(PHOTOS)]
    images += [{"id": 100, "file_name": "astronaut.jpg"}, {"id": 101, "file_name": "missing.jpg"}]
    notes = [{"image_id": i, "caption": c} for i, name in enumerate(PHOTOS) for c in photos.SAMPLE_CAPTIONS[name][:3]]
    notes += [{"image_id": 100, "caption": "A Woman in a SPACE suit."}, {"image_id": 101, "caption": "nothing here"}]
    (root / "annotations").mkdir()
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps({"images": images, "annotations": notes}))
    return root


def test_both_formats_load_with_their_awkward_rows(flickr, coco):
    f = photos.load_dataset(flickr)
    assert f.name == "Flickr8k" and f.missing == 1 and len(f) == len(PHOTOS) + 1  # broken.jpg is listed and present, gone.jpg is missing
    astronaut = f.captions[[p.name for p in f.image_paths].index("astronaut.jpg")]
    assert len(astronaut) == 6 and "an astronaut smiling in front of a flag" in astronaut  # one image, both rows; normalised
    c = photos.load_dataset(coco)
    assert c.name == "COCO" and c.missing == 1 and len(c) == len(PHOTOS)
    assert "a woman in a space suit" in c.captions[[p.name for p in c.image_paths].index("astronaut.jpg")]


def test_a_bad_folder_is_named_in_one_line(tmp_path):
    result = run_cli("train", "captioner", "--data", tmp_path, "--out", tmp_path / "M", "--profile", "quick")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "captions.txt" in result.stderr and str(tmp_path) in result.stderr
    result = run_cli("train", "captioner", "--data", tmp_path / "nowhere", "--out", tmp_path / "M")
    assert result.returncode == 2 and "is not a folder" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("train", "captioner", "--backbone", "mobilenet_v3_small", "--out", tmp_path / "M")
    assert result.returncode == 2 and "go with --data" in result.stderr


def test_grids_are_cached_under_a_key_of_everything_they_depend_on(flickr, tmp_path):
    data = photos.load_dataset(flickr)
    encoder = vision.build_backbone("mobilenet_v3_small", image_size=64)  # small images: a quick test
    what = {"backbone": "mobilenet_v3_small", "weights": "random (seed 0)"}
    first = backbone_grids(encoder, data, what=what, cache_dir=tmp_path, progress=False)
    assert first.grids.shape == (len(PHOTOS), 2, 2, 576) and first.grids.dtype == np.float16 and not first.cached
    assert [p for p, _ in first.skipped] == [str(flickr / "Images" / "broken.jpg")] and "broken.jpg" in first.skipped[0][1]
    again = backbone_grids(encoder, data, what=what, cache_dir=tmp_path, progress=False)
    assert again.cached and again.seconds == 0 and again.skipped == first.skipped
    np.testing.assert_array_equal(again.grids, first.grids)
    np.testing.assert_array_equal(again.kept, first.kept)
    other = backbone_grids(encoder, data, what=dict(what, weights="imagenet"), cache_dir=tmp_path, progress=False)
    assert not other.cached and len(list(tmp_path.glob("*.npz"))) == 2


def test_a_random_backbone_is_calibrated_so_its_grids_tell_photographs_apart():
    images = np.stack([np.asarray(Image.fromarray(photos._sample_photo(n)).convert("RGB").resize((128, 128))) for n in PHOTOS])
    x = images.astype(np.float32) / 255.0

    def backbone():
        import keras

        keras.utils.set_random_seed(3)
        return vision.build_backbone("mobilenet_v3_small", image_size=128)

    raw = np.asarray(backbone()(x)["grid"])
    assert np.abs(raw).max() < 1e-5  # as Keras builds it: BatchNorm's mean 0 and variance 1 let the signal die out
    reference = np.asarray(backbone()(x, training=True)["grid"])  # Keras's own batch statistics, layer by layer
    calibrated = backbone()
    assert vision.calibrate_batch_norm(calibrated, images) == 34
    grids = np.asarray(calibrated(x)["grid"])
    np.testing.assert_allclose(grids, reference, rtol=1e-4, atol=1e-4)
    assert grids.std(axis=0).mean() > 0.1 and np.abs(grids.astype(np.float16)).mean() > 0.1  # survives the float16 cache
    momenta = {layer.momentum for layer in calibrated.layers[2].layers if hasattr(layer, "moving_mean")}
    assert momenta and 0.0 not in momenta  # the layers' own momentum is back


@pytest.fixture(scope="module")
def trained(flickr, tmp_path_factory):
    """`mmcourse train captioner --data DIR --backbone mobilenet_v3_small --weights none --profile quick --out M`."""
    out = tmp_path_factory.mktemp("photo_captioner")
    result = run_cli("train", "captioner", "--data", flickr, "--backbone", "mobilenet_v3_small", "--weights", "none", "--profile", "quick",
                     "--out", out, "--cache", out / "cache")
    return out, result


def test_the_captioner_trains_end_to_end_and_its_metrics_hold_every_metric(trained, flickr):
    out, result = trained
    assert result.returncode == 0, result.stderr
    assert "BLEU-4" in result.stdout and "CIDEr-D" in result.stdout and "ROUGE-L" in result.stdout
    m = json.loads((out / "metrics.json").read_text())
    for key in ("bleu1", "bleu2", "bleu3", "bleu4", "cider_d", "rouge_l", "feature_seconds", "feature_images_per_second",
                "decoder_seconds", "decoder_images_per_second", "train_seconds", "vocabulary_size"):
        assert key in m and m[key] is not None and np.isfinite(m[key]), key
    assert 0 <= m["bleu4"] <= 100 and 0 <= m["rouge_l"] <= 1 and m["cider_d"] >= 0
    assert m["backbone"] == "mobilenet_v3_small" and m["weights"].startswith("random (seed 0), BatchNorm statistics") and m["image_size"] == 256
    assert m["missing_files"] == 1 and [s["path"] for s in m["skipped_files"]] == [str(flickr / "Images" / "broken.jpg")]
    assert m["train_images"] + m["test_images"] == len(PHOTOS) and m["test_images"] >= 1
    assert len(m["examples"]) == m["test_images"] and all(e["references"] for e in m["examples"])
    assert m["blind_caption"] in {c for n in PHOTOS for c in photos.SAMPLE_CAPTIONS[n]} | {"an astronaut smiling in front of a flag"}
    assert 0 <= m["blind_bleu4"] <= 100 and m["blind_cider_d"] >= 0


def test_the_blind_baseline_and_the_local_weights(tmp_path, monkeypatch):
    assert P.blind_caption([["a dog", "a cat"], ["a cat", "the sun"]]) == "a cat"
    assert P.blind_caption([["b"], ["a"]]) == "a"  # a tie: the first in order, so runs agree
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert P.local_weights("mobilenet_v3_small") == "none"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5").write_bytes(b"")
    assert P.local_weights("mobilenet_v3_small") == "imagenet" and P.local_weights("efficientnet_b0") == "none"


def test_a_notebook_runs_on_flickr8k_when_it_is_there_and_on_a_made_folder_when_not(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCOURSE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    made = P.course_photo_data(tmp_path / "work")
    assert made.data == tmp_path / "work" / "made_flickr8k" and photos.load_dataset(made.data).name == "Flickr8k"
    assert made.weights == "none" and made.says.startswith("this section runs on a folder made here in Flickr8k's format")
    assert made.says.endswith("through MobileNetV3-Small with random weights (ImageNet's are not on this machine)")
    photos.make_flickr8k_folder(tmp_path / "data" / "flickr8k", shapes_images=4)
    found = P.course_photo_data(tmp_path / "elsewhere")
    assert found.data == "flickr8k" and found.ran_on == "Flickr8k, from the data directory" and not (tmp_path / "elsewhere").exists()


def test_caption_reads_the_model_on_photographs_of_any_size(trained, tmp_path):
    out, _ = trained
    wide = tmp_path / "wide.jpg"
    Image.fromarray(photos._sample_photo("rocket")).save(wide)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(photos._sample_photo("coffee")).resize((40, 30)).convert("RGBA").save(tiny)
    result = run_cli("caption", "--model", out, wide, tiny, tmp_path / "nowhere.jpg")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(wide), str(tiny)]
    assert result.stderr.strip() == f"{tmp_path / 'nowhere.jpg'}: no such file"
    # the same captions as the saved model decodes in this process, at its 256×256 input
    model, vocabulary = C.load(out)
    assert model.backbone == "mobilenet_v3_small" and model.encoder.input.shape[1] == 256 and model.caption_length == 22
    images = np.stack([photos.load_image(wide, 256), photos.load_image(tiny, 256)])
    assert [line.split("\t")[1] for line in lines] == C.greedy_decode(model, images, vocabulary)[0]


def test_the_transformer_decoder_and_retrieval_train_on_coco_format(coco, tmp_path):
    m = P.train_captioner_command(tmp_path / "T", data=coco, decoder="transformer", profile="quick", epochs=2, cache_dir=tmp_path / "c",
                                  progress=False)
    assert m["decoder"] == "transformer" and m["dataset"] == "COCO" and m["missing_files"] == 1 and np.isfinite(m["cider_d"])
    model, _ = C.load(tmp_path / "T")
    assert model.decoder == "transformer" and model.caption_length == 22
    r = P.train_retrieval_command(tmp_path / "R", data=coco, profile="quick", epochs=2, cache_dir=tmp_path / "c", progress=False)
    assert r["features_cached"] and r["feature_seconds"] == 0  # the captioner's grids, read back
    assert r["test_images"] == 1 and r["test_captions"] == 3 and r["recall@1_t2i"] == 1.0 and r["recall@1_i2t"] == 1.0  # one test image: trivially found
    assert r["chance@1_t2i"] == 1.0 and r["chance@1_i2t"] == 1.0  # as a random ranking would
    dual, vocabulary = R.load(tmp_path / "R")
    assert dual.backbone == "mobilenet_v3_small"
    image = photos.load_image(coco / "val2017" / "rocket.jpg", 256)
    x, y = R.embed_images(dual, image[None]), R.embed_captions(dual, ["A rocket on its PAD!", "zebras"], vocabulary)
    assert x.shape == (1, 128) and y.shape == (2, 128) and np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)


def test_shapes_backbone_and_weights_are_checked_before_training(flickr, tmp_path):
    with pytest.raises(ValueError, match="--weights none"):
        P.train_captioner_command(tmp_path / "A", data=flickr, backbone="shapes", weights="imagenet")
    with pytest.raises(FileNotFoundError, match="no such file"):
        P.train_captioner_command(tmp_path / "B", data=flickr, weights=str(tmp_path / "nothing.weights.h5"))
    m = P.train_captioner_command(tmp_path / "S", data=flickr, backbone="shapes", profile="quick", epochs=1, progress=False)
    assert m["image_size"] == 64 and m["feature_seconds"] == 0 and np.isfinite(m["bleu4"])  # the course's CNN, trained with the decoder


def test_a_weights_file_is_loaded_into_the_backbone(tmp_path):
    source = vision.build_backbone("mobilenet_v3_small", image_size=64)
    network = next(layer for layer in source.layers if isinstance(layer, type(source)))  # the keras.applications network inside
    network.save_weights(tmp_path / "mine.weights.h5")
    loaded = vision.build_backbone("mobilenet_v3_small", image_size=64, weights=str(tmp_path / "mine.weights.h5"))
    x = np.random.default_rng(0).random((1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)["grid"]), np.asarray(source(x)["grid"]), atol=1e-5)


def test_mixed_precision_on_two_replicas(flickr, tmp_path):
    """The device path: two CPU replicas and mixed float16, through the command line."""
    result = run_cli("train", "retrieval", "--data", flickr, "--precision", "mixed", "--cpu-replicas", "2", "--profile", "quick",
                     "--epochs", "1", "--limit", "6", "--out", tmp_path / "R", "--cache", tmp_path / "c")
    assert result.returncode == 0, result.stderr
    m = json.loads((tmp_path / "R" / "metrics.json").read_text())
    assert m["precision"] == "mixed_float16" and m["replicas"] == 2 and np.isfinite(m["final_loss"])


def test_search_ranks_photographs_of_any_size_by_a_query(coco, tmp_path):
    P.train_retrieval_command(tmp_path / "R", data=coco, profile="quick", epochs=1, cache_dir=tmp_path / "c", progress=False)
    files = [coco / "val2017" / f"{name}.jpg" for name in ("rocket", "chelsea", "coffee")]
    small = tmp_path / "small.png"
    Image.fromarray(photos._sample_photo("astronaut")).resize((33, 47)).save(small)
    result = run_cli("search", "--model", tmp_path / "R", "--k", "3", "a cat", *files, small, tmp_path / "gone.jpg")
    assert result.returncode == 1 and "Traceback" not in result.stderr and "gone.jpg" in result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(lines) == 3 and {path for _, path in lines} <= {*map(str, files), str(small)}
    # the order and numbers are the model's, computed here
    ranked, unreadable = R.search_files(tmp_path / "R", "a cat", [*files, small], k=3)
    assert [path for _, path in lines] == [p for p, _ in ranked] and [float(s) for s, _ in lines] == pytest.approx([s for _, s in ranked], abs=1e-3)
    assert unreadable == []


def test_a_small_folder_trains_for_enough_steps():
    assert P.epochs_for("full", 20_000, 64) == 15  # a real dataset: the profile's epochs
    assert P.epochs_for("full", 157, 64) == 200  # 2 steps an epoch: 400 steps need 200 epochs
    assert P.epochs_for("quick", 157, 64, epochs=2) == 2  # asked for: as asked
