"""Plot helpers and the dataset catalogue."""

import io

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
from PIL import Image

from mmcourse import viz
from mmcourse.data import catalog, shapes


def test_png_round_trip_and_upscale():
    image = shapes.generate(1, seed=0).images[0]
    decoded = np.asarray(Image.open(io.BytesIO(viz.to_png(image, scale=3))))
    assert decoded.shape == (192, 192, 3) and (decoded[::3, ::3] == image).all()
    with pytest.raises(ValueError, match="uint8"):
        viz.to_png(image.astype(float))


def test_show_images_makes_one_axis_per_image():
    d = shapes.generate(5, seed=0)
    fig = viz.show_images(d.images, [c[0] for c in d.captions], ncols=3)
    assert len(fig.axes) == 6 and fig.axes[0].get_title()
    scene = d.scenes[0]
    ax = viz.overlay_scene(fig.axes[5], d.images[0], scene, d.masks[0])
    assert len(ax.patches) == len(scene.objects)


def test_catalog_sees_shipped_data_and_downloads_where_they_belong(monkeypatch, tmp_path):
    monkeypatch.setenv("MMCOURSE_DATA", str(tmp_path))
    found = {info.name: present for info, present, _ in catalog.status()}
    assert all(found[n] for n in ("shapes", "lee", "movie-reviews", "wordsim353", "simlex999", "analogies", "photos", "digits"))
    assert not found["mnist"]
    (tmp_path / "mnist.npz").write_bytes(b"")
    found = {info.name: (present, where) for info, present, where in catalog.status()}
    assert found["mnist"] == (True, str(tmp_path / "mnist.npz"))


def test_catalog_finds_flickr8k_in_either_of_its_caption_formats(monkeypatch, tmp_path):
    monkeypatch.setenv("MMCOURSE_DATA", str(tmp_path))
    found = {info.name: (present, where) for info, present, where in catalog.status()}
    assert found["flickr8k"] == (False, str(tmp_path / "flickr8k" / "captions.txt"))  # where it looked
    (tmp_path / "flickr8k").mkdir()
    (tmp_path / "flickr8k" / "Flickr8k.token.txt").write_text("a.jpg#0\ta dog\n")
    found = {info.name: (present, where) for info, present, where in catalog.status()}
    assert found["flickr8k"] == (True, str(tmp_path / "flickr8k" / "Flickr8k.token.txt"))
