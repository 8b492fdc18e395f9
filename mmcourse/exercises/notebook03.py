"""Checks for notebook 03 · Recurrent neural networks."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from mmcourse.exercises import as_array, close, exercise, hint


@exercise("03.vanishing_distance", "From the bound 0.9^k alone: the smallest distance k at which the gradient falls below 10⁻⁶ of its value at k = 0?",
          right="0.9^k < 10⁻⁶ when k > ln 10⁻⁶ / ln 0.9 ≈ 131.1, so k = 132.")
def vanishing_distance(answer):
    if not np.isscalar(answer):
        return "answer with one whole number: the distance k."
    k = 1
    while 0.9**k >= 1e-6:  # step by step, no logarithms
        k += 1
    return (hint(not close(answer, math.log(1e-6) / math.log(0.9), rtol=1e-3), "k is a whole number of steps: the first k with 0.9^k below 10⁻⁶ (round up).")
            or hint(answer != k - 1, f"0.9^{k - 1} = {0.9 ** (k - 1):.3g} is not yet below 10⁻⁶.")
            or hint(answer == k, "solve 0.9^k < 10⁻⁶ for k: k > ln(10⁻⁶) / ln(0.9); the bound ignores tanh, so do not measure, compute."))


def _bigram_perplexity(train, test, vocab_size, pad=0):
    """Add-one bigram perplexity, from pair counts (a Counter), independently of any array trick."""
    pairs = Counter((a, b) for row in train for a, b in zip(row[:-1], row[1:]) if b != pad)
    starts = Counter()
    for (a, _), n in pairs.items():
        starts[a] += n
    nll = [-math.log((pairs[a, b] + 1) / (starts[a] + vocab_size)) for row in test for a, b in zip(row[:-1], row[1:]) if b != pad]
    return math.exp(sum(nll) / len(nll))


def _bigram_cases():
    rng = np.random.default_rng(3)
    cases = [
        (np.array([[1, 4, 5, 2, 0, 0], [1, 4, 4, 5, 2, 0]]), np.array([[1, 4, 5, 2, 0, 0], [1, 5, 4, 2, 0, 0]]), 6),
        (np.array([[1, 3, 2]]), np.array([[1, 3, 2], [1, 2, 0]]), 4),
    ]
    for vocab_size, rows, length in ((8, 40, 7), (12, 200, 10), (27, 500, 16)):
        def rows_of(n):
            out = np.zeros((n, length), np.int64)
            for r in range(n):
                words = rng.integers(3, vocab_size, rng.integers(1, length - 2))
                out[r, : len(words) + 2] = [1, *words, 2]  # <start> … <end>, then <pad> = 0
            return out
        cases.append((rows_of(rows), rows_of(rows // 4), vocab_size))
    return cases


@exercise("03.bigram_perplexity", "Write bigram_perplexity(train_ids, test_ids, V): the test perplexity of an add-one bigram model.",
          right="it agrees with an add-one bigram model counted pair by pair, on every case tried.")
def bigram_perplexity(answer):
    for train, test, vocab_size in _bigram_cases():
        expected = _bigram_perplexity(train.tolist(), test.tolist(), vocab_size)
        got = answer(train.copy(), test.copy(), vocab_size)
        if not np.isscalar(got):
            return "return one number: the perplexity."
        if close(got, expected, rtol=1e-6):
            continue
        shown = f"on {len(train)} training and {len(test)} test rows with V = {vocab_size}, you gave {got:.4f}, expected {expected:.4f}"
        with_pad = _bigram_perplexity(train.tolist(), test.tolist(), vocab_size, pad=None)
        return (hint(np.isfinite(got), f"{shown}: a pair never seen in training needs add-one smoothing, (count(a, b) + 1) / (count(a) + V).")
                or hint(not close(got, with_pad, rtol=1e-6), f"{shown}: leave out the pairs whose second word is <pad> (id 0), in training and in test.")
                or hint(not close(np.exp(got), expected, rtol=1e-6), f"{shown}: that is the mean −log p; perplexity is its exponential.")
                or hint(got >= 1, f"{shown}: perplexity is exp of the mean −log p, at least 1.")
                or f"{shown}. p(b | a) = (count(a, b) + 1) / (count(a) + V), count(a) = Σ_b count(a, b); perplexity = exp(mean −log p(b | a)) over the test pairs.")
    return None


def _temperature(logits, temperature):
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@exercise("03.temperature", "Write temperature_softmax(logits, T): the probabilities p_T over the last axis.",
          right="it agrees with softmax(z / T) on every case tried, large logits included.")
def temperature(answer):
    rng = np.random.default_rng(0)
    cases = [
        (np.array([2.0, 1.0, 0.0]), 1.0),
        (np.array([2.0, 1.0, 0.0]), 0.5),
        (np.array([2.0, 1.0, 0.0]), 3.0),
        (rng.normal(size=(4, 27)) * 3, 0.25),
        (rng.normal(size=(2, 5, 27)) * 3, 2.0),
        (np.array([1000.0, 999.0, 990.0]), 1.0),  # a confident model's logits: exp would overflow
        (np.array([[30.0, 0.0, -30.0]]), 0.1),
    ]
    for logits, t in cases:
        expected = _temperature(logits, t)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            got = answer(logits.copy(), t)
        shown = f"temperature_softmax({np.array2string(logits, precision=1, separator=', ') if logits.ndim == 1 else f'<logits of shape {logits.shape}>'}, T={t})"
        got, problem = as_array(got, expected, shown=shown, what="an array of probabilities, one per logit",
                                not_finite="exp(1000) overflows. Subtract the largest logit first; softmax does not change.")
        if problem:
            return problem
        if not np.allclose(got, expected, rtol=1e-5, atol=1e-8):
            sums = got.sum(axis=-1)
            swapped = _temperature(logits, 1 / t)
            return (hint(np.allclose(sums, 1, atol=1e-6), f"{shown} does not sum to 1 over the last axis (sums {np.round(sums, 4).ravel()[:3]}).")
                    or hint(not np.allclose(got, swapped, rtol=1e-5), f"{shown}: divide the logits by T (T < 1 sharpens, T > 1 flattens), not multiply.")
                    or f"{shown} gave {np.round(got.ravel()[:3], 4)}…, expected {np.round(expected.ravel()[:3], 4)}…: p_T = exp(z / T) / Σ exp(z / T).")
    return None
