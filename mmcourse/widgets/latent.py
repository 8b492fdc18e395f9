"""Latent sliders: move a VAE's code along its latent directions and see the decoded image."""

from __future__ import annotations

import ipywidgets as W
import numpy as np

from mmcourse.imageops import to_uint8, to_unit
from mmcourse.viz import to_png
from mmcourse.widgets._dom import mark

__all__ = ["LatentSliders"]


class LatentSliders:
    """One slider per latent direction (the ``n_sliders`` the encoder uses most, by mean KL).

    Start from a real image's code (``images[i]``, chosen with ``index``) and move along the
    directions; the decoder draws the result. ``code`` holds the current latent vector,
    ``decoded`` the current image (uint8).
    """

    def __init__(self, vae, images, *, n_sliders: int = 6, scale: int = 4):
        self.vae, self.images, self.scale = vae, to_unit(images), scale
        mean, log_variance = (np.asarray(t) for t in vae.encode(self.images))
        self.base_codes = mean
        kl = 0.5 * (mean**2 + np.exp(log_variance) - 1 - log_variance).mean(axis=0)
        self.directions = [int(d) for d in np.argsort(-kl)[:n_sliders]]
        self.index = W.IntSlider(value=0, min=0, max=len(self.images) - 1, description="image", continuous_update=False)
        self.sliders = [
            W.FloatSlider(value=0.0, min=-3.0, max=3.0, step=0.1, description=f"z[{d}]", continuous_update=False)
            for d in self.directions
        ]
        self.reset = W.Button(description="back to the image's code", icon="undo")
        self.original, self.image = mark(W.Image(format="png"), "original"), mark(W.Image(format="png"), "decoded")
        mark(self.index, "index")
        for k, slider in enumerate(self.sliders):
            mark(slider, f"slider-{k}")
        self.index.observe(lambda change: self._load(), names="value")
        for s in self.sliders:
            s.observe(lambda change: self.update(), names="value")
        self.reset.on_click(lambda button: self._load())
        self._load()

    def _load(self) -> None:
        self._quiet = True
        for s, d in zip(self.sliders, self.directions):
            s.value = float(np.clip(round(float(self.base_codes[self.index.value, d]), 1), s.min, s.max))
        self._quiet = False
        original = to_uint8(self.images[self.index.value])[0]
        self.original.value = to_png(original, self.scale)
        self.update()

    def update(self) -> None:
        if getattr(self, "_quiet", False):
            return
        self.code = self.base_codes[self.index.value].copy()
        for s, d in zip(self.sliders, self.directions):
            self.code[d] = s.value
        self.decoded = to_uint8(np.asarray(self.vae.decode(self.code[None])))[0]
        self.image.value = to_png(self.decoded, self.scale)

    def widget(self) -> W.Widget:
        pictures = W.HBox([W.VBox([W.HTML("<b>image</b>"), self.original]), W.VBox([W.HTML("<b>decoded code</b>"), self.image])])
        return mark(W.HBox([W.VBox([self.index, *self.sliders, self.reset]), pictures]), "latent-sliders")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
