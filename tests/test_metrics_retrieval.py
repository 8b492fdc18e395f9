"""Recall@K, instance and semantic relevance — against brute force and CaptionParse.is_true_of."""

import numpy as np
import pytest

from mmcourse.data import shapes
from mmcourse.metrics.retrieval import chance_recall_at_k, instance_relevance, ranks, recall_at_k, semantic_relevance


def brute_recall(similarity, relevant, k):
    """Sort each query's items one by one; ties put irrelevant items first (the pessimistic count)."""
    hits = 0
    for s, r in zip(similarity, relevant):
        order = sorted(range(len(s)), key=lambda i: (-s[i], bool(r[i])))
        hits += any(r[i] for i in order[:k])
    return hits / len(similarity)


def test_chance_recall_is_what_random_rankings_score():
    rng = np.random.default_rng(0)
    rel = instance_relevance(np.repeat(np.arange(12), 5), np.arange(12)).T  # image → text: 12 images, 5 captions each
    rel[3, :20] = True  # one query with many right answers
    chance = chance_recall_at_k(rel, ks=(1, 5, 10, 60))
    simulated = np.mean([list(recall_at_k(rng.random(rel.shape), rel, ks=(1, 5, 10, 60)).values()) for _ in range(4000)], axis=0)
    np.testing.assert_allclose(list(chance.values()), simulated, atol=0.01)
    assert chance[1] == pytest.approx(np.mean(rel.sum(1) / rel.shape[1])) and chance[60] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_recall_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    sim = rng.normal(size=(30, 40)).round(1)  # rounding makes ties
    rel = rng.random((30, 40)) < 0.08
    rel[np.arange(30), rng.integers(40, size=30)] = True
    got = recall_at_k(sim, rel, ks=(1, 3, 5, 10, 40))
    for k, value in got.items():
        assert value == pytest.approx(brute_recall(sim, rel, k))
    assert got[40] == 1.0


def test_ranks_by_hand():
    sim = np.array([[0.9, 0.5, 0.1], [0.2, 0.2, 0.7], [0.3, 0.3, 0.3]])
    rel = np.array([[False, True, False], [True, False, False], [False, False, True]])
    # query 0: the relevant item is second; query 1: tied with an irrelevant one, behind the best
    # → rank 3; query 2: a constant score ranks the relevant item last
    np.testing.assert_array_equal(ranks(sim, rel), [2, 3, 3])
    assert recall_at_k(sim, rel, (1, 2, 3)) == {1: 0.0, 2: pytest.approx(1 / 3), 3: 1.0}


def test_instance_relevance_five_captions_per_image():
    owner = np.repeat(np.arange(3), 5)
    rel = instance_relevance(owner, np.arange(3))
    assert rel.shape == (15, 3) and (rel.sum(axis=1) == 1).all() and (rel.sum(axis=0) == 5).all()
    assert rel[7, 1] and not rel[7, 0]
    np.testing.assert_array_equal(instance_relevance(np.arange(3), owner), rel.T)


def test_semantic_relevance_is_is_true_of():
    data = shapes.generate(40, seed=3)
    captions = [c for caps in data.captions[:20] for c in caps] + ["a small red circle", "a large blue square above a small green triangle"]
    rel = semantic_relevance(captions, data.scenes)
    expected = np.array([[shapes.parse_caption(c).is_true_of(s) for s in data.scenes] for c in captions])
    np.testing.assert_array_equal(rel, expected)
    for i in range(20):  # every caption is true of its own image
        assert rel[5 * i : 5 * i + 5, i].all()


def test_a_short_caption_is_true_of_many_images():
    data = shapes.generate(300, seed=4)
    rel = semantic_relevance(["a small red circle"], data.scenes)[0]
    assert rel.sum() == data.contains(size="small", colour="red", shape="circle").sum() > 1


def test_errors_say_what_to_do():
    sim = np.zeros((2, 3))
    with pytest.raises(ValueError, match="shape"):
        recall_at_k(sim, np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="boolean"):
        recall_at_k(sim, np.ones((2, 3)))
    with pytest.raises(ValueError, match="no relevant item"):
        recall_at_k(sim, np.array([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="positive whole numbers"):
        recall_at_k(sim, np.ones((2, 3), bool), ks=(0,))
    with pytest.raises(shapes.CaptionError, match="'hexagon'"):
        semantic_relevance(["a small red hexagon"], shapes.generate(2, seed=0).scenes)
