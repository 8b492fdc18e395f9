"""The captioning explorer: caption a test image or a composed scene; step through the words
and see where the model looked for each."""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from mmcourse.data import shapes
from mmcourse.viz import to_png
from mmcourse.widgets.scene import SceneComposer
from mmcourse.widgets._dom import mark

__all__ = ["CaptioningExplorer"]


class CaptioningExplorer:
    """Pick a test image (``source`` = ``"test image"``) or compose one with the scene composer
    of notebook 00 (``"composed scene"``); set the beam width; move ``word`` along the caption
    to see the attention map of that word over the image.

    ``model`` and ``vocabulary`` are a trained :class:`~mmcourse.models.captioning.Captioner`
    and its vocabulary; ``images`` and ``scenes`` the test images to choose from.
    After every change: ``caption`` (the beam-search caption), ``attention`` (one 8×8 map per
    word, then the one that chose ``<end>``), ``log_probability``, ``true`` (whether the
    parsed caption describes the scene exactly) and ``peak`` (row, col of the shown map).
    """

    def __init__(self, model, vocabulary, images, scenes, *, scale: int = 4, max_beam: int = 8):
        if len(images) != len(scenes) or len(images) == 0:
            raise ValueError(f"give as many scenes as images (at least one): got {len(images)} images and {len(scenes)} scenes")
        self.model, self.vocabulary, self.images, self.scenes, self.scale = model, vocabulary, images, scenes, scale
        self.composer = SceneComposer(scale=2)
        self.source = mark(W.ToggleButtons(options=["test image", "composed scene"], value="test image", description="image"), "source")
        self.index = W.IntSlider(value=0, min=0, max=len(images) - 1, description="test image")
        self.beam_width = W.IntSlider(value=1, min=1, max=max_beam, description="beam width")
        self.word = W.IntSlider(value=0, min=0, max=1, description="word")
        self.image = mark(W.Image(format="png", layout=W.Layout(width=f"{64 * scale}px", height=f"{64 * scale}px")), "image")
        self.info = mark(W.HTML(), "info")
        self.caption, self.attention, self.log_probability, self.true, self.peak = "", np.zeros((1, 8, 8)), 0.0, False, (0, 0)
        for control in (self.source, self.index, self.beam_width):
            control.observe(lambda change: self.update(), names="value")
        for box in (self.composer.count, *self.composer.size, *self.composer.colour, *self.composer.shape, self.composer.relation,
                    self.composer.jitter, self.composer.seed):
            box.observe(lambda change: self.update() if self.source.value == "composed scene" else None, names="value")
        self.word.observe(lambda change: self.show_word(), names="value")
        self.update()

    def current(self) -> tuple[np.ndarray, shapes.Scene]:
        """The image being captioned and its scene."""
        if self.source.value == "composed scene":
            return shapes.render(self.composer.scene), self.composer.scene
        return self.images[self.index.value], self.scenes[self.index.value]

    def update(self) -> None:
        """Caption the current image with the current beam width and show its first word."""
        from mmcourse.models.captioning import beam_search

        image, scene = self.current()
        self.index.disabled = self.source.value != "test image"
        self.caption, self.attention, self.log_probability = beam_search(self.model, image, self.vocabulary, beam_width=self.beam_width.value)
        try:
            self.true = shapes.parse_caption(self.caption).describes(scene)
        except shapes.CaptionError:
            self.true = False
        self.word.max = len(self.attention) - 1
        if self.word.value == 0:
            self.show_word()
        else:
            self.word.value = 0  # observing the slider redraws

    def show_word(self) -> None:
        """Draw the image dimmed where the chosen word did not look, with the peak cell outlined."""
        image, scene = self.current()
        words = self.caption.split() + ["<end>"]
        k = min(self.word.value, len(self.attention) - 1)
        weights = self.attention[k]
        self.peak = tuple(int(v) for v in np.unravel_index(np.argmax(weights), weights.shape))
        heat = np.kron(weights / max(weights.max(), 1e-12), np.ones((8, 8)))[..., None]
        picture = image.astype(np.float64) * (0.25 + 0.75 * heat)
        r, c = self.peak
        picture[r * 8 : r * 8 + 8, [c * 8, c * 8 + 7]] = (255, 0, 255)
        picture[[r * 8, r * 8 + 7], c * 8 : c * 8 + 8] = (255, 0, 255)
        self.image.value = to_png(np.clip(picture, 0, 255).astype(np.uint8), scale=self.scale)
        shown = " ".join(f"<b><u>{html.escape(w)}</u></b>" if j == k else html.escape(w) for j, w in enumerate(words))
        verdict = "true to the image ✓" if self.true else "not true to the image ✗"
        objects = ", ".join(o.phrase for o in scene.objects)
        self.info.value = (f"{shown}<br>log p = {self.log_probability:.3f} · {verdict}"
                           f"<br><small>image holds: {html.escape(objects)}</small>")

    def widget(self) -> W.Widget:
        controls = W.VBox([self.source, self.index, self.beam_width, self.word, self.info])
        return mark(W.VBox([W.HBox([self.image, controls]), W.HTML("<b>compose a scene</b> (choose “composed scene” above)"),
                            self.composer.widget()]), "captioning-explorer")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
