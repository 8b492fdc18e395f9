"""Draw with a diffusion model: type a Shapes caption, choose the guidance and the steps, watch
the first drawing form step by step."""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from mmcourse.viz import to_png
from mmcourse.widgets._dom import mark
from mmcourse.widgets.text_to_image import show_judged

__all__ = ["DiffusionDrawer"]


class DiffusionDrawer:
    """A caption box over a :class:`mmcourse.models.latent_diffusion.LatentDiffusion`: ``n``
    drawings (DDIM in ``steps``, classifier-free guidance ``w``), each marked ✓ when the judge
    (optional) reads exactly the scene the caption describes, and the first drawing's denoising:
    at each step the model's current guess of the clean image, ``x̂_0``, decoded (the ``step``
    slider scrubs through them). A caption outside the Shapes grammar shows the parser's message,
    which names the word. ``drawn`` holds the images (uint8), ``true`` the verdicts, ``frames``
    the denoising of the first drawing (uint8, one per step) and ``frame_steps`` their ``t``.
    """

    def __init__(self, model, *, judge=None, n: int = 4, caption: str = "a large red square left of a small blue circle", guidance: float = 3.0,
                 steps: int = 25, scale: int = 2):
        self.model, self.judge, self.n, self.scale = model, judge, n, scale
        self.caption = mark(W.Text(value=caption, description="caption", layout=W.Layout(width="32em"), continuous_update=False), "caption")
        self.guidance = mark(W.FloatSlider(value=guidance, min=0.0, max=8.0, step=0.5, description="guidance w", continuous_update=False), "guidance")
        self.steps = mark(W.IntSlider(value=steps, min=2, max=100, description="DDIM steps", continuous_update=False), "steps")
        self.again = W.Button(description="draw again", icon="refresh")
        self.message = mark(W.HTML(), "message")
        self.pictures = mark(W.HBox(), "pictures")
        self.step = mark(W.IntSlider(value=0, min=0, max=0, description="step", continuous_update=True), "step")
        self.frame = mark(W.Image(format="png"), "frame")
        self.frame_label = W.HTML()
        self.drawn = np.zeros((0, 64, 64, 3), np.uint8)
        self.frames = np.zeros((0, 64, 64, 3), np.uint8)
        self.frame_steps: list[int] = []
        self.true: list[bool] = []
        self.error = ""
        self._seed = 0
        for control in (self.caption, self.guidance, self.steps):
            control.observe(lambda change: self.update(), names="value")
        self.again.on_click(lambda button: self.update(new_draw=True))
        self.step.observe(lambda change: self._show_frame(), names="value")
        self.update()

    def update(self, new_draw: bool = False) -> None:
        self._seed += bool(new_draw)
        text = " ".join(self.caption.value.lower().split())
        try:
            self.model.caption_ids([text])
        except ValueError as err:
            self.error, self.drawn, self.true, self.frames, self.frame_steps = str(err), self.drawn[:0], [], self.frames[:0], []
            self.message.value = f"<span style='color:#b00'>{html.escape(self.error)}</span>"
            self.pictures.children = ()
            self.step.max = 0
            self._show_frame()
            return
        self.error = ""
        guesses, steps = [], []

        def watch(t, x, x0_hat):  # the first drawing's guess of the clean latent, at every step
            steps.append(int(t))
            guesses.append(np.asarray(x0_hat)[:1])

        self.drawn = self.model.draw([text] * self.n, guidance=self.guidance.value, steps=self.steps.value, seed=self._seed, callback=watch)
        self.frames = self.model.decode(np.concatenate(guesses))
        self.frame_steps = steps
        self.true = list(self.judge.describes(self.drawn, [text] * self.n)) if self.judge is not None else []
        summary = show_judged(self.pictures, self.drawn, self.true, self.scale)
        self.message.value = f"<b>{summary}</b> · guidance {self.guidance.value:g}, {len(steps)} DDIM steps"
        self.step.max = len(self.frames) - 1
        self.step.value = len(self.frames) - 1
        self._show_frame()

    def _show_frame(self) -> None:
        if not len(self.frames):
            self.frame.value, self.frame_label.value = b"", ""
            return
        k = self.step.value
        self.frame.value = to_png(self.frames[k], 2 * self.scale)
        self.frame_label.value = f"step {k + 1} of {len(self.frames)} (t = {self.frame_steps[k]}): the model's guess of the finished drawing"

    def widget(self) -> W.Widget:
        controls = W.HBox([self.caption, self.again])
        sliders = W.HBox([self.guidance, self.steps])
        denoising = W.VBox([W.HTML("<b>the first drawing, forming</b>"), self.step, self.frame, self.frame_label])
        return mark(W.VBox([controls, sliders, self.message, self.pictures, denoising]), "diffusion-drawer")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
