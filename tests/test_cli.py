"""The command line: doctor and run, through a real subprocess."""

import os
import subprocess
import sys

import nbformat
import pytest


def mmcourse(*args, env=None):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "mmcourse", *args], capture_output=True, text=True, env=full_env, timeout=600)


def test_doctor_reports_versions_devices_profile_and_datasets():
    out = mmcourse("doctor", env={"MMCOURSE_PROFILE": "quick"})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "tensorflow" in text and "keras" in text
    assert "devices: TensorFlow" in text
    assert "profile: quick (from $MMCOURSE_PROFILE)" in text
    assert "ok     shapes" in text and "ok     lee" in text and "ok     photos" in text
    assert "cuda" not in (out.stdout + out.stderr).lower()  # TensorFlow's C++ chatter stays out


def test_doctor_refuses_an_unknown_profile_clearly():
    out = mmcourse("doctor", env={"MMCOURSE_PROFILE": "fast"})
    assert out.returncode != 0
    assert "MMCOURSE_PROFILE='fast' is not a profile" in out.stderr


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, path)
    return path


def test_run_reports_one_line_per_notebook_and_fails_on_an_error(tmp_path):
    good = _notebook(tmp_path / "good.ipynb", "import os\nassert os.environ['MMCOURSE_PROFILE'] == 'quick'\nprint('hello')")
    bad = _notebook(tmp_path / "bad.ipynb", "x = 1", "assert x == 2, 'x is not two'")
    out = mmcourse("run", str(good), str(bad), "--profile", "quick", "--output", str(tmp_path / "out"))
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("ok") and "good.ipynb" in line and line.rstrip().endswith(" s") for line in lines)
    # the failing cell is named, with the error and the line that raised it
    assert any(line.startswith("FAIL") and "bad.ipynb" in line and "cell 1: AssertionError: x is not two" in line
               and "assert x == 2" in line for line in lines), lines
    assert "1 passed, 1 failed" in out.stdout
    executed = nbformat.read(tmp_path / "out" / "good.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "hello\n"
    failed = nbformat.read(tmp_path / "out" / "bad.ipynb", as_version=4)  # kept, to show what went wrong
    assert failed.cells[1].outputs[0]["output_type"] == "error"


def test_run_names_a_missing_notebook(tmp_path):
    _notebook(tmp_path / "real.ipynb", "pass")
    out = mmcourse("run", str(tmp_path / "missing.ipynb"))
    assert out.returncode == 2
    assert "no notebook at" in out.stderr and "real.ipynb" in out.stderr


@pytest.mark.parametrize("argv", [[], ["train"]])
def test_usage_errors_exit_non_zero(argv):
    out = mmcourse(*argv)
    assert out.returncode == 2 and "usage: mmcourse" in out.stderr
