"""The embedding explorer: a word's nearest neighbours, and a : b :: c : ? analogies."""

from __future__ import annotations

import html
import ipywidgets as W
from mmcourse.widgets._dom import mark

__all__ = ["EmbeddingExplorer"]


class EmbeddingExplorer:
    """Type a word, see its nearest neighbours; fill in a : b :: c : ? and see the answers.

    Works with any :class:`mmcourse.data.vectors.WordVectors` (trained skip-gram vectors,
    GloVe, …). Attributes (all widgets): ``word`` and ``k`` (the query and how many
    neighbours), ``neighbours`` (the table); ``a``, ``b``, ``c`` (the analogy) and
    ``answer``. An unknown word shows the vocabulary's message (with suggested spellings)
    in the output instead of raising. ``results`` and ``analogy_results`` hold what is shown,
    as ``(word, cosine)`` lists.
    """

    def __init__(self, vectors, word: str = "", analogy: tuple[str, str, str] = ("", "", ""), k: int = 8):
        self.vectors = vectors
        self.word = mark(W.Text(value=word, description="word", continuous_update=False), "word")
        self.k = W.IntSlider(value=k, min=1, max=20, description="neighbours")
        self.neighbours = mark(W.HTML(), "neighbours")
        self.a, self.b, self.c = (W.Text(value=v, continuous_update=False, layout=W.Layout(width="130px")) for v in analogy)
        self.answer = mark(W.HTML(), "analogy")
        self.results: list[tuple[str, float]] = []
        self.analogy_results: list[tuple[str, float]] = []
        for control in (self.word, self.k):
            control.observe(lambda change: self.update_neighbours(), names="value")
        for control in (self.a, self.b, self.c):
            control.observe(lambda change: self.update_analogy(), names="value")
        self.update_neighbours()
        self.update_analogy()

    @staticmethod
    def _table(rows: list[tuple[str, float]]) -> str:
        body = "".join(f"<tr><td>{html.escape(w)}</td><td style='text-align:right'>{s:+.3f}</td></tr>" for w, s in rows)
        return f"<table><tr><th>word</th><th>cosine</th></tr>{body}</table>"

    @staticmethod
    def _error(err: KeyError) -> str:
        return f"<span style='color:#b22222'>{html.escape(str(err))}</span>"

    def update_neighbours(self) -> None:
        word = self.word.value.strip().lower()
        self.results = []
        if not word:
            self.neighbours.value = "<i>type a word</i>"
            return
        try:
            self.results = self.vectors.nearest(word, k=self.k.value)
        except KeyError as err:
            self.neighbours.value = self._error(err)
            return
        self.neighbours.value = f"<b>nearest to {html.escape(word)}</b>" + self._table(self.results)

    def update_analogy(self) -> None:
        a, b, c = (box.value.strip().lower() for box in (self.a, self.b, self.c))
        self.analogy_results = []
        if not (a and b and c):
            self.answer.value = "<i>fill in a, b and c</i>"
            return
        try:
            self.analogy_results = self.vectors.analogy(a, b, c, k=5)
        except KeyError as err:
            self.answer.value = self._error(err)
            return
        q = html.escape
        self.answer.value = f"<b>{q(a)} : {q(b)} :: {q(c)} : ?</b>" + self._table(self.analogy_results)

    def widget(self) -> W.Widget:
        left = W.VBox([W.HTML("<b>neighbours</b>"), self.word, self.k, self.neighbours])
        right = W.VBox([W.HTML("<b>analogy</b> &nbsp; a : b :: c : ?"), W.HBox([self.a, self.b, self.c]), self.answer])
        return mark(W.HBox([left, right], layout=W.Layout(gap="40px")), "embedding-explorer")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
