"""The `mmcourse` command line (also `python -m mmcourse`).

    mmcourse doctor                       versions, devices, profile, datasets present
    mmcourse run [NOTEBOOK ...] [--profile quick|full]
                                          execute notebooks headless, one line each
    mmcourse train TARGET --out DIR [--profile quick|full] [--seed S] [--precision auto|float32|mixed] [--cpu-replicas N]
                                          train a reference model with a progress bar; writes the model
                                          files and DIR/metrics.json (one schema: data/README.md)
        TARGET: embeddings --corpus {shapes,lee} [--epochs N] [--dim D]
                vae [--conditional]
                captioner [--fusion inject|merge|attention] [--decoder gru|transformer]
                retrieval [--text-encoder gru|mean]
                    either of the two on real captioned photographs:
                    --data flickr8k|coco|DIR [--split val2017] [--backbone mobilenet_v3_small|efficientnet_b0|…|shapes]
                    [--weights imagenet|none|PATH] [--limit N] [--epochs N] [--cache DIR]
                vqa [--fusion early|late|product|film|attention]
                judge                     (the scene reader that judges drawings; evaluates, not a course model)
                vlm                       (one small vision-language model that captions and answers questions)
                diffusion                 (text to image: a latent autoencoder and a caption-conditioned denoiser)
    mmcourse caption --model DIR IMAGE ...  caption image files: path<TAB>caption per line
    mmcourse search --model DIR [--k K] "QUERY" IMAGE ...   rank image files by a text query: similarity<TAB>path per line
    mmcourse ask --model DIR IMAGE "QUESTION"   answer a question about an image (prints the answer)
    mmcourse ask --model DIR --caption IMAGE    caption an image with the VLM (prints the caption)
    mmcourse ask --model DIR --batch FILE       FILE: lines IMAGE<TAB>QUESTION (or IMAGE<TAB>caption:);
                                          prints IMAGE<TAB>QUESTION<TAB>ANSWER per line, in the same order
    mmcourse draw --model DIR --out FOLDER [--n N] [--guidance W] [--steps S] [--seed S] CAPTION ... (or --captions FILE)
                                          draw each caption with a diffusion model: FOLDER/NNN-K.png and FOLDER/captions.tsv
    mmcourse student [NOTEBOOK ...] [--out DIR]
                                          write the student edition: solutions removed, a cell to fill in and a check per exercise
    mmcourse slides [NOTEBOOK ...] [--out DIR] [--tag]
                                          write static reveal.js slides that work offline (default: notebooks/NN_*.ipynb into
                                          slides/); --tag instead writes each cell's slide type (RISE's metadata) into the notebooks

Each `train` target is a subparser declared with :func:`_add_train_target` (parsing stays
cheap: TensorFlow is imported only when a command runs); the work is done by the target's
model module's ``train_command(out, *, profile, seed, precision, cpu_replicas, ...)``.
Arguments, the profile and ``--out`` are checked before TensorFlow loads, so a wrong one
fails within a second with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
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


def _cmd_student(args: argparse.Namespace) -> int:
    from mmcourse import exercises, student

    written = student.write_student_editions(args.notebooks, args.out)
    for path in written:
        print(f"{path}  ({student.count_exercises(path)} exercises to check)")
    print(f"{len(written)} student notebooks in {args.out}/ · {len(exercises.all_exercises())} exercises with a check")
    return 0


def _cmd_slides(args: argparse.Namespace) -> int:
    from mmcourse import slides
    from mmcourse.runner import find_notebooks

    if args.tag:
        for path in find_notebooks(args.notebooks):
            counts, changed = slides.tag_notebook(path)
            print(f"{path}  {counts['slide']} slides, {counts['subslide']} sub-slides, {counts['skip']} cells skipped"
                  f"{'' if changed else ' (unchanged)'}")
        return 0
    written = slides.write_slides(args.notebooks, args.out)
    for path, count in written:
        print(f"{path}  ({count} slides)")
    print(f"{len(written)} slide deck{'s' if len(written) != 1 else ''} in {args.out}/ · open one in a browser; they need no network")
    return 0


def _train(args: argparse.Namespace, module: str, **options) -> dict:
    """Run ``mmcourse.models.<module>.train_command`` with the options every target shares."""
    import importlib

    package = "metrics" if module == "judge" else "models"
    command = importlib.import_module(f"mmcourse.{package}.{module}").train_command
    return command(args.out, profile=args.profile, seed=args.seed, precision=args.precision, cpu_replicas=args.cpu_replicas, **options)


def _where(m: dict) -> str:
    return f"{m['precision']}, {m['replicas']} replica{'s' if m['replicas'] > 1 else ''}, {m['device']}"


def _cmd_train_embeddings(args: argparse.Namespace) -> int:
    metrics = _train(args, "embeddings", corpus=args.corpus, epochs=args.epochs, dim=args.dim)
    print(f"{metrics['words']:,} word vectors in {args.out / 'vectors.txt'} · {metrics['train_seconds']:.1f} s, "
          f"{metrics['words_per_second']:,.0f} words/s ({_where(metrics)})")
    for key in ("wordsim353_spearman", "simlex999_spearman", "analogy_accuracy"):
        if key in metrics:
            print(f"{key}: {metrics[key]:.3f}")
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _cmd_train_vae(args: argparse.Namespace) -> int:
    metrics = _train(args, "generative", conditional=args.conditional)
    kind = "conditional VAE" if args.conditional else "VAE"
    print(f"{kind} in {args.out} · trained in {metrics['train_seconds']:.0f} s ({_where(metrics)})")
    print(f"test ELBO {metrics['test_elbo']:,.1f} nats per image = reconstruction {metrics['test_reconstruction']:,.1f} − KL {metrics['test_kl']:.1f}")
    if args.conditional:
        print(f"drawn images true to their caption: {metrics['true_to_caption']:.3f} (judge reads real images exactly: {metrics['judge_read_accuracy']:.3f})")
    else:
        print(f"prior samples with one object: {metrics['samples_one_object']:.3f} · drawn cleanly: {metrics['samples_clean']:.3f} · "
              f"colour-shape kinds: {metrics['samples_kinds']} of 18 (judge reads real images exactly: {metrics['judge_read_accuracy']:.3f})")
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _cmd_train_gan(args: argparse.Namespace) -> int:
    metrics = _train(args, "gan")
    print(f"GAN in {args.out} · {metrics['steps']:,} steps in {metrics['train_seconds']:.0f} s ({_where(metrics)})")
    print(f"samples with one object: {metrics['samples_one_object']:.3f} · drawn cleanly: {metrics['samples_clean']:.3f} · "
          f"colour-shape kinds: {metrics['samples_kinds']} of 18 (real test images: {metrics['real_one_object']:.3f}, "
          f"{metrics['real_clean']:.3f}, {metrics['real_kinds']})")
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _train_on_photos(args: argparse.Namespace, what: str, **options) -> dict:
    """``mmcourse train captioner|retrieval --data …``: :mod:`mmcourse.models.photo_training`."""
    from mmcourse.models import photo_training

    command = photo_training.train_captioner_command if what == "captioner" else photo_training.train_retrieval_command
    return command(args.out, data=args.data, split=args.split, backbone=args.backbone or "mobilenet_v3_small", weights=args.weights,
                   profile=args.profile, seed=args.seed, precision=args.precision, cpu_replicas=args.cpu_replicas, cache_dir=args.cache,
                   limit=args.limit, epochs=args.epochs, **options)


def _print_photo_data(m: dict) -> None:
    skipped = len(m["skipped_files"])
    print(f"{m['dataset']} from {m['data']}: {m['images']:,} images ({m['missing_files']} listed but missing, {skipped} unreadable: "
          f"{', '.join(s['path'] for s in m['skipped_files'][:3])}{' …' if skipped > 3 else ''}) · "
          f"{m['train_images']:,} train, {m['test_images']:,} test" if skipped else
          f"{m['dataset']} from {m['data']}: {m['images']:,} images ({m['missing_files']} listed but missing) · "
          f"{m['train_images']:,} train, {m['test_images']:,} test")
    speed = f"{m['feature_images_per_second']:.1f} images/s" if m["feature_images_per_second"] else "read from the cache"
    print(f"{m['backbone']} features ({m['weights']}, {m['image_size']}×{m['image_size']}): {speed}")


def _cmd_train_captioner(args: argparse.Namespace) -> int:
    if args.data is not None:
        m = _train_on_photos(args, "captioner", decoder=args.decoder)
        _print_photo_data(m)
        print(f"{m['decoder']} captioner in {args.out} · trained in {m['train_seconds']:.0f} s ({_where(m)}); on {m['test_images']:,} test images: "
              f"BLEU-4 {m['bleu4']:.1f} · CIDEr-D {m['cider_d']:.3f} · ROUGE-L {m['rouge_l']:.3f}")
        for example in m["examples"][:3]:
            print(f"  {Path(example['image']).name}: {example['caption']}")
        print(f"metrics in {args.out / 'metrics.json'}")
        return 0
    m = _train(args, "captioning", fusion=args.fusion, decoder=args.decoder)
    kind = "transformer" if m["decoder"] == "transformer" else m["fusion"]
    print(f"{kind} captioner in {args.out} · trained in {m['train_seconds']:.0f} s on {m['train_images']:,} images ({_where(m)})")
    print(f"on {m['test_images']:,} fresh test images: BLEU-4 {m['bleu4']:.1f} · exact match {m['exact_match']:.3f} · "
          f"hallucination rate {m['hallucination_rate']:.3f}")
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _cmd_train_retrieval(args: argparse.Namespace) -> int:
    if args.data is not None:
        m = _train_on_photos(args, "retrieval", text_encoder=args.text_encoder)
        _print_photo_data(m)
        print(f"dual encoder in {args.out} · trained in {m['train_seconds']:.0f} s ({_where(m)}); Recall@K over {m['test_images']:,} "
              f"test images and their {m['test_captions']:,} captions:")
        ks = [k for k in (1, 5, 10) if f"recall@{k}_t2i" in m]
        for way in ("t2i", "i2t"):
            print(f"  {'text → image' if way == 't2i' else 'image → text'}: " + " · ".join(f"R@{k} {m[f'recall@{k}_{way}']:.3f}" for k in ks)
                  + "   (a random ranking: " + " · ".join(f"{m[f'chance@{k}_{way}']:.3f}" for k in ks) + ")")
        print(f"metrics in {args.out / 'metrics.json'}")
        return 0
    m = _train(args, "retrieval", text_encoder=args.text_encoder)
    print(f"dual encoder in {args.out} · trained in {m['train_seconds']:.0f} s on {m['train_images']:,} images ({_where(m)})")
    print(f"Recall@1/5/10 over {m['test_images']:,} fresh test images ({m['test_images'] * 5:,} captions):")
    for kind, prefix in (("instance", ""), ("semantic", "semantic_")):
        for way in ("t2i", "i2t"):
            values = " / ".join(f"{m[f'{prefix}recall@{k}_{way}']:.3f}" for k in (1, 5, 10))
            print(f"  {kind:8} {'text → image' if way == 't2i' else 'image → text'}: {values}")
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _cmd_train_vqa(args: argparse.Namespace) -> int:
    m = _train(args, VQA_MODULE, fusion=args.fusion)
    print(f"{m['fusion']} fusion VQA model in {args.out} · trained in {m['train_seconds']:.0f} s on "
          f"{m['train_questions']:,} questions about {m['train_images']:,} images ({_where(m)})")
    print(f"accuracy on {m['test_questions']:,} questions about {m['test_images']:,} fresh test images: {m['accuracy']:.3f} "
          f"(majority answer per type: {m['majority_baseline']['accuracy']:.3f})")
    import importlib

    kinds = importlib.import_module(f"mmcourse.models.{VQA_MODULE}").KINDS
    print("  " + " · ".join(f"{kind} {m[kind]:.3f}" for kind in kinds))
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _cmd_train_judge(args: argparse.Namespace) -> int:
    m = _train(args, "judge")
    print(f"scene judge in {args.out} · trained in {m['train_seconds']:.0f} s on {m['train_images']:,} images ({_where(m)})")
    print(f"reads {m['read_accuracy']:.3f} of {m['test_images']:,} fresh real scenes exactly; "
          f"single objects with a clean outline: {m['outline_at_least_0.8']:.3f}")
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from mmcourse.models.retrieval import search_files

    ranked, unreadable = search_files(args.model, args.query, args.images, k=args.k)
    for path, reason in unreadable:
        print(f"{path}: {reason}", file=sys.stderr)
    for path, similarity in ranked:
        print(f"{similarity:.3f}\t{path}")
    return 1 if unreadable else 0


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


def _cmd_train_vlm(args: argparse.Namespace) -> int:
    m = _train(args, "vlm")
    print(f"vision-language model in {args.out} · trained in {m['train_seconds']:.0f} s on {m['train_images']:,} images ({_where(m)})")
    print(f"on {m['test_images']:,} fresh test images: {m['test_questions']:,} questions answered {m['accuracy']:.3f} "
          f"(where-relations {m['relation_where']:.3f}) · captions: exact match {m['exact_match']:.3f}, BLEU-4 {m['bleu4']:.1f}")
    print("  " + " · ".join(f"{kind} {m[kind]:.3f}" for kind in ("colour", "shape", "size", "count", "existence", "relation_yes_no")))
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _cmd_train_diffusion(args: argparse.Namespace) -> int:
    m = _train(args, "latent_diffusion", start_from=args.start_from)
    print(f"latent diffusion model in {args.out} · trained in {m['train_seconds']:.0f} s (autoencoder {m['autoencoder_seconds']:.0f} s, "
          f"caption-only denoiser {m['denoiser_seconds']:.0f} s, grounded {m['grounded_seconds']:.0f} s) on {m['train_images']:,} images ({_where(m)})")
    print(f"autoencoder: the captioner reads {m['reconstructions_read_back']:.3f} of its reconstructions right "
          f"({m['originals_read_back']:.3f} of the originals)")
    print(f"{m['prompts']:,} fresh prompts drawn with guidance {m['guidance']:g} in {m['steps']} DDIM steps "
          f"({m['seconds_per_image'] * 1000:.0f} ms an image); true to their prompt:")
    for label, scores in (("grounded (layouts from the bank)", m), ("grounded, the test scenes' own layouts", m["oracle_layout"]),
                          ("caption only", m["caption_only"])):
        print(f" {label}:")
        for reader, name in (("judge", "by the judge"), ("read_back", "read back")):
            print(f"  {name:13} {scores[f'{reader}_true']:.3f} · one object {scores[f'{reader}_one_object']:.3f} · "
                  f"two objects {scores[f'{reader}_two_objects']:.3f} · held-out pairs {_maybe(scores[f'{reader}_held_out'])}")
    print(f"metrics in {args.out / 'metrics.json'}")
    return 0


def _maybe(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cmd_draw(args: argparse.Namespace) -> int:
    from mmcourse.models.latent_diffusion import draw_files

    captions = list(args.captions)
    if args.captions_file is not None:
        try:
            captions += [line.strip() for line in Path(args.captions_file).read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            raise ValueError(f"no captions file at {args.captions_file}") from None
    if not captions:
        raise ValueError("give captions to draw, or --captions FILE (one caption a line)")
    if args.guidance < 0:
        raise ValueError(f"--guidance must be at least 0, got {args.guidance:g}")
    try:
        written, errors = draw_files(args.model, captions, args.out, n=args.n, guidance=args.guidance, steps=args.steps, seed=args.seed)
    except FileNotFoundError as error:
        print(f"mmcourse draw: {error}", file=sys.stderr)
        return 2
    for line in errors:
        print(line, file=sys.stderr)
    print(f"{len(written)} drawing{'s' if len(written) != 1 else ''} of {len(captions) - len(errors)} caption"
          f"{'s' if len(captions) - len(errors) != 1 else ''} in {args.out}/ (list: {args.out / 'captions.tsv'})")
    return 1 if errors else 0


def _ask_items(args: argparse.Namespace) -> tuple[list, list[str]]:
    """``(items, errors)``: the (image, question) pairs the ask command was given (``None``: a
    caption), and a line for each batch-file line that is not ``IMAGE<TAB>QUESTION``."""
    if args.batch is None:
        if args.caption:
            if args.image is None or args.question is not None:
                raise ValueError("--caption takes one IMAGE and no question")
            return [(args.image, None)], []
        if args.image is None or args.question is None:
            raise ValueError('give IMAGE "QUESTION", --caption IMAGE, or --batch FILE')
        return [(args.image, args.question)], []
    if args.image is not None or args.caption:
        raise ValueError("--batch FILE takes no IMAGE, QUESTION or --caption: the file lists them")
    try:
        text = Path(args.batch).read_text()
    except FileNotFoundError:
        raise ValueError(f"no batch file at {args.batch}") from None
    items, errors = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        image, tab, question = line.partition("\t")
        if not tab or not image.strip() or not question.strip():
            errors.append(f"{args.batch}:{number}: expected IMAGE<TAB>QUESTION (or IMAGE<TAB>caption:), got {line!r}")
            continue
        items.append((image.strip(), question.strip()))
    if not items and not errors:
        raise ValueError(f"{args.batch} has no IMAGE<TAB>QUESTION lines")
    return items, errors


def _cmd_ask(args: argparse.Namespace) -> int:
    from mmcourse.models.vlm import ask_files

    items, errors = _ask_items(args)
    for line in errors:
        print(line, file=sys.stderr)
    if not items:
        return 1
    try:
        results = ask_files(args.model, items)
    except FileNotFoundError as error:
        print(f"mmcourse ask: {error}", file=sys.stderr)
        return 2
    for path, question, answer, reason in results:
        if answer is None:
            print(f"{path}: {reason}", file=sys.stderr)
        elif args.batch is None:
            print(answer)
        else:
            print(f"{path}\t{question}\t{answer}")
    return 1 if errors or any(answer is None for _, _, answer, _ in results) else 0


def _whole_number(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {'positive' if minimum == 1 else f'at least {minimum}'}, got {text}")
        return value

    parse.__name__ = "whole number"
    return parse


_positive_int, _seed = _whole_number(1), _whole_number(0)

VQA_MODULE = "vqa"


class _OneLineErrors(argparse.ArgumentParser):
    """A train target's parser: a wrong argument is one line on stderr (``--help`` shows the usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _add_train_target(train_sub, name: str, help: str, func) -> argparse.ArgumentParser:
    """One `mmcourse train NAME` target; every target takes the same options and writes into --out."""
    target = train_sub.add_parser(name, help=help, description=help)
    target.add_argument("--out", type=Path, required=True, help="folder for the model files and metrics.json (created if needed)")
    target.add_argument("--profile", choices=["quick", "full"], default=None, help="training sizes (default: $MMCOURSE_PROFILE, else full)")
    target.add_argument("--seed", type=_seed, default=0, help="random seed, a whole number >= 0 (default 0)")
    target.add_argument("--precision", choices=["auto", "float32", "mixed"], default="auto",
                        help="auto: mixed float16 on a GPU, float32 on a CPU (default auto)")
    target.add_argument("--cpu-replicas", type=_positive_int, default=None, metavar="N",
                        help="CPU only: split the CPU into N logical devices and train on all of them with MirroredStrategy "
                             "(tests the several-device path without a GPU; slower, not faster)")
    target.set_defaults(func=func, check=_check_train)
    return target


def _check_train(args: argparse.Namespace) -> None:
    """Everything that can be checked before TensorFlow loads: the profile and --out."""
    from mmcourse import artifacts
    from mmcourse.config import profile_name

    args.profile = profile_name(args.profile)
    if hasattr(args, "data"):
        photo_only = [f"--{name}" for name in ("backbone", "limit", "epochs", "cache") if getattr(args, name) is not None]
        photo_only += ["--weights"] if args.weights != "none" else []
        if args.data is None and photo_only:
            raise ValueError(f"{', '.join(photo_only)} go with --data (training on photographs); the Shapes model has its own encoder")
        if args.data is not None:
            from mmcourse.data.photos import load_dataset

            load_dataset(args.data, split=args.split, limit=1)  # a missing or malformed dataset is named now, before TensorFlow loads
    artifacts.prepare_out(args.out)


def _add_photo_options(target: argparse.ArgumentParser) -> None:
    """``--data`` and what goes with it: train on real captioned photographs instead of Shapes."""
    photos = target.add_argument_group("real photographs", "train on a captioned photo dataset instead of the Shapes world")
    photos.add_argument("--data", default=None, metavar="flickr8k|coco|DIR",
                        help="flickr8k or coco (in the data directory, see `mmcourse doctor`) or a folder in Flickr8k or COCO format")
    photos.add_argument("--split", default="val2017", help="COCO's annotation split (default val2017); Flickr8k uses its own split files if present")
    photos.add_argument("--backbone", default=None,
                        help="mobilenet_v3_small (default), mobilenet_v3_large, efficientnet_b0, mobilenet_v2, or shapes (the course's CNN)")
    photos.add_argument("--weights", default="none",
                        help="imagenet (Keras downloads them once), none (random, with BatchNorm statistics from 64 training photographs; default) or a weights file of the backbone")
    photos.add_argument("--limit", type=_positive_int, default=None, help="use the first N images (default: 500 quick, all full)")
    photos.add_argument("--epochs", type=_positive_int, default=None, help="passes over the training images (default: 3 quick, 15 full; more when that makes under 10 or 400 steps)")
    photos.add_argument("--cache", type=Path, default=None, help="folder of cached backbone features (default: DATA_DIR/cache/features)")


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
    train_sub = train.add_subparsers(dest="target", metavar="TARGET", parser_class=_OneLineErrors)
    train_sub.required = True
    embeddings = _add_train_target(
        train_sub, "embeddings", "skip-gram word vectors (word2vec text format) and their evaluation", _cmd_train_embeddings
    )
    embeddings.add_argument("--corpus", choices=["shapes", "lee"], required=True, help="Shapes-world captions or the Lee news corpus")
    embeddings.add_argument("--epochs", type=_positive_int, default=None, help="passes over the corpus (default: 5 for shapes, 50 for lee)")
    embeddings.add_argument("--dim", type=_positive_int, default=None, help="vector length (default: 16 for shapes, 100 for lee)")
    vae = _add_train_target(train_sub, "vae", "a VAE on Shapes images (or, with --conditional, one that draws from captions)", _cmd_train_vae)
    vae.add_argument("--conditional", action="store_true", help="condition on captions and measure how often drawings are true to them")
    _add_train_target(train_sub, "gan", "a GAN (spectral norm, hinge loss) drawing single-object Shapes images, judged", _cmd_train_gan)
    captioner = _add_train_target(train_sub, "captioner", "the attention captioner on Shapes images; metrics on a fresh test split", _cmd_train_captioner)
    captioner.add_argument("--fusion", choices=["inject", "merge", "attention"], default="attention", help="how image and words meet (default attention)")
    captioner.add_argument("--decoder", choices=["gru", "transformer"], default="gru",
                           help="gru: the GRU decoder (with --fusion); transformer: self- and cross-attention blocks (default gru)")

    retrieval = _add_train_target(train_sub, "retrieval", "a dual encoder putting Shapes images and captions in one space; Recall@K both ways",
                                  _cmd_train_retrieval)
    retrieval.add_argument("--text-encoder", choices=["gru", "mean"], default="gru", help="how the text tower reads a caption (default gru)")
    for target in (captioner, retrieval):
        _add_photo_options(target)

    vqa = _add_train_target(train_sub, "vqa", "visual question answering on Shapes with one fusion strategy; accuracy per question type", _cmd_train_vqa)
    vqa.add_argument("--fusion", choices=["early", "late", "product", "film", "attention"], default="attention", help="how image and question meet (default attention)")

    _add_train_target(train_sub, "judge", "the scene judge that reads drawings back (it evaluates the generative models)", _cmd_train_judge)

    _add_train_target(train_sub, "vlm", "one small vision-language model that captions Shapes images and answers questions about them",
                      _cmd_train_vlm)

    diffusion = _add_train_target(train_sub, "diffusion", "text to image: a sharp latent autoencoder, then a caption-conditioned denoiser on "
                                  "its latents, then a copy fine-tuned to draw from layouts too; drawings judged and read back", _cmd_train_diffusion)
    diffusion.add_argument("--start-from", type=Path, default=None, metavar="DIR",
                           help="keep the autoencoder and caption-only denoiser of a folder this command wrote (e.g. data/diffusion) "
                                "and run only the fine-tuning")

    caption = sub.add_parser("caption", help="caption image files with a trained captioner: one line per image, path<TAB>caption")
    caption.add_argument("--model", type=Path, required=True, help="folder written by `mmcourse train captioner` (e.g. data/captioner)")
    caption.add_argument("images", nargs="+", help="PNG or JPEG files of any size (resized to the model's input size, alpha dropped)")
    caption.set_defaults(func=_cmd_caption)

    search = sub.add_parser("search", help="rank image files by how well they match a text query, with a trained dual encoder",
                            description="rank image files by a text query: prints SIMILARITY<TAB>PATH for the K best, best first. "
                                        "An unreadable file is one line on stderr and the exit status is 1.")
    search.add_argument("--model", type=Path, default=None,
                        help="folder written by `mmcourse train retrieval --out DIR` (default: the shipped data/retrieval)")
    search.add_argument("--k", type=_positive_int, default=5, help="how many to print (default 5)")
    search.add_argument("query", help='e.g. "a cat looking to the side" (quote it)')
    search.add_argument("images", nargs="+", help="PNG or JPEG files of any size (resized to the model's input size)")
    search.set_defaults(func=_cmd_search)

    ask = sub.add_parser("ask", help="answer a question about an image (or caption it) with a trained vision-language model",
                         description='answer a question about an image: ask --model DIR IMAGE "QUESTION" prints the answer; '
                                     "--caption IMAGE prints a caption; --batch FILE reads lines IMAGE<TAB>QUESTION (a line "
                                     "IMAGE<TAB>caption: asks for a caption; image paths relative to the current folder) and "
                                     "prints IMAGE<TAB>QUESTION<TAB>ANSWER for each, in order, loading the model once. A line "
                                     "that cannot be answered (missing or damaged image, a word the model does not know) is "
                                     "one line on stderr, and the exit status is 1.")
    ask.add_argument("--model", type=Path, default=None,
                     help="folder written by `mmcourse train vlm --out DIR` (default: the shipped data/vlm, once there is one)")
    ask.add_argument("--caption", action="store_true", help="caption IMAGE instead of answering a question")
    ask.add_argument("--batch", type=Path, default=None, metavar="FILE", help="answer every IMAGE<TAB>QUESTION line of FILE")
    ask.add_argument("image", nargs="?", default=None, help="a PNG or JPEG file of any size (resized to 64×64, alpha dropped)")
    ask.add_argument("question", nargs="?", default=None, help='e.g. "what colour is the circle" (quote it)')
    ask.set_defaults(func=_cmd_ask)

    draw = sub.add_parser("draw", help="draw captions with a trained diffusion model: PNG files and captions.tsv",
                          description="draw each caption with a model written by `mmcourse train diffusion`: FOLDER/NNN-K.png is "
                                      "sample K of caption NNN (in the order given) and FOLDER/captions.tsv lists file and caption. "
                                      "A caption outside the Shapes grammar is one line on stderr naming the word; the others are "
                                      "still drawn and the exit status is 1.")
    draw.add_argument("--model", type=Path, default=None,
                      help="folder written by `mmcourse train diffusion --out DIR` (default: the shipped data/diffusion, checksum-verified)")
    draw.add_argument("--out", type=Path, required=True, help="folder for the PNG files (created if needed)")
    draw.add_argument("--n", type=_positive_int, default=1, help="drawings per caption (default 1)")
    draw.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale w (1: none; default 3)")
    draw.add_argument("--steps", type=_positive_int, default=25, help="DDIM steps (default 25)")
    draw.add_argument("--seed", type=_seed, default=0, help="random seed, a whole number >= 0 (default 0)")
    draw.add_argument("--captions", dest="captions_file", type=Path, default=None, metavar="FILE", help="also draw every line of FILE")
    draw.add_argument("captions", nargs="*", help='e.g. "a small red circle above a large blue square" (quote each)')
    draw.set_defaults(func=_cmd_draw)

    student = sub.add_parser("student", help="write the student edition of the notebooks: solutions removed, checks kept")
    student.add_argument("notebooks", nargs="*", help="notebook files or folders (default: every notebook of the course)")
    student.add_argument("--out", type=Path, default=Path("student"), help="folder to write into (default: student)")
    student.set_defaults(func=_cmd_student)

    slides = sub.add_parser("slides", help="write static reveal.js slides of the notebooks that work offline, or (--tag) their slide metadata")
    slides.add_argument("notebooks", nargs="*", help="notebook files or folders (default: the course's notebooks/NN_*.ipynb)")
    slides.add_argument("--out", type=Path, default=Path("slides"), help="folder to write into (default: slides)")
    slides.add_argument("--tag", action="store_true",
                        help="write each cell's slide type (what RISE shows) into the notebooks in place, instead of slides")
    slides.set_defaults(func=_cmd_slides)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = f"mmcourse {args.command}" + (f" {args.target}" if getattr(args, "target", None) else "")
    try:
        if getattr(args, "check", None):
            args.check(args)
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as error:
        # a wrong argument or environment: one line, no traceback (MMCOURSE_TRACEBACK=1 shows it)
        if os.environ.get("MMCOURSE_TRACEBACK"):
            raise
        print(f"{name}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
