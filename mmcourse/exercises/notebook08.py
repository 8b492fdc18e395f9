"""Checks for notebook 08 · Fusion and visual question answering."""

from __future__ import annotations

import dataclasses

import numpy as np

from mmcourse.exercises import close, exercise, not_one_number


def _mirrored(scene):
    """The scene flipped left to right, built anew: x → 64 − x, and for a left–right pair the
    objects swap places in the canonical order (objects[0] is the left one)."""
    from mmcourse.data import shapes

    objects = tuple(dataclasses.replace(o, centre=(shapes.IMAGE_SIZE - o.centre[0], o.centre[1])) for o in scene.objects)
    if scene.relation in ("left of", "right of"):
        objects = objects[::-1]
    return dataclasses.replace(scene, objects=objects)


def _answers_of(scene) -> dict[str, str]:
    """Every question shapes.questions asks of the scene with its answer, plus the yes/no
    relation questions in both orders (read from the "where" answers)."""
    from mmcourse.data import shapes

    table = {qa.question: qa.answer for qa in shapes.questions(scene)}
    for question, where in list(table.items()):
        if question.startswith("where is the ") and " relative to the " in question:
            a, b = question[len("where is the "):].split(" relative to the ")
            for relation in shapes.RELATIONS:
                table[f"is the {a} {relation} the {b}"] = "yes" if relation.split()[0] == where else "no"
    return table


def _mirror_cases():
    from mmcourse.data import shapes

    cases = []
    for scene in shapes.generate(60, seed=(8, 2)).scenes:
        after = _answers_of(_mirrored(scene))
        cases += [(qa.question, qa.answer, after[qa.question], qa.kind) for qa in shapes.questions(scene)]
    return cases


@exercise("08.mirror_answer", "Write mirror_answer(question, answer): the true answer to a Shapes question once the image is "
          "flipped left to right.",
          right="it gives the true answer of the mirrored scene for every question of 60 scenes, recomputed from scenes flipped by the checker.")
def mirror_answer(answer):
    cases = _mirror_cases()
    assert any(before != after for _, before, after, _ in cases), "the checker's cases must include answers that change"
    for question, before, after, kind in cases:
        got = answer(question, before)
        if got == after:
            continue
        call = f"mirror_answer({question!r}, {before!r}) gave {got!r}, the mirrored image says {after!r}"
        if kind != "relation":
            return f"{call}. A mirror moves objects but does not change what they are or how many: only relation answers change."
        if before in ("above", "below") or " above " in question or " below " in question:
            return f"{call}. Flipping left to right keeps what is above what."
        if before in ("left", "right"):
            return f"{call}. In the mirror, what was left of the other object is right of it."
        return f"{call}. A yes/no question about 'left of' or 'right of' flips its answer: the question stays, the positions swap."
    return None


def _majority_cases():
    """Training and test answers of a few question types, with clear majorities that differ
    between the types, between the splits and from the overall majority."""
    rng = np.random.default_rng(8)
    cases = []
    for kinds, answers in ((3, 6), (6, 19)):
        preferred = rng.permutation(answers)[:kinds]  # a different commonest answer per type
        train_kinds = rng.integers(kinds, size=400)
        train_answers = np.where(rng.random(400) < 0.45, preferred[train_kinds], rng.integers(answers, size=400))
        test_kinds = rng.integers(kinds, size=200)
        shifted = preferred[(np.arange(kinds) + 1) % kinds]  # the test set prefers other answers: its own majority is not the one to use
        test_answers = np.where(rng.random(200) < 0.3, preferred[test_kinds],
                                np.where(rng.random(200) < 0.6, shifted[test_kinds], rng.integers(answers, size=200)))
        cases.append((train_answers, train_kinds, test_answers, test_kinds))
    return cases


def _majority_accuracy(train_answers, train_kinds, test_answers, test_kinds):
    said = np.zeros(len(test_answers), int)
    for kind in np.unique(test_kinds):
        counts = np.bincount(train_answers[train_kinds == kind])
        assert (counts == counts.max()).sum() == 1, "a checker case with a tie"
        said[test_kinds == kind] = counts.argmax()
    return float((said == test_answers).mean())


@exercise("08.majority_accuracy", "Write majority_accuracy(train_answers, train_kinds, test_answers, test_kinds): the test accuracy "
          "of answering every question with the commonest TRAINING answer of its type.",
          right="it agrees with the majority baseline on every case tried.")
def majority_accuracy(answer):
    for train_answers, train_kinds, test_answers, test_kinds in _majority_cases():
        expected = _majority_accuracy(train_answers, train_kinds, test_answers, test_kinds)
        got = answer(train_answers.copy(), train_kinds.copy(), test_answers.copy(), test_kinds.copy())
        if problem := not_one_number(got, "the accuracy over all the test questions"):
            return problem
        if close(got, expected, atol=1e-9):
            continue
        where = f"got {float(got):.3f}, expected {expected:.3f}"
        overall = np.bincount(train_answers).argmax()
        if close(got, (test_answers == overall).mean(), atol=1e-9):
            return f"{where}: that is the commonest answer over ALL training questions; take the commonest one per question type."
        if close(got, _majority_accuracy(test_answers, test_kinds, test_answers, test_kinds), atol=1e-9):
            return f"{where}: the majority must come from the training answers; counting the test answers peeks at what it is scored on."
        return f"{where}: for each type k, a = np.bincount(train_answers[train_kinds == k]).argmax(); score it on the test questions of type k."
    return None


@exercise("08.film", "Write modulate(F, gamma, beta): FiLM's γ ⊙ F + β, one scale and shift per channel, applied to every cell of "
          "feature maps F (batch, rows, cols, channels).",
          right="each question's γ and β scale and shift every cell of its own feature map, channel by channel.")
def film(answer):
    rng = np.random.default_rng(4)
    for shape in ((2, 8, 8, 4), (3, 4, 4, 4), (4, 2, 3, 5), (1, 6, 6, 3)):
        F = rng.normal(size=shape)
        gamma, beta = rng.normal(size=(shape[0], shape[-1])), rng.normal(size=(shape[0], shape[-1]))
        expected = gamma[:, None, None, :] * F + beta[:, None, None, :]
        got = np.asarray(answer(F.copy(), gamma.copy(), beta.copy()), dtype=float)
        if got.shape != expected.shape:
            return f"for F of shape {shape} and γ, β of shape {gamma.shape} the result should keep F's shape {shape}; got {got.shape}."
        if np.allclose(got, expected, atol=1e-9):
            continue
        if np.allclose(got, gamma[:, None, None, :] * (F + beta[:, None, None, :]), atol=1e-9):
            return "scale, then shift: γ ⊙ F + β, not γ ⊙ (F + β)."
        if np.allclose(got, beta[:, None, None, :] * F + gamma[:, None, None, :], atol=1e-9):
            return "γ is the scale (it multiplies F) and β the shift (it is added): swap them."
        return (f"for F of shape {shape}: each question n has one γ_n and one β_n of C numbers; give them the grid's two axes "
                "(gamma[:, None, None, :]) so that they act on every cell of map n, channel by channel.")
    return None
