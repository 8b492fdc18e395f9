"""The tf.data helper pairs the right image with each caption."""

import numpy as np
import pytest

from mmcourse.data.pipeline import image_caption_dataset


def _data(n=10, k=3, length=6):
    images = np.zeros((n, 8, 8, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(n)  # each image carries its index
    tokens = np.arange(n * k * length, dtype=np.int32).reshape(n, k, length)
    return images, tokens


def test_batches_pair_each_caption_with_its_image():
    images, tokens = _data()
    seen = []
    for image, caption in image_caption_dataset(images, tokens, batch_size=4, seed=0):
        assert image.dtype.name == "float32" and float(image.numpy().max()) <= 1.0
        index = np.rint(image.numpy()[:, 0, 0, 0] * 255).astype(int)
        flat = caption.numpy()[:, 0] // tokens.shape[-1]  # which (image, caption) pair
        assert (flat // tokens.shape[1] == index).all()
        seen += flat.tolist()
    assert sorted(seen) == list(range(30))  # every pair exactly once per epoch


def test_teacher_forcing_shifts_the_targets_by_one():
    images, tokens = _data(k=1)
    (image, inputs), targets = next(iter(image_caption_dataset(images, tokens[:, 0], batch_size=10, shuffle=False, teacher_forcing=True)))
    assert inputs.shape == (10, 5) and targets.shape == (10, 5)
    assert np.array_equal(inputs.numpy()[:, 1:], targets.numpy()[:, :-1])


def test_seeded_shuffle_repeats_and_reshuffles_each_epoch():
    images, tokens = _data()
    order = lambda ds: [int(c[0]) for _, cap in ds for c in cap.numpy()]
    a = image_caption_dataset(images, tokens, batch_size=5, seed=3)
    b = image_caption_dataset(images, tokens, batch_size=5, seed=3)
    first = order(a)
    assert first == order(b)
    assert first != order(a)  # the next epoch has another order
    assert order(image_caption_dataset(images, tokens, batch_size=5, shuffle=False)) == sorted(first)


def test_bad_shapes_get_clear_errors():
    images, tokens = _data()
    with pytest.raises(ValueError, match="images must be"):
        image_caption_dataset(images[..., 0], tokens, batch_size=2)
    with pytest.raises(ValueError, match="n = 10 images"):
        image_caption_dataset(images, tokens[:5], batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        image_caption_dataset(images, tokens, batch_size=0)
