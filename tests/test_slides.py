"""Slides: the slide metadata RISE reads (the tagging rules, and the course notebooks carry
them), and the static decks of `mmcourse slides`, which must load nothing from the network.
In a real browser: tests/browser/test_slides_browser.py."""

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from mmcourse import slides

ROOT = Path(__file__).resolve().parents[1]
COURSE = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def mmcourse(*args):
    return subprocess.run([sys.executable, "-m", "mmcourse", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MMCOURSE_TRACEBACK=""))


def md(text, tags=()):
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": list(tags)} if tags else {})


def code(lines, tags=()):
    return nbformat.v4.new_code_cell("\n".join(f"x{i} = {i}" for i in range(lines)), metadata={"tags": list(tags)} if tags else {})


def test_tagging_rules_on_a_small_notebook():
    cells = [
        md("# 09 · A chapter\n\nWhat it teaches."),          # slide: the title
        md("## Setup\n\nOne cell."), code(12),                 # skip: the set-up section
        md("## 1. A section"), code(3),                        # slide, and its code on it
        md("More text."),                                      # 1 + 3 + 8 lines above: room left
        code(30),                                              # stays with the markdown above, however long
        md("Read the chart."),                                 # 51 lines above (> MAX_LINES): a sub-slide
        code(30),                                              # after markdown: stays with it
        code(2),                                               # after code, on a full slide: a sub-slide
        md("### 1.1 A subsection"), code(2),                   # sub-slide
        md("*Why.* The answer.", tags=["solution"]),           # skip: solutions
        md("## Exercises"),                                    # slide
        md("*Instructor edition*", tags=["solution"]),         # skip
        md("**1. Do this.** Then that."),                      # sub-slide: an exercise
        code(2, tags=["scaffold"]), code(5, tags=["solution"]),
        md("## References"),                                   # slide (the set-up section ended above)
    ]
    expected = ["slide", "skip", "skip", "slide", "-", "-", "-", "subslide", "-", "subslide", "subslide", "-",
                "skip", "slide", "skip", "subslide", "-", "skip", "slide"]
    assert slides.slide_types(cells) == expected
    for cell, kind in zip(cells, expected):
        cell.metadata["slideshow"] = {"slide_type": kind}
    assert slides.slide_types(cells) == expected  # idempotent: the rules read sources and tags only
    notebook = nbformat.v4.new_notebook(cells=cells)
    assert slides.count_slides(notebook) == 4 + 4  # slides and sub-slides shown


def test_tagging_a_notebook_changes_its_slide_metadata_only(tmp_path):
    course = ROOT / "notebooks" / "00_start_here.ipynb"
    original = json.loads(course.read_text(encoding="utf-8"))
    for cell in original["cells"]:
        cell["metadata"].pop("slideshow", None)
    path = tmp_path / course.name
    path.write_text(json.dumps(original, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")

    counts, changed = slides.tag_notebook(path)
    assert changed and counts["slide"] >= 5 and counts["skip"] >= 2
    tagged = json.loads(path.read_text(encoding="utf-8"))
    for cell in tagged["cells"]:
        assert cell["metadata"].pop("slideshow")["slide_type"] in {"slide", "subslide", "skip", "-"}
    assert tagged == original  # outputs, ids, sources, execution counts: all as they were
    assert slides.tag_notebook(path) == (counts, False)  # a second pass writes nothing

    path.write_text(json.dumps(original, indent=2), encoding="utf-8")  # not as Jupyter writes it
    with pytest.raises(ValueError, match="not formatted as Jupyter writes notebooks"):
        slides.tag_notebook(path)


@pytest.mark.parametrize("path", COURSE, ids=[p.stem for p in COURSE])
def test_course_notebooks_carry_the_slide_metadata_of_the_rules(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    stored = [cell["metadata"].get("slideshow", {}).get("slide_type") for cell in cells]
    assert stored == slides.slide_types(cells), f"run `mmcourse slides --tag {path.relative_to(ROOT)}` to bring its slides in step"


class _Loads(HTMLParser):
    """The scripts and style sheets a page loads, and how many <section>s it has."""

    def __init__(self):
        super().__init__()
        self.urls, self.sections = [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        elif tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])
        self.sections += tag == "section"


def test_static_slides_load_everything_from_beside_them(tmp_path):
    notebook = ROOT / "notebooks" / "04_attention.ipynb"
    out = mmcourse("slides", str(notebook), "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    deck = tmp_path / "04_attention.slides.html"
    types = [c.metadata["slideshow"]["slide_type"] for c in nbformat.read(notebook, as_version=4).cells]
    shown = types.count("slide") + types.count("subslide")
    assert f"{deck}  ({shown} slides)" in out.stdout.splitlines()

    html = deck.read_text(encoding="utf-8")
    page = _Loads()
    page.feed(html)
    assert {"reveal.js/dist/reveal.js", "reveal.js/dist/reveal.css", slides.MATHJAX_FILE} <= set(page.urls)
    for url in page.urls:
        assert not re.match(r"(https?:)?//", url), f"{url} would load from the network"
        assert (tmp_path / url).is_file(), f"{url} is not beside the deck"
    assert not re.search(r"""(url\(|@import\s*)["']?(https?:)?//""", html), "a style sheet loads from the network"
    assert "widget-state+json" not in html  # saved widget state would make the page fetch a widget manager
    # each slide is a <section> holding its sub-slides' <section>s (the first of them its own)
    assert page.sections == types.count("slide") + shown


def test_slides_name_a_missing_notebook_in_one_line(tmp_path):
    shutil.copy(ROOT / "notebooks" / "00_start_here.ipynb", tmp_path)
    for extra in ([], ["--tag"]):
        out = mmcourse("slides", str(tmp_path / "missing.ipynb"), "--out", str(tmp_path / "slides"), *extra)
        assert out.returncode == 2
        assert out.stderr.startswith("mmcourse slides: no notebook at") and "00_start_here.ipynb" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "slides").exists()
