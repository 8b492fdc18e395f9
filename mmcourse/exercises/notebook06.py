"""Checks for notebook 06 · Fused image captioning."""

from __future__ import annotations

import math

import numpy as np

from mmcourse.exercises import close, exercise

CELLS = 64  # the 8×8 grid the attention looks over


@exercise("06.attention_floor", "Write penalty_floor(T): the smallest value of (1/64) Σ_j (1 − Σ_t α_tj)² over a caption of T steps.",
          right="the attention of T steps adds up to T over the 64 cells, so the best it can do is T/64 per cell.")
def attention_floor(answer):
    for steps in (1, 4, 12, 16, 32, 64, 100):
        alpha = np.full((steps, CELLS), 1 / CELLS)  # every step spreads its attention evenly: the penalty is convex, so this is its minimum
        expected = float(np.mean((1 - alpha.sum(axis=0)) ** 2))
        got = answer(steps)
        if not np.isscalar(got):
            return f"penalty_floor({steps}) gave {got!r}: return one number."
        if close(got, expected, rtol=1e-6, atol=1e-12):
            continue
        if steps < CELLS and close(got, 0.0, atol=1e-12):
            return (f"penalty_floor({steps}) gave 0, but each α_t sums to 1 over the cells, so Σ_j Σ_t α_tj = T = {steps}: "
                    "the 64 totals cannot all be 1 unless T = 64.")
        if close(got, CELLS * expected, rtol=1e-6):
            return f"penalty_floor({steps}) gave {got:.4g}: the penalty is the mean over the 64 cells (divided by 64), not the sum."
        return (f"penalty_floor({steps}) gave {got:.4g}, expected {expected:.4g}. The cells' totals Σ_t α_tj add up to T; "
                "for a sum of squares with a fixed total, the smallest value comes when they are all equal.")
    return None


def _caption_cases():
    """Captions and scenes to try an error count on: true captions, captions of other scenes
    (objects invented, objects missed), captions that name one object of two, and nothing."""
    from mmcourse.data import shapes

    data = shapes.generate(40, seed=(6, 14))
    scenes = list(data.scenes)
    captions = []
    for i, refs in enumerate(data.captions):
        if i % 4 == 0:
            captions.append(refs[0])  # right
        elif i % 4 == 1:
            captions.append(data.captions[(i + 7) % len(scenes)][1])  # another scene's
        elif i % 4 == 2:
            captions.append(scenes[i].objects[-1].phrase)  # one object only
        else:
            captions.append("" if i == 3 else f"{scenes[i].objects[0].phrase} left of {scenes[(i + 3) % len(scenes)].objects[0].phrase}")
    return captions, scenes


def _errors_by_size(captions, scenes):
    from mmcourse.data import shapes
    from mmcourse.metrics import mentioned_objects

    result = {}
    for size in shapes.SIZES:
        said = invented = present = missed = 0
        for caption, scene in zip(captions, scenes):
            mentioned = mentioned_objects(caption)
            actual = [(o.size, o.colour, o.shape) for o in scene.objects]
            for obj in mentioned:
                if obj[0] == size:
                    said += 1
                    invented += obj not in actual
            for obj in actual:
                if obj[0] == size:
                    present += 1
                    missed += obj not in mentioned
        result[size] = (invented / said if said else 0.0, missed / present if present else 0.0)
    return result


@exercise("06.errors_by_size", "Write errors_by_size(captions, scenes): per object size, the share of mentioned objects that are "
          "not in the image (invented) and the share of the image's objects that the caption does not mention (missed).",
          right="it counts invented and missed objects per size as the checker does on 40 test captions.")
def errors_by_size(answer):
    from mmcourse.data import shapes

    captions, scenes = _caption_cases()
    expected = _errors_by_size(captions, scenes)
    got = answer(captions, scenes)
    if not isinstance(got, dict) or set(got) != set(shapes.SIZES):
        return f"return a dict with one entry per size, {sorted(shapes.SIZES)}, each (invented, missed); got {got!r:.80}."
    for size in shapes.SIZES:
        try:
            pair = tuple(float(v) for v in got[size])
        except (TypeError, ValueError):
            return f"got[{size!r}] should be a pair of numbers (invented, missed), got {got[size]!r}."
        if len(pair) != 2:
            return f"got[{size!r}] should be a pair (invented, missed), got {len(pair)} numbers."
        if close(pair, expected[size], atol=1e-9):
            continue
        if close(pair[::-1], expected[size], atol=1e-9):
            return f"for {size!r} the two numbers are swapped: first the share invented (of the objects mentioned), then the share missed (of the objects present)."
        return (f"for {size!r} objects: got (invented, missed) = ({pair[0]:.3f}, {pair[1]:.3f}), expected ({expected[size][0]:.3f}, {expected[size][1]:.3f}). "
                "An object is (size, colour, shape) and matches only when all three agree: metrics.mentioned_objects(caption) against "
                "[(o.size, o.colour, o.shape) for o in scene.objects]; invented is divided by the objects of that size mentioned, missed by those present.")
    return None


BLEU_CASES = [  # (hypothesis, references): Papineni's over-generating example, ties in length, partial overlaps
    ("the the the the the the the", ["the cat is on the mat", "there is a cat on the mat"]),
    ("a small red circle", ["a small red circle", "there is a small red circle"]),
    ("a red circle left of a red square", ["a small red circle left of a large red square", "a red square right of a red circle"]),
    ("a a a small small circle circle", ["a small circle and a small circle", "a a circle"]),
    ("there is a large blue square above a small blue triangle", ["a large blue square above a small blue triangle"]),
    ("square", ["a square", "the square"]),
]


@exercise("06.clipped_precision", "Write clipped_precision(hypothesis, references, n): the clipped n-gram matches of one hypothesis "
          "and its number of n-grams, (matched, total).",
          right="it agrees with mmcourse.metrics.bleu_statistics on every case, Papineni's 'the the the …' included.")
def clipped_precision(answer):
    from collections import Counter

    from mmcourse.metrics import bleu_statistics

    for hypothesis, references in BLEU_CASES:
        for n in (1, 2, 3, 4):
            stats = bleu_statistics([hypothesis], [references], max_n=n)
            expected = (stats["matches"][n - 1], stats["totals"][n - 1])
            got = answer(hypothesis, references, n)
            try:
                got = tuple(int(v) for v in got)
            except (TypeError, ValueError):
                return f"clipped_precision({hypothesis!r}, …, {n}) gave {got!r}: return two whole numbers, (matched, total)."
            if got == expected:
                continue
            call = f"clipped_precision({hypothesis!r}, {references!r}, {n})"
            words = hypothesis.split()
            grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
            summed = Counter()
            for r in references:
                tokens = r.split()
                summed += Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
            if got[1] != expected[1]:
                return f"{call}: total {got[1]}, expected {expected[1]}: a hypothesis of w words has max(w − n + 1, 0) n-grams."
            if got[0] == sum(min(k, summed[g]) for g, k in grams.items()) != expected[0]:
                return (f"{call}: matched {got[0]}, expected {expected[0]}: clip each n-gram at the most times it occurs in any ONE "
                        "reference (the maximum over references), not the sum over them.")
            if got[0] > expected[0]:
                return (f"{call}: matched {got[0]}, expected {expected[0]}: clip — an n-gram counts at most as often as it appears "
                        "in the reference that has it most.")
            return f"{call} gave {got}, expected {expected}."
    return None


@exercise("06.brevity_penalty", "Write brevity_penalty(hypotheses, references): corpus BLEU's brevity penalty, with the closest "
          "reference length per hypothesis (on a tie, the shorter).",
          right="it agrees with the lengths mmcourse.metrics.bleu_statistics sums, ties included.")
def brevity_penalty(answer):
    from mmcourse.metrics import bleu_statistics

    corpora = [
        [BLEU_CASES[1]],  # c = r: no penalty
        [("a small red circle", ["a red circle and a blue one", "a small red circle here"])],  # 4 words; refs 7 and 5: r = 5
        [("a b c d e", ["a b c d", "a b c d e f"])],  # a tie, 4 and 6: the shorter, so no penalty
        [("a b c", ["a b c d e", "a b"])],  # 3 words; refs 5 and 2: the closest is 2, so no penalty
        BLEU_CASES,  # several sentences: c and r are summed over the corpus first
        [(h, refs) for h, refs in BLEU_CASES if len(h.split()) < 5],
    ]
    for corpus in corpora:
        hypotheses, references = [h for h, _ in corpus], [list(r) for _, r in corpus]
        stats = bleu_statistics(hypotheses, references, max_n=1)
        c, r = stats["hyp_length"], stats["ref_length"]
        expected = 1.0 if c >= r else math.exp(1 - r / c)
        got = answer(hypotheses, references)
        if not np.isscalar(got):
            return "return one number, the brevity penalty of the whole corpus."
        if close(got, expected, rtol=1e-9):
            continue
        def sentence_r(key):
            return sum(len(min((x.split() for x in refs), key=lambda t: key(len(t), len(h.split())))) for h, refs in zip(hypotheses, references))

        tie_longer = sentence_r(lambda t, w: (abs(t - w), -t))
        if tie_longer != r and close(got, 1.0 if c >= tie_longer else math.exp(1 - tie_longer / c), rtol=1e-9):
            return "two references are equally close to a hypothesis's length here: take the shorter (as sacreBLEU does)."
        longest = sum(max(len(x.split()) for x in refs) for refs in references)
        if close(got, 1.0 if c >= longest else math.exp(1 - longest / c), rtol=1e-9):
            return "use the reference length closest to each hypothesis's, not the longest reference."
        if len(corpus) > 1:
            mean = np.mean([1.0 if len(h.split()) >= len(min(refs, key=lambda x: (abs(len(x.split()) - len(h.split())), len(x.split()))).split())
                            else math.exp(1 - len(min(refs, key=lambda x: (abs(len(x.split()) - len(h.split())), len(x.split()))).split()) / len(h.split()))
                            for h, refs in zip(hypotheses, references)])
            if close(got, mean, rtol=1e-9):
                return "corpus BLEU sums c and r over all the hypotheses first, then takes one penalty; it does not average sentence penalties."
        return (f"on {hypotheses!r:.90} your penalty is {float(got):.4f}, expected {expected:.4f} (c = {c}, r = {r}). "
                "BP = 1 if c ≥ r else exp(1 − r/c); r sums, per hypothesis, the reference length closest to its length, the shorter on a tie.")
    return None
