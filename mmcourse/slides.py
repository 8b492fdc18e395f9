"""Slides for lectures: ``mmcourse slides`` (``make slides``) and the slide metadata RISE reads.

A teacher presents a notebook live, running its cells (Shift+Enter), with RISE in JupyterLab:
*View → Render as Reveal Slideshow* (Alt+R) beside the notebook, or the toolbar's *Open as
Reveal Slideshow* (a new tab, ``/rise/<path>``). The static decks that ``mmcourse slides``
writes need neither a kernel nor the network.

**Which cell starts a slide** (:func:`slide_types`, written into each cell's
``metadata.slideshow.slide_type`` by ``mmcourse slides --tag``; the course notebooks carry it,
and a test keeps it in step):

* a markdown cell whose first line is a ``#`` or ``##`` heading (the title, a section) starts a
  **slide**; a ``###`` (or deeper) heading, or an exercise's statement (``**N. ...``), a
  **sub-slide** (reveal.js stacks those below their slide: the down arrow);
* **skipped**: cells tagged ``solution`` (as in the student edition, :mod:`mmcourse.student`)
  and the ``## Setup`` section, heading and cells (imports, profile, seed: run them in the
  notebook before the slideshow starts);
* a long (sub-)slide is cut: a cell starts a sub-slide when the cells above it on the same
  (sub-)slide already hold more than :data:`MAX_LINES` lines, unless it is a code cell right
  after a markdown cell (it stays with its introduction). Lines are estimated from the
  sources only (a markdown line per :data:`LINE_WIDTH` characters, a code cell's lines plus
  :data:`OUTPUT_LINES` for its output), so re-running a notebook never moves a slide;
* every other cell continues the (sub-)slide above it (``-``).

The rules read only sources and tags, so tagging is deterministic and idempotent.

**Static slides** (:func:`write_slides`) are nbconvert's reveal.js export of the stored outputs
(nothing is executed), made to work offline: nbconvert's template loads reveal.js, MathJax,
require.js, jQuery and mermaid from CDNs, which leaves blank slides without the network. Here
the template is extended to load only reveal.js 4.6.0 (MIT; its ``dist/reveal.js``,
``reveal.css``, the serif theme, which loads no web fonts, and the speaker-notes plugin) and MathJax 3.2.2 (Apache-2.0; the
single file ``es5/tex-svg-full.js``: every TeX extension, and SVG output, which needs no font
files), both shipped in ``mmcourse/static`` (from ``npm pack reveal.js@4.6.0 mathjax@3.2.2``)
and copied beside the decks, which refer to them by relative paths. Widgets cannot run in a
static page: a progress bar shows its final text, an interactive widget a one-line note.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

from mmcourse.student import SOLUTION

__all__ = ["MAX_LINES", "slide_types", "tag_notebook", "write_slides", "count_slides", "slides_html"]

MAX_LINES = 20  # about what one 960×700 reveal.js slide shows at the notebooks' font size
LINE_WIDTH = 75  # characters of markdown per line on a slide
OUTPUT_LINES = 8  # what a code cell's output is counted as (outputs are not read: see above)
SETUP = "setup"
STATIC = Path(__file__).resolve().parent / "static"
REVEAL, MATHJAX = "reveal.js", "mathjax"
MATHJAX_FILE = f"{MATHJAX}/tex-svg-full.js"
THEME = "serif"
#: RISE's settings, in each notebook's metadata: the theme that loads no web fonts (RISE's
#: default, "simple", asks Google Fonts for two), and long slides scroll.
RISE = {"theme": THEME, "scroll": True}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

_HEADING = re.compile(r"(#{1,6})\s+(.*)")
_EXERCISE = re.compile(r"\*\*\d+\.")


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _heading(cell) -> tuple[int, str] | None:
    """(level, text) of a markdown cell that opens with a heading, else None."""
    if cell.get("cell_type") != "markdown":
        return None
    match = _HEADING.match(_source(cell).lstrip("\n").split("\n", 1)[0])
    return (len(match.group(1)), match.group(2).strip()) if match else None


def _lines(cell) -> int:
    """How many lines the cell takes on a slide, estimated from its source."""
    text = _source(cell).rstrip("\n").split("\n")
    if cell.get("cell_type") == "markdown":
        return sum(max(1, math.ceil(len(line) / LINE_WIDTH)) for line in text)
    return len(text) + (OUTPUT_LINES if cell.get("cell_type") == "code" else 0)


def slide_types(cells) -> list[str]:
    """The RISE / reveal.js slide type of each cell (``slide``, ``subslide``, ``skip`` or ``-``),
    by the rules of this module's docstring. ``cells`` are notebook cells (dicts or nodes)."""
    types, in_setup, height, previous = [], False, 0, None
    for cell in cells:
        heading = _heading(cell)
        if heading and heading[0] <= 2:
            in_setup = heading[1].lower() == SETUP
        if in_setup or SOLUTION in cell.get("metadata", {}).get("tags", []):
            types.append("skip")
            continue
        if heading and heading[0] <= 2:
            kind = "slide"
        elif heading or (cell.get("cell_type") == "markdown" and _EXERCISE.match(_source(cell).lstrip())):
            kind = "subslide"
        else:  # a code cell stays with the markdown that introduces it
            cut = height > MAX_LINES and not (cell.get("cell_type") == "code" and previous == "markdown")
            kind = "subslide" if cut else "-"
        height = (0 if kind != "-" else height) + _lines(cell)
        previous = cell.get("cell_type")
        types.append(kind)
    return types


def _load(path: Path) -> tuple[str, dict]:
    raw = path.read_text(encoding="utf-8")
    return raw, json.loads(raw)


def _dumps(notebook: dict) -> str:
    # as Jupyter and nbformat write notebooks: keys sorted, one space of indent, UTF-8 as is
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def tag_notebook(path) -> tuple[dict[str, int], bool]:
    """Write the slide types into the notebook at ``path`` in place, and :data:`RISE`'s settings
    into its metadata; nothing else in the file changes (outputs, ids, sources: byte for byte).
    Returns how many cells have each type and whether the file changed."""
    path = Path(path)
    raw, notebook = _load(path)
    if _dumps(notebook) != raw:  # would reformat the whole file: refuse instead
        raise ValueError(f"{path} is not formatted as Jupyter writes notebooks (indent 1, sorted keys); save it from JupyterLab first")
    types = slide_types(notebook["cells"])
    for cell, kind in zip(notebook["cells"], types):
        cell.setdefault("metadata", {})["slideshow"] = {"slide_type": kind}
    notebook["metadata"]["rise"] = dict(RISE)
    text = _dumps(notebook)
    changed = text != raw
    if changed:
        path.write_text(text, encoding="utf-8")
    return {kind: types.count(kind) for kind in ("slide", "subslide", "skip", "-")}, changed


def count_slides(notebook) -> int:
    """How many slides reveal.js shows for a notebook (dict or node): its slides and sub-slides
    (the first cell shown always starts one)."""
    cells = [c for c in notebook["cells"] if c.get("metadata", {}).get("slideshow", {}).get("slide_type", "-") not in ("skip", "notes")]
    return sum(c["metadata"].get("slideshow", {}).get("slide_type") in ("slide", "subslide") for c in cells[1:]) + bool(cells)


# nbconvert's reveal template, less its CDN scripts: reveal.js from the copy beside the deck, as
# a plain script (require.js and jQuery were only there to load it), MathJax 3 from its copy.
_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}
<script>
window.MathJax = {
  tex: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
        processEscapes: true, processEnvironments: true, tags: 'ams'},
  svg: {fontCache: 'global'}
};
</script>
<script src="{{ resources.mathjax_url }}"></script>
{%- endblock html_head_js_mathjax -%}
{% block footer_js %}
{% set prefix = resources.reveal.url_prefix %}
<script src="{{ prefix }}/dist/reveal.js"></script>
<script src="{{ prefix }}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({
  controls: true, progress: true, history: true,
  transition: "{{ resources.reveal.transition }}", slideNumber: "{{ resources.reveal.number }}",
  width: {{ resources.reveal.width or 960 }}, height: {{ resources.reveal.height or 700 }},
  plugins: [RevealNotes]
});
// A slide taller than the screen scrolls (nbconvert's reveal_scroll, without jQuery).
function scrollTallSlide() {
  var slide = Reveal.getCurrentSlide(), room = Reveal.getConfig().height * 0.95;
  if (slide && slide.scrollHeight > room) {
    slide.style.height = room + 'px';
    slide.style.overflowY = 'auto';
    slide.style.top = '0px';
  }
}
Reveal.on('ready', scrollTallSlide);
Reveal.on('slidechanged', scrollTallSlide);
window.addEventListener('load', scrollTallSlide);  // after the images' layout,
if (window.MathJax && MathJax.startup) MathJax.startup.promise.then(scrollTallSlide);  // and the formulas'
</script>
{% endblock footer_js %}
"""


def _static_outputs(notebook) -> None:
    """What a page without a kernel can show of each widget: a progress bar's final text, and a
    note for interactive widgets; and no saved widget state (it would load a manager from a CDN)."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                text = data.get("text/plain", "")
                if not isinstance(text, str) or re.match(r"[A-Z]\w*\(", text):  # a widget's repr
                    data["text/plain"] = "[an interactive widget: run the notebook to use it]"


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter

    return SlidesExporter(
        extra_loaders=[DictLoader({"mmcourse_reveal.html.j2": _TEMPLATE})], template_file="mmcourse_reveal.html.j2",
        reveal_url_prefix=REVEAL, reveal_theme=THEME, mathjax_url=MATHJAX_FILE,
    )


def slides_html(path) -> tuple[str, int]:
    """The static reveal.js deck of the notebook at ``path``, as HTML that expects ``reveal.js/``
    and ``mathjax/`` beside it, and how many slides it holds. A notebook without any slide
    metadata is tagged on the fly."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    if not any("slideshow" in cell.metadata for cell in notebook.cells):
        for cell, kind in zip(notebook.cells, slide_types(notebook.cells)):
            cell.metadata["slideshow"] = {"slide_type": kind}
    _static_outputs(notebook)
    body, _ = _exporter().from_notebook_node(notebook, resources={"metadata": {"name": Path(path).stem}})
    return body, count_slides(notebook)


def write_slides(notebooks=None, out="slides") -> list[tuple[Path, int]]:
    """Write ``out/<name>.slides.html`` for each notebook (default: the course's), with the
    reveal.js and MathJax they load copied into ``out``. Returns each path written, with how
    many slides it holds."""
    from mmcourse.runner import find_notebooks

    paths = find_notebooks(list(map(str, notebooks or [])))  # default: the chapters, not the demo app
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for folder in (REVEAL, MATHJAX):
        shutil.copytree(STATIC / folder, out / folder, dirs_exist_ok=True)
    written = []
    for path in paths:
        target = out / f"{path.stem}.slides.html"
        html, count = slides_html(path)
        target.write_text(html, encoding="utf-8")
        written.append((target, count))
    return written
