"""Every notebook with a widget, opened in JupyterLab in chromium and run from the Run menu in
the quick profile: no widget fails to render, nothing reaches stderr, and changing one control of
each widget changes its output accordingly (screenshots in build/browser-screenshots/<test>/)."""

from __future__ import annotations

import pytest

import widget_driver as lab  # tests/browser/ is on sys.path (no __init__.py, pytest prepends the folder)

#: A notebook's quick profile runs in 15-133 s alone on two cores; a browser and a second test share them.
RUN_TIMEOUT_S = 600


@pytest.mark.parametrize("notebook", sorted(lab.NOTEBOOK_WIDGETS))
def test_widgets_render_and_respond(page, lab_url, screenshot_dir, notebook):
    lab.open_notebook(page, lab_url, notebook)
    try:
        lab.run_all_from_menu(page, RUN_TIMEOUT_S)
        page.screenshot(path=screenshot_dir / "notebook.png")
        assert lab.problems_on_page(page) == []
        for check in lab.NOTEBOOK_WIDGETS[notebook]:
            print(f"{notebook} · {check.__name__}: {check(page, screenshot_dir)}")
        assert lab.problems_on_page(page) == [], "changing a control made an error appear"
    finally:
        lab.shut_down_kernel(page)
