"""The VQA explorer: choose (or compose) an image, choose or type a question, pick a fusion
model; see its answer, how sure it is, and where it looked."""

from __future__ import annotations

import html

import ipywidgets as W

from mmcourse.data import shapes
from mmcourse.widgets._dom import mark
from mmcourse.widgets._scenes import QuestionChoice, SceneChoice, SceneExplorer, answer_verdict, dimmed, picture_png

__all__ = ["VQAExplorer"]


class VQAExplorer(SceneExplorer):
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
        self.choice = SceneChoice(images, scenes)
        self.source, self.index, self.composer = self.choice.source, self.choice.index, self.choice.composer
        self.questions = QuestionChoice()
        self.question, self.typed = self.questions.question, self.questions.typed
        names = list(self.models)
        self.model = mark(W.Dropdown(options=names, value="attention" if "attention" in names else names[0], description="model"), "model")
        self.image = W.Image(format="png", layout=W.Layout(width=f"{64 * scale}px", height=f"{64 * scale}px"))
        self.info = mark(W.HTML(), "info")
        self.result: dict | None = None
        self.error: str | None = None
        self.true_answer: str | None = None
        self.questions.follow(self.choice, self.update)
        self.questions.observe(self.update)
        self.model.observe(lambda change: self.update(), names="value")
        self.update()

    def update(self) -> None:
        """Answer the current question about the current image with the chosen model."""
        image, _ = self.current()
        text = self.questions.text
        model = self.models[self.model.value]
        self.true_answer = self.questions.true_answer()
        try:
            self.result = self._vqa.answer(self.encoder, model, image, text, self.vocabulary)
            self.error = None
        except self._vqa.QuestionError as err:
            self.result, self.error = None, str(err)
        picture = image
        if self.result is not None and self.result["attention"] is not None:
            picture = dimmed(image, self.result["attention"])  # dim what the question ignores
        self.image.value = picture_png(picture, self.scale)
        self.info.value = self._describe(text)

    def _describe(self, text: str) -> str:
        head = f"<b>Q:</b> {html.escape(text)}<br>"
        if self.error is not None:
            return head + f"<span style='color:#b00'>cannot read this question: {html.escape(self.error)}</span>"
        p = self.result["probabilities"]
        top = sorted(p, key=p.get, reverse=True)[:3]
        out = head + f"<b>A ({html.escape(self.model.value)}):</b> {html.escape(self.result['answer'])} ({p[top[0]]:.0%})"
        out += answer_verdict(self.result["answer"], self.true_answer)
        out += "<br><small>next: " + ", ".join(f"{html.escape(a)} {p[a]:.0%}" for a in top[1:]) + "</small>"
        if self.result["attention"] is not None:
            out += "<br><small>bright cells: where the question looked (mean of the heads)</small>"
        return out

    def widget(self) -> W.Widget:
        return mark(W.VBox([self.source, self.choice.picker(), self.question, self.typed, self.model, W.HBox([self.image, self.info])]), "vqa-explorer")
