"""Fixtures for the browser tests: Debian's chromium driven by Playwright, a JupyterLab server and
a Voilà server on free local ports, and a folder for screenshots.

The browser is the system's chromium (``$CHROMIUM``, else ``chromium`` or ``chromium-browser``
on the PATH); `playwright install`, which downloads a browser, is never needed. Without one,
every test here is skipped with one reason that says how to enable them (``make test`` then
leaves this folder out and prints that line itself).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from servers import ROOT, free_port, server_env, stop, wait_until_up  # tests/browser/ is on sys.path

NOTEBOOKS = ROOT / "notebooks"
#: Screenshots of each widget after its control changed land here (``$MMCOURSE_SCREENSHOTS`` overrides).
SCREENSHOTS = Path(os.environ.get("MMCOURSE_SCREENSHOTS", ROOT / "build" / "browser-screenshots"))
HOW_TO_ENABLE = "no chromium found: install it (sudo apt-get install chromium) or set CHROMIUM=/path/to/chromium, then run make test-browser"


def find_chromium() -> str | None:
    """The chromium to drive: ``$CHROMIUM`` if set, else the first on the PATH."""
    named = os.environ.get("CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_collection_modifyitems(config, items):
    if find_chromium() is None:
        skip = pytest.mark.skip(reason=HOW_TO_ENABLE)
        for item in items:
            if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright launches the system's chromium, never a downloaded one."""
    return {**browser_type_launch_args, "executable_path": find_chromium(), "args": ["--no-sandbox", "--disable-gpu"]}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.fixture(scope="session")
def lab_dir(tmp_path_factory) -> Path:
    """A copy of the notebooks for JupyterLab to open, so that its autosave never touches the course's."""
    folder = tmp_path_factory.mktemp("lab") / "notebooks"
    shutil.copytree(NOTEBOOKS, folder, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    return folder


@pytest.fixture(scope="session")
def lab_url(lab_dir, tmp_path_factory) -> str:
    """The base URL (ending in ``/``) of a JupyterLab serving :func:`lab_dir`, with no token.

    Settings: every cell stays in the page (``windowingMode: none``), so tests can read all
    outputs; the app is exposed as ``window.jupyterapp`` for reading the kernel's state.
    """
    settings = tmp_path_factory.mktemp("lab-settings")
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    notices = settings / "@jupyterlab" / "apputils-extension"  # no "news?" toast over the widgets in screenshots
    notices.mkdir(parents=True)
    (notices / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port = free_port()
    log = tmp_path_factory.mktemp("lab-log") / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
               "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
               f"--ServerApp.root_dir={lab_dir}", f"--LabApp.user_settings_dir={settings}",
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--LabServerApp.announcements_url="]
    if os.getuid() == 0:
        command.append("--allow-root")
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=server_env(), cwd=lab_dir)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(url + "api/status", process, log)
        yield url
    finally:
        stop(process)


@pytest.fixture
def screenshot_dir(request) -> Path:
    """``build/browser-screenshots/<test name>/`` (emptied first): where a test leaves its screenshots."""
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    folder = SCREENSHOTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
