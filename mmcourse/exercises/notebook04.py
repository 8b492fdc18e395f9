"""Checks for notebook 04 · Attention."""

from __future__ import annotations

import numpy as np

from mmcourse.exercises import close, exercise, hint

D_K = 64  # the width exercise 1 asks about


@exercise("04.dot_product_variance", f"Measure the variance of q·k for random unit-variance q and k with d_k = {D_K}.",
          right=f"each of the {D_K} products q_i k_i has variance 1 and they are independent, so the variances add up to d_k.")
def dot_product_variance(answer):
    if not np.isscalar(answer):
        return "answer with one number: the variance you measured."
    value = float(answer)
    return (hint(not close(value, np.sqrt(D_K), rtol=0.15), f"{value:.3g} is about √d_k: that is the standard deviation of q·k; square it, or use np.var.")
            or hint(not close(value, 1.0, rtol=0.2), "about 1 is the variance *after* dividing by √d_k: measure the raw dot products.")
            or hint(close(value, D_K, rtol=0.1), f"measure it on many pairs (100,000, say): q and k of {D_K} draws from N(0, 1) each, "
                    "q·k = (q * k).sum(axis=1), then np.var over the pairs."))


def _causal_mask(n_queries: int, n_keys: int) -> np.ndarray:
    """Which keys each query may see, by positions: the queries are the last ``n_queries`` of the
    ``n_keys`` positions, and a query sees every position up to and including its own."""
    key_position = np.arange(n_keys)
    query_position = np.arange(n_keys - n_queries, n_keys)
    return np.array([[k <= q for k in key_position] for q in query_position])


@exercise("04.causal_mask", "Write causal_mask(n_queries, n_keys) for queries that are the last n_queries of n_keys positions.",
          right="query i stands at position (n_keys − n_queries) + i and sees every key up to it.")
def causal_mask(answer):
    cases = [(5, 8), (1, 1), (3, 3), (1, 6), (4, 10), (6, 7)]
    for n_queries, n_keys in cases:
        expected = _causal_mask(n_queries, n_keys)
        got = np.asarray(answer(n_queries, n_keys))
        if got.shape == expected.T.shape and got.shape != expected.shape:
            return f"causal_mask({n_queries}, {n_keys}) has shape {got.shape}: rows are queries, columns keys, so ({n_queries}, {n_keys})."
        if got.shape != expected.shape:
            return f"causal_mask({n_queries}, {n_keys}) has shape {got.shape}, expected ({n_queries}, {n_keys}): one row per query, one column per key."
        got = got.astype(bool)
        if np.array_equal(got, expected):
            continue
        if np.array_equal(got, np.tri(n_queries, n_keys, dtype=bool)):
            return (f"causal_mask({n_queries}, {n_keys}) lets query 0 see key 0 only: that lines the queries up with the *first* keys "
                    f"(as attention.causal_mask({n_queries}, {n_keys}) does). Here the {n_keys - n_queries} earlier keys come before "
                    "query 0: query i stands at position (n_keys − n_queries) + i.")
        if np.array_equal(got, ~expected):
            return "True must mean 'may look' (Keras's convention): your mask is the other way round."
        if np.array_equal(got, np.tri(n_queries, n_keys, n_keys - n_queries - 1, dtype=bool)):
            return "a query may also see its own position: use <=, not <."
        row = int(np.flatnonzero((got != expected).any(axis=1))[0])
        return (f"causal_mask({n_queries}, {n_keys}): query {row} should see keys {np.flatnonzero(expected[row]).tolist()}, "
                f"yours sees {np.flatnonzero(got[row]).tolist()}.")
    return None


def _attention(Q, K, V, mask, scale=True):
    scores = Q @ K.T / (np.sqrt(K.shape[-1]) if scale else 1.0)
    scores = np.where(mask, scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return weights @ V, weights


def _attention_cases():
    rng = np.random.default_rng(4)
    cases = []
    for n_queries, n_keys, d_k, d_v in ((3, 5, 4, 2), (6, 6, 16, 3), (1, 4, 8, 8), (4, 7, 2, 5)):
        Q, K = (rng.normal(size=(n, d_k)) for n in (n_queries, n_keys))
        V = rng.normal(size=(n_keys, d_v))
        mask = rng.random((n_queries, n_keys)) < 0.6
        mask[np.arange(n_queries), rng.integers(n_keys, size=n_queries)] = True  # every query sees at least one key
        cases.append((Q, K, V, mask))
    Q = rng.normal(size=(5, 4))
    cases.append((Q, Q, rng.normal(size=(5, 3)), np.tri(5, dtype=bool)))  # causal self-attention
    return cases


@exercise("04.masked_attention", "Write attend(Q, K, V, mask): scaled dot-product attention with a mask, returning (output, weights).",
          right="masked keys get exactly zero weight and every row of weights sums to one.")
def masked_attention(answer):
    for Q, K, V, mask in _attention_cases():
        shapes = f"Q {Q.shape}, K {K.shape}, V {V.shape}, mask {mask.shape}"
        result = answer(Q.copy(), K.copy(), V.copy(), mask.copy())
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            return "return two things: (output, weights)."
        output, weights = (np.asarray(r, dtype=float) for r in result)
        expected_output, expected_weights = _attention(Q, K, V, mask)
        if weights.shape != expected_weights.shape:
            return f"with {shapes} the weights should have shape {expected_weights.shape} (queries × keys), yours {weights.shape}."
        if np.abs(weights[~mask]).max(initial=0) > 1e-9:
            return ("a masked key got a non-zero weight: replace the scores of masked keys by a huge negative number "
                    "(or -np.inf) *before* the softmax, e.g. np.where(mask, scores, -1e9).")
        if not np.allclose(weights.sum(-1), 1.0, atol=1e-6):
            if np.allclose(weights.sum(-2), 1.0, atol=1e-6):
                return "your weights sum to one down each column: the softmax runs over the keys, the last axis."
            return ("a row of weights does not sum to one: zeroing masked weights after the softmax leaves the rest too small; "
                    "mask the scores before the softmax instead.")
        if close(weights, _attention(Q, K, V, mask, scale=False)[1], atol=1e-6) and not close(weights, expected_weights, atol=1e-6):
            return "the scores must be divided by √d_k (d_k = K.shape[-1]) before the softmax."
        if not close(weights, expected_weights, atol=1e-6):
            return f"with {shapes} your weights differ from softmax(Q Kᵀ / √d_k) over the allowed keys."
        if not close(output, expected_output, atol=1e-6):
            shape = "" if output.shape == expected_output.shape else f" of shape {expected_output.shape} (yours {output.shape})"
            return f"the weights are right, the output is not: it is weights @ V{shape}, each query's weighted average of the values."
    return None
