"""Text to image: type a Shapes caption, see what a conditional VAE draws from it."""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from mmcourse.imageops import to_uint8
from mmcourse.viz import to_png
from mmcourse.widgets._dom import mark

__all__ = ["TextToImage", "show_judged"]


def show_judged(pictures: W.Box, drawn: np.ndarray, true: list[bool], scale: int) -> str:
    """Put each drawing in ``pictures`` with the judge's verdict under it (none when ``true`` is
    empty: no judge); return the summary line, e.g. "2 of 6 judged true to the caption"."""
    boxes = []
    for k, image in enumerate(drawn):
        label = ("✓ true" if true[k] else "✗ not true") if true else ""
        boxes.append(W.VBox([W.Image(value=to_png(image, scale), format="png"), W.HTML(label)]))
    pictures.children = tuple(boxes)
    return f"{sum(true)} of {len(drawn)} judged true to the caption" if true else f"{len(drawn)} drawings"


class TextToImage:
    """A caption box over a conditional VAE: ``n`` drawings, each marked ✓ when the judge
    (:class:`mmcourse.metrics.judge.SceneJudge`, optional) reads a scene that makes the
    caption true. A caption outside the Shapes grammar shows the parser's message, which
    names the word. ``drawn`` holds the images (uint8), ``true`` the judge's verdicts.
    """

    def __init__(self, vae, *, judge=None, n: int = 6, caption: str = "a large red circle left of a small blue square", scale: int = 2):
        self.vae, self.judge, self.n, self.scale = vae, judge, n, scale
        self.caption = mark(W.Text(value=caption, description="caption", layout=W.Layout(width="32em"), continuous_update=False), "caption")
        self.again = W.Button(description="draw again", icon="refresh")
        self.message = mark(W.HTML(), "message")
        self.pictures = mark(W.HBox(), "pictures")
        self.drawn = np.zeros((0, 64, 64, 3), np.uint8)
        self.true: list[bool] = []
        self.error = ""
        self._seed = 0
        self.caption.observe(lambda change: self.update(), names="value")
        self.again.on_click(lambda button: self.update(new_draw=True))
        self.update()

    def update(self, new_draw: bool = False) -> None:
        from mmcourse.data import shapes

        self._seed += bool(new_draw)
        text = " ".join(self.caption.value.lower().split())
        try:
            images = self.vae.draw(text, self.n, seed=self._seed)
        except shapes.CaptionError as err:
            self.error, self.drawn, self.true = str(err), self.drawn[:0], []
            self.message.value = f"<span style='color:#b00'>{html.escape(self.error)}</span>"
            self.pictures.children = ()
            return
        self.error = ""
        self.drawn = to_uint8(images)
        self.true = list(self.judge.is_true(self.drawn, [text] * self.n)) if self.judge is not None else []
        self.message.value = f"<b>{show_judged(self.pictures, self.drawn, self.true, self.scale)}</b>"

    def widget(self) -> W.Widget:
        return mark(W.VBox([W.HBox([self.caption, self.again]), self.message, self.pictures]), "text-to-image")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
