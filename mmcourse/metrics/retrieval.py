"""Retrieval metrics: Recall@K, counted at the instance level (as papers report it) and
semantically (as only the Shapes world allows).

A retrieval system ranks the items (images, or captions) for each query by similarity.
**Recall@K** is the share of queries for which at least one *relevant* item is among the
K best ranked. What counts as relevant is the whole question:

- :func:`instance_relevance`: only the item the query was paired with (the image a
  caption was written for; the captions written for an image), the protocol of the
  Flickr30k and COCO benchmarks (Karpathy & Fei-Fei, 2015);
- :func:`semantic_relevance`: every image the caption is *true* of, checked exactly with
  :meth:`mmcourse.data.shapes.CaptionParse.is_true_of`. "a small red circle" is true of
  every image that holds a small red circle, so an instance count calls many right
  answers wrong.

:func:`recall_at_k` takes either relevance matrix; :func:`ranks` gives the rank of the
first relevant item of each query.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmcourse.data import shapes

__all__ = ["ranks", "recall_at_k", "chance_recall_at_k", "instance_relevance", "semantic_relevance"]


def _check_pair(similarity, relevant) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(similarity, dtype=np.float64)
    r = np.asarray(relevant)
    if s.ndim != 2:
        raise ValueError(f"similarity must be a (queries, items) matrix, got shape {s.shape}")
    if r.shape != s.shape:
        raise ValueError(f"relevant must have the similarity's shape {s.shape} (queries, items), got {r.shape}")
    if r.dtype != bool:
        raise ValueError(f"relevant must be a boolean matrix (True where the item answers the query), got dtype {r.dtype}")
    if s.size and not r.any(axis=1).all():
        missing = int((~r.any(axis=1)).sum())
        raise ValueError(f"{missing} queries have no relevant item at all; every query needs at least one (check the pairing)")
    return s, r


def ranks(similarity, relevant) -> np.ndarray:
    """Rank (1 = first) of the best-ranked relevant item of each query.

    Items are sorted by similarity, most similar first; ties are broken against the query
    (an item tied with a relevant one counts as ranked before it), so a constant score
    never looks good.

    Args:
        similarity: ``(queries, items)``, higher is more similar.
        relevant: boolean ``(queries, items)``, True where the item is a right answer.
    """
    s, r = _check_pair(similarity, relevant)
    best = np.where(r, s, -np.inf).max(axis=1)  # the score of the best relevant item
    # rank = 1 + how many irrelevant items score at least as high
    return 1 + ((s >= best[:, None]) & ~r).sum(axis=1)


def recall_at_k(similarity, relevant, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Recall@K for each K: the share of queries with a relevant item among the K most similar.

    ``R@K = (1/Q) Σ_q [rank_q ≤ K]`` with ``rank_q`` from :func:`ranks`.
    """
    ks = [int(k) for k in ks]
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive whole numbers such as (1, 5, 10), got {ks}")
    r = ranks(similarity, relevant)
    return {k: float((r <= k).mean()) for k in ks}


def chance_recall_at_k(relevant, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """The Recall@K a random ranking scores on average: what a model's Recall@K must beat.

    A query with ``r`` relevant items among ``n`` misses them all in a random top ``K`` with
    probability ``C(n - r, K) / C(n, K)``, so ``chance@K = (1/Q) Σ_q [1 − C(n − r_q, K) / C(n, K)]``.
    """
    from math import comb

    r = np.asarray(relevant)
    _check_pair(np.zeros(r.shape), r)
    n, hits = r.shape[1], r.sum(axis=1)
    return {int(k): float(np.mean([1 - comb(n - h, int(k)) / comb(n, int(k)) for h in hits])) for k in ks}


def instance_relevance(query_owner, item_owner) -> np.ndarray:
    """Relevance when only the paired item counts: ``relevant[q, i] = owner(q) == owner(i)``.

    Text → image with 5 captions per image: ``instance_relevance(np.repeat(np.arange(n), 5),
    np.arange(n))``; image → text: the arguments swapped.

    Args:
        query_owner: ``(queries,)``, the image each query belongs to.
        item_owner: ``(items,)``, the image each item belongs to.
    """
    q, i = np.asarray(query_owner), np.asarray(item_owner)
    if q.ndim != 1 or i.ndim != 1:
        raise ValueError(f"owners must be 1-D arrays of image indices, got shapes {q.shape} and {i.shape}")
    return q[:, None] == i[None, :]


def semantic_relevance(captions: Sequence[str], scenes: Sequence[shapes.Scene]) -> np.ndarray:
    """``relevant[c, s]``: caption ``c`` is true of scene ``s``, by ``parse_caption(c).is_true_of(s)``.

    Shape ``(captions, scenes)``; transpose it for image → text. Truth depends only on what
    a caption says and what a scene holds, so it is computed once per distinct pair of
    meanings and copied to the rest.

    Raises:
        shapes.CaptionError: a caption outside the Shapes grammar (the message names the word).
    """
    parses = [shapes.parse_caption(c) for c in captions]
    caption_key = [(p.description().objects, p.description().relation) for p in parses]
    scene_key = [(s.description().objects, s.description().relation) for s in scenes]
    c_unique, c_index = _unique(caption_key)
    s_unique, s_index = _unique(scene_key)
    first_caption = {k: p for k, p in zip(caption_key, parses)}
    first_scene = {k: s for k, s in zip(scene_key, scenes)}
    table = np.array(
        [[first_caption[ck].is_true_of(first_scene[sk]) for sk in s_unique] for ck in c_unique], dtype=bool
    ).reshape(len(c_unique), len(s_unique))
    return table[np.ix_(c_index, s_index)]


def _unique(keys: list) -> tuple[list, np.ndarray]:
    order: dict = {}
    index = np.array([order.setdefault(k, len(order)) for k in keys], dtype=np.intp)
    return list(order), index
