"""Which datasets the course can use on this machine, and where each one lives.

Built-in data ships with the package or its dependencies and is always present.
Downloadable data is fetched by the learner and put under :func:`mmcourse.config.data_dir`;
nothing is ever downloaded for you.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mmcourse.config import data_dir

__all__ = ["DatasetInfo", "DATASETS", "status"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    builtin: bool
    location: str  # a path relative to the data directory, or "package:file" for shipped data
    source: str  # where a learner gets it
    also: tuple[str, ...] = ()  # other files (relative to the data directory) that count as the dataset being there


def _package_file(spec: str) -> Path:
    package, _, rel = spec.partition(":")
    return Path(str(resources.files(package) / rel))


DATASETS = (
    DatasetInfo("shapes", "Shapes world: images, captions, masks, questions", True, "", "generated in memory"),
    DatasetInfo("lee", "Lee news corpus (text)", True, "gensim:test/test_data/lee_background.cor", "ships with gensim"),
    DatasetInfo("movie-reviews", "movie-review polarity sentences", True, "gensim:test/test_data/pang_lee_polarity.cor", "ships with gensim"),
    DatasetInfo("wordsim353", "WordSim-353 word similarity", True, "gensim:test/test_data/wordsim353.tsv", "ships with gensim"),
    DatasetInfo("simlex999", "SimLex-999 word similarity", True, "gensim:test/test_data/simlex999.txt", "ships with gensim"),
    DatasetInfo("analogies", "word analogy questions", True, "gensim:test/test_data/questions-words.txt", "ships with gensim"),
    DatasetInfo("glove-sample", "GloVe-format vectors (small sample)", True, "gensim:test/test_data/test_glove.txt", "ships with gensim"),
    DatasetInfo("photos", "sample photographs", True, "skimage:data/astronaut.png", "ships with scikit-image"),
    DatasetInfo("digits", "8×8 handwritten digits", True, "sklearn:datasets/data/digits.csv.gz", "ships with scikit-learn"),
    DatasetInfo("flickr8k", "Flickr8k images and captions", False, "flickr8k/captions.txt",
                "https://github.com/jbrownlee/Datasets/releases (Flickr8k_Dataset, Flickr8k_text)", ("flickr8k/Flickr8k.token.txt",)),
    DatasetInfo("coco", "COCO captions", False, "coco/annotations/captions_val2017.json", "https://cocodataset.org/#download",
                ("coco/annotations/captions_train2017.json",)),
    DatasetInfo("mnist", "MNIST digits", False, "mnist.npz", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"),
    DatasetInfo("cifar10", "CIFAR-10 images", False, "cifar-10-batches-py/data_batch_1", "https://www.cs.toronto.edu/~kriz/cifar.html"),
    DatasetInfo("glove", "GloVe 6B word vectors", False, "glove.6B.100d.txt", "https://nlp.stanford.edu/projects/glove/"),
    DatasetInfo("text8", "text8 Wikipedia sample", False, "text8", "http://mattmahoney.net/dc/text8.zip"),
)


def status() -> list[tuple[DatasetInfo, bool, str]]:
    """For each dataset: (info, present, where it is or is expected)."""
    out = []
    for info in DATASETS:
        if not info.location:
            out.append((info, True, info.source))
            continue
        if info.builtin:
            try:
                path = _package_file(info.location)
            except ModuleNotFoundError:
                out.append((info, False, f"package {info.location.partition(':')[0]} is not installed"))
                continue
        else:
            path = next((data_dir() / p for p in info.also if (data_dir() / p).exists()), data_dir() / info.location)
        out.append((info, path.exists(), str(path)))
    return out
