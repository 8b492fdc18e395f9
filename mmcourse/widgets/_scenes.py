"""What the explorers over Shapes scenes share: choosing a dataset image or composing a scene
(:class:`SceneChoice`, and :class:`SceneExplorer` over it), choosing or typing one of its
questions and looking up the scene's own answer (:class:`QuestionChoice`), drawing an image
dimmed where an 8×8 attention map is small with its peak cell outlined, and a word slider that
starts again at a new output."""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from mmcourse.data import shapes
from mmcourse.viz import to_png
from mmcourse.widgets._dom import mark
from mmcourse.widgets.scene import SceneComposer

__all__ = ["SceneExplorer", "SceneChoice", "QuestionChoice", "answer_verdict", "peak_cell", "dimmed", "outline_cell", "picture_png", "show_looked", "rewind"]

PEAK_COLOUR = (255, 0, 255)


class SceneChoice:
    """A dataset image (``index``) or a scene composed with a :class:`SceneComposer`
    (``composer``), as the toggle ``source`` (marked ``mm-source``) says.

    ``dataset`` and ``compose`` are the toggle's ``(label, value)`` for each; ``index_label``
    the slider's description.
    """

    def __init__(self, images, scenes, *, dataset=("dataset image", "dataset"), compose=("compose one", "compose"),
                 index_label: str = "index"):
        self.images, self.scenes = images, scenes
        self.compose_value = compose[1]
        self.source = mark(W.ToggleButtons(options=[tuple(dataset), tuple(compose)], value=dataset[1], description="image"), "source")
        self.index = W.IntSlider(value=0, min=0, max=len(images) - 1, description=index_label)
        self.composer = SceneComposer(scale=2)

    @property
    def composing(self) -> bool:
        return self.source.value == self.compose_value

    def current(self) -> tuple[np.ndarray, shapes.Scene]:
        """The chosen image and its scene."""
        if self.composing:
            return shapes.render(self.composer.scene), self.composer.scene
        return self.images[self.index.value], self.scenes[self.index.value]

    def observe(self, callback) -> None:
        """Call ``callback()`` whenever the chosen scene may change: the source or the index, or a
        composer control while composing (the composer's own observers, registered first, have
        rebuilt its scene by then)."""
        for control in (self.source, self.index):
            control.observe(lambda change: callback(), names="value")
        c = self.composer
        for control in (c.count, *c.size, *c.colour, *c.shape, c.relation, c.jitter, c.seed):
            control.observe(lambda change: callback() if self.composing else None, names="value")

    def picker(self) -> W.Widget:
        """The index slider, or the composer's controls while composing (the explorer shows the image)."""
        composer = self.composer.widget()
        box = W.VBox([self.index])

        def show(change=None):
            box.children = [composer.children[0]] if self.composing else [self.index]

        self.source.observe(show, names="value")
        show()
        return box


class SceneExplorer:
    """Base of the explorers whose image is a :class:`SceneChoice`, ``self.choice``; a subclass
    builds its controls in ``widget()``."""

    choice: SceneChoice

    def current(self) -> tuple[np.ndarray, shapes.Scene]:
        """The chosen image and its scene."""
        return self.choice.current()

    def widget(self) -> W.Widget:
        raise NotImplementedError

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())


class QuestionChoice:
    """A dropdown ``question`` of the scene's own questions (:func:`shapes.questions`, marked
    ``mm-question``) and a text box ``typed`` (``mm-typed``) where any question can be typed; the
    typed one wins when not empty."""

    def __init__(self):
        self.question = mark(W.Dropdown(options=[], description="question", layout=W.Layout(width="480px")), "question")
        self.typed = mark(W.Text(value="", placeholder="or type a question, e.g. is there a red circle", description="typed",
                                 layout=W.Layout(width="480px"), continuous_update=False), "typed")
        self.answers: dict[str, str] = {}
        self._refilling = False

    def observe(self, callback) -> None:
        """Call ``callback()`` when the learner picks or types a question (not while :meth:`offer` refills the list)."""
        for control in (self.question, self.typed):
            control.observe(lambda change: None if self._refilling else callback(), names="value")

    def follow(self, choice: SceneChoice, callback) -> None:
        """Offer the questions of ``choice``'s scene now, and again whenever the scene may change,
        each time calling ``callback()`` after."""

        def again():
            self.offer(choice.current()[1])
            callback()

        choice.observe(again)
        self.offer(choice.current()[1])

    def offer(self, scene: shapes.Scene) -> None:
        """List ``scene``'s own questions and choose the first, without calling the observers."""
        self.answers = {qa.question: qa.answer for qa in shapes.questions(scene)}
        self._refilling = True
        try:
            self.question.options = list(self.answers)
            self.question.value = next(iter(self.answers))
        finally:
            self._refilling = False

    @property
    def text(self) -> str:
        """The question asked: the typed one when not empty, else the chosen one."""
        return self.typed.value.strip() or self.question.value

    def true_answer(self) -> str | None:
        """The scene's answer to the question asked when it is one of the scene's own (case and a
        final ``?`` aside), else None."""
        return self.answers.get(" ".join(self.text.lower().replace("?", " ").split()))


def answer_verdict(answer: str, true_answer: str | None) -> str:
    """HTML to follow an answer: ✓, ✗ with the true answer, or a note that the question is not
    one of the scene's own (``true_answer`` None)."""
    if true_answer is None:
        return "<br><small>not one of this scene's own questions: no true answer to compare</small>"
    return " ✓" if answer == true_answer else f" ✗ (true answer: {html.escape(true_answer)})"


def peak_cell(weights) -> tuple[int, int]:
    """(row, col) of the largest weight of an 8×8 map."""
    return tuple(int(v) for v in np.unravel_index(np.argmax(weights), np.shape(weights)))


def dimmed(image, weights, *, floor: float = 0.25) -> np.ndarray:
    """``image`` (64×64) as float64, each 8×8 cell keeping ``floor + (1 − floor)·w / max w`` of
    its brightness: dim where the map ``weights`` (8×8) looked little."""
    weights = np.asarray(weights)
    heat = np.kron(weights / max(weights.max(), 1e-12), np.ones((8, 8)))[..., None]
    return np.asarray(image).astype(np.float64) * (floor + (1 - floor) * heat)


def outline_cell(picture: np.ndarray, cell: tuple[int, int]) -> np.ndarray:
    """Outline the 8×8 cell ``(row, col)`` of ``picture`` in magenta, in place; returns it."""
    r, c = cell
    picture[r * 8 : r * 8 + 8, [c * 8, c * 8 + 7]] = PEAK_COLOUR
    picture[[r * 8, r * 8 + 7], c * 8 : c * 8 + 8] = PEAK_COLOUR
    return picture


def picture_png(picture, scale: int) -> bytes:
    """PNG bytes of a float or integer picture, clipped to 0–255."""
    return to_png(np.clip(picture, 0, 255).astype(np.uint8), scale=scale)


def show_looked(target: W.Image, image, weights, scale: int) -> tuple[int, int]:
    """Show in ``target`` the image dimmed where the 8×8 map ``weights`` looked little, its peak
    cell outlined; returns the peak (row, col)."""
    peak = peak_cell(weights)
    target.value = picture_png(outline_cell(dimmed(image, weights), peak), scale)
    return peak


def rewind(word: W.IntSlider, last: int, draw) -> None:
    """A new output: let the slider ``word`` run to ``last`` and put it back at 0, so that ``draw()`` shows the first."""
    word.max = last
    if word.value == 0:
        draw()
    else:
        word.value = 0  # the slider's observer draws
