"""Slides in a real browser: a static deck of `mmcourse slides` renders with the network cut
off (reveal.js and MathJax come from beside it), and RISE presents a course notebook from
JupyterLab, a slide per section as its metadata says."""

from pathlib import Path

import nbformat
from playwright.sync_api import expect

from mmcourse import slides

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _shown(path: Path) -> tuple[list, list[str]]:
    """The notebook's cells RISE and reveal.js show, and their slide types."""
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.metadata["slideshow"]["slide_type"] != "skip"]
    return cells, [c.metadata["slideshow"]["slide_type"] for c in cells]


def _heading(cell) -> str:
    return cell.source.split("\n", 1)[0].lstrip("# ").strip()


def _settled(page) -> None:
    """Wait for reveal.js's slide transition to end (before a screenshot)."""
    page.wait_for_function("document.getAnimations().every(a => !(a instanceof CSSTransition) || a.playState !== 'running')")


def test_static_slides_render_offline(page, tmp_path, screenshot_dir):
    notebook = NOTEBOOKS / "04_attention.ipynb"
    [(deck, count)] = slides.write_slides([notebook], tmp_path)
    cells, types = _shown(notebook)
    requests, errors = [], []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def offline(route):  # every request is recorded; only the deck's own files are served
        requests.append(route.request.url)
        route.continue_() if route.request.url.startswith("file:") else route.abort()

    page.route("**/*", offline)
    page.goto(deck.as_uri())
    page.wait_for_function("window.Reveal && Reveal.isReady()")
    page.evaluate("MathJax.startup.promise")  # the formulas are typeset
    assert page.evaluate("Reveal.getTotalSlides()") == count == 1 + types[1:].count("slide") + types[1:].count("subslide")
    expect(page.locator(".reveal .slides section.present").first).to_contain_text(_heading(cells[0]))  # "04 · Attention"
    page.screenshot(path=screenshot_dir / "title.png")

    # the first section after the title has formulas: typeset by MathJax, no TeX left
    formulas = next(i for i, c in enumerate(cells) if i and types[i] == "slide")
    assert "$" in cells[formulas].source
    page.evaluate(f"Reveal.slide({types[1:formulas + 1].count('slide')}, 0)")
    section = page.locator(".reveal .slides section.present section.present")
    expect(section).to_contain_text(_heading(cells[formulas]))
    assert section.locator("mjx-container svg").count() > 0
    assert "\\tanh" not in section.inner_text()
    _settled(page)
    page.screenshot(path=screenshot_dir / "formulas.png")

    assert requests and all(url.startswith("file:") for url in requests), [u for u in requests if not u.startswith("file:")]
    assert not errors


def test_rise_presents_a_notebook(page, lab_url, lab_dir, screenshot_dir):
    cells, types = _shown(lab_dir / "00_start_here.ipynb")
    # a dialog (a kernel to choose), whenever it shows up: accept the notebook's own
    page.add_locator_handler(page.locator(".jp-Dialog .jp-mod-accept").first, lambda accept: accept.click())
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{lab_url}rise/00_start_here.ipynb")
    present = page.locator(".reveal .slides section.present section.present, .reveal .slides > section.present:not(.stack)")
    present.first.wait_for(timeout=90_000)
    expect(present.first).to_contain_text(_heading(cells[0]), timeout=30_000)  # "00 · Start here: the Shapes world"
    expect(present.first).to_be_visible()
    # RISE made the slides the notebook's metadata asks for: one <section> per slide or sub-slide
    leaves = page.locator(".reveal .slides section:not(:has(section))")
    assert leaves.count() == 1 + types[1:].count("slide") + types[1:].count("subslide")
    page.screenshot(path=screenshot_dir / "title.png")

    page.keyboard.press("ArrowRight")  # the next section
    second = next(c for i, c in enumerate(cells) if i and types[i] == "slide")
    expect(present.first).to_contain_text(_heading(second))  # "1. How to use this course"
    expect(present.first).not_to_contain_text(_heading(cells[0]))
    _settled(page)
    page.screenshot(path=screenshot_dir / "next.png")
    elsewhere = [url for url in requests if not url.startswith((lab_url, "data:", "blob:"))]
    assert elsewhere == [], f"RISE asked the network for {elsewhere}"
