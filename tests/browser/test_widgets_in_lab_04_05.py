"""Notebooks 04–05 opened in JupyterLab in chromium and run from the Run menu in the quick
profile: no widget fails to render, nothing reaches stderr, and changing one control of each
widget changes its output accordingly (screenshots in build/browser-screenshots/<test>/).
The chapters are split over four modules so that pytest-xdist spreads them over its workers."""

import pytest

import widget_driver  # tests/browser/ is on sys.path (no __init__.py, pytest prepends the folder)


@pytest.mark.parametrize("notebook", widget_driver.LAB_GROUPS[1])
def test_widgets_render_and_respond(page, lab_url, screenshot_dir, notebook):
    widget_driver.check_notebook(page, lab_url, screenshot_dir, notebook)
