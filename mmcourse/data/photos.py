"""Real captioned photographs that a learner downloads: Flickr8k- and COCO-format data on disk.

Nothing is downloaded here. Put the files under the data directory
(:func:`mmcourse.config.data_dir`, ``MMCOURSE_DATA`` to move it) as ``data/README.md``
says, or point the loaders at any folder in the same format:

- Flickr8k: ``captions.txt`` (``image,caption`` CSV, as the Kaggle copy ships it) or
  ``Flickr8k.token.txt`` (``image#k<TAB>caption``, the original), and a folder of images.
- COCO: ``annotations/captions_<split>.json`` (``images`` with ``id`` and ``file_name``,
  ``annotations`` with ``image_id`` and ``caption``), and the folder ``<split>/``.

When the files are absent the loaders raise :class:`DatasetMissing`, whose message says
what to download and where to put it.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmcourse.config import data_dir

__all__ = ["CaptionedPhotos", "DatasetMissing", "normalise_caption", "load_flickr8k", "load_coco", "load_dataset", "load_image",
           "train_test_split", "SAMPLE_CAPTIONS", "make_flickr8k_folder"]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


class DatasetMissing(FileNotFoundError):
    """A dataset the learner downloads is not on disk; the message says what to fetch and where."""


def normalise_caption(text: str) -> str:
    """Lower case, punctuation dropped, one space between words: ``"A dog, running."`` → ``"a dog running"``."""
    return " ".join(_WORD.findall(text.lower()))


def load_image(path: str | Path, size: int = 64) -> np.ndarray:
    """An image file as uint8 ``(size, size, 3)``: any format PIL reads, alpha dropped, resized.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file)
    for one that is not an image or is truncated.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image PIL can read") from None
    except (OSError, SyntaxError) as error:  # truncated or corrupt data
        raise ValueError(f"{path} is damaged or truncated ({error})") from None
    return np.asarray(rgb, np.uint8)


@dataclass
class CaptionedPhotos:
    """Image files with their reference captions (normalised: lower case, no punctuation).

    ``missing`` counts captioned images whose file was not found (they are left out).
    """

    name: str
    image_paths: list[Path]
    captions: list[list[str]]
    missing: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.image_paths)

    def __repr__(self) -> str:
        return f"CaptionedPhotos({self.name!r}, {len(self)} images, {sum(map(len, self.captions))} captions, {self.missing} missing)"

    def images(self, size: int = 64, indices=None) -> np.ndarray:
        """The images as uint8 ``(n, size, size, 3)`` (all, or those at ``indices``)."""
        indices = range(len(self)) if indices is None else indices
        return np.stack([load_image(self.image_paths[i], size) for i in indices])


def _missing(what: str, expected: Path, source: str, layout: str) -> DatasetMissing:
    return DatasetMissing(
        f"{what} is not on this machine: expected {expected}. Download it from {source} and put {layout} "
        f"in {expected.parent} (or set MMCOURSE_DATA to the folder that holds it); nothing is downloaded for you."
    )


def _collect(name: str, image_dir: Path, by_image: dict[str, list[str]], limit: int | None) -> CaptionedPhotos:
    paths, captions, missing = [], [], 0
    for file_name in sorted(by_image):
        path = image_dir / file_name
        if not path.is_file():
            missing += 1
            continue
        paths.append(path)
        captions.append(by_image[file_name])
        if limit is not None and len(paths) >= limit:
            break
    if not paths:
        raise DatasetMissing(f"{name}: none of the {len(by_image)} captioned images is in {image_dir}; put the image files there")
    return CaptionedPhotos(name, paths, captions, missing)


def load_flickr8k(root: str | Path | None = None, *, limit: int | None = None) -> CaptionedPhotos:
    """Flickr8k from ``root`` (default ``data_dir()/flickr8k``): captions and the ``Images/`` folder
    (``Flicker8k_Dataset/`` is accepted too). ``limit`` keeps the first images, sorted by name."""
    root = Path(root) if root is not None else data_dir() / "flickr8k"
    csv_file, token_file = root / "captions.txt", root / "Flickr8k.token.txt"
    by_image: dict[str, list[str]] = defaultdict(list)
    if csv_file.is_file():
        with open(csv_file, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header[:2]] != ["image", "caption"]:
                raise ValueError(f"{csv_file} should start with the header 'image,caption', got {header}")
            for row in reader:
                if len(row) >= 2:
                    by_image[row[0].strip()].append(normalise_caption(",".join(row[1:])))
    elif token_file.is_file():
        for line in token_file.read_text(encoding="utf-8").splitlines():
            if "\t" in line:
                key, caption = line.split("\t", 1)
                by_image[key.split("#")[0].strip()].append(normalise_caption(caption))
    else:
        raise _missing("Flickr8k", csv_file, "https://github.com/jbrownlee/Datasets/releases (Flickr8k_Dataset.zip, Flickr8k_text.zip)",
                       "captions.txt (or Flickr8k.token.txt) and the Images/ folder")
    image_dir = next((root / d for d in ("Images", "Flicker8k_Dataset", "Flickr8k_Dataset") if (root / d).is_dir()), root / "Images")
    return _collect("Flickr8k", image_dir, by_image, limit)


def load_coco(root: str | Path | None = None, *, split: str = "val2017", limit: int | None = None) -> CaptionedPhotos:
    """COCO captions from ``root`` (default ``data_dir()/coco``): ``annotations/captions_<split>.json``
    and the images in ``<split>/``."""
    root = Path(root) if root is not None else data_dir() / "coco"
    annotations = root / "annotations" / f"captions_{split}.json"
    if not annotations.is_file():
        raise _missing("COCO captions", annotations, "https://cocodataset.org/#download (annotations_trainval2017.zip and val2017.zip)",
                       f"captions_{split}.json under annotations/ and the {split}/ image folder")
    data = json.loads(annotations.read_text(encoding="utf-8"))
    try:
        names = {image["id"]: image["file_name"] for image in data["images"]}
        by_image: dict[str, list[str]] = defaultdict(list)
        for note in data["annotations"]:
            by_image[names[note["image_id"]]].append(normalise_caption(note["caption"]))
    except (KeyError, TypeError) as error:
        raise ValueError(f"{annotations} is not a COCO captions file (missing {error})") from None
    return _collect("COCO", root / split, by_image, limit)


def load_dataset(data: str | Path, *, split: str = "val2017", limit: int | None = None) -> CaptionedPhotos:
    """``"flickr8k"`` or ``"coco"`` (in the data directory), or a folder in either format
    (COCO when it has ``annotations/``, else Flickr8k); ``split`` is COCO's annotation split."""
    if str(data) == "flickr8k":
        return load_flickr8k(limit=limit)
    if str(data) == "coco":
        return load_coco(split=split, limit=limit)
    folder = Path(data)
    if not folder.is_dir():
        raise DatasetMissing(f"{folder} is not a folder: pass flickr8k, coco, or a folder in Flickr8k or COCO format")
    if (folder / "annotations").is_dir():
        return load_coco(folder, split=split, limit=limit)
    if not ((folder / "captions.txt").is_file() or (folder / "Flickr8k.token.txt").is_file()):
        raise DatasetMissing(f"{folder} holds neither captions.txt nor Flickr8k.token.txt (Flickr8k format) "
                             f"nor annotations/captions_{split}.json (COCO format)")
    return load_flickr8k(folder, limit=limit)


#: Flickr8k's own split files, when a Flickr8k folder has them.
FLICKR8K_SPLITS = {"train": "Flickr_8k.trainImages.txt", "test": "Flickr_8k.testImages.txt"}


def train_test_split(photos: CaptionedPhotos, *, seed: int = 0, test_fraction: float = 0.1, max_test: int = 1000,
                     root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` into ``photos``: Flickr8k's own lists when ``root`` holds them
    (:data:`FLICKR8K_SPLITS`), else a seeded draw of ``test_fraction`` of the images (at least
    one, at most ``max_test``) for testing and the rest for training."""
    names = [p.name for p in photos.image_paths]
    if root is not None and all((Path(root) / f).is_file() for f in FLICKR8K_SPLITS.values()):
        listed = {k: set(Path(root, f).read_text(encoding="utf-8").split()) for k, f in FLICKR8K_SPLITS.items()}
        train = np.array([i for i, n in enumerate(names) if n in listed["train"]], int)
        test = np.array([i for i, n in enumerate(names) if n in listed["test"]], int)
        if len(train) and len(test):
            return train, test
    if len(photos) < 2:
        raise ValueError(f"{photos.name} has {len(photos)} image(s): at least 2 are needed, one to train on and one to test")
    n_test = int(min(max_test, max(1, round(test_fraction * len(photos)))))
    order = np.random.default_rng(seed).permutation(len(photos))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


#: Hand-written captions (five each, Flickr8k's style) for photographs that ship with
#: scikit-image: what a made Flickr8k-format folder holds when the real one is absent.
SAMPLE_CAPTIONS = {
    "astronaut": ["an astronaut in a white spacesuit smiles beside an american flag", "a woman astronaut poses for a portrait",
                  "a smiling astronaut holds a helmet in front of a flag", "portrait of a woman in an orange and white space suit",
                  "an astronaut stands in front of the stars and stripes"],
    "coffee": ["a cup of coffee on a saucer with a spoon", "a white cup of black coffee on a table",
               "a coffee cup and a spoon on a red table", "a cup of coffee seen from above", "a hot drink in a white cup on a saucer"],
    "chelsea": ["a tabby cat looks to the side", "an orange and brown cat sits indoors", "a cat with green eyes and long whiskers",
                "a close up of a striped cat", "a ginger cat looking at something to its left"],
    "rocket": ["a rocket stands on the launch pad under a blue sky", "a space rocket waits on its launch tower",
               "a white rocket beside a launch gantry", "a rocket ready for launch on a sunny day", "a tall rocket on a pad by the sea"],
    "motorcycle_left": ["a red motorcycle parked in a garage", "a motorbike stands inside a workshop", "a motorcycle beside shelves of tools",
                        "a parked red and black motorbike", "a motorcycle in a room with a white wall"],
    "hubble_deep_field": ["many galaxies in the dark sky", "a telescope image of distant galaxies", "stars and galaxies on a black background",
                          "a deep field photograph of space full of galaxies", "small bright galaxies scattered across the night sky"],
    "immunohistochemistry": ["a stained tissue sample under a microscope", "cells stained brown and blue in a slide",
                             "a microscope image of tissue with brown spots", "a slide of tissue seen through a microscope",
                             "blue and brown stained cells on a slide"],
    "retina": ["a photograph of the back of a human eye", "the retina with its blood vessels", "a red eye fundus image with veins",
               "blood vessels spread across the retina", "a medical image of an eye showing the optic disc"],
    "camera": ["a man with a camera on a tripod", "a photographer stands in a field with his camera", "a black and white photo of a cameraman",
               "a man looks through a camera on a tripod", "a person taking a picture outdoors in black and white"],
    "coins": ["many old coins on a dark surface", "a grey photo of rows of coins", "coins laid out in rows",
              "a collection of coins in black and white", "small round coins on a table"],
    "horse": ["the black silhouette of a horse", "a horse drawn in black on white", "a shadow of a horse standing still",
              "a silhouette of a horse on a white background", "a black horse shape"],
    "moon": ["the surface of the moon with craters", "a grey photo of lunar craters", "craters on the moon in black and white",
             "a close view of the moon surface", "the rough grey surface of the moon"],
    "page": ["a page of printed text", "an old page of a book", "a scanned page with lines of text", "black text on a grey page",
             "a page of writing in black and white"],
    "clock": ["a clock on a wall", "a blurred picture of a clock face", "a round clock with hands", "a wall clock in black and white",
              "a clock seen with motion blur"],
}


def _sample_photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as uint8 RGB at its own size."""
    from skimage import data

    image = getattr(data, {"motorcycle_left": "stereo_motorcycle", "clock": "clock"}.get(name, name))()
    image = image[0] if isinstance(image, tuple) else image
    image = np.asarray(image)
    if image.dtype == bool:
        image = np.where(image, 0, 255).astype(np.uint8)  # the horse: black on white
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def make_flickr8k_folder(folder: str | Path, *, shapes_images: int = 160, seed: int = 0) -> Path:
    """Write a small dataset in Flickr8k's format into ``folder``: ``Images/`` and ``captions.txt``
    (``image,caption``). It holds the scikit-image photographs of :data:`SAMPLE_CAPTIONS` at their
    own sizes (JPEG) with those captions, and ``shapes_images`` Shapes scenes (PNG, 64×64) with
    their five captions each. What the course trains on when Flickr8k itself is not on disk:
    the same code, on a dataset small enough to make in a second. Returns ``folder``."""
    from PIL import Image

    from mmcourse.data import shapes

    folder = Path(folder)
    (folder / "Images").mkdir(parents=True, exist_ok=True)
    rows = []
    for name, captions in SAMPLE_CAPTIONS.items():
        Image.fromarray(_sample_photo(name)).save(folder / "Images" / f"{name}.jpg", quality=90)
        rows += [(f"{name}.jpg", c) for c in captions]
    scenes = shapes.generate(shapes_images, seed=seed) if shapes_images else None
    for i in range(shapes_images):
        Image.fromarray(scenes.images[i]).save(folder / "Images" / f"shapes_{i:04d}.png")
        rows += [(f"shapes_{i:04d}.png", c) for c in scenes.captions[i]]
    with open(folder / "captions.txt", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        writer.writerows(rows)
    return folder
