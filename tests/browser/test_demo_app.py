"""`make demo`: the Voilà app answers on its port, renders every widget in chromium (each one's
screenshot checked for content), and each widget answers a change of one control."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import widget_driver as driver  # tests/browser/ is on sys.path (no __init__.py, pytest prepends the folder)
from servers import ROOT, free_port, server_env, stop, wait_until_up

#: The demo's widgets in page order, each with the check that changes one of its controls.
DEMO_WIDGETS = [
    ("scene-composer", driver.check_scene_composer),
    ("captioning-explorer", driver.check_captioning_explorer),
    ("search", driver.check_search),
    ("vqa-explorer", driver.check_vqa_explorer),
    ("vlm-explorer", driver.check_vlm_explorer),
    ("text-to-image", driver.check_text_to_image),
    ("diffusion-drawer", driver.check_diffusion_drawer),
    ("latent-sliders", driver.check_latent_sliders),
    ("convolution-playground", driver.check_convolution_playground),
]


def demo_command(port: int) -> list[str]:
    """`make demo` itself when this Python is the Makefile's virtual environment; otherwise the
    same Voilà command line with this Python (the Makefile's `demo` target runs exactly this)."""
    venv = Path(sys.prefix)
    if (venv / ".mmcourse-installed").is_file() and venv.resolve() == (ROOT / ".venv").resolve() and shutil.which("make"):
        return ["make", "--no-print-directory", "demo", f"DEMO_PORT={port}"]
    return [sys.executable, "-m", "voila", "notebooks/demo.ipynb", f"--port={port}", "--no-browser"]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    with open(log, "w") as out:
        process = subprocess.Popen(demo_command(port), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=server_env(),
                                   start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(url, process, log, timeout=180)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # make's child (voila) too
        stop(process)


def test_make_demo_renders_every_widget_and_each_responds(page, demo_url, screenshot_dir):
    page.goto(demo_url, timeout=180_000)
    for name, _ in DEMO_WIDGETS:
        page.locator(f".mm-{name}").first.wait_for(state="visible", timeout=180_000)
    page.screenshot(path=screenshot_dir / "demo.png")
    assert driver.problems_on_page(page) == []
    for name, _ in DEMO_WIDGETS:  # each widget drew something: a screenshot of it is not blank
        shot = screenshot_dir / f"{name}-rendered.png"
        page.locator(f".mm-{name}").first.screenshot(path=shot)
        pixels = np.asarray(Image.open(shot).convert("RGB"))
        assert pixels.shape[0] > 40 and pixels.shape[1] > 200, f"{name} is only {pixels.shape[:2]} pixels"
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, f"{name} rendered blank"
    for name, check in DEMO_WIDGETS:
        result = check(page, screenshot_dir)
        print(f"demo · {name}: {result}")
        if name == "latent-sliders":
            assert "decoded image redrawn" in result, "the shipped VAE's decoder ignored its most-used direction"
    assert driver.problems_on_page(page) == [], "changing a control made an error appear"
