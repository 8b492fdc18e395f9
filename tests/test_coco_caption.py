"""CIDEr-D and ROUGE-L against the COCO caption evaluation's own code (pycocoevalcap), and
small cases worked out by hand."""

import math

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from mmcourse.metrics import cider_d, cider_d_scores, lcs_length, rouge_l, rouge_l_scores


def coco(scorer, hyps, refs):
    """pycocoevalcap's (corpus score, per-caption scores): dicts image id → captions, one
    hypothesis per image (its scorers assert a list of exactly one)."""
    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    score, scores = scorer.compute_score(gts, res)
    return float(score), np.asarray(scores, float)


def random_corpus(seed):
    """Hypotheses and 1–5 references each from a small vocabulary (so n-grams overlap), with
    the edge cases put in: no word in common, a copy of a reference, one word, no words."""
    rng = np.random.default_rng(seed)
    vocab = ["a", "small", "red", "circle", "left", "of", "blue", "square"][: rng.integers(3, 9)]
    sentence = lambda lo=1, hi=12: " ".join(rng.choice(vocab, size=int(rng.integers(lo, hi))))
    n = int(rng.integers(4, 12))
    refs = [[sentence() for _ in range(int(rng.integers(1, 6)))] for _ in range(n)]
    hyps = [sentence(1, 10) for _ in range(n)]
    hyps[0] = "zebra giraffe elephant"  # nothing in common with any reference
    hyps[1] = refs[1][-1]  # identical to one reference
    hyps[2] = str(rng.choice(vocab))  # one word
    if seed % 3 == 0:
        hyps[3] = ""  # the captioner said nothing
    return hyps, refs


@pytest.mark.parametrize("seed", range(12))
def test_rouge_l_equals_pycocoevalcap(seed):
    hyps, refs = random_corpus(seed)
    expected, per_caption = coco(Rouge(), hyps, refs)
    assert rouge_l(hyps, refs) == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(rouge_l_scores(hyps, refs), per_caption, rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(12))
def test_cider_d_equals_pycocoevalcap(seed):
    hyps, refs = random_corpus(seed)
    expected, per_caption = coco(Cider(), hyps, refs)
    assert cider_d(hyps, refs) == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(cider_d_scores(hyps, refs), per_caption, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_cider_d_other_length_penalties_equal_pycocoevalcap(sigma):
    # (pycocoevalcap's Cider runs only with n = 4: it counts 1- to 4-grams whatever its n)
    hyps, refs = random_corpus(100 + int(sigma))
    expected, _ = coco(Cider(sigma=sigma), hyps, refs)
    assert cider_d(hyps, refs, sigma=sigma) == pytest.approx(expected, abs=1e-6)


def test_on_shapes_style_captions():
    refs = [["a small red circle left of a large blue square", "a large blue square right of a small red circle"],
            ["a large green triangle", "there is a large green triangle"],
            ["a small yellow square above a small red circle"]]
    hyps = ["a small red circle left of a blue square", "a large green triangle", "a small red circle"]
    assert rouge_l(hyps, refs) == pytest.approx(coco(Rouge(), hyps, refs)[0], abs=1e-6)
    assert cider_d(hyps, refs) == pytest.approx(coco(Cider(), hyps, refs)[0], abs=1e-6)


def test_lcs_and_rouge_l_by_hand():
    assert lcs_length("a b c d".split(), "a c b d e".split()) == 3  # a b d (or a c d)
    assert lcs_length("a b".split(), []) == 0
    assert rouge_l(["a small red circle"], [["a small red circle"]]) == pytest.approx(1.0)
    beta2 = 1.2**2
    p, r = 3 / 4, 3 / 5
    assert rouge_l(["a b c d"], [["a c b d e"]]) == pytest.approx((1 + beta2) * p * r / (r + beta2 * p))
    # precision and recall are maximised separately: P = 1 from the first reference, R = 1/2 from the second
    p, r = 1.0, 1 / 2
    assert rouge_l(["a b"], [["a b c d e f", "a x"]]) == pytest.approx((1 + beta2) * p * r / (r + beta2 * p))
    assert rouge_l(["x y"], [["a b"]]) == 0.0
    assert rouge_l([""], [["a b"]]) == 0.0
    assert rouge_l_scores(["a b", "x"], [["a b"], ["a"]]) == pytest.approx([1.0, 0.0])


def test_cider_d_by_hand():
    # two images whose references share no n-gram: every idf is log(2 / 1)
    refs = [["a small red circle"], ["the big blue square"]]
    assert cider_d_scores(["a small red circle", "the big blue square"], refs) == pytest.approx([10.0, 10.0])
    # three words: no 4-gram, so that order adds 0 of the four
    refs3 = [["small red circle"], ["big blue square"]]
    assert cider_d_scores(["small red circle", "big blue square"], refs3) == pytest.approx([7.5, 7.5])
    # the clipping (unigrams only, lengths equal): g(h) = (2w) on "red", g(r) = (w, w); the clipped
    # dot product is min(2w, w)·w = w², over norms 2w and w√2; unclipped it would be 10/√2
    refs_clip = [["red circle"], ["blue square"]]
    scores = cider_d_scores(["red red", "blue square"], refs_clip, n=1)
    assert scores[0] == pytest.approx(10 / (2 * math.sqrt(2)))
    # the length penalty: bigrams only (n = 2), one reference two words longer than the hypothesis
    refs_len = [["red circle on the left"], ["blue square"]]
    hyp = "red circle on"  # every weight is w = log 2; cosines 3w²/(√3w·√5w) and 2w²/(√2w·2w)
    w = math.log(2)
    uni = 3 * w * w / (math.sqrt(3) * w * math.sqrt(5) * w)
    bi = 2 * w * w / (math.sqrt(2) * w * 2 * w)
    expected = 10 * (uni + bi) / 2 * math.exp(-(2**2) / (2 * 6.0**2))
    assert cider_d_scores([hyp, "blue square"], refs_len, n=2)[0] == pytest.approx(expected)
    # one image: every idf is log(1 / 1) = 0, so everything scores 0
    assert cider_d(["a small red circle"], [["a small red circle"]]) == 0.0
    # an n-gram every image's references share weighs nothing
    assert cider_d(["a", "a"], [["a b"], ["a c"]]) == 0.0
    assert cider_d([""], [["a b"]]) == 0.0


@pytest.mark.parametrize("metric", [rouge_l, cider_d, rouge_l_scores, cider_d_scores])
def test_inputs_are_checked(metric):
    with pytest.raises(ValueError, match="one list of references per hypothesis"):
        metric(["a"], [])
    with pytest.raises(ValueError, match="list of at least one reference"):
        metric(["a"], ["a small red circle"])  # a string, not a list of strings
    with pytest.raises(ValueError, match="list of at least one reference"):
        metric(["a"], [[]])
    with pytest.raises(ValueError, match="not one string"):
        metric("a b", [["a"], ["b"], ["c"]])
    with pytest.raises(ValueError, match="one caption string"):
        metric([["a", "b"]], [["a b"]])
    with pytest.raises(ValueError, match="references must be caption strings"):
        metric(["a b"], [[["a", "b"]]])
    with pytest.raises(ValueError, match="at least one hypothesis"):
        metric([], [])
