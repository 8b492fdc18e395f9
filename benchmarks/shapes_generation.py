"""How fast is the Shapes world made? Images per second, captions and masks included.

    python benchmarks/shapes_generation.py [--n 20000] [--repeats 5]

Each repeat calls ``shapes.generate(n)``: sampling scenes, five captions per image,
rendering images and per-object label maps. The median over repeats is reported
(the first call, which builds lookup tables, is a warm-up and not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

from mmcourse.data import shapes


def measure(n: int, repeats: int) -> list[float]:
    rates = []
    for seed in range(repeats):
        start = time.perf_counter()
        data = shapes.generate(n, seed=seed)
        seconds = time.perf_counter() - start
        assert len(data.captions) == n and data.labels.shape[0] == n
        rates.append(n / seconds)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="images per call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    shapes.generate(1_000, seed=123)  # warm-up: caption tables, noise bank
    rates = measure(args.n, args.repeats)
    result = {
        "images_per_call": args.n,
        "median_images_per_second": round(statistics.median(rates)),
        "min_images_per_second": round(min(rates)),
        "max_images_per_second": round(max(rates)),
        "cpu_cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"shapes.generate({args.n:,}): median {result['median_images_per_second']:,} images/s "
            f"(min {result['min_images_per_second']:,}, max {result['max_images_per_second']:,}; "
            f"{args.repeats} runs, {result['cpu_cores']} cores), captions and masks included"
        )


if __name__ == "__main__":
    main()
