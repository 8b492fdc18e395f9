"""Search both ways in a dual encoder's shared space: type a caption, see the closest images;
pick an image, see the closest captions."""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from mmcourse.viz import to_png
from mmcourse.widgets._dom import mark

__all__ = ["SearchWidget"]


class SearchWidget:
    """Text → image and image → text search over a gallery, with truth marks.

    Images and captions are embedded once, at the start, by the trained
    :class:`mmcourse.models.retrieval.DualEncoder`; a search is then one matrix product.
    With the gallery's ``scenes``, every result is marked ✓ when the caption is true of the
    image (:meth:`mmcourse.data.shapes.CaptionParse.is_true_of`) and ✗ when it is not.

    Type a caption in the box (a word outside the Shapes grammar is named in red), or press
    an image's button to make it the query. ``image_results`` and ``caption_results`` hold
    the current answers (best first), ``image_true`` and ``caption_true`` their marks.

    Args:
        model: a trained dual encoder; vocabulary: its vocabulary.
        images: the gallery, uint8 ``(n, 64, 64, 3)``.
        captions: the captions to search when an image is the query (duplicates are dropped).
        scenes: the gallery's scenes, for the marks (optional).
        k: how many results to show.
    """

    def __init__(self, model, vocabulary, images, captions, scenes=None, *, k: int = 6,
                 query: str = "a large red circle left of a small blue square", scale: int = 2):
        from mmcourse.models import retrieval

        if not 1 <= k <= len(images):
            raise ValueError(f"k must be between 1 and the number of images ({len(images)}), got {k}")
        self.model, self.vocabulary, self.images, self.k, self.scale = model, vocabulary, np.asarray(images), k, scale
        self.scenes = list(scenes) if scenes is not None else None
        self.captions = list(dict.fromkeys(captions))
        self.image_vectors = retrieval.embed_images(model, self.images)
        self.caption_vectors = retrieval.embed_captions(model, self.captions, vocabulary)
        self.query = mark(W.Text(value=query, description="caption", layout=W.Layout(width="34em"), continuous_update=False), "query")
        self.message = mark(W.HTML(), "message")
        self.gallery = mark(W.HBox(), "gallery")
        self.selected = W.HTML()
        self.caption_list = mark(W.HTML(), "caption-list")
        self.image_results: list[int] = []
        self.image_true: list[bool] = []
        self.caption_results: list[str] = []
        self.caption_true: list[bool] = []
        self.error = ""
        self.query.observe(lambda change: self.search_text(), names="value")
        self.search_text()
        if self.image_results:
            self.search_image(self.image_results[0])

    def _true(self, caption: str, index: int) -> bool | None:
        from mmcourse.data import shapes

        return None if self.scenes is None else shapes.parse_caption(caption).is_true_of(self.scenes[index])

    @staticmethod
    def _mark(value: bool | None) -> str:
        return "" if value is None else ("✓" if value else "✗")

    def search_text(self) -> None:
        """Show the ``k`` images closest to the caption in the box."""
        from mmcourse.data import shapes
        from mmcourse.models import retrieval

        text = " ".join(self.query.value.lower().split())
        try:
            shapes.parse_caption(text)  # the grammar's message names the first word that does not fit
            vector = retrieval.embed_captions(self.model, [text], self.vocabulary)
        except ValueError as err:  # CaptionError is a ValueError
            self.error, self.image_results, self.image_true = str(err), [], []
            self.message.value = f"<span style='color:#b00'>{html.escape(self.error)}</span>"
            self.gallery.children = ()
            return
        self.error = ""
        index, similarity = retrieval.search(vector, self.image_vectors, self.k)
        self.image_results = index[0].tolist()
        marks = [self._true(text, i) for i in self.image_results]
        self.image_true = [bool(m) for m in marks] if self.scenes is not None else []
        boxes = []
        for i, s, m in zip(self.image_results, similarity[0], marks):
            button = W.Button(description=f"#{i} · {s:.2f} {self._mark(m)}", layout=W.Layout(width=f"{64 * self.scale + 4}px"),
                              tooltip="search captions for this image")
            button.on_click(lambda b, i=i: self.search_image(i))
            boxes.append(W.VBox([W.Image(value=to_png(self.images[i], self.scale), format="png"), button]))
        self.gallery.children = tuple(boxes)
        summary = f"; {sum(self.image_true)} of {self.k} true to the caption" if self.scenes is not None else ""
        self.message.value = f"<b>top {self.k} images</b> (cosine similarity{summary}); press one to search its captions"

    def search_image(self, index: int) -> None:
        """Show the ``k`` captions closest to gallery image ``index``."""
        from mmcourse.models import retrieval

        if not 0 <= index < len(self.images):
            raise IndexError(f"image index {index} is outside the gallery of {len(self.images)} images")
        k = min(self.k, len(self.captions))
        order, similarity = retrieval.search(self.image_vectors[index], self.caption_vectors, k)
        self.caption_results = [self.captions[j] for j in order[0]]
        marks = [self._true(c, index) for c in self.caption_results]
        self.caption_true = [bool(m) for m in marks] if self.scenes is not None else []
        rows = "".join(
            f"<tr><td>{s:.2f}</td><td>{self._mark(m)}</td><td>{html.escape(c)}</td></tr>"
            for c, s, m in zip(self.caption_results, similarity[0], marks)
        )
        self.selected.value = f"<img src='data:image/png;base64,{_b64(to_png(self.images[index], self.scale))}'/>"
        self.caption_list.value = f"<b>image #{index}: top {k} captions</b><table>{rows}</table>"

    def widget(self) -> W.Widget:
        return mark(W.VBox([self.query, self.message, self.gallery, W.HBox([self.selected, self.caption_list])]), "search")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")
