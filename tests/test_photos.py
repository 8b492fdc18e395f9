"""Flickr8k- and COCO-format loaders on tiny folders made here."""

import json

import numpy as np
import pytest
from PIL import Image

from mmcourse.data import photos


def write_image(path, colour, size=(40, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


def test_normalise_caption():
    assert photos.normalise_caption("A dog, running  on the BEACH.") == "a dog running on the beach"
    assert photos.normalise_caption("The dog's ball!") == "the dog's ball"


def test_flickr8k_csv_format(tmp_path):
    root = tmp_path / "flickr8k"
    write_image(root / "Images" / "1.jpg", (255, 0, 0))
    write_image(root / "Images" / "2.png", (0, 0, 255, 128), mode="RGBA")
    (root / "captions.txt").write_text(
        "image,caption\n1.jpg,A red square.\n1.jpg,\"Red, red, red\"\n2.png,A blue one\n3.jpg,not on disk\n", encoding="utf-8"
    )
    data = photos.load_flickr8k(root)
    assert len(data) == 2 and data.missing == 1
    assert data.captions[0] == ["a red square", "red red red"] and data.captions[1] == ["a blue one"]
    images = data.images(size=16)
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    assert np.abs(images[0, 8, 8].astype(int) - (255, 0, 0)).max() <= 3  # JPEG is lossy
    assert tuple(images[1, 8, 8]) == (0, 0, 255)  # PNG with alpha: alpha dropped
    assert len(photos.load_flickr8k(root, limit=1)) == 1


def test_flickr8k_token_format(tmp_path):
    root = tmp_path / "f"
    write_image(root / "Flicker8k_Dataset" / "a.jpg", (0, 255, 0))
    (root / "Flickr8k.token.txt").write_text("a.jpg#0\tA green thing .\na.jpg#1\tGreen !\n", encoding="utf-8")
    data = photos.load_flickr8k(root)
    assert data.captions == [["a green thing", "green"]]


def test_coco_format(tmp_path):
    root = tmp_path / "coco"
    write_image(root / "val2017" / "000001.jpg", (10, 20, 30))
    (root / "annotations").mkdir()
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "000001.jpg"}, {"id": 2, "file_name": "000002.jpg"}],
        "annotations": [{"image_id": 1, "caption": "Dark image."}, {"image_id": 2, "caption": "gone"}],
    }))
    data = photos.load_coco(root)
    assert len(data) == 1 and data.missing == 1 and data.captions == [["dark image"]]


def test_absent_data_says_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCOURSE_DATA", str(tmp_path))
    with pytest.raises(photos.DatasetMissing, match=r"Flickr8k is not on this machine: expected .*flickr8k/captions.txt\. Download it from https://"):
        photos.load_flickr8k()
    with pytest.raises(photos.DatasetMissing, match=r"COCO captions .*captions_val2017.json.*cocodataset.org"):
        photos.load_coco()


def test_bad_image_files_are_named(tmp_path):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    with pytest.raises(ValueError, match="notes.jpg is not an image"):
        photos.load_image(not_image)
    good = tmp_path / "good.png"
    write_image(good, (1, 2, 3), size=(64, 64))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match="cut.png is damaged or truncated"):
        photos.load_image(truncated)
    with pytest.raises(FileNotFoundError, match="no image file"):
        photos.load_image(tmp_path / "nothing.png")
