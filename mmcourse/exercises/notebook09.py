"""Checks for notebook 09 · Transformers for vision and language."""

from __future__ import annotations

import numpy as np

from mmcourse.exercises import exercise, hint, not_one_number


def _patches(images: np.ndarray, patch: int) -> np.ndarray:
    """Non-overlapping patches row by row, each flattened as (pixel row, pixel column, channel), by slicing."""
    n, height, width, channels = images.shape
    return np.stack([images[:, i : i + patch, j : j + patch].reshape(n, -1)
                     for i in range(0, height, patch) for j in range(0, width, patch)], axis=1)


@exercise("09.patches", "Write to_patches(images, P): (n, H, W, C) → (n, (H/P)·(W/P), P·P·C), patches row by row.",
          right="patch k = i·(W/P) + j is images[:, iP:(i+1)P, jP:(j+1)P] flattened: a reshape that splits each axis, "
                "a transpose that brings the two 'which patch' axes together, a reshape that flattens.")
def patches(answer):
    rng = np.random.default_rng(9)
    for shape, patch in (((2, 8, 8, 3), 4), ((1, 12, 6, 2), 3), ((3, 64, 64, 3), 8), ((1, 4, 8, 1), 2)):
        images = rng.integers(0, 255, size=shape).astype(np.float32)
        expected = _patches(images, patch)
        got = np.asarray(answer(images, patch))
        if got.shape != expected.shape:
            return f"to_patches on images of shape {shape} with P={patch} gave shape {got.shape}, expected {expected.shape}."
        if not np.array_equal(got, expected):
            if np.array_equal(np.sort(got, axis=-1), np.sort(expected, axis=-1)):
                return "each patch holds the right pixels in the wrong order: flatten as (pixel row, pixel column, channel)."
            same_set = np.array_equal(np.sort(got.reshape(shape[0], -1, 1), axis=1), np.sort(expected.reshape(shape[0], -1, 1), axis=1))
            return ("the patches hold pixels from more than one P×P square: after splitting each axis in two, transpose so that "
                    "(patch row, patch column) come before (pixel row, pixel column)." if same_set else
                    f"the patches differ from images[:, iP:(i+1)P, jP:(j+1)P] (shape {shape}, P={patch}).")
    return None


def _rollout(maps: np.ndarray) -> np.ndarray:
    mixed = maps.mean(axis=1) + np.eye(maps.shape[-1])
    mixed /= mixed.sum(-1, keepdims=True)
    total = np.eye(maps.shape[-1])
    for layer in mixed:
        total = layer @ total
    row = total[0, 1:]
    return row / row.sum()


@exercise("09.rollout", "Write rollout(maps) for one image: maps (layers, heads, T, T), the class token first; "
                        "return the class token's relevance over the T − 1 patches.",
          right="average the heads, add the identity and renormalise the rows, multiply the layers with the last on the left, "
                "then the class token's row over the patches, renormalised.")
def rollout(answer):
    rng = np.random.default_rng(3)
    for layers, heads, tokens in ((2, 4, 5), (3, 2, 10), (1, 1, 4)):
        maps = rng.random((layers, heads, tokens, tokens))
        maps /= maps.sum(-1, keepdims=True)
        expected = _rollout(maps)
        got = np.asarray(answer(maps), dtype=float)
        if got.shape != expected.shape:
            return f"for {layers} layers and {tokens} tokens expected {expected.shape} (the patches, without the class token), got {got.shape}."
        if np.allclose(got, expected, atol=1e-8):
            continue
        order = np.eye(tokens)
        mixed = maps.mean(axis=1) + np.eye(tokens)
        mixed /= mixed.sum(-1, keepdims=True)
        for layer in mixed:
            order = order @ layer
        wrong_order = order[0, 1:] / order[0, 1:].sum()
        if layers > 1 and np.allclose(got, wrong_order, atol=1e-8):
            return "multiply the later layer on the left: R = Â_L ⋯ Â_1 (total = layer @ total, going up through the layers)."
        no_residual = np.eye(tokens)
        for layer in maps.mean(axis=1):
            no_residual = layer @ no_residual
        if np.allclose(got, no_residual[0, 1:] / no_residual[0, 1:].sum(), atol=1e-8):
            return "add the identity (the residual path) to each layer's mean map and renormalise its rows before multiplying."
        return hint(np.isclose(got.sum(), 1.0), "renormalise the class token's row over the patches to sum to 1.") or (
            f"not the rollout (maps of {layers} layers, {heads} heads, {tokens} tokens): average the heads first.")
    return None


#: the shipped Transformer captioner's sizes, for the cache exercise
CACHE_LAYERS, CACHE_HEADS, CACHE_KEY_DIM, CACHE_WORDS = 2, 4, 16, 15


@exercise("09.cache_numbers", f"How many numbers does the self-attention key–value cache hold for one caption after {CACHE_WORDS} words "
                              f"({CACHE_LAYERS} blocks, {CACHE_HEADS} heads of {CACHE_KEY_DIM} dimensions)?",
          right="keys and values (2) × blocks × heads × words × d_k: every block keeps its own.")
def cache_numbers(answer):
    expected = 2 * CACHE_LAYERS * CACHE_HEADS * CACHE_WORDS * CACHE_KEY_DIM
    problem = not_one_number(answer, "the count of numbers in the cache")
    if problem:
        return problem
    value = float(answer)
    if value == expected:
        return None
    return (hint(value != expected / 2, "count the values as well as the keys.")
            or hint(value != expected / CACHE_LAYERS, "each of the blocks keeps its own keys and values.")
            or hint(value != expected / CACHE_HEADS, "each head has its own keys and values of d_k numbers.")
            or hint(value != 2 * CACHE_LAYERS * CACHE_HEADS * 64 * CACHE_KEY_DIM,
                    "that is the cross-attention's cache of the 64 image tokens; the question asks about the words' self-attention.")
            or f"{value:g} is not it: how many (batch = 1) numbers do keys of shape (heads, words, d_k) hold, and how many such arrays are there?")
