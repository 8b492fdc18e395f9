"""Caption metrics: BLEU as the papers compute it, and measures only the Shapes world allows —
whether a caption is true, which objects it invents, and where the model looked.

- :func:`corpus_bleu`: corpus BLEU (Papineni et al., 2002) on whitespace tokens, 0–100,
  equal to ``sacrebleu.corpus_bleu(..., tokenize="none")``.
- :func:`exact_match`: the caption, parsed, says exactly what the scene holds.
- :func:`object_scores`: object precision and recall, and the hallucination rate
  (objects mentioned that are not in the image, after CHAIR-i, Rohrbach et al., 2018).
- :func:`attention_grounding`: for colour and shape words, how often the attention peak
  lies on that object's mask.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from mmcourse.data import shapes

__all__ = ["bleu_statistics", "corpus_bleu", "exact_match", "mentioned_objects", "object_scores", "attention_grounding"]

_PHRASE = re.compile(
    r"\b(?:a|an)\s+(" + "|".join(shapes.SIZES) + r")\s+(" + "|".join(shapes.COLOURS) + r")\s+(" + "|".join(shapes.SHAPES) + r")\b"
)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _closest_length(hyp_len: int, ref_lens: Sequence[int]) -> int:
    """The reference length closest to the hypothesis's; on a tie, the shorter."""
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> dict:
    """The sufficient statistics of corpus BLEU: clipped n-gram matches and totals per order,
    the hypothesis length and the (closest) reference length, summed over the corpus."""
    if len(hypotheses) != len(references):
        raise ValueError(f"one list of references per hypothesis: got {len(hypotheses)} hypotheses and {len(references)} reference lists")
    matches, totals = [0] * max_n, [0] * max_n
    hyp_length = ref_length = 0
    for hypothesis, refs in zip(hypotheses, references):
        if isinstance(refs, str) or not refs:
            raise ValueError("each hypothesis needs a list of at least one reference string")
        hyp = hypothesis.split()
        ref_tokens = [r.split() for r in refs]
        hyp_length += len(hyp)
        ref_length += _closest_length(len(hyp), [len(r) for r in ref_tokens])
        for n in range(1, max_n + 1):
            counts = _ngrams(hyp, n)
            best = Counter()
            for r in ref_tokens:
                best |= _ngrams(r, n)  # per n-gram, the most times any one reference has it
            matches[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    return {"matches": matches, "totals": totals, "hyp_length": hyp_length, "ref_length": ref_length}


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], *, max_n: int = 4) -> float:
    """Corpus BLEU-``max_n`` on a 0–100 scale:

        BLEU = BP · exp( (1/N) Σ_n log p_n ),   p_n = Σ clipped matches / Σ hypothesis n-grams,
        BP = 1 if c > r else exp(1 − r/c)   (c: hypothesis words, r: closest reference words)

    An order with no match is smoothed as sacreBLEU's default ("exp": 1 / (2^k · total) for
    the k-th such order); no match of any order, or an order with no n-grams at all (every
    hypothesis too short), gives 0.
    Whitespace tokens, case kept: this equals ``sacrebleu.corpus_bleu(hypotheses,
    list(zip(*references)), tokenize="none").score``.
    """
    stats = bleu_statistics(hypotheses, references, max_n)
    c, r = stats["hyp_length"], stats["ref_length"]
    if c == 0 or not any(stats["matches"]):
        return 0.0  # nothing matched at all: 0, not a smoothed score (as sacreBLEU does)
    log_precisions, smooth = [], 1.0
    for matched, total in zip(stats["matches"], stats["totals"]):
        if total == 0:
            return 0.0
        if matched == 0:
            smooth *= 2
            log_precisions.append(math.log(100.0 / (smooth * total)))
        else:
            log_precisions.append(math.log(100.0 * matched / total))
    brevity = 1.0 if c >= r else math.exp(1 - r / c)
    return brevity * math.exp(sum(log_precisions) / max_n)


def exact_match(captions: Sequence[str], scenes: Sequence[shapes.Scene]) -> np.ndarray:
    """Per caption: it parses and says exactly what its scene holds (objects and relation)."""
    out = []
    for caption, scene in zip(captions, scenes, strict=True):
        try:
            out.append(shapes.parse_caption(caption).describes(scene))
        except shapes.CaptionError:
            out.append(False)
    return np.array(out, bool)


def same_description(read: Sequence[str], prompts: Sequence[str]) -> np.ndarray:
    """Per pair: the caption ``read`` (a captioner's reading of a drawing) parses and says what
    the prompt says — the same objects and relation, in any order or wording ("a small red
    square left of …" and "there is … right of a small red square" agree). A text-to-image
    model's drawing is true to its prompt by this reading when a captioner that reads real
    scenes right describes it as the prompt does. Prompts must parse; a read caption that does
    not counts as disagreeing."""
    out = []
    for caption, prompt in zip(read, prompts, strict=True):
        wanted = shapes.parse_caption(prompt).description()
        try:
            out.append(shapes.parse_caption(caption).description() == wanted)
        except shapes.CaptionError:
            out.append(False)
    return np.array(out, bool)


def mentioned_objects(caption: str) -> list[tuple[str, str, str]]:
    """Every ``a {size} {colour} {shape}`` phrase in a caption, grammatical or not."""
    return [m.groups() for m in _PHRASE.finditer(caption)]


def object_scores(captions: Sequence[str], scenes: Sequence[shapes.Scene]) -> dict[str, float]:
    """Object ``precision`` (mentioned objects that are in the image), ``recall`` (objects of
    the image that are mentioned) and ``hallucination_rate`` = 1 − precision (CHAIR-i), over
    the whole set; an object counts as in the image when size, colour and shape all match.
    """
    mentioned = correct = present = found = 0
    for caption, scene in zip(captions, scenes, strict=True):
        said = mentioned_objects(caption)
        actual = [(o.size, o.colour, o.shape) for o in scene.objects]
        mentioned += len(said)
        correct += sum(s in actual for s in said)
        present += len(actual)
        found += sum(a in said for a in actual)
    precision = correct / mentioned if mentioned else 0.0
    return {"precision": precision, "recall": found / present if present else 0.0,
            "hallucination_rate": 1.0 - precision if mentioned else 0.0, "objects_mentioned": mentioned}


def attention_grounding(captions: Sequence[str], attentions: Sequence[np.ndarray], scenes: Sequence[shapes.Scene]) -> dict[str, float]:
    """How often the attention peak of a colour or shape word lies on the object it names.

    ``attentions[i]`` holds one map per word of ``captions[i]`` (shape ``(words, rows, cols)``,
    e.g. the 8×8 grid). A word counts when its phrase names an object of the scene; it is
    grounded when its map's highest cell overlaps that object's mask. Returns the fraction
    ``grounding`` and the ``words`` counted.
    """
    grounded = counted = 0
    for caption, maps, scene in zip(captions, attentions, scenes, strict=True):
        words = caption.split()
        maps = np.asarray(maps)
        if len(maps) < len(words):
            raise ValueError(f"one attention map per word: {len(words)} words but {len(maps)} maps for {caption!r}")
        masks = scene.masks()
        rows, cols = maps.shape[1:]
        cell_h, cell_w = masks.shape[1] // rows, masks.shape[2] // cols
        for match in _PHRASE.finditer(caption):
            phrase = match.groups()
            owners = [k for k, o in enumerate(scene.objects) if (o.size, o.colour, o.shape) == phrase]
            if not owners:
                continue
            first_word = len(caption[: match.start()].split())
            for position in (first_word + 2, first_word + 3):  # "a size COLOUR SHAPE"
                r, c = np.unravel_index(np.argmax(maps[position]), (rows, cols))
                cell = masks[owners[0], r * cell_h : (r + 1) * cell_h, c * cell_w : (c + 1) * cell_w]
                grounded += bool(cell.any())
                counted += 1
    return {"grounding": grounded / counted if counted else 0.0, "words": counted}
