"""The VQA explorer: choose (or compose) an image, choose or type a question, pick a fusion
model; see its answer, how sure it is, and where it looked."""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from mmcourse.data import shapes
from mmcourse.viz import to_png
from mmcourse.widgets.scene import SceneComposer
from mmcourse.widgets._dom import mark

__all__ = ["VQAExplorer"]


class VQAExplorer:
    """Ask the trained VQA models questions about Shapes images.

    Args:
        encoder: the frozen image encoder the models were trained on.
        models: ``{name: VQAModel}``, e.g. one per fusion.
        images, scenes: the images to choose from (uint8 ``(n, 64, 64, 3)``) and their scenes.
        vocabulary: the question vocabulary (default :func:`mmcourse.data.shapes.question_vocabulary`).

    Controls (all widgets): ``source`` (a dataset image or a composed one), ``index``,
    ``composer`` (a :class:`SceneComposer`), ``question`` (the questions the scene answers),
    ``typed`` (type any question; it wins over the list when not empty), ``model``.
    State after each update: ``result`` (see :func:`mmcourse.models.vqa.answer`, or None),
    ``error`` (the message for a question the models cannot read, or None), ``true_answer``
    (the scene's answer when the question is one of its own, else None).
    """

    def __init__(self, encoder, models: dict, images, scenes, *, vocabulary=None, scale: int = 4):
        from mmcourse.models import vqa

        if not models:
            raise ValueError("models must name at least one trained VQA model, e.g. {'attention': model}")
        self._vqa = vqa
        self.encoder, self.models, self.images, self.scenes = encoder, dict(models), images, scenes
        self.vocabulary = vocabulary or shapes.question_vocabulary()
        self.scale = scale
        self.source = W.ToggleButtons(options=[("dataset image", "dataset"), ("compose one", "compose")], value="dataset", description="image")
        self.index = W.IntSlider(value=0, min=0, max=len(images) - 1, description="index")
        self.composer = SceneComposer(scale=2)
        self.question = mark(W.Dropdown(options=[], description="question", layout=W.Layout(width="480px")), "question")
        self.typed = mark(W.Text(value="", placeholder="or type a question, e.g. is there a red circle", description="typed",
                                 layout=W.Layout(width="480px"), continuous_update=False), "typed")
        names = list(self.models)
        self.model = mark(W.Dropdown(options=names, value="attention" if "attention" in names else names[0], description="model"), "model")
        self.image = W.Image(format="png", layout=W.Layout(width=f"{64 * scale}px", height=f"{64 * scale}px"))
        self.info = mark(W.HTML(), "info")
        self.result: dict | None = None
        self.error: str | None = None
        self.true_answer: str | None = None
        self._updating = False
        for control in (self.source, self.index):
            control.observe(self._on_scene, names="value")
        c = self.composer  # its own observers (registered first) rebuild c.scene before ours run
        for control in (c.count, *c.size, *c.colour, *c.shape, c.relation, c.jitter, c.seed):
            control.observe(self._on_scene, names="value")
        for control in (self.question, self.typed, self.model):
            control.observe(lambda change: self.update(), names="value")
        self._on_scene(None)

    # the current image and scene
    def current(self) -> tuple[np.ndarray, shapes.Scene]:
        if self.source.value == "compose":
            return shapes.render(self.composer.scene), self.composer.scene
        i = self.index.value
        return self.images[i], self.scenes[i]

    def _on_scene(self, change) -> None:
        if self._updating:
            return
        _, scene = self.current()
        self._qa = {qa.question: qa for qa in shapes.questions(scene)}
        self._updating = True
        try:
            self.question.options = list(self._qa)
            self.question.value = next(iter(self._qa))
        finally:
            self._updating = False
        self.update()

    def update(self) -> None:
        """Answer the current question about the current image with the chosen model."""
        if self._updating:
            return
        image, scene = self.current()
        text = self.typed.value.strip() or self.question.value
        model = self.models[self.model.value]
        known = self._qa.get(" ".join(text.lower().replace("?", " ").split()))
        self.true_answer = known.answer if known else None
        try:
            self.result = self._vqa.answer(self.encoder, model, image, text, self.vocabulary)
            self.error = None
        except self._vqa.QuestionError as err:
            self.result, self.error = None, str(err)
        picture = image.astype(np.float64)
        if self.result is not None and self.result["attention"] is not None:
            weights = self.result["attention"]
            heat = np.kron(weights / weights.max(), np.ones((8, 8)))[..., None]
            picture = picture * (0.25 + 0.75 * heat)  # dim what the question ignores
        self.image.value = to_png(np.clip(picture, 0, 255).astype(np.uint8), scale=self.scale)
        self.info.value = self._describe(text)

    def _describe(self, text: str) -> str:
        head = f"<b>Q:</b> {html.escape(text)}<br>"
        if self.error is not None:
            return head + f"<span style='color:#b00'>cannot read this question: {html.escape(self.error)}</span>"
        p = self.result["probabilities"]
        top = sorted(p, key=p.get, reverse=True)[:3]
        out = head + f"<b>A ({html.escape(self.model.value)}):</b> {html.escape(self.result['answer'])} ({p[top[0]]:.0%})"
        if self.true_answer is not None:
            out += " ✓" if self.result["answer"] == self.true_answer else f" ✗ (true answer: {html.escape(self.true_answer)})"
        else:
            out += "<br><small>not one of this scene's own questions: no true answer to compare</small>"
        out += "<br><small>next: " + ", ".join(f"{html.escape(a)} {p[a]:.0%}" for a in top[1:]) + "</small>"
        if self.result["attention"] is not None:
            out += "<br><small>bright cells: where the question looked (mean of the heads)</small>"
        return out

    def widget(self) -> W.Widget:
        composer = self.composer.widget()
        picker = W.VBox([self.index])

        def show(change=None):
            picker.children = [composer.children[0]] if self.source.value == "compose" else [self.index]

        self.source.observe(show, names="value")
        show()
        return mark(W.VBox([self.source, picker, self.question, self.typed, self.model, W.HBox([self.image, self.info])]), "vqa-explorer")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
