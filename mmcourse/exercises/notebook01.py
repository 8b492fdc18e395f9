"""Checks for notebook 01 · Word embeddings: skip-gram with negative sampling."""

from __future__ import annotations

from collections import Counter

import numpy as np

from mmcourse.exercises import as_array, close, exercise, hint


def _paper_keep(counts, t):
    """The paper's keep probability, word by word: min(1, sqrt(t / f)), 0 for an unseen word."""
    counts = [float(c) for c in counts]
    total = sum(counts)
    return np.array([0.0 if c == 0 else min(1.0, (t / (c / total)) ** 0.5) for c in counts])


def _code_keep(counts, t):
    counts = np.asarray(counts, float)
    f = counts / counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, np.minimum(1, (np.sqrt(f / t) + 1) * t / f), 0.0)


@exercise("01.paper_keep", "Write paper_keep(counts, t): the paper's probability of keeping each word, min(1, sqrt(t / f)).",
          right="it agrees with the paper's formula on every case tried, unseen words included.")
def paper_keep(answer):
    rng = np.random.default_rng(0)
    cases = [
        (np.array([0, 0, 0, 0, 4135, 475, 85, 59, 5, 5]), 1e-3),  # special tokens first, as in the notebook's vocabularies
        (np.array([10, 1, 1, 1]), 0.1),
        (np.array([1000, 10, 0, 3]), 1e-2),
        (rng.integers(0, 5000, 300), 1e-3),
        (rng.integers(1, 50, 40), 1e-4),
    ]
    for counts, t in cases:
        expected = _paper_keep(counts, t)
        with np.errstate(divide="ignore", invalid="ignore"):
            got = answer(counts.copy(), t)
        shown = f"paper_keep(counts={np.array2string(counts[:10], separator=', ')}{'…' if len(counts) > 10 else ''}, t={t:g})"
        got, problem = as_array(got, expected, shown=shown, what="an array of probabilities, one per word",
                                not_finite="a word with count 0 is never kept (probability 0).")
        if problem:
            return problem
        if not np.allclose(got, expected, rtol=1e-6, atol=1e-9):
            return (hint(not np.allclose(got, _code_keep(counts, t), rtol=1e-6), "that is the word2vec code's formula; the paper's is min(1, √(t / f)).")
                    or hint(got.max() <= 1, f"{shown} gave a probability above 1: a rare word (f < t) is always kept, min(1, …).")
                    or hint(np.all(got[counts == 0] == 0), f"{shown}: a word with count 0 gets probability 0.")
                    or f"{shown} gave {np.round(got[:6], 4)}…, expected {np.round(expected[:6], 4)}…; f is count / total count.")
    return None


def _function_word_shares(n_images: int = 2000, window: int = 3, seeds=(0, 1)) -> dict[float, float]:
    """Share of skip-gram pairs with 'a' or 'of' as centre or context, without and with subsampling,
    worked out independently of mmcourse.models.embeddings: words are dropped at random, then each pair
    at distance j counts with the chance that a dynamic window reaches it, (window − j + 1) / window."""
    from mmcourse.data.text import load_corpus

    shares = {0.0: [], 1e-3: []}
    for seed in seeds:
        captions = load_corpus("shapes", n=n_images, seed=seed)
        words = np.array([w for c in captions for w in c])
        owner = np.repeat(np.arange(len(captions)), [len(c) for c in captions])
        _, inverse, counts = np.unique(words, return_inverse=True, return_counts=True)
        f = counts[inverse] / len(words)
        for sample in shares:
            kept = np.ones(len(words), bool)
            if sample:
                kept = np.random.default_rng(seed).random(len(words)) < np.minimum(1, (np.sqrt(f / sample) + 1) * sample / f)
            function, sentence = np.isin(words[kept], ["a", "of"]), owner[kept]
            hits = pairs = 0.0
            for j in range(1, window + 1):
                same = sentence[:-j] == sentence[j:]
                reach = (window - j + 1) / window
                pairs += 2 * reach * same.sum()  # (t, t + j) and (t + j, t)
                hits += 2 * reach * (same & (function[:-j] | function[j:])).sum()
            shares[sample].append(hits / pairs)
    return {sample: float(np.mean(v)) for sample, v in shares.items()}


@exercise("01.subsampling_share", "In one epoch of Shapes pairs (window 3), what fraction of the pairs involve 'a' or 'of', "
          "without subsampling and with sample=1e-3?",
          right="subsampling keeps fewer than one 'a' in ten here, so pairs about the content words take over.")
def subsampling_share(answer):
    if not isinstance(answer, (tuple, list)) or len(answer) != 2 or not all(np.isscalar(a) for a in answer):
        return "answer with two numbers: (share with sample=0, share with sample=1e-3)."
    without, with_ = (float(a) for a in answer)
    shares = _function_word_shares()
    expected = [shares[0.0], shares[1e-3]]
    return (hint(max(without, with_) <= 1, "give fractions of the pairs (between 0 and 1), not percentages or counts.")
            or hint(without > with_, "subsampling drops frequent words most: the share should fall with sample=1e-3, not rise.")
            or hint(close(without, expected[0], atol=0.02), "without subsampling, more than half the pairs involve 'a' or 'of' "
                    "(count a pair when its centre OR its context is one of them: np.isin(centres, ids) | np.isin(contexts, ids)).")
            or hint(close(with_, expected[1], atol=0.03), "with sample=1e-3: subsample first (E.subsample with "
                    "E.keep_probabilities(counts, 1e-3)), then make the pairs from what is left."))


def _lee_wordsim_pairs() -> int:
    """How many WordSim-353 pairs the Lee vocabulary (words seen 5 times or more) can score."""
    from mmcourse import wordsim
    from mmcourse.data.text import load_corpus

    counts = Counter(w.lower() for sentence in load_corpus("lee") for w in sentence)
    known = {w for w, c in counts.items() if c >= 5}
    return sum(a in known and b in known for a, b, _ in wordsim.similarity_pairs("wordsim353"))


@exercise("01.random_spread", "Over 50 seeds of random vectors for the Lee vocabulary, what is the standard deviation of WordSim-353 Spearman ρ?",
          right="for n pairs ranked at random Spearman's ρ has standard deviation about 1/√(n − 1): 0.13 for the 60 pairs scored here.")
def random_spread(answer):
    if not np.isscalar(answer):
        return "answer with one number: the standard deviation of ρ over the seeds."
    n = _lee_wordsim_pairs()
    expected = 1 / np.sqrt(n - 1)  # the spread of Spearman's ρ under random ranking
    return (hint(answer > 0.02, "that is about the mean ρ of random vectors (zero); the question asks for its spread, np.std over the seeds.")
            or hint(answer < 1, "ρ lies between −1 and 1, so its spread is well below 1.")
            or hint(close(answer, expected, rtol=0.3), f"for 50 seeds: wv.WordVectors(lee_vectors.words, rng.normal(size=lee_vectors.matrix.shape)) "
                    f"with a new rng per seed, evaluate WordSim-353, and take np.std of the {n}-pair Spearman values "
                    "(with 5 seeds the spread itself is too noisy)."))
