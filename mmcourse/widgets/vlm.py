"""The vision-language model explorer: choose (or compose) an image, ask the one model a
question or for a caption; step through the words it wrote and see where each looked."""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from mmcourse.data import shapes
from mmcourse.metrics import exact_match
from mmcourse.widgets._dom import mark
from mmcourse.widgets._scenes import QuestionChoice, SceneChoice, SceneExplorer, answer_verdict, picture_png, rewind, show_looked

__all__ = ["VLMExplorer"]


class VLMExplorer(SceneExplorer):
    """Ask a trained :class:`~mmcourse.models.vlm.VLM` about Shapes images, or have it caption them.

    Args:
        model: the vision-language model (e.g. :func:`mmcourse.models.vlm.load`).
        images, scenes: the images to choose from (uint8 ``(n, 64, 64, 3)``) and their scenes.

    Controls (all widgets): ``source`` (a dataset image or a composed one), ``index``,
    ``composer`` (a :class:`~mmcourse.widgets.SceneComposer`), ``task`` (``"question"`` or
    ``"caption"``), ``question`` (the questions the scene answers), ``typed`` (type any
    question; it wins over the list when not empty), ``word`` (which generated token's map to show).
    State after each update: ``tokens`` and ``maps`` (:func:`mmcourse.models.vlm.generate_with_attention`'s;
    empty when the question cannot be read), ``output`` (the answer or caption, without
    ``<end>``), ``error`` (the message for a question with a word the model does not know, or
    None), ``true_answer`` (the scene's answer when the question is one of its own, else None),
    ``true`` (the answer is the true one, or the caption describes the scene exactly; None when
    there is nothing to compare with), ``peak`` ((row, col) of the shown token's map; None
    when nothing was generated).
    """

    def __init__(self, model, images, scenes, *, scale: int = 4):
        from mmcourse.models import vlm

        if len(images) != len(scenes) or len(images) == 0:
            raise ValueError(f"give as many scenes as images (at least one): got {len(images)} images and {len(scenes)} scenes")
        self._vlm = vlm
        self.model, self.images, self.scenes, self.scale = model, images, scenes, scale
        self.choice = SceneChoice(images, scenes)
        self.source, self.index, self.composer = self.choice.source, self.choice.index, self.choice.composer
        self.task = mark(W.ToggleButtons(options=["question", "caption"], value="question", description="task"), "task")
        self.questions = QuestionChoice()
        self.question, self.typed = self.questions.question, self.questions.typed
        self.word = mark(W.IntSlider(value=0, min=0, max=1, description="word"), "word")
        self.image = mark(W.Image(format="png", layout=W.Layout(width=f"{64 * scale}px", height=f"{64 * scale}px")), "image")
        self.info = mark(W.HTML(), "info")
        self.tokens: list[str] = []
        self.maps = np.zeros((0, 8, 8))
        self.output, self.error, self.true_answer = "", None, None
        self.true: bool | None = None
        self.peak: tuple[int, int] | None = None
        self.questions.follow(self.choice, self.update)
        self.questions.observe(lambda: self.update() if self.task.value == "question" else None)
        self.task.observe(lambda change: self.update(), names="value")
        self.word.observe(lambda change: self.show_word(), names="value")
        self.update()

    def update(self) -> None:
        """Run the model on the current image with the current task and show its first token."""
        vlm = self._vlm
        image, scene = self.current()
        asks = self.task.value == "question"
        self.question.disabled = self.typed.disabled = not asks
        if asks:
            prompt, limit = vlm.question_prompt(self.questions.text), vlm.ANSWER_TOKENS
            self.true_answer = self.questions.true_answer()
        else:
            prompt, limit, self.true_answer = vlm.caption_prompt(), None, None
        try:
            self.tokens, self.maps = vlm.generate_with_attention(self.model, image, prompt, max_tokens=limit)
            self.error = None
        except vlm.QuestionError as err:
            self.tokens, self.maps, self.error = [], np.zeros((0, 8, 8)), str(err)
        self.output = " ".join(t for t in self.tokens if t != "<end>")
        if self.error is not None:
            self.true = None
        elif asks:
            self.true = None if self.true_answer is None else self.output == self.true_answer
        else:
            self.true = bool(exact_match([self.output], [scene])[0])
        rewind(self.word, max(len(self.tokens) - 1, 0), self.show_word)

    def show_word(self) -> None:
        """Draw the image dimmed where the chosen token did not look, its peak cell outlined, and the texts."""
        image, scene = self.current()
        if not self.tokens:  # nothing generated: the image as it is
            self.peak = None
            self.image.value = picture_png(image, self.scale)
            self.info.value = self._describe(scene, -1)
            return
        k = min(self.word.value, len(self.tokens) - 1)
        self.peak = show_looked(self.image, image, self.maps[k], self.scale)
        self.info.value = self._describe(scene, k)

    def _describe(self, scene: shapes.Scene, k: int) -> str:
        asks = self.task.value == "question"
        head = f"<b>Q:</b> {html.escape(self.questions.text)}<br>" if asks else ""
        if self.error is not None:
            return head + f"<span style='color:#b00'>cannot read this question: {html.escape(self.error)}</span>"
        shown = " ".join(f"<b><u>{html.escape(t)}</u></b>" if j == k else html.escape(t) for j, t in enumerate(self.tokens))
        if asks:
            out = head + f"<b>A:</b> {shown}" + answer_verdict(self.output, self.true_answer)
        else:
            verdict = "true to the image ✓" if self.true else "not true to the image ✗"
            objects = ", ".join(o.phrase for o in scene.objects)
            out = f"<b>caption:</b> {shown}<br>{verdict}<br><small>image holds: {html.escape(objects)}</small>"
        share = float(self.maps[k].sum())
        return out + (f"<br><small>“{html.escape(self.tokens[k])}”: {share:.0%} of its attention on the image, "
                      f"{1 - share:.0%} on the words; bright cells: where it looked (last block, mean of the heads)</small>")

    def widget(self) -> W.Widget:
        controls = W.VBox([self.source, self.choice.picker(), self.task, self.question, self.typed, self.word])
        return mark(W.VBox([controls, W.HBox([self.image, self.info])]), "vlm-explorer")
