"""Checks for notebook 10 · Diffusion: text to image."""

from __future__ import annotations

import numpy as np

from mmcourse.exercises import exercise, hint, not_one_number


def _f(t, T, s):
    return np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2


@exercise("10.cosine_alpha_bars", "Write cosine_alpha_bars(T, s=0.008): ᾱ_t = f(t)/f(0) for t = 1 … T, f(t) = cos²((t/T + s)/(1 + s) · π/2).",
          right="f at t = 1 … T divided by f(0): the image's share of x_t falls from nearly 1 to 0 along a quarter cosine.")
def cosine_alpha_bars(answer):
    for T, s in ((1000, 0.008), (50, 0.008), (10, 0.1)):
        t = np.arange(1, T + 1)
        expected = _f(t, T, s) / _f(0, T, s)
        got = np.asarray(answer(T, s) if s != 0.008 else answer(T), dtype=float)
        if got.shape != expected.shape:
            return f"for T = {T} expected {T} values (t = 1 … T), got shape {got.shape}."
        if np.allclose(got, expected, rtol=1e-6, atol=1e-9):
            continue
        if np.allclose(got, _f(np.arange(T), T, s) / _f(0, T, s), rtol=1e-6):
            return "t runs from 1 to T: ᾱ_1 is already below 1 (t = 0 is the clean image, ᾱ_0 = 1)."
        if np.allclose(got, _f(t, T, s), rtol=1e-6):
            return "divide by f(0) so that ᾱ starts at 1 (f(0) = cos²(s/(1+s) · π/2) is slightly below 1)."
        if np.allclose(got, np.sqrt(_f(t, T, s) / _f(0, T, s)), rtol=1e-6):
            return "f is the cosine squared."
        return hint(got[0] > got[-1], "ᾱ falls as t grows: more noise, less image.") or f"not f(t)/f(0) for T = {T}, s = {s}."
    return None


@exercise("10.ddim_step", "Write ddim_step(x_t, eps, alpha_bar_t, alpha_bar_s): one deterministic DDIM jump from step t to the earlier step s.",
          right="first the model's guess of the clean image, x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t, then the same noise at the earlier level: "
                "x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s) ε̂.")
def ddim_step(answer):
    rng = np.random.default_rng(10)
    for now, before in ((0.3, 0.6), (0.05, 0.9), (0.8, 0.95)):
        x, eps = rng.normal(size=(2, 4, 4, 3)), rng.normal(size=(2, 4, 4, 3))
        x0 = (x - np.sqrt(1 - now) * eps) / np.sqrt(now)
        expected = np.sqrt(before) * x0 + np.sqrt(1 - before) * eps
        got = np.asarray(answer(x, eps, now, before), dtype=float)
        if got.shape != expected.shape:
            return f"x_s has the shape of x_t {expected.shape}, got {got.shape}."
        if np.allclose(got, expected, atol=1e-8):
            continue
        if np.allclose(got, np.sqrt(before) * x0, atol=1e-8):
            return "deterministic DDIM keeps the predicted noise: add √(1 − ᾱ_s) ε̂ to √ᾱ_s x̂_0."
        if np.allclose(got, before * x0 + (1 - before) * eps, atol=1e-8):
            return "the scales are square roots: √ᾱ_s and √(1 − ᾱ_s) (the variances add up to 1, not the scales)."
        if np.allclose(got, np.sqrt(before) * x + np.sqrt(1 - before) * eps, atol=1e-8):
            return "scale the predicted clean image x̂_0, not x_t: x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t."
        return f"not x_s for ᾱ_t = {now}, ᾱ_s = {before}: predict x̂_0 first, then re-noise it to the level of s."
    return None


#: the steps of the evaluation-count exercise
EVALUATION_STEPS, SCHEDULE_STEPS = 25, 1000


@exercise("10.evaluations", f"How many times does the denoiser run per drawing with guidance w = 3 in {EVALUATION_STEPS} DDIM steps "
                            f"(a batch row counts once), and how many with ancestral DDPM over all {SCHEDULE_STEPS} steps? Give (ddim, ddpm).",
          right="classifier-free guidance needs two predictions per step (the caption and the empty caption): 2 × 25 = 50 against 2 × 1000 = 2000.")
def evaluations(answer):
    try:
        ddim, ddpm = answer
    except (TypeError, ValueError):
        return "give a pair (ddim, ddpm) of two counts."
    for value, what in ((ddim, "the DDIM count"), (ddpm, "the DDPM count")):
        problem = not_one_number(value, what)
        if problem:
            return problem
    ddim, ddpm = float(ddim), float(ddpm)
    if (ddim, ddpm) == (2 * EVALUATION_STEPS, 2 * SCHEDULE_STEPS):
        return None
    if (ddim, ddpm) == (EVALUATION_STEPS, SCHEDULE_STEPS):
        return "guidance mixes two predictions at every step, one with the caption and one with the empty caption."
    if ddpm == 2 * SCHEDULE_STEPS and ddim != 2 * EVALUATION_STEPS:
        return f"DDIM takes {EVALUATION_STEPS} steps, each with the same two predictions as a DDPM step."
    return hint(ddim < ddpm, "DDIM's point is fewer steps than DDPM.") or "count the steps, then the predictions each step needs."
