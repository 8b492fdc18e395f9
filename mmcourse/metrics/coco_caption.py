"""CIDEr-D and ROUGE-L, the captioning metrics of the COCO caption evaluation, computed as
its reference code (``pycocoevalcap``) computes them, on whitespace tokens.

**ROUGE-L** (Lin, 2004) scores a hypothesis by its longest common subsequence (LCS) with
each reference — the words it has in the reference's order, gaps allowed:

    P_j = LCS(h, r_j) / |h|,   R_j = LCS(h, r_j) / |r_j|,   P = max_j P_j,   R = max_j R_j
    ROUGE-L(h) = (1 + β²) P R / (R + β² P)   (0 when P or R is 0),   β = 1.2

P and R are maximised separately, so they may come from different references. The corpus
score is the mean over hypotheses, on a 0–1 scale (as ``pycocoevalcap`` reports it).

**CIDEr-D** (Vedantam et al., 2015) compares TF-IDF weighted n-gram vectors. For each order
n = 1..4 a sentence s becomes the vector g^n(s) with, for each n-gram w of order n,

    g_w(s) = tf_w(s) · log( N / max(1, df_w) )

where N is the number of images scored and df_w the number of them whose references contain
w: n-grams every image's references share weigh nothing, rare ones a lot. The document
frequencies come from the references of the corpus being scored, so a caption's score
depends on the other images in the set (and a corpus of one image scores 0: log 1 = 0).
Against the m references r_j of its image, a hypothesis h scores

    CIDEr-D(h) = 10 · (1/4) Σ_n (1/m) Σ_j  exp(−(l_h − l_j)² / (2σ²)) ·
                 Σ_w min(g_w(h), g_w(r_j)) g_w(r_j) / (‖g^n(h)‖ ‖g^n(r_j)‖),   σ = 6

The "D" is the clipping, min(g_w(h), g_w(r_j)) — repeating a reference n-gram more often than
the reference does earns nothing — and the Gaussian penalty on the length difference. The
reference code counts a sentence's length l as its number of bigrams (words − 1): the same
differences as words, except that an empty sentence is as long as a one-word one; this module
does the same, at any n (the reference code runs only with n = 4). An order whose vector is
all zeros (a sentence shorter than n words) adds 0. The corpus score is the mean over
hypotheses; the reference code's "CIDEr" is this CIDEr-D.

Tokens are ``str.split()``'s. ``pycocoevalcap``'s ROUGE splits on single spaces, which is
the same for text with single spaces between words (the course's captions); an empty
hypothesis scores 0 here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["lcs_length", "rouge_l", "rouge_l_scores", "cider_d", "cider_d_scores"]


def _tokenise(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[list[list[str]]]]:
    """Check the inputs (one list of reference strings per hypothesis string) and split them."""
    if isinstance(hypotheses, str):
        raise ValueError("pass a list of hypothesis strings (one caption per image), not one string")
    if len(hypotheses) != len(references):
        raise ValueError(f"one list of references per hypothesis: got {len(hypotheses)} hypotheses and {len(references)} reference lists")
    if len(hypotheses) == 0:
        raise ValueError("nothing to score: pass at least one hypothesis string and its list of references")
    hyps, refs = [], []
    for hypothesis, ref_list in zip(hypotheses, references):
        if not isinstance(hypothesis, str):
            raise ValueError(f"each hypothesis must be one caption string, got {hypothesis!r}")
        if isinstance(ref_list, str) or not isinstance(ref_list, Iterable):
            raise ValueError("each hypothesis needs a list of at least one reference string")
        ref_list = list(ref_list)
        if not ref_list:
            raise ValueError("each hypothesis needs a list of at least one reference string")
        if not all(isinstance(r, str) for r in ref_list):
            raise ValueError(f"references must be caption strings, got {ref_list!r}")
        hyps.append(hypothesis.split())
        refs.append([r.split() for r in ref_list])
    return hyps, refs


# ---------------------------------------------------------------------------------- ROUGE-L


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (dynamic programming,
    one row at a time: ``row[j]`` is the LCS of the prefix of ``a`` read so far and ``b[:j]``)."""
    row = [0] * (len(b) + 1)
    for token in a:
        diagonal = 0  # LCS(a[:i-1], b[:j-1]) for the j being updated
        for j, other in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if token == other else max(above, row[j - 1])
            diagonal = above
    return row[-1]


def _rouge_l_one(hyp: list[str], refs: list[list[str]], beta: float) -> float:
    lcs = [lcs_length(hyp, ref) for ref in refs]
    precision = max((c / len(hyp) if hyp else 0.0) for c in lcs)
    recall = max((c / len(ref) if ref else 0.0) for c, ref in zip(lcs, refs))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


def rouge_l_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]], beta: float = 1.2) -> list[float]:
    """ROUGE-L of each hypothesis against its references, 0–1 (see the module docstring)."""
    hyps, refs = _tokenise(hypotheses, references)
    return [_rouge_l_one(h, r, beta) for h, r in zip(hyps, refs)]


def rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]], beta: float = 1.2) -> float:
    """Corpus ROUGE-L on a 0–1 scale: the mean over hypotheses of

        (1 + β²) P R / (R + β² P),   P = max_j LCS(h, r_j)/|h|,   R = max_j LCS(h, r_j)/|r_j|

    ``references[i]`` is the list of reference strings of ``hypotheses[i]``. Equals
    ``pycocoevalcap.rouge.Rouge().compute_score(gts, res)[0]`` on the same captions.
    """
    scores = rouge_l_scores(hypotheses, references, beta)
    return sum(scores) / len(scores)


# ---------------------------------------------------------------------------------- CIDEr-D


def _ngram_counts(tokens: list[str], n: int) -> list[Counter]:
    """Term frequencies, one Counter per order 1..n."""
    return [Counter(tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1)) for k in range(1, n + 1)]


def cider_d_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> list[float]:
    """CIDEr-D of each hypothesis against its references (see the module docstring); the
    document frequencies come from all the references passed, so scores depend on the set."""
    hyps, refs = _tokenise(hypotheses, references)

    # df_w: in how many images' reference sets the n-gram w occurs (each image counts once)
    document_frequency: Counter = Counter()
    for ref_set in refs:
        document_frequency.update({w for ref in ref_set for counts in _ngram_counts(ref, n) for w in counts})
    log_images = math.log(len(refs))

    def tf_idf(tokens: list[str]) -> tuple[list[dict], list[float], int]:
        """g^k(s) for each order, their norms ‖g^k(s)‖, and the length l (bigrams, as the reference code)."""
        vectors = [
            {w: tf * (log_images - math.log(max(1.0, document_frequency[w]))) for w, tf in counts.items()}
            for counts in _ngram_counts(tokens, n)
        ]
        norms = [math.sqrt(sum(g * g for g in vector.values())) for vector in vectors]
        length = max(len(tokens) - 1, 0)  # bigrams, as the reference code counts length
        return vectors, norms, length

    scores = []
    for hyp, ref_set in zip(hyps, refs):
        g_hyp, norm_hyp, l_hyp = tf_idf(hyp)
        per_order = [0.0] * n  # Σ_j over references, for each order
        for ref in ref_set:
            g_ref, norm_ref, l_ref = tf_idf(ref)
            penalty = math.exp(-((l_hyp - l_ref) ** 2) / (2 * sigma**2))
            for k in range(n):
                if norm_hyp[k] == 0 or norm_ref[k] == 0:
                    continue  # an all-zero vector: nothing in common
                # clipped dot product: hypothesis weights capped at the reference's
                dot = sum(min(g, g_ref[k].get(w, 0.0)) * g_ref[k].get(w, 0.0) for w, g in g_hyp[k].items())
                per_order[k] += penalty * dot / (norm_hyp[k] * norm_ref[k])
        scores.append(10.0 * sum(per_order) / n / len(ref_set))
    return scores


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> float:
    """Corpus CIDEr-D (orders 1..``n``, length penalty ``sigma``): the mean over hypotheses of
    10 × the mean over orders and references of the clipped, length-penalised cosine of TF-IDF
    n-gram vectors, document frequencies taken over ``references`` (module docstring).

    ``references[i]`` is the list of reference strings of ``hypotheses[i]``. Equals
    ``pycocoevalcap.cider.Cider(sigma=sigma).compute_score(gts, res)[0]`` on the same captions
    (which handles only ``n = 4``: it counts 1- to 4-grams whatever its ``n``). On a
    0–10 scale: each clipped cosine is at most 1; a hypothesis equal to every one of its
    references scores 10 unless a vector of it is all zeros (fewer than ``n`` words, or every
    n-gram of an order in the references of every image).
    """
    scores = cider_d_scores(hypotheses, references, n, sigma)
    return sum(scores) / len(scores)
