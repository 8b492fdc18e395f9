"""The captioning explorer: caption a test image or a composed scene; step through the words
and see where the model looked for each."""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from mmcourse.metrics import exact_match
from mmcourse.widgets._dom import mark
from mmcourse.widgets._scenes import SceneChoice, SceneExplorer, rewind, show_looked

__all__ = ["CaptioningExplorer"]


class CaptioningExplorer(SceneExplorer):
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
        self.choice = SceneChoice(images, scenes, dataset=("test image",) * 2, compose=("composed scene",) * 2, index_label="test image")
        self.source, self.index, self.composer = self.choice.source, self.choice.index, self.choice.composer
        self.beam_width = W.IntSlider(value=1, min=1, max=max_beam, description="beam width")
        self.word = W.IntSlider(value=0, min=0, max=1, description="word")
        self.image = mark(W.Image(format="png", layout=W.Layout(width=f"{64 * scale}px", height=f"{64 * scale}px")), "image")
        self.info = mark(W.HTML(), "info")
        self.caption, self.attention, self.log_probability, self.true, self.peak = "", np.zeros((1, 8, 8)), 0.0, False, (0, 0)
        self.choice.observe(self.update)
        self.beam_width.observe(lambda change: self.update(), names="value")
        self.word.observe(lambda change: self.show_word(), names="value")
        self.update()

    def update(self) -> None:
        """Caption the current image with the current beam width and show its first word."""
        from mmcourse.models.captioning import beam_search

        image, scene = self.current()
        self.index.disabled = self.choice.composing
        self.caption, self.attention, self.log_probability = beam_search(self.model, image, self.vocabulary, beam_width=self.beam_width.value)
        self.true = bool(exact_match([self.caption], [scene])[0])
        rewind(self.word, len(self.attention) - 1, self.show_word)

    def show_word(self) -> None:
        """Draw the image dimmed where the chosen word did not look, with the peak cell outlined."""
        image, scene = self.current()
        words = self.caption.split() + ["<end>"]
        k = min(self.word.value, len(self.attention) - 1)
        self.peak = show_looked(self.image, image, self.attention[k], self.scale)
        shown = " ".join(f"<b><u>{html.escape(w)}</u></b>" if j == k else html.escape(w) for j, w in enumerate(words))
        verdict = "true to the image ✓" if self.true else "not true to the image ✗"
        objects = ", ".join(o.phrase for o in scene.objects)
        self.info.value = (f"{shown}<br>log p = {self.log_probability:.3f} · {verdict}"
                           f"<br><small>image holds: {html.escape(objects)}</small>")

    def widget(self) -> W.Widget:
        controls = W.VBox([self.source, self.index, self.beam_width, self.word, self.info])
        return mark(W.VBox([W.HBox([self.image, controls]), W.HTML("<b>compose a scene</b> (choose “composed scene” above)"),
                            self.composer.widget()]), "captioning-explorer")
