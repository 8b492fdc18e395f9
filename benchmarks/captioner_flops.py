"""How close to the machine does the captioner train? Its throughput and achieved FLOP/s against
the practical peak of this machine (a large float32 matrix product).

    .venv/bin/python benchmarks/captioner_flops.py [--images 2000] [--batch 128] [--precision float32]

The captioner trains as ``mmcourse train captioner`` trains it: the image encoder frozen, its grids
computed once, the attention decoder (two looks per word) trained by teacher forcing. The floating
point operations of one training step (forward and backward) are counted by TensorFlow's profiler
on the step's graph (matrix products, convolutions and element-wise arithmetic); the step's time
is measured over whole epochs after a warm-up epoch. The ratio says how much room the model's
shapes leave: a small GRU cell and one word per step keep the matrices thin.
"""

from __future__ import annotations

import argparse
import time

from mmcourse._tf import tensorflow

tf = tensorflow()


def matmul_peak(n: int = 2048, repeats: int = 20) -> float:
    """FLOP/s of an ``n × n`` float32 matrix product (2 n³ operations), best of three timings."""
    a = tf.random.normal((n, n), seed=0)
    b = tf.random.normal((n, n), seed=1)

    scale = n**-0.5  # keeps the entries of a product of normal matrices near 1

    @tf.function
    def product(a, b):
        c = a
        for _ in range(repeats):
            c = tf.matmul(c, b) * scale  # each product needs the one before: none can be skipped or merged
        return tf.reduce_sum(c)

    product(a, b).numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        product(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * repeats / best


def graph_flops(concrete_function) -> int:
    """Floating point operations TensorFlow's profiler counts in a traced function's graph."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(model_analyzer.profile(concrete_function.graph, options=options).total_float_ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs, after one warm-up epoch")
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed"])
    args = parser.parse_args()

    import keras

    from mmcourse import device, training
    from mmcourse.data import shapes
    from mmcourse.models import captioning, vision

    data = shapes.generate(args.images, seed=(0, 1))
    vocabulary = shapes.caption_vocabulary()
    with device.use(args.precision) as run:
        encoder = vision.build_image_encoder(channels=64)
        grids = vision.encode(encoder, data.images, output="grid")
        with run.strategy.scope(), training.seeded(0):
            model = captioning.Captioner(len(vocabulary))
            training.compile(model, keras.optimizers.Adam(captioning.LEARNING_RATE))
        steps_per_epoch = -(-args.images // args.batch)
        stream = captioning.caption_dataset(grids, data.captions, vocabulary, batch_size=args.batch, seed=0, epochs=args.epochs + 1)
        model.fit(stream, epochs=1, steps_per_epoch=steps_per_epoch, verbose=0)  # warm-up: traces the step
        start = time.perf_counter()
        model.fit(stream, epochs=args.epochs, steps_per_epoch=steps_per_epoch, verbose=0)
        seconds = time.perf_counter() - start
        batch = next(iter(stream))
        step = tf.function(model.train_step).get_concrete_function(batch)
        flops_per_step = graph_flops(step)

    steps = steps_per_epoch * args.epochs
    images_per_second = args.images * args.epochs / seconds
    achieved = flops_per_step * steps / seconds
    peak = matmul_peak()
    print(f"captioner training ({run.precision}, batch {args.batch}, {run.device}): {images_per_second:,.0f} images/s, "
          f"{flops_per_step / 1e9:.2f} GFLOP per step, {achieved / 1e9:.1f} GFLOP/s")
    print(f"float32 2048×2048 matrix product on this machine: {peak / 1e9:.1f} GFLOP/s")
    print(f"the captioner's step reaches {achieved / peak:.1%} of that practical peak")


if __name__ == "__main__":
    main()
