"""The search widget, driven by setting its controls as a learner would."""

import numpy as np
import pytest

from mmcourse import training
from mmcourse.data import shapes
from mmcourse.models import retrieval as R
from mmcourse.widgets import SearchWidget


@pytest.fixture(scope="module")
def setup():
    vocab = shapes.caption_vocabulary()
    with training.seeded(0):
        model = R.DualEncoder(len(vocab), dim=8, channels=8, embed_dim=8, units=8)
    data = shapes.generate(12, seed=9)
    return model, vocab, data


def test_text_query_shows_the_most_similar_images_with_truth_marks(setup):
    model, vocab, data = setup
    captions = [c for caps in data.captions for c in caps]
    w = SearchWidget(model, vocab, data.images, captions, data.scenes, k=4, query="a small red circle")
    scores = R.embed_images(model, data.images) @ R.embed_captions(model, ["a small red circle"], vocab)[0]
    assert w.image_results == np.argsort(-scores, kind="stable")[:4].tolist()
    assert w.image_true == [shapes.parse_caption("a small red circle").is_true_of(data.scenes[i]) for i in w.image_results]
    assert len(w.gallery.children) == 4 and "top 4 images" in w.message.value
    w.query.value = "There is a LARGE blue  square"
    scores = R.embed_images(model, data.images) @ R.embed_captions(model, ["there is a large blue square"], vocab)[0]
    assert w.image_results == np.argsort(-scores, kind="stable")[:4].tolist() and w.error == ""


def test_pressing_an_image_lists_its_closest_captions(setup):
    model, vocab, data = setup
    captions = [c for caps in data.captions for c in caps]
    w = SearchWidget(model, vocab, data.images, captions + captions[:5], data.scenes, k=3)
    assert len(w.captions) == len(set(captions))  # duplicates dropped
    first = w.image_results[1]
    w.gallery.children[1].children[1].click()  # the button under the second image
    scores = R.embed_captions(model, w.captions, vocab) @ R.embed_images(model, data.images[first : first + 1])[0]
    assert w.caption_results == [w.captions[j] for j in np.argsort(-scores, kind="stable")[:3]]
    assert w.caption_true == [shapes.parse_caption(c).is_true_of(data.scenes[first]) for c in w.caption_results]
    assert f"image #{first}" in w.caption_list.value
    with pytest.raises(IndexError, match="outside the gallery of 12 images"):
        w.search_image(12)


def test_a_word_outside_the_grammar_is_named_and_nothing_is_shown(setup):
    model, vocab, data = setup
    w = SearchWidget(model, vocab, data.images, data.captions[0], k=2)
    w.query.value = "a small pink circle"
    assert "'pink'" in w.error and "pink" in w.message.value and w.gallery.children == () and w.image_results == []
    w.query.value = "a small red circle"
    assert w.error == "" and len(w.image_results) == 2 and w.image_true == []  # no scenes, no marks
    with pytest.raises(ValueError, match="k must be between 1 and the number of images"):
        SearchWidget(model, vocab, data.images, data.captions[0], k=13)
