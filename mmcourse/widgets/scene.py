"""The scene composer: build a Shapes-world scene with controls, see it and its captions."""

from __future__ import annotations

import html
import ipywidgets as W

from mmcourse.data import shapes
from mmcourse.viz import to_png
from mmcourse.widgets._dom import mark

__all__ = ["SceneComposer"]


class SceneComposer:
    """Choose shapes, colours, sizes and a relation; see the image and its five captions.

    Attributes (all widgets): ``count`` (1 or 2 objects); ``size``, ``colour``, ``shape``
    (a pair of dropdowns each, for the first and second object); ``relation``
    (where the first object stands relative to the second); ``jitter`` (draw position and
    colour as the dataset does, with ``seed``); ``image``, ``captions`` and ``answers``
    (the outputs). ``scene`` is the current :class:`~mmcourse.data.shapes.Scene`.
    """

    def __init__(self, scale: int = 4):
        self.scale = scale
        self.count = W.ToggleButtons(options=[("one object", 1), ("two objects", 2)], value=2, description="objects")
        defaults = (("small", "red", "circle"), ("large", "blue", "square"))
        self.size, self.colour, self.shape = [], [], []
        for k, (size, colour, shape) in enumerate(defaults):
            self.size.append(W.Dropdown(options=list(shapes.SIZES), value=size, description=f"object {k + 1}"))
            self.colour.append(W.Dropdown(options=list(shapes.COLOURS), value=colour))
            self.shape.append(W.Dropdown(options=list(shapes.SHAPES), value=shape))
        for box in (*self.size, *self.colour, *self.shape):
            box.layout = W.Layout(width="160px")
        for k in range(2):
            for name, box in (("size", self.size[k]), ("colour", self.colour[k]), ("shape", self.shape[k])):
                mark(box, f"{name}-{k}")
        self.relation = W.Dropdown(options=list(shapes.RELATIONS), value="left of", description="1st is")
        self.jitter = W.Checkbox(value=False, description="draw like the dataset (jitter)")
        self.seed = W.IntSlider(value=0, min=0, max=99, description="seed")
        self.image = mark(W.Image(format="png", layout=W.Layout(width=f"{64 * scale}px", height=f"{64 * scale}px")), "image")
        self.captions = mark(W.HTML(), "captions")
        self.answers = mark(W.HTML(), "answers")
        self.scene: shapes.Scene | None = None
        for control in (self.count, *self.size, *self.colour, *self.shape, self.relation, self.jitter, self.seed):
            control.observe(self._on_change, names="value")
        self.update()

    def _on_change(self, change) -> None:
        self.update()

    def chosen_objects(self) -> list[tuple[str, str, str]]:
        return [(self.size[k].value, self.colour[k].value, self.shape[k].value) for k in range(self.count.value)]

    def update(self) -> None:
        """Rebuild the scene from the controls and redraw the outputs."""
        two = self.count.value == 2
        for box in (self.size[1], self.colour[1], self.shape[1], self.relation):
            box.disabled = not two
        self.seed.disabled = not self.jitter.value
        seed = self.seed.value if self.jitter.value else None
        self.scene = shapes.compose(self.chosen_objects(), self.relation.value if two else None, seed=seed)
        self.image.value = to_png(shapes.render(self.scene), scale=self.scale)
        caps = shapes.captions_of(self.scene, seed=self.seed.value)
        self.captions.value = "<b>five true captions</b><ol>" + "".join(f"<li>{html.escape(c)}</li>" for c in caps) + "</ol>"
        rows = "".join(
            f"<tr><td>{html.escape(qa.question)}</td><td><b>{html.escape(qa.answer)}</b></td><td><i>{qa.kind}</i></td></tr>"
            for qa in shapes.questions(self.scene)
        )
        self.answers.value = f"<b>questions it answers</b><table>{rows}</table>"

    @property
    def caption_list(self) -> list[str]:
        """The captions now shown, as plain strings."""
        return shapes.captions_of(self.scene, seed=self.seed.value)

    def widget(self) -> W.Widget:
        controls = W.VBox(
            [
                self.count,
                W.HBox([self.size[0], self.colour[0], self.shape[0]]),
                self.relation,
                W.HBox([self.size[1], self.colour[1], self.shape[1]]),
                W.HBox([self.jitter, self.seed]),
            ]
        )
        return mark(W.VBox([controls, W.HBox([self.image, W.VBox([self.captions, self.answers])])]), "scene-composer")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())


#: ITU-R BT.709 luminance weights, as ``skimage.color.rgb2gray`` uses.
