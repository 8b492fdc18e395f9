"""The `mmcourse` command line (also `python -m mmcourse`).

    mmcourse doctor                       versions, devices, profile, datasets present
    mmcourse run [NOTEBOOK ...] [--profile quick|full]
                                          execute notebooks headless, one line each
    mmcourse train TARGET ...             train a reference model with a progress bar
    mmcourse train embeddings --corpus {shapes,lee} --out DIR [--epochs N] [--dim D] [--seed S]
                                          skip-gram word vectors: DIR/vectors.txt (word2vec
                                          text format) and DIR/metrics.json
    mmcourse train vae --out DIR [--profile quick|full] [--conditional] [--seed S]
                                          DIR/vae.keras and DIR/metrics.json (test ELBO, its
                                          terms, seconds; drawings true to their caption)
    mmcourse train retrieval --out DIR [--profile quick|full] [--seed S]
                                          a dual encoder (images and captions in one space):
                                          DIR/dual_encoder.keras, vocabulary.json, metrics.json
                                          (Recall@1/5/10 both ways, instance and semantic)
    mmcourse train vqa --out DIR [--fusion early|late|product|film|attention] [--profile quick|full] [--seed S]
                                          visual question answering on Shapes: DIR/image_encoder.keras,
                                          vqa.keras, vocabulary.json, metrics.json (accuracy overall
                                          and per question type, train_seconds)

Each `train` target is a subparser declared here (parsing stays cheap: TensorFlow is
imported only when a command runs); the work is done by a function in the target's
model module, e.g. :func:`mmcourse.models.embeddings.train_command`. Later chapters add
sibling targets (captioner, vae, retrieval, vqa) with :func:`_add_train_target`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_doctor(args: argparse.Namespace) -> int:
    from mmcourse import doctor

    return doctor.main()


def _cmd_run(args: argparse.Namespace) -> int:
    from mmcourse.config import profile_name
    from mmcourse.runner import find_notebooks, run_notebook

    try:
        profile = profile_name(args.profile)
        notebooks = find_notebooks(args.notebooks)
    except (FileNotFoundError, ValueError) as err:
        print(f"mmcourse run: {err}", file=sys.stderr)
        return 2
    print(f"running {len(notebooks)} notebook{'s' if len(notebooks) != 1 else ''} in the {profile} profile")
    failed = 0
    total = 0.0
    for path in notebooks:
        result = run_notebook(path, profile=profile, timeout=args.timeout, inplace=args.inplace, output_dir=args.output)
        print(result.line(), flush=True)
        failed += not result.ok
        total += result.seconds
    print(f"{len(notebooks) - failed} passed, {failed} failed in {total:.1f} s")
    return 1 if failed else 0


def _cmd_train_embeddings(args: argparse.Namespace) -> int:
    from mmcourse.models.embeddings import train_command

    metrics = train_command(args.corpus, args.out, epochs=args.epochs, dim=args.dim, seed=args.seed)
    print(f"{metrics['words']:,} word vectors in {args.out / 'vectors.txt'} · {metrics['seconds']:.1f} s, {metrics['words_per_second']:,.0f} words/s")
    for key in ("wordsim353_spearman", "simlex999_spearman", "analogy_accuracy"):
        if key in metrics:
            print(f"{key}: {metrics[key]:.3f}")
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _cmd_train_vae(args: argparse.Namespace) -> int:
    from mmcourse.models.generative import train_command

    metrics = train_command(args.out, profile=args.profile, conditional=args.conditional, seed=args.seed)
    kind = "conditional VAE" if args.conditional else "VAE"
    print(f"{kind} in {args.out / 'vae.keras'} · trained in {metrics['train_seconds']:.0f} s")
    print(f"test ELBO {metrics['test_elbo']:,.1f} nats per image = reconstruction {metrics['test_reconstruction']:,.1f} − KL {metrics['test_kl']:.1f}")
    if args.conditional:
        print(f"drawn images true to their caption: {metrics['true_to_caption']:.3f} (judge reads real images exactly: {metrics['judge_read_accuracy']:.3f})")
    else:
        print(f"prior samples with one object: {metrics['samples_one_object']:.3f} · drawn cleanly: {metrics['samples_clean']:.3f} · "
              f"colour-shape kinds: {metrics['samples_kinds']} of 18 (judge reads real images exactly: {metrics['judge_read_accuracy']:.3f})")
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _cmd_train_captioner(args: argparse.Namespace) -> int:
    from mmcourse.models.captioning import train_command

    m = train_command(args.out, profile=args.profile, fusion=args.fusion, seed=args.seed)
    print(f"{m['fusion']} captioner in {args.out} · trained in {m['train_seconds']:.0f} s on {m['train_images']:,} images")
    print(f"on {m['test_images']:,} fresh test images: BLEU-4 {m['bleu4']:.1f} · exact match {m['exact_match']:.3f} · "
          f"hallucination rate {m['hallucination_rate']:.3f}")
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _cmd_train_retrieval(args: argparse.Namespace) -> int:
    from mmcourse.models.retrieval import train_command

    m = train_command(args.out, profile=args.profile, seed=args.seed)
    print(f"dual encoder in {args.out} · trained in {m['train_seconds']:.0f} s on {m['train_images']:,} images")
    print(f"Recall@1/5/10 over {m['test_images']:,} fresh test images ({m['test_images'] * 5:,} captions):")
    for kind, prefix in (("instance", ""), ("semantic", "semantic_")):
        for way in ("t2i", "i2t"):
            values = " / ".join(f"{m[f'{prefix}recall@{k}_{way}']:.3f}" for k in (1, 5, 10))
            print(f"  {kind:8} {'text → image' if way == 't2i' else 'image → text'}: {values}")
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _cmd_train_vqa(args: argparse.Namespace) -> int:
    from mmcourse.models.fusion import KINDS, train_command

    m = train_command(args.out, fusion=args.fusion, profile=args.profile, seed=args.seed)
    print(f"{m['fusion']} fusion VQA model in {args.out} · trained in {m['train_seconds']:.0f} s on "
          f"{m['train_questions']:,} questions about {m['train_images']:,} images")
    print(f"accuracy on {m['test_questions']:,} questions about {m['test_images']:,} fresh test images: {m['accuracy']:.3f} "
          f"(majority answer per type: {m['majority_baseline']['accuracy']:.3f})")
    print("  " + " · ".join(f"{kind} {m[kind]:.3f}" for kind in KINDS))
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _cmd_caption(args: argparse.Namespace) -> int:
    from mmcourse.models.captioning import caption_files

    try:
        results = caption_files(args.model, args.images)
    except FileNotFoundError as error:
        print(f"mmcourse caption: {error}", file=sys.stderr)
        return 2
    for path, caption, reason in results:
        if caption is not None:
            print(f"{path}\t{caption}")
        else:
            print(f"{path}: {reason}", file=sys.stderr)
    return 1 if any(caption is None for _, caption, _ in results) else 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_train_target(train_sub, name: str, help: str, func) -> argparse.ArgumentParser:
    """One `mmcourse train NAME` target; every target writes into --out."""
    target = train_sub.add_parser(name, help=help, description=help)
    target.add_argument("--out", type=Path, required=True, help="folder for the model files and metrics.json (created if needed)")
    target.add_argument("--seed", type=int, default=None, help="random seed (default: the target's own, 0)")
    target.set_defaults(func=func)
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmcourse", description="Multimodal learning course: tools outside the notebooks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    doctor = sub.add_parser("doctor", help="versions, devices, the profile and which datasets are present")
    doctor.set_defaults(func=_cmd_doctor)

    run = sub.add_parser("run", help="execute notebooks headless, one line of result and time each")
    run.add_argument("notebooks", nargs="*", help="notebook files or folders (default: every notebook of the course)")
    run.add_argument("--profile", choices=["quick", "full"], default=None, help="quick or full (default: $MMCOURSE_PROFILE, else full)")
    run.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell (default 3600)")
    run.add_argument("--inplace", action="store_true", help="write the outputs back into each notebook that passes")
    run.add_argument("--output", type=Path, default=None, help="write executed copies into this folder")
    run.set_defaults(func=_cmd_run)

    train = sub.add_parser("train", help="train a reference model with a progress bar; writes its files and metrics.json")
    train_sub = train.add_subparsers(dest="target", metavar="TARGET")
    train_sub.required = True
    embeddings = _add_train_target(
        train_sub, "embeddings", "skip-gram word vectors (word2vec text format) and their evaluation", _cmd_train_embeddings
    )
    embeddings.add_argument("--corpus", choices=["shapes", "lee"], required=True, help="Shapes-world captions or the Lee news corpus")
    embeddings.add_argument("--epochs", type=_positive_int, default=None, help="passes over the corpus (default: 5 for shapes, 50 for lee)")
    embeddings.add_argument("--dim", type=_positive_int, default=None, help="vector length (default: 16 for shapes, 100 for lee)")
    vae = _add_train_target(train_sub, "vae", "a VAE on Shapes images (or, with --conditional, one that draws from captions)", _cmd_train_vae)
    vae.add_argument("--profile", choices=["quick", "full"], default=None, help="training sizes (default: $MMCOURSE_PROFILE, else full)")
    vae.add_argument("--conditional", action="store_true", help="condition on captions and measure how often drawings are true to them")
    captioner = _add_train_target(train_sub, "captioner", "the attention captioner on Shapes images; metrics on a fresh test split", _cmd_train_captioner)
    captioner.add_argument("--profile", choices=["quick", "full"], default=None, help="training sizes (default: $MMCOURSE_PROFILE, else full)")
    captioner.add_argument("--fusion", choices=["inject", "merge", "attention"], default="attention", help="how image and words meet (default attention)")

    retrieval = _add_train_target(train_sub, "retrieval", "a dual encoder putting Shapes images and captions in one space; Recall@K both ways", _cmd_train_retrieval)
    retrieval.add_argument("--profile", choices=["quick", "full"], default=None, help="training sizes (default: $MMCOURSE_PROFILE, else full)")

    vqa = _add_train_target(train_sub, "vqa", "visual question answering on Shapes with one fusion strategy; accuracy per question type", _cmd_train_vqa)
    vqa.add_argument("--fusion", choices=["early", "late", "product", "film", "attention"], default="attention", help="how image and question meet (default attention)")
    vqa.add_argument("--profile", choices=["quick", "full"], default=None, help="training sizes (default: $MMCOURSE_PROFILE, else full)")

    caption = sub.add_parser("caption", help="caption image files with a trained captioner: one line per image, path<TAB>caption")
    caption.add_argument("--model", type=Path, required=True, help="folder written by `mmcourse train captioner` (e.g. data/captioner)")
    caption.add_argument("images", nargs="+", help="PNG or JPEG files of any size (resized to 64×64, alpha dropped)")
    caption.set_defaults(func=_cmd_caption)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
