"""Notebooks 00–03 opened in JupyterLab in chromium and run from the Run menu in the quick
profile: no widget fails to render, nothing reaches stderr, and changing one control of each
widget changes its output accordingly (screenshots in build/browser-screenshots/<test>/).
The chapters are split over four modules so that pytest-xdist spreads them over its workers."""

import pytest

import widget_driver  # tests/browser/ is on sys.path (no __init__.py, pytest prepends the folder)


@pytest.mark.parametrize("notebook", widget_driver.LAB_GROUPS[0])
def test_widgets_render_and_respond(page, lab_url, screenshot_dir, notebook):
    widget_driver.check_notebook(page, lab_url, screenshot_dir, notebook)


def test_every_chapter_with_a_widget_is_driven_in_the_browser():
    """A chapter that shows a widget (any class from mmcourse.widgets) is in one of the groups."""
    import re

    import mmcourse.widgets
    from servers import ROOT

    pattern = re.compile(r"\b(" + "|".join(mmcourse.widgets.__all__) + r")\(")
    shown = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if pattern.search(p.read_text())}
    assert shown == set(widget_driver.NOTEBOOK_WIDGETS) == {n for group in widget_driver.LAB_GROUPS for n in group}
