"""Text to image by latent diffusion: ``mmcourse train diffusion`` and ``mmcourse draw``.

The pieces live one per module:

- :mod:`mmcourse.models.latent_autoencoder` — the sharp autoencoder, 64×64×3 ↔ 16×16×4;
- :mod:`mmcourse.models.denoiser` — the caption-conditioned U-Net ``ε̂(x_t, t, caption)``;
- :mod:`mmcourse.models.diffusion` — the schedule, training the denoiser, DDPM/DDIM, guidance;
- :mod:`mmcourse.models.layout` — where each named object goes (grounded text to image).

This module puts them together (:class:`LatentDiffusion`: captions in, images out), trains
them from the command line (:func:`train_command`: the autoencoder first, then the
caption-only denoiser on its latents, then a copy of it fine-tuned to draw from layouts too,
each with a curve of how many drawings are true against training time), saves and loads them,
and measures what they draw (:func:`measure`) twice: by the course's scene judge, and by
reading each drawing back with the shipped captioner (a model that never saw a drawing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcourse import artifacts, device
from mmcourse.checks import check_positive_int
from mmcourse._tf import tensorflow
from mmcourse.data import pipeline, shapes
from mmcourse.data.text import Vocabulary
from mmcourse.imageops import to_unit
from mmcourse.models import diffusion
from mmcourse.models.denoiser import layout_channels
from mmcourse.models.latent_autoencoder import LatentAutoencoder, build_latent_autoencoder
from mmcourse.models.layout import CHANNELS, LayoutBank, scene_maps
from mmcourse.training import start_command

tensorflow()
import keras  # noqa: E402

__all__ = ["HOLDOUT", "TRAIN_SIZES", "LatentDiffusion", "train_autoencoder", "caption_table", "prompt_kinds", "measure", "TruthCurve",
           "train_command", "load", "draw_files"]

#: Colour–shape pairs the shipped model never sees in training (as notebook 09's captioners):
#: prompts that name them test compositional generation.
HOLDOUT = (("red", "circle"), ("blue", "triangle"))

#: Sizes per profile. The autoencoder trains first on ``ae_images`` × ``ae_epochs``; the denoiser
#: then on the latents of ``images`` captioned images × ``epochs``; every ``curve_every`` epochs
#: ``curve_prompts`` fresh prompts are drawn and judged (the curve of truth against time).
TRAIN_SIZES = {
    "quick": dict(ae_images=256, ae_epochs=1, ae_width=8, images=256, epochs=2, width=16, layout_epochs=1, curve_every=1, curve_prompts=16,
                  test_prompts=32),
    "full": dict(ae_images=4000, ae_epochs=6, ae_width=16, images=20_000, epochs=42, width=32, layout_epochs=10, curve_every=2, curve_prompts=200,
                 test_prompts=1000),
}
#: The grounded denoiser is fine-tuned from the caption-only one at this learning rate (a fifth of
#: training from scratch: its weights already draw, and only the new layout paths start at zero).
LAYOUT_LEARNING_RATE = 2e-4
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
SCHEDULE_STEPS = 1000
GUIDANCE, STEPS = 3.0, 25  # what metrics.json and `mmcourse draw` use unless told otherwise
#: Samplers clip their guess of the clean latent to ±CLIP (the scaled latents of training images
#: lie within ±5.4 for 99.9 % of their numbers): without it the first step from pure noise,
#: dividing by √ᾱ ≈ 5·10⁻⁵, throws the drawing off the latent space for good.
CLIP = 5.0
MIN_SNR = 5.0  # the denoiser's loss weighting (diffusion.noised_batches)
AUTOENCODER_FILE, DENOISER_FILE, VOCABULARY_FILE = "autoencoder.keras", "denoiser.keras", "vocabulary.json"
GROUNDED_FILE, LAYOUTS_FILE = "grounded_denoiser.keras", "layouts.npz"


@dataclass
class LatentDiffusion:
    """A latent autoencoder and a denoiser on its latents: :meth:`draw` turns captions into images.

    A *grounded* model's denoiser also draws from what-is-where maps, and ``layouts`` (a
    :class:`~mmcourse.models.layout.LayoutBank`) chooses them from each caption."""

    autoencoder: LatentAutoencoder
    denoiser: keras.Model
    vocabulary: Vocabulary
    sched: diffusion.Schedule
    layouts: LayoutBank | None = None

    @property
    def grounded(self) -> bool:
        """Whether the denoiser draws from layouts as well as captions."""
        return layout_channels(self.denoiser) > 0

    def caption_ids(self, captions) -> np.ndarray:
        """``(n, L)`` word ids; a caption outside the Shapes grammar raises a ``ValueError`` naming the word."""
        return shapes.encode_captions(list(captions), self.vocabulary)

    def draw(self, captions, *, guidance: float = GUIDANCE, steps: int = STEPS, sampler: str = "ddim", clip: float | None = CLIP, seed: int = 0,
             batch_size: int = 250, callback=None, maps=None) -> np.ndarray:
        """One 64×64 drawing per caption, uint8 ``(n, 64, 64, 3)``: DDIM in ``steps`` (or DDPM),
        classifier-free guided with scale ``guidance``, the clean latent's guess clipped to ``±clip``
        at every step (:data:`CLIP`), from noise drawn from ``seed`` (per batch of
        ``batch_size`` captions). ``callback(t, x_t, x0_hat)`` sees each step of the first batch, as latents.

        A grounded model draws each caption's layout from its bank (seeded like the noise), or
        takes what-is-where ``maps`` given one per caption (say, of real scenes: :func:`scene_maps`)."""
        ids = self.caption_ids(captions)
        captions = list(captions)
        if self.grounded and maps is None and self.layouts is None:
            raise ValueError("a grounded model needs a layout bank or maps to draw from")
        out = []
        for k, lo in enumerate(range(0, len(ids), batch_size)):
            batch_maps = None
            if self.grounded:
                batch_maps = maps[lo : lo + batch_size] if maps is not None else self.layouts.maps(captions[lo : lo + batch_size],
                                                                                                    side=self.denoiser.input["layout"].shape[1],
                                                                                                    seed=seed * 1000 + k)
            latents = diffusion.draw_latents(self.denoiser, ids[lo : lo + batch_size], sched=self.sched, guidance=guidance, steps=steps,
                                             sampler=sampler, clip=clip, seed=seed * 1000 + k, callback=callback if k == 0 else None,
                                             layouts=batch_maps)
            out.append(self.decode(latents))
        return np.concatenate(out) if out else np.zeros((0, 64, 64, 3), np.uint8)

    def decode(self, latents) -> np.ndarray:
        """Latents (scaled, as the denoiser draws them) → uint8 images."""
        pixels = np.asarray(self.autoencoder.decode(latents))
        return np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)

    def save(self, out) -> Path:
        """Write the model's files into ``out``: a grounded denoiser (and its layout bank) beside
        the caption-only one, which ``out`` must already hold."""
        out = Path(out)
        artifacts.save_model(self.autoencoder, out / AUTOENCODER_FILE)
        if self.grounded:
            if not (out / DENOISER_FILE).is_file():
                raise FileNotFoundError(f"save the caption-only model in {out} first: a grounded model is saved beside it")
            artifacts.save_model(self.denoiser, out / GROUNDED_FILE)
            self.layouts.save(out / LAYOUTS_FILE)
        else:
            artifacts.save_model(self.denoiser, out / DENOISER_FILE)
        self.vocabulary.save(out / VOCABULARY_FILE)
        return out


def load(folder=None, *, grounded: bool | None = None) -> LatentDiffusion:
    """The model :func:`train_command` wrote in ``folder`` (``None``: the shipped ``data/diffusion``,
    checksum-verified), loaded with ``safe_mode=True``: the grounded one (a denoiser that draws
    from layouts, and the layout bank) when the folder holds it and ``grounded`` is not False,
    else the caption-only one. ``grounded=True`` insists on the grounded model."""
    import mmcourse.models.denoiser  # noqa: F401  (registers the layers the saved denoiser names)

    folder = artifacts.shipped("diffusion") if folder is None else Path(folder)
    if grounded is None:
        grounded = (folder / GROUNDED_FILE).is_file()
    needed = (AUTOENCODER_FILE, GROUNDED_FILE, LAYOUTS_FILE, VOCABULARY_FILE) if grounded else (AUTOENCODER_FILE, DENOISER_FILE, VOCABULARY_FILE)
    for name in needed:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"no {name} in {folder}: pass the folder `mmcourse train diffusion --out DIR` wrote")
    own = {"mmcourse>FiLM": mmcourse.models.denoiser.FiLM}  # not vqa's FiLM, which registers the same name
    return LatentDiffusion(artifacts.load_model(folder / AUTOENCODER_FILE),
                           artifacts.load_model(folder / (GROUNDED_FILE if grounded else DENOISER_FILE), custom_objects=own),
                           Vocabulary.load(folder / VOCABULARY_FILE), diffusion.schedule(SCHEDULE_STEPS),
                           LayoutBank.load(folder / LAYOUTS_FILE) if grounded else None)


def train_autoencoder(images, *, epochs: int, width: int, seed: int = 0, batch_size: int = BATCH_SIZE, progress: bool = True):
    """Train a :class:`LatentAutoencoder` on ``images`` (uint8 or [0, 1]) and fit its scale to them.
    Returns ``(model, seconds)`` (fitting and scale)."""
    x = to_unit(images)
    model = build_latent_autoencoder(width=width, seed=seed)
    callbacks = []
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc="train autoencoder"))
    start = time.perf_counter()
    model.fit(pipeline.table_batches(x, batch_size=batch_size, epochs=epochs, seed=seed), epochs=epochs, steps_per_epoch=-(-len(x) // batch_size),
              shuffle=False, verbose=0, callbacks=callbacks)
    model.fit_scale(x)
    return model, time.perf_counter() - start


def caption_table(dataset: shapes.ShapesDataset, vocabulary: Vocabulary | None = None) -> np.ndarray:
    """Every reference caption of every image as word ids, ``(n, references, L)``."""
    refs = len(dataset.captions[0])
    return np.stack([shapes.encode_captions([c[k] for c in dataset.captions], vocabulary) for k in range(refs)], axis=1)


def prompt_kinds(prompts) -> dict[str, np.ndarray]:
    """Boolean masks over prompts: ``one_object``, ``two_objects``, each relation
    (``left_of``, ``above``: "right of" and "below" count as their mirror), and ``held_out`` (a
    prompt naming a :data:`HOLDOUT` colour–shape pair)."""
    parses = [shapes.parse_caption(p) for p in prompts]
    kinds = {"one_object": np.array([p.relation is None for p in parses]), "two_objects": np.array([p.relation is not None for p in parses])}
    for relation in ("left of", "above"):
        kinds[relation.replace(" ", "_")] = np.array([p.description().relation == relation for p in parses])
    kinds["held_out"] = np.array([any((o.colour, o.shape) in HOLDOUT for o in p.objects) for p in parses])
    return kinds


def measure(model: LatentDiffusion, prompts, *, judge=None, captioner=None, guidance: float = GUIDANCE, steps: int = STEPS, seed: int = 0,
            maps=None) -> dict:
    """Draw one image per prompt and say how many are true to it, overall and per kind of prompt
    (:func:`prompt_kinds`), read two ways:

    - ``judge_*``: the scene judge (shipped, :class:`mmcourse.metrics.judge.SceneJudge`) reads
      the drawing's scene, which must be what the prompt says — the same objects and relation,
      none missing and none extra;
    - ``read_back_*``: the shipped GRU captioner captions the drawing and the caption must
      describe the same scene (:func:`mmcourse.metrics.captioning.same_description`).

    Also ``seconds_per_image`` (drawing only) and the guidance and steps used. A grounded
    model draws from its bank's layouts, or from ``maps`` when given (:meth:`LatentDiffusion.draw`)."""
    from mmcourse.metrics.captioning import same_description
    from mmcourse.metrics.judge import SceneJudge
    from mmcourse.models import captioning

    judge = judge or SceneJudge.load()
    captioner = captioner or captioning.load()
    prompts = list(prompts)
    start = time.perf_counter()
    images = model.draw(prompts, guidance=guidance, steps=steps, seed=seed, maps=maps)
    seconds = time.perf_counter() - start
    verdicts = {"judge": judge.describes(images, prompts),
                "read_back": same_description(captioning.greedy_decode(captioner[0], images, captioner[1])[0], prompts)}
    out = {"prompts": len(prompts), "guidance": float(guidance), "steps": int(steps), "seconds_per_image": seconds / max(len(prompts), 1)}
    kinds = prompt_kinds(prompts)
    for reader, verdict in verdicts.items():
        out[f"{reader}_true"] = float(verdict.mean())
        for kind, mask in kinds.items():
            out[f"{reader}_{kind}"] = float(verdict[mask].mean()) if mask.any() else None
    for kind, mask in kinds.items():
        out[f"prompts_{kind}"] = int(mask.sum())
    return out


class TruthCurve(keras.callbacks.Callback):
    """Every ``every`` epochs, draw ``prompts`` with the weights as they will be saved (the
    moving average, when the optimizer keeps one) and record how many the judge finds true,
    against training seconds (drawing and judging not counted)."""

    def __init__(self, make_model, prompts, judge, *, every: int = 1, guidance: float = GUIDANCE, steps: int = STEPS, seed: int = 0):
        super().__init__()
        self.make_model, self.prompts, self.judge, self.every = make_model, list(prompts), judge, every
        self.guidance, self.steps, self.seed = guidance, steps, seed
        self.points: list[dict] = []

    def on_train_begin(self, logs=None):
        self._start, self._spent = time.perf_counter(), 0.0

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch + 1 != self.params.get("epochs"):
            return
        begin = time.perf_counter()
        with _average_weights(self.model):
            images = self.make_model(self.model).draw(self.prompts, guidance=self.guidance, steps=self.steps, seed=self.seed)
        verdict = self.judge.describes(images, self.prompts)
        kinds = prompt_kinds(self.prompts)
        self.points.append({"epoch": epoch + 1, "train_seconds": begin - self._start - self._spent, "loss": float((logs or {}).get("loss", np.nan)),
                            "judge_true": float(verdict.mean()), "judge_one_object": float(verdict[kinds["one_object"]].mean()),
                            "judge_two_objects": float(verdict[kinds["two_objects"]].mean())})
        self._spent += time.perf_counter() - begin


class _average_weights:
    """Within the block the model holds its optimizer's moving average of its weights (if it keeps one)."""

    def __init__(self, model):
        optimizer = getattr(model, "optimizer", None)
        averages = getattr(optimizer, "_model_variables_moving_average", None) if getattr(optimizer, "use_ema", False) else None
        self.pairs = list(zip(model.trainable_variables, averages)) if averages else []

    def __enter__(self):
        self.saved = [v.numpy() for v, _ in self.pairs]
        for v, a in self.pairs:
            v.assign(a)

    def __exit__(self, *exc):
        for (v, _), value in zip(self.pairs, self.saved):
            v.assign(value)


def train_command(out, *, profile: str | None = None, seed: int = 0, precision: str = "auto", cpu_replicas: int | None = None,
                  progress: bool = True, start_from=None) -> dict:
    """What ``mmcourse train diffusion`` does: train the autoencoder, then the caption-only
    denoiser on its latents (captions of one- and two-object scenes, :data:`HOLDOUT` pairs never
    shown), then fine-tune a copy of it to draw from what-is-where maps as well (the grounded
    denoiser, :mod:`mmcourse.models.layout`); write both models, the layout bank and
    ``metrics.json``; return the metrics. With ``start_from``, a folder this command wrote, the
    autoencoder and the caption-only denoiser are that folder's and only the fine-tuning runs.

    ``metrics.json`` holds :func:`measure` of the grounded model on fresh prompts (the first
    caption of each image of a test split that draws from every pair), the same for the
    caption-only model (``caption_only``) and for the grounded model told the test scenes' own
    layouts (``oracle_layout``: the ceiling of a better layout stage), the autoencoder's check
    (the captioner reading its reconstructions of the test images, against the originals), the
    curves of truth against training time (:class:`TruthCurve`, both stages, seconds counted on
    from the first), and ``train_seconds`` (all stages, curve drawing excluded)."""
    from mmcourse.metrics.captioning import same_description
    from mmcourse.metrics.judge import SceneJudge
    from mmcourse.models import captioning

    profile, seed, out = start_command(out, profile=profile, seed=seed, precision=precision, cpu_replicas=cpu_replicas)
    sizes = TRAIN_SIZES[profile.name]
    vocabulary = shapes.caption_vocabulary()
    judge, captioner = SceneJudge.load(), captioning.load()
    sched = diffusion.schedule(SCHEDULE_STEPS)
    curve_prompts = [c[0] for c in shapes.generate(sizes["curve_prompts"], seed=(seed, 3)).captions]
    data = shapes.generate(sizes["images"], seed=(seed, 1), holdout=HOLDOUT)
    with device.use(precision, cpu_replicas) as run:
        if start_from is None:
            ae_data = shapes.generate(sizes["ae_images"], seed=(seed, 11), holdout=HOLDOUT)
            autoencoder, ae_seconds = train_autoencoder(ae_data.images, epochs=sizes["ae_epochs"], width=sizes["ae_width"], seed=seed, progress=progress)
            latents = _encode(autoencoder, data.images)
            make_model = lambda denoiser: LatentDiffusion(autoencoder, denoiser, vocabulary, sched)  # noqa: E731
            curve = TruthCurve(make_model, curve_prompts, judge, every=sizes["curve_every"], seed=seed)
            denoiser, history, denoiser_seconds = diffusion.train_denoiser(
                latents, caption_table(data, vocabulary), sched=sched, epochs=sizes["epochs"], batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
                min_snr=MIN_SNR, seed=seed, progress=progress, width=sizes["width"], callbacks=[curve])
            denoiser_seconds -= curve._spent
            first = {"autoencoder_images": len(ae_data), "autoencoder_seconds": ae_seconds, "denoiser_seconds": denoiser_seconds,
                     "final_loss": float(history["loss"][-1]), "curve": [{"stage": "caption only", **p} for p in curve.points]}
        else:
            earlier = load(start_from, grounded=False)
            autoencoder, denoiser = earlier.autoencoder, earlier.denoiser
            latents = _encode(autoencoder, data.images)
            earlier_metrics = artifacts.read_metrics(start_from)
            first = {k: earlier_metrics[k] for k in ("autoencoder_images", "autoencoder_seconds", "denoiser_seconds", "final_loss")}
            first["curve"] = [{"stage": "caption only", **p} for p in earlier_metrics.get("curve", [])]
            first["start_from"], first["caption_only_command"] = str(start_from), earlier_metrics.get("command")
        caption_only = LatentDiffusion(autoencoder, denoiser, vocabulary, sched)
        bank = LayoutBank.fit(data)
        make_grounded = lambda denoiser: LatentDiffusion(autoencoder, denoiser, vocabulary, sched, bank)  # noqa: E731
        curve = TruthCurve(make_grounded, curve_prompts, judge, every=sizes["curve_every"], seed=seed)
        grounded, history, grounded_seconds = diffusion.train_denoiser(
            latents, caption_table(data, vocabulary), sched=sched, epochs=sizes["layout_epochs"], batch_size=BATCH_SIZE,
            learning_rate=LAYOUT_LEARNING_RATE, min_snr=MIN_SNR, seed=seed + 1, progress=progress, callbacks=[curve],
            layouts=scene_maps(data, side=autoencoder.latent_shape[0]), start_from=denoiser)
        grounded_seconds -= curve._spent
        before = first["autoencoder_seconds"] + first["denoiser_seconds"]
        model = make_grounded(grounded)
        test = shapes.generate(sizes["test_prompts"], seed=(seed, 2))
        prompts = [c[0] for c in test.captions]
        rebuilt = model.decode(autoencoder.encode(to_unit(test.images)))
        read = lambda images: captioning.greedy_decode(captioner[0], images, captioner[1])[0]  # noqa: E731
        metrics = {"train_images": len(data), "epochs": sizes["epochs"], "layout_epochs": sizes["layout_epochs"], "batch_size": BATCH_SIZE,
                   "holdout": [list(p) for p in HOLDOUT], "autoencoder_epochs": sizes["ae_epochs"], "autoencoder_width": sizes["ae_width"],
                   "latent_shape": list(autoencoder.latent_shape), "latent_scale": float(np.asarray(autoencoder.scale)),
                   "autoencoder_weights": autoencoder.count_params(), "denoiser_weights": denoiser.count_params(),
                   "grounded_weights": grounded.count_params(), "denoiser_width": sizes["width"], "layout_channels": list(CHANNELS),
                   "layout_bank": len(bank), "schedule": "cosine", "schedule_steps": SCHEDULE_STEPS, "min_snr": MIN_SNR, "clip": CLIP,
                   "learning_rate": LEARNING_RATE, "layout_learning_rate": LAYOUT_LEARNING_RATE, **first,
                   "grounded_seconds": grounded_seconds, "grounded_final_loss": float(history["loss"][-1]), "test_images": len(test),
                   "reconstructions_read_back": float(same_description(read(rebuilt), prompts).mean()),
                   "originals_read_back": float(same_description(read(test.images), prompts).mean()),
                   "reconstruction_mse": float(np.mean((to_unit(rebuilt) - to_unit(test.images)) ** 2))}
        metrics["curve"] = metrics["curve"] + [{"stage": "grounded", **p, "train_seconds": before + p["train_seconds"]} for p in curve.points]
        metrics.update(measure(model, prompts, judge=judge, captioner=captioner, seed=seed))
        metrics["caption_only"] = measure(caption_only, prompts, judge=judge, captioner=captioner, seed=seed)
        metrics["oracle_layout"] = measure(model, prompts, judge=judge, captioner=captioner, seed=seed,
                                           maps=scene_maps(test, side=autoencoder.latent_shape[0]))
    caption_only.save(out)
    model.save(out)
    return artifacts.write_metrics(out, metrics, files=[AUTOENCODER_FILE, DENOISER_FILE, GROUNDED_FILE, LAYOUTS_FILE, VOCABULARY_FILE], run=run,
                                   profile=profile.name, seed=seed, test_seed=[seed, 2], train_seconds=before + grounded_seconds)


def _encode(autoencoder: LatentAutoencoder, images) -> np.ndarray:
    """The scaled latents of ``images`` (uint8 or [0, 1]), as numpy."""
    return np.asarray(autoencoder.encode(to_unit(images)))


def draw_files(folder, captions, out, *, n: int = 1, guidance: float = GUIDANCE, steps: int = STEPS, seed: int = 0):
    """What ``mmcourse draw`` does: load the model in ``folder`` once and draw ``n`` images of each
    caption into ``out/NNN-K.png`` (caption NNN in the order given, sample K), listing them in
    ``out/captions.tsv``. Returns ``(written, errors)``: the files, and a line for each caption
    that could not be drawn (a word outside the Shapes grammar, named); the others are still drawn."""
    from PIL import Image

    n = check_positive_int(n, "n")
    steps = check_positive_int(steps, "steps")
    model = load(folder)
    good, errors = [], []
    for number, caption in enumerate(captions):
        try:
            model.caption_ids([caption])
            good.append((number, " ".join(caption.lower().split())))
        except ValueError as error:
            errors.append(f"caption {number}: {error}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if good:
        images = model.draw([c for _, c in good for _ in range(n)], guidance=guidance, steps=steps, seed=seed)
        for k, ((number, caption), image) in enumerate(zip([g for g in good for _ in range(n)], images)):
            path = out / f"{number:03d}-{k % n}.png"
            Image.fromarray(image).save(path)
            written.append((path, caption))
    with open(out / "captions.tsv", "w") as table:
        table.write("file\tcaption\n")
        for path, caption in written:
            table.write(f"{path.name}\t{caption}\n")
    return written, errors
