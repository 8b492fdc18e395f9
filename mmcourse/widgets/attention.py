"""The attention explorer: a query word or phrase attends over an image; toggle the masks."""

from __future__ import annotations

import html
import ipywidgets as W
import numpy as np

from mmcourse.data import shapes
from mmcourse.widgets._dom import mark
from mmcourse.widgets._scenes import dimmed, outline_cell, peak_cell, picture_png

__all__ = ["AttentionExplorer"]


class AttentionExplorer:
    """Where does a phrase look? Pick an image and a query phrase (colour + shape); see the
    attention weights over the image's 8×8 grid, the object masks if wanted, and the peak.

    ``attend(image_index, colour, shape)`` must return the (8, 8) attention weights; the
    notebook passes one that runs its trained model. ``weights`` holds the latest weights,
    ``peak`` the (row, col) of the most-attended cell and ``peak_on_object`` whether that cell
    overlaps an object matching the phrase.
    """

    def __init__(self, images, scenes, masks, attend, *, scale: int = 4):
        self.images, self.scenes, self.masks, self.attend, self.scale = images, scenes, masks, attend, scale
        self.index = W.IntSlider(value=0, min=0, max=len(images) - 1, description="image")
        self.colour = mark(W.Dropdown(options=list(shapes.COLOURS), description="colour"), "colour")
        self.shape = W.Dropdown(options=list(shapes.SHAPES), description="shape")
        self.show_attention = W.Checkbox(value=True, description="show attention")
        self.show_masks = W.Checkbox(value=False, description="show object masks")
        self.image = mark(W.Image(format="png", layout=W.Layout(width=f"{64 * scale}px", height=f"{64 * scale}px")), "image")
        self.info = mark(W.HTML(), "info")
        self.weights = None
        self.peak = (0, 0)
        self.peak_on_object = False
        for control in (self.index, self.colour, self.shape, self.show_attention, self.show_masks):
            control.observe(lambda change: self.update(), names="value")
        self.update()

    def update(self) -> None:
        i = self.index.value
        self.weights = np.asarray(self.attend(i, self.colour.value, self.shape.value), np.float64).reshape(8, 8)
        self.peak = peak_cell(self.weights)
        picture = self.images[i].astype(np.float64)
        if self.show_attention.value:
            picture = dimmed(picture, self.weights, floor=0.3)  # dim what the query ignores
        if self.show_masks.value:
            for mask in self.masks[i][: len(self.scenes[i].objects)]:
                edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
                picture[edge] = (0, 0, 0)
        self.image.value = picture_png(outline_cell(picture, self.peak), self.scale)
        r, c = self.peak
        scene = self.scenes[i]
        matching = [k for k, o in enumerate(scene.objects) if (o.colour, o.shape) == (self.colour.value, self.shape.value)]
        cell = np.zeros((64, 64), bool)
        cell[r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] = True
        self.peak_on_object = any((self.masks[i][k] & cell).any() for k in matching)
        objects = ", ".join(o.phrase for o in scene.objects)
        verdict = "no such object in this image" if not matching else ("peak on the object ✓" if self.peak_on_object else "peak elsewhere ✗")
        self.info.value = f"<b>{html.escape(self.colour.value)} {html.escape(self.shape.value)}</b>: {verdict}<br><small>image holds: {html.escape(objects)}</small>"

    def widget(self) -> W.Widget:
        controls = W.VBox([self.index, self.colour, self.shape, self.show_attention, self.show_masks, self.info])
        return mark(W.HBox([self.image, controls]), "attention-explorer")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
