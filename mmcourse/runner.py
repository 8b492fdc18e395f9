"""`mmcourse run`: execute notebooks headless, one line of result and time each."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from mmcourse.config import PROFILE_ENV, _repo_root, profile_name

__all__ = ["NotebookResult", "find_notebooks", "run_notebook", "finish_progress_bars"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


@dataclass(frozen=True)
class NotebookResult:
    path: Path
    ok: bool
    seconds: float
    error: str = ""

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        tail = f"  {self.error}" if self.error else ""
        return f"{status} {self.path.name:<40} {self.seconds:7.1f} s{tail}"


def find_notebooks(paths: list[str]) -> list[Path]:
    """The notebooks named (files or folders); the course's chapters (``NN_*.ipynb``, not the
    demo app) when none are named."""
    if not paths:
        root = _repo_root()
        if root is None:
            raise FileNotFoundError("name the notebooks to run (no course checkout found to take them from)")
        return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.is_file() and p.suffix == ".ipynb":
            found.append(p)
        else:
            where = p.parent if p.parent.is_dir() else Path(".")
            nearby = sorted(q.name for q in where.glob("*.ipynb"))
            hint = f"; notebooks in {where}: {', '.join(nearby)}" if nearby else ""
            raise FileNotFoundError(f"no notebook at {p}{hint}")
    return found


def _first_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    # nbclient's CellExecutionError ends with the exception line; keep it short.
    last = [line for line in text if line.strip()][-1:] or [type(exc).__name__]
    return last[0][:200]


def _failed_cell(nb) -> str:
    """``cell N: Error: message · the line that raised`` for the first cell with an error output."""
    import re

    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in output.get("traceback", [])]
                arrows = [line.split("---->", 1)[1].strip() for frame in plain for line in frame.splitlines() if "---->" in line]
                where = f" · {arrows[0][:120]}" if arrows else ""
                return f"cell {index}: {output.get('ename', 'Error')}: {output.get('evalue', '')}"[:200] + where
    return ""


def finish_progress_bars(nb) -> int:
    """Give every stored tqdm bar the text of its last state, for readers without widgets.

    A tqdm bar in a notebook is a widget (an HBox of text, a progress bar, text); its output
    also holds a plain-text fallback, which is what GitHub, nbviewer or a static export
    shows — and it is frozen at the bar's *first* state ("0epoch [00:00, ?epoch/s]"). The
    widgets' last states are saved in the notebook's metadata; this writes each bar's final
    text (``desc: 100%|██████████| 6/6 [01:37<00:00, …]``) into its fallback. Returns how
    many bars it finished.
    """
    import html

    states = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def model(ref):
        return states.get(str(ref).removeprefix("IPY_MODEL_"), {})

    finished = 0
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            box = model(view["model_id"]) if view else {}
            parts = [model(ref) for ref in box.get("state", {}).get("children", [])]
            if box.get("model_name") != "HBoxModel" or [p.get("model_name") for p in parts] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
                continue
            left, bar, right = (p.get("state", {}) for p in parts)
            fraction = min(max(float(bar.get("value") or 0) / float(bar.get("max") or 1), 0.0), 1.0)
            filled = round(10 * fraction)
            text = f"{html.unescape(left.get('value', ''))}|{'█' * filled}{' ' * (10 - filled)}|{html.unescape(right.get('value', ''))}"
            output["data"]["text/plain"] = text.replace("\u2007", " ")
            finished += 1
    return finished


def run_notebook(path: Path, *, profile: str, timeout: int = 1800, inplace: bool = False, output_dir: Path | None = None) -> NotebookResult:
    """Run a notebook top to bottom in a fresh kernel, in the given profile."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    profile = profile_name(profile)
    nb = nbformat.read(path, as_version=4)
    saved = os.environ.get(PROFILE_ENV)
    os.environ[PROFILE_ENV] = profile  # the kernel inherits the environment
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    start = time.perf_counter()
    error = ""
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    except (CellExecutionError, CellTimeoutError) as exc:
        error = _failed_cell(nb) or _first_error(exc)
    except Exception as exc:  # a kernel that died or could not start
        error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        if saved is None:
            os.environ.pop(PROFILE_ENV, None)
        else:
            os.environ[PROFILE_ENV] = saved
    seconds = time.perf_counter() - start
    finish_progress_bars(nb)
    if not error and inplace:
        nbformat.write(nb, path)
    if output_dir is not None:  # a failed run too: its outputs show what went wrong
        output_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, output_dir / path.name)
    return NotebookResult(path, not error, seconds, error)
