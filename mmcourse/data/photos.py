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

__all__ = ["CaptionedPhotos", "DatasetMissing", "normalise_caption", "load_flickr8k", "load_coco", "load_image"]

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
