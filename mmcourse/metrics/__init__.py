"""Evaluation measures, each defined the way its paper defines it and tested against an
independent computation: captioning (BLEU, semantic exact match, hallucination, grounding)
in :mod:`mmcourse.metrics.captioning`; CIDEr-D and ROUGE-L as the COCO caption evaluation
computes them in :mod:`mmcourse.metrics.coco_caption`; retrieval (Recall@K counted per
instance and semantically) in :mod:`mmcourse.metrics.retrieval`.

Re-exported here, so ``from mmcourse.metrics import corpus_bleu`` works.
"""

from __future__ import annotations

from mmcourse.metrics.captioning import (
    attention_grounding,
    bleu_statistics,
    corpus_bleu,
    exact_match,
    mentioned_objects,
    object_scores,
    same_description,
)
from mmcourse.metrics.coco_caption import cider_d, cider_d_scores, lcs_length, rouge_l, rouge_l_scores
from mmcourse.metrics.retrieval import chance_recall_at_k, instance_relevance, ranks, recall_at_k, semantic_relevance

__all__ = ["attention_grounding", "bleu_statistics", "corpus_bleu", "exact_match", "mentioned_objects", "object_scores", "same_description",
           "cider_d", "cider_d_scores", "lcs_length", "rouge_l", "rouge_l_scores",
           "chance_recall_at_k", "instance_relevance", "ranks", "recall_at_k", "semantic_relevance"]
