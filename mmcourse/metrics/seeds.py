"""Comparisons over several training seeds: run the same experiment with each seed, report
mean ± spread, and say whether a difference is larger than the seeds' own variation.

One seed is an anecdote: two models trained with different seeds differ by chance as well as
by design. The course reports a comparison as "mean ± standard deviation over n seeds" and
calls a difference *separated* only when every seed of one model beat every seed of the
other (their ranges do not overlap); otherwise it is within noise at this number of seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

__all__ = ["over_seeds", "mean_spread", "separated", "seed_table"]


def over_seeds(experiment: Callable[[int], Mapping[str, float]], seeds: Iterable[int]) -> dict[str, np.ndarray]:
    """Run ``experiment(seed)`` for each seed; each returns a mapping name → number.
    Returns name → the array of that number over the seeds (in seed order)."""
    runs = [dict(experiment(int(seed))) for seed in seeds]
    if not runs:
        raise ValueError("over_seeds needs at least one seed")
    names = list(runs[0])
    for run in runs[1:]:
        if list(run) != names:
            raise ValueError(f"every seed's experiment must return the same names: {names} vs {list(run)}")
    return {name: np.array([float(run[name]) for run in runs]) for name in names}


def mean_spread(values, digits: int = 3) -> str:
    """``"0.931 ± 0.012 (3 seeds)"``: the mean and the sample standard deviation (n − 1); one value: no spread."""
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0:
        raise ValueError("mean_spread needs at least one value")
    if values.size == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    return f"{_mean_sd(values, digits)} ({values.size} seeds)"


def _mean_sd(values, digits: int) -> str:
    values = np.asarray(values, dtype=float).ravel()
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1) if values.size > 1 else 0.0:.{digits}f}"


def separated(higher, lower) -> bool:
    """True when every value of ``higher`` exceeds every value of ``lower`` (their ranges do not overlap)."""
    higher, lower = np.asarray(higher, dtype=float).ravel(), np.asarray(lower, dtype=float).ravel()
    if higher.size == 0 or lower.size == 0:
        raise ValueError("separated needs values on both sides")
    return bool(higher.min() > lower.max())


def seed_table(results: Mapping[str, Mapping[str, np.ndarray]], digits: int = 3) -> str:
    """A plain-text table: one row per model, one column per measure, each cell ``mean ± sd``."""
    models = list(results)
    measures = list(results[models[0]]) if models else []
    cells = [[_mean_sd(results[m][k], digits) for k in measures] for m in models]
    first = max([len("model")] + [len(m) for m in models])
    widths = [max(len(k), *(len(row[j]) for row in cells)) for j, k in enumerate(measures)]
    lines = ["  ".join([f"{'model':<{first}}"] + [f"{k:>{w}}" for k, w in zip(measures, widths)])]
    lines += ["  ".join([f"{m:<{first}}"] + [f"{c:>{w}}" for c, w in zip(row, widths)]) for m, row in zip(models, cells)]
    return "\n".join(lines)
