"""Caption metrics against independent computations: sacreBLEU, and scenes whose truth is known."""

import numpy as np
import pytest
import sacrebleu

from mmcourse.data import shapes
from mmcourse.metrics import attention_grounding, corpus_bleu, exact_match, mentioned_objects, object_scores


def sacre(hyps, refs):
    return sacrebleu.corpus_bleu(hyps, [list(r) for r in zip(*refs)], tokenize="none").score


def test_bleu_equals_sacrebleu_on_shapes_captions():
    data = shapes.generate(200, seed=4)
    refs = data.captions
    rng = np.random.default_rng(0)
    # hypotheses of every quality: a reference, another image's caption, a shuffled caption, a truncated one
    hyps = []
    for i, caps in enumerate(refs):
        kind = i % 4
        if kind == 0:
            hyps.append(caps[0])
        elif kind == 1:
            hyps.append(refs[(i + 7) % len(refs)][1])
        elif kind == 2:
            words = caps[2].split()
            rng.shuffle(words)
            hyps.append(" ".join(words))
        else:
            hyps.append(" ".join(caps[3].split()[:3]))
    assert corpus_bleu(hyps, refs) == pytest.approx(sacre(hyps, refs), abs=1e-9)


@pytest.mark.parametrize("seed", range(30))
def test_bleu_equals_sacrebleu_on_random_text(seed):
    rng = np.random.default_rng(seed)
    vocab = ["a", "b", "c", "d", "e", "f"][: rng.integers(2, 7)]
    n = int(rng.integers(1, 6))
    sentence = lambda: " ".join(rng.choice(vocab, size=int(rng.integers(1, 9))))
    hyps = [sentence() for _ in range(n)]
    k = int(rng.integers(1, 4))
    refs = [[sentence() for _ in range(k)] for _ in range(n)]
    assert corpus_bleu(hyps, refs) == pytest.approx(sacre(hyps, refs), abs=1e-9)


def test_bleu_edge_cases():
    refs = [["a small red circle", "there is a small red circle"]]
    assert corpus_bleu(["a small red circle"], refs) == pytest.approx(100.0)
    assert corpus_bleu(["blue"], refs) == pytest.approx(sacre(["blue"], refs))  # too short for 4-grams: 0
    assert corpus_bleu(["blue"], refs) == 0.0
    assert corpus_bleu(["x y z w v"], refs) == 0.0 == sacre(["x y z w v"], refs)  # nothing matches
    partial = corpus_bleu(["a small x y z"], refs)  # uni- and bigrams match, higher orders smoothed
    assert partial > 0 and partial == pytest.approx(sacre(["a small x y z"], refs))
    with pytest.raises(ValueError, match="one list of references per hypothesis"):
        corpus_bleu(["a"], [])
    with pytest.raises(ValueError, match="list of at least one reference"):
        corpus_bleu(["a"], ["a small red circle"])


def test_exact_match_and_object_scores():
    scene = shapes.compose([("small", "red", "circle"), ("large", "blue", "square")], "left of")
    captions = [
        "a small red circle left of a large blue square",  # exact
        "a large blue square right of a small red circle",  # exact, other order
        "a small red circle",  # true but incomplete
        "a small red circle right of a large blue square",  # wrong relation
        "a small green circle left of a large blue square",  # hallucinated object
        "circle red a",  # not a caption
    ]
    assert exact_match(captions, [scene] * 6).tolist() == [True, True, False, False, False, False]
    scores = object_scores(captions, [scene] * 6)
    # mentioned: 2 + 2 + 1 + 2 + 2 + 0 = 9; of them in the image: 2 + 2 + 1 + 2 + 1 = 8
    assert scores["objects_mentioned"] == 9
    assert scores["precision"] == pytest.approx(8 / 9) and scores["hallucination_rate"] == pytest.approx(1 / 9)
    # image objects (2 per caption, 12) mentioned: 2 + 2 + 1 + 2 + 1 + 0 = 8
    assert scores["recall"] == pytest.approx(8 / 12)
    assert mentioned_objects("junk a large yellow triangle junk") == [("large", "yellow", "triangle")]


def test_attention_grounding_counts_peaks_on_the_named_object():
    scene = shapes.compose([("small", "red", "circle"), ("large", "blue", "square")], "left of")
    caption = "a small red circle left of a large blue square"
    masks = scene.masks()
    words = caption.split()

    def peak_on(k):  # a map whose peak is a cell inside object k
        ys, xs = np.nonzero(masks[k])
        grid = np.zeros((8, 8))
        grid[ys[len(ys) // 2] // 8, xs[len(xs) // 2] // 8] = 1
        return grid

    right = np.stack([peak_on(1 if i >= 6 else 0) for i in range(len(words))])
    wrong = np.stack([peak_on(0 if i >= 6 else 1) for i in range(len(words))])
    assert attention_grounding([caption], [right], [scene]) == {"grounding": 1.0, "words": 4}
    assert attention_grounding([caption], [wrong], [scene])["grounding"] == 0.0
    # a phrase that names no object of the scene is not counted
    other = "a small green circle left of a large blue square"
    assert attention_grounding([other], [right], [scene])["words"] == 2
    with pytest.raises(ValueError, match="one attention map per word"):
        attention_grounding([caption], [right[:3]], [scene])


def test_same_description_reads_past_wording_and_order():
    from mmcourse.metrics import same_description

    prompts = ["a small red square left of a large blue circle"] * 5 + ["a small green triangle"] * 3
    read = ["there is a large blue circle right of a small red square",  # the same scene, said the other way round
            "a picture of a small red square left of a large blue circle",
            "a small red square right of a large blue circle",  # relation wrong
            "a small red square",  # an object missing
            "a small red square left of a large blue",  # does not parse
            "an image of a small green triangle",
            "a small green triangle above a small red square",  # an object too many
            "a large green triangle"]
    assert same_description(read, prompts).tolist() == [True, True, False, False, False, True, False, False]
    with pytest.raises(ValueError):
        same_description(["a small red square"], [])
