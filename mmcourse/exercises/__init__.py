"""Checks for the notebooks' exercises: a learner's answer in, "right" or a hint out.

Each checkable exercise has a name (``"02.receptive_field"``: notebook, then what it asks) and a
checker that works the answer out on its own (it never reads the notebook's variables), so the
same check runs in the student edition, where the solution is gone. In a notebook::

    receptive_field = None  # your answer
    exercises.check("02.receptive_field", receptive_field)

prints ``✓`` and says why when the answer is right, or ``✗`` and a hint, and returns a
:class:`Verdict` that is true or false. The instructor edition's solution cells end with ``assert exercises.check(...)``, so a
solution that stops being right fails the notebook's test.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable

__all__ = ["Exercise", "Verdict", "exercise", "check", "hint", "close", "as_array", "not_one_number", "results", "all_exercises"]


@dataclasses.dataclass(frozen=True)
class Exercise:
    """``checker(answer)`` returns ``None`` when the answer is right, else a hint; ``right`` is
    what :func:`check` says when it is."""

    name: str
    question: str
    checker: Callable[[Any], str | None]
    right: str = "right."


_EXERCISES: dict[str, Exercise] = {}
results: dict[str, bool] = {}  # the last verdict of each exercise checked in this session


def exercise(name: str, question: str, *, right: str = "right."):
    """Register the decorated function as the checker of exercise ``name``."""

    def register(checker):
        if name in _EXERCISES:
            raise ValueError(f"exercise {name!r} is registered twice")
        _EXERCISES[name] = Exercise(name, question, checker, right)
        return checker

    return register


def all_exercises() -> dict[str, Exercise]:
    """Every registered exercise, by name (all notebooks' modules imported)."""
    for module in pkgutil.iter_modules(__path__):  # one module of checkers per notebook: notebook02, ...
        if module.name.startswith("notebook"):
            importlib.import_module(f"{__name__}.{module.name}")
    return dict(_EXERCISES)


class Unanswered(Exception):
    """Raised by a scaffold's function that has not been written yet."""


def _unanswered(answer) -> bool:
    return answer is None or answer is Ellipsis


class Verdict:
    """What :func:`check` returns: true when the answer is right. It was printed already, so a
    notebook cell that ends with a check shows the verdict once, not ``True`` or ``False`` after it."""

    def __init__(self, name: str, right: bool, line: str):
        self.name, self.right, self.line = name, right, line

    def __bool__(self) -> bool:
        return self.right

    def __repr__(self) -> str:
        return self.line

    def _ipython_display_(self) -> None:
        pass


def check(name: str, answer) -> Verdict:
    """Check ``answer`` to exercise ``name``; print the verdict (and a hint when it is wrong) and
    return it, true when the answer is right."""
    exercises = all_exercises()
    if name not in exercises:
        raise KeyError(f"no exercise {name!r}; the exercises are: {', '.join(sorted(exercises))}")
    chosen = exercises[name]
    if _unanswered(answer):
        problem = "not answered yet: replace the None (or the ...) with your answer."
    else:
        try:
            problem = chosen.checker(answer)
        except (Unanswered, NotImplementedError):
            problem = "not answered yet: your function still has no body."
        except Exception as error:  # the learner's function failed: say how, do not crash the notebook
            problem = f"your answer raised {type(error).__name__}: {error}"
    results[name] = problem is None
    line = f"✓ {name}: {chosen.right}" if problem is None else f"✗ {name}: {problem}"
    print(line)
    return Verdict(name, problem is None, line)


def hint(condition: bool, message: str) -> str | None:
    """``None`` when ``condition`` holds, else ``message``: a checker's one line per mistake."""
    return None if condition else message


def close(value, expected, *, rtol: float = 1e-6, atol: float = 0.0) -> bool:
    """Whether ``value`` is a number (or array) within tolerance of ``expected``."""
    import numpy as np

    try:
        value = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return False
    expected = np.asarray(expected, dtype=float)
    return value.shape == expected.shape and bool(np.allclose(value, expected, rtol=rtol, atol=atol))


def as_array(got, expected, *, shown: str, what: str, not_finite: str):
    """``(array, None)`` when the answer ``got`` is a finite float array shaped like ``expected``,
    else ``(None, hint)``: ``what`` says what to return, ``not_finite`` why values went nan or inf."""
    import numpy as np

    try:
        got = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return None, f"return {what}."
    if got.shape != np.shape(expected):
        return None, f"{shown} has shape {got.shape}, expected {np.shape(expected)}: {what}."
    if not np.all(np.isfinite(got)):
        return None, f"{shown} has nan or inf: {not_finite}"
    return got, None


def not_one_number(got, what: str) -> str | None:
    """A hint when the answer ``got`` is not a single number (``what`` it should be), else ``None``."""
    import numpy as np

    return None if np.ndim(got) == 0 else f"return one number, {what}; got shape {np.shape(got)}."
