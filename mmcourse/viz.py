"""Pictures over printouts: image grids and Shapes-world annotation overlays."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

import numpy as np

__all__ = ["show_images", "overlay_scene", "upscale", "to_png"]


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so that small images stay crisp on screen."""
    if factor < 1:
        raise ValueError(f"factor must be at least 1, got {factor}")
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
