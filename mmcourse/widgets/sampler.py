"""The caption sampler: a temperature slider and a prefix box over a caption language model."""

from __future__ import annotations

import html
import ipywidgets as W

from mmcourse.data import shapes
from mmcourse.widgets._dom import mark

__all__ = ["CaptionSampler"]


class CaptionSampler:
    """Sample captions from a caption language model: a temperature slider and a prefix box.

    Each sampled caption is marked ✓ when :func:`~mmcourse.data.shapes.parse_caption`
    accepts it (it is grammatical) and ✗ otherwise; ``fraction_grammatical`` holds the share.
    A prefix with a word the model does not know shows the error instead of samples.
    """

    def __init__(self, model, vocab, *, n: int = 8, seed: int = 0):
        self.model, self.vocab, self.n = model, vocab, n
        self.temperature = W.FloatSlider(value=1.0, min=0.1, max=3.0, step=0.05, description="temperature", continuous_update=False)
        self.prefix = mark(W.Text(value="", placeholder="e.g. a large", description="prefix", continuous_update=False), "prefix")
        self.resample = W.Button(description="sample again", icon="refresh")
        self.output = mark(W.HTML(), "samples")
        self.samples: list[str] = []
        self.error = ""
        self.fraction_grammatical = 0.0
        self._draws = seed
        self.temperature.observe(lambda change: self.update(), names="value")
        self.prefix.observe(lambda change: self.update(), names="value")
        self.resample.on_click(lambda button: self.update(new_draw=True))
        self.update()

    def update(self, new_draw: bool = False) -> None:
        from mmcourse.models.sequence import sample_captions

        self._draws += bool(new_draw)
        try:
            self.samples = sample_captions(
                self.model, self.vocab, self.n, temperature=self.temperature.value, prefix=self.prefix.value, seed=self._draws
            )
        except ValueError as err:
            self.samples, self.fraction_grammatical, self.error = [], 0.0, str(err)
            self.output.value = f"<span style='color:#b00'>{html.escape(self.error)}</span>"
            return
        self.error = ""
        rows, ok = [], 0
        for caption in self.samples:
            try:
                shapes.parse_caption(caption)
                mark, good = "✓", True
            except shapes.CaptionError:
                mark, good = "✗", False
            ok += good
            rows.append(f"<li>{mark} {html.escape(caption)}</li>")
        self.fraction_grammatical = ok / len(self.samples)
        self.output.value = f"<b>{ok} of {len(self.samples)} grammatical</b><ul style='list-style:none'>{''.join(rows)}</ul>"

    def widget(self) -> W.Widget:
        return mark(W.VBox([W.HBox([self.temperature, self.prefix, self.resample]), self.output]), "caption-sampler")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())


# --------------------------------------------------------------------------- notebook 01: word embeddings
