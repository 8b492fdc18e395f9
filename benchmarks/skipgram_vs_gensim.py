"""Our skip-gram (Keras) beside gensim's Word2Vec on the Lee corpus: speed and quality.

    python benchmarks/skipgram_vs_gensim.py [--epochs 50] [--repeats 3] [--workers 2] [--precision auto]

Both train skip-gram with negative sampling with the same settings (dim 100, window 5,
5 noise words, min_count 5, sample 1e-3, learning rate 0.025 → 0.0001) on the same
tokenised sentences, once per seed. Reported for each: words per second (every corpus
token of every epoch, divided by the training wall time), the process's CPU seconds
(steadier than wall time on a shared machine), the time ratio, and the WordSim-353
Spearman correlation (with SimLex-999 and analogy accuracy beside it). WordSim-353 on Lee
scores only about 60 pairs, so one seed's Spearman moves by ±0.05; the mean over seeds is
what to compare.

Measured (issue 13) on this 2-core CPU, 50 epochs, the three run in turn per seed:
                         words/s (wall)   CPU s per run   WordSim-353, seeds 0/1/2 (mean)
  before (train_step,        21,000            86        0.239 / 0.176 / 0.206 (0.207)
    float(loss) per step)
  after (Keras fit on        20,600            92        0.239 / 0.176 / 0.206 (0.207)
    tf.data, no host sync)
  gensim, 2 workers         133,000            10        0.180 / 0.251 / 0.264 (0.231)

The machine was shared (load 6-8 on 2 cores), so wall times swing by 2x between runs;
CPU seconds are steadier. The training is the same before and after (same draws, same
learning rates, same arithmetic: WordSim-353 agrees to 4 decimals for every seed). On a CPU the two run at
the same speed: TensorFlow executes each step synchronously there anyway, and the step
itself (gathers, gradients and scattered updates of ~7,000 table rows, about 6 ms on one
core) is the cost; reading the loss back each step mattered only on a GPU, where it kept
the device idle between steps. gensim updates one pair at a time in C without
materialising any of it, about 8x fewer CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

from mmcourse import device
from mmcourse.data.text import load_corpus
from mmcourse.data.vectors import WordVectors
from mmcourse.models.embeddings import SkipGramSettings, train_skipgram
from mmcourse.wordsim import evaluate_all


def run_ours(sentences, settings: SkipGramSettings, precision: str = "auto") -> dict:
    cpu = time.process_time()
    with device.use(precision):
        vectors = train_skipgram(sentences, settings, progress=False)
    cpu = time.process_time() - cpu
    return {"seconds": vectors.seconds, "cpu_seconds": cpu, "words_per_second": vectors.words_per_second, **evaluate_all(vectors)}


def run_gensim(sentences, settings: SkipGramSettings, workers: int) -> dict:
    from gensim.models import Word2Vec

    start, cpu = time.perf_counter(), time.process_time()
    model = Word2Vec(
        sentences,
        vector_size=settings.dim,
        window=settings.window,
        negative=settings.negative,
        min_count=settings.min_count,
        sample=settings.sample,
        epochs=settings.epochs,
        alpha=settings.learning_rate,
        min_alpha=settings.min_learning_rate,
        sg=1,
        hs=0,
        seed=settings.seed,
        workers=workers,
    )
    seconds = time.perf_counter() - start  # includes gensim's vocabulary scan (a few ms on Lee)
    cpu = time.process_time() - cpu
    words = sum(len(s) for s in sentences) * settings.epochs
    vectors = WordVectors(model.wv.index_to_key, model.wv.vectors)
    return {"seconds": seconds, "cpu_seconds": cpu, "words_per_second": words / seconds, **evaluate_all(vectors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="seeds 0 … repeats-1")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="gensim worker threads (default: all cores)")
    parser.add_argument("--precision", choices=device.PRECISIONS, default="auto", help="ours: float32 or mixed (auto: mixed on a GPU)")
    args = parser.parse_args()

    sentences = load_corpus("lee")
    print(f"Lee corpus: {len(sentences)} documents, {sum(map(len, sentences)):,} words · {args.epochs} epochs · "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, gensim workers={args.workers}")
    rows = {"ours": [], "gensim": []}
    for seed in range(args.repeats):
        settings = SkipGramSettings(epochs=args.epochs, seed=seed)
        rows["ours"].append(run_ours(sentences, settings, args.precision))
        rows["gensim"].append(run_gensim(sentences, settings, args.workers))
        for name in rows:
            r = rows[name][-1]
            print(f"seed {seed} {name:7} {r['seconds']:6.1f} s ({r['cpu_seconds']:5.1f} s CPU) {r['words_per_second']:9,.0f} words/s · WordSim-353 {r['wordsim353_spearman']:+.3f} "
                  f"· SimLex-999 {r['simlex999_spearman']:+.3f} · analogies {r['analogy_accuracy']:.1%}", flush=True)

    mean = {name: {k: statistics.fmean(r[k] for r in runs) for k in runs[0]} for name, runs in rows.items()}
    ratio = mean["ours"]["seconds"] / mean["gensim"]["seconds"]
    gap = mean["ours"]["wordsim353_spearman"] - mean["gensim"]["wordsim353_spearman"]
    print(f"\nmean over {args.repeats} seed(s):")
    for name, m in mean.items():
        print(f"  {name:7} {m['words_per_second']:9,.0f} words/s ({m['cpu_seconds']:.1f} s CPU) · WordSim-353 {m['wordsim353_spearman']:+.3f} "
              f"({m['wordsim353_pairs_used']:.0f} pairs, {m['wordsim353_pairs_skipped']:.0f} skipped) · SimLex-999 {m['simlex999_spearman']:+.3f}")
    print(f"time ratio ours/gensim: {ratio:.1f}× · WordSim-353 gap ours−gensim: {gap:+.3f} "
          f"({'within' if abs(gap) <= 0.05 else 'outside'} 0.05)")
    print(json.dumps({"epochs": args.epochs, "repeats": args.repeats, "time_ratio": ratio, "wordsim353_gap": gap, "mean": mean}))


if __name__ == "__main__":
    main()
