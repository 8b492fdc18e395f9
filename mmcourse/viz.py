"""Pictures over printouts: image grids and Shapes-world annotation overlays."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

import numpy as np

from mmcourse.checks import check_positive_int

__all__ = [
    "show_images",
    "overlay_scene",
    "upscale",
    "to_png",
    "plot_history",
    "plot_confusion_matrix",
    "show_filters",
    "show_feature_maps",
    "overlay_heatmap",
    "plot_embedding_map",
]


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so that small images stay crisp on screen."""
    check_positive_int(factor, "factor")
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def to_png(image: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes of an RGB uint8 image (for ``ipywidgets.Image``)."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"to_png takes an (h, w, 3) uint8 image, got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(upscale(image, scale)).save(buffer, format="PNG")
    return buffer.getvalue()


def show_images(
    images: Sequence[np.ndarray] | np.ndarray,
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    size: float = 1.8,
    wrap: int = 24,
    fontsize: float = 7,
):
    """A grid of images with optional wrapped titles; returns the figure."""
    import matplotlib.pyplot as plt

    n = len(images)
    if n == 0:
        raise ValueError("show_images needs at least one image")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    extra = 0.35 * (max((len(textwrap.wrap(t, wrap)) for t in titles), default=0) if titles else 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + extra) * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], interpolation="nearest", cmap=None if np.ndim(images[i]) == 3 else "gray")
            if titles is not None:
                ax.set_title("\n".join(textwrap.wrap(titles[i], wrap)), fontsize=fontsize)
    fig.tight_layout()
    return fig


def overlay_scene(ax, image: np.ndarray, scene, masks: np.ndarray | None = None, *, boxes: bool = True, labels: bool = True):
    """Draw an image with its objects' masks (tinted outlines), boxes and centres."""
    import matplotlib.patches as patches

    ax.imshow(image, interpolation="nearest")
    edge_colours = ("black", "magenta")
    for k, obj in enumerate(scene.objects):
        colour = edge_colours[k % 2]
        if masks is not None:
            ax.contour(masks[k].astype(float), levels=[0.5], colors=[colour], linewidths=1.0)
        if boxes:
            x0, y0, x1, y1 = obj.bbox
            ax.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=colour, ls="--", lw=0.8))
        cx, cy = obj.centre
        ax.plot([cx - 0.5], [cy - 0.5], marker="+", color=colour, ms=6)
        if labels:
            ax.text(obj.bbox[0] - 0.5, obj.bbox[1] - 1.5, f"{k}", color=colour, fontsize=7, va="bottom")
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.axis("off")
    return ax


# --------------------------------------------------------------------------- CNN plots (notebook 02 on)


def plot_history(history, metrics: Sequence[str] = ("loss",), *, size: tuple[float, float] = (3.6, 2.6)):
    """Training curves: one panel per metric, the training value and (if present) ``val_`` value per epoch.

    ``history`` is a Keras ``History`` or its ``.history`` dict. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    logs = getattr(history, "history", history)
    missing = [m for m in metrics if m not in logs]
    if missing:
        raise KeyError(f"no metric {missing[0]!r} in the history; it has: {', '.join(sorted(logs))}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(size[0] * len(metrics), size[1]), squeeze=False)
    for ax, name in zip(axes[0], metrics):
        epochs = np.arange(1, len(logs[name]) + 1)
        ax.plot(epochs, logs[name], marker=".", label="training")
        if f"val_{name}" in logs:
            ax.plot(epochs, logs[f"val_{name}"], marker=".", label="validation")
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm, labels: Sequence[str], *, ax=None, title: str | None = None):
    """A confusion matrix as a heat map, counts written in the cells (rows: true class, columns: predicted)."""
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(labels):
        raise ValueError(f"cm must be square with one row per label ({len(labels)} labels), got shape {cm.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * len(labels) + 1.6, 0.45 * len(labels) + 1.3))
    ax.imshow(cm, cmap="Blues")
    high = cm.max() / 2 if cm.size else 0
    fontsize = 7 if len(labels) <= 12 else 5
    for (i, j), value in np.ndenumerate(cm):
        ax.text(j, i, f"{value:g}", ha="center", va="center", fontsize=fontsize, color="white" if value > high else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45 if max(map(len, map(str, labels))) > 2 else 0, ha="right" if max(map(len, map(str, labels))) > 2 else "center", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def show_filters(kernel, *, ncols: int = 8, size: float = 0.9):
    """The filters of a convolution kernel ``(k_h, k_w, c_in, c_out)``, one panel each.

    With three input channels a filter is drawn as a colour patch (each filter rescaled to
    [0, 1], so mid-grey means zero); otherwise its first input channel, in a diverging map.
    """
    import matplotlib.pyplot as plt

    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 4:
        raise ValueError(f"show_filters takes a kernel (k_h, k_w, c_in, c_out), e.g. layer.get_weights()[0]; got shape {k.shape}")
    n = k.shape[-1]
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        f = k[..., i]
        if f.shape[-1] == 3:
            span = np.abs(f).max() or 1.0
            ax.imshow(0.5 + 0.5 * f / span, interpolation="nearest")
        else:
            span = np.abs(f[..., 0]).max() or 1.0
            ax.imshow(f[..., 0], cmap="RdBu_r", vmin=-span, vmax=span, interpolation="nearest")
    fig.tight_layout(pad=0.3)
    return fig


def show_feature_maps(maps, *, ncols: int = 8, size: float = 1.1, max_maps: int = 32, titles: bool = True, title: str | None = None):
    """Feature maps ``(h, w, channels)`` of one image, one panel per channel (the first ``max_maps``).

    ``titles`` numbers the panels by channel; ``title`` goes above the whole figure.
    """
    import matplotlib.pyplot as plt

    m = np.asarray(maps)
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 3:
        raise ValueError(f"show_feature_maps takes the maps of one image, shape (h, w, channels); got {m.shape}")
    n = min(m.shape[-1], max_maps)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    head = 0.3 if title else 0.0  # inches kept free above the panels for the title
    height = (size + (0.15 if titles else 0)) * nrows + head
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, height), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(m[..., i], cmap="viridis", interpolation="nearest")
            if titles:
                ax.set_title(f"{i}", fontsize=6, pad=1)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - head / height))
    if title:
        fig.suptitle(title, fontsize=8, y=1 - 0.05 / height, va="top")
    return fig


def overlay_heatmap(ax, image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.5, cmap: str = "jet"):
    """Draw ``image`` with a coarse ``heatmap`` (e.g. 8×8 Grad-CAM) stretched over it.

    The heat map is scaled to [0, 1] and enlarged smoothly (bilinear) to the image's size.
    """
    image = np.asarray(image)
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (h, w), got shape {heat.shape}")
    h, w = image.shape[:2]
    span = heat.max() - heat.min()
    heat = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    ax.imshow(image, interpolation="nearest", cmap=None if image.ndim == 3 else "gray")
    ax.imshow(heat, cmap=cmap, alpha=alpha, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear", vmin=0, vmax=1)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.axis("off")
    return ax


# --------------------------------------------------------------------------- word embeddings (notebook 01)


def plot_embedding_map(vectors, words, groups=None, *, ax=None, fontsize: float = 8, title: str | None = None):
    """Words placed by the first two principal components of their vectors, labelled.

    Args:
        vectors: a :class:`mmcourse.data.vectors.WordVectors` (anything with ``word → vector`` indexing).
        words: the words to place (at least 3); PCA is fitted on these words only.
        groups: optional ``{group name: [words]}``; each group gets its own colour and a legend entry.
        ax: where to draw (a new figure if ``None``).

    Returns the axes; the points' coordinates are ``ax.collections[i].get_offsets()``.
    """
    import matplotlib.pyplot as plt

    words = list(words)
    if len(words) < 3:
        raise ValueError(f"plot_embedding_map needs at least 3 words, got {len(words)}")
    X = np.stack([np.asarray(vectors[w], np.float64) for w in words])
    X = X - X.mean(axis=0)
    _, _, Vt = np.linalg.svd(X, full_matrices=False)  # rows of Vt: principal directions
    points = X @ Vt[:2].T
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    membership = {}
    for name, members in (groups or {}).items():
        for w in members:
            membership.setdefault(w, name)
    names = list(groups or {}) + (["other"] if any(w not in membership for w in words) else [])
    colours = plt.get_cmap("tab10")
    for k, name in enumerate(names):
        chosen = [i for i, w in enumerate(words) if membership.get(w, "other") == name]
        if chosen:
            ax.scatter(points[chosen, 0], points[chosen, 1], s=18, color=colours(k % 10), label=name if groups else None)
    for (x, y), w in zip(points, words):
        ax.annotate(w, (x, y), xytext=(3, 2), textcoords="offset points", fontsize=fontsize)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    if groups:
        ax.legend(fontsize=fontsize, loc="best")
    if title:
        ax.set_title(title, fontsize=fontsize + 1)
    return ax
