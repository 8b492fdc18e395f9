"""The exercises: checkers, scaffolds and solutions, and the student edition `make student` writes."""

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from mmcourse import exercises, student

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHECK = re.compile(r"""exercises\.check\(\s*["']([^"']+)["']""")


def _cells(path, tag):
    return [c for c in nbformat.read(path, as_version=4).cells if tag in c.metadata.get("tags", [])]


def _checked(cells):
    return [name for c in cells for name in CHECK.findall(c.source)]


@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return {path.name: path for path in student.write_student_editions(NOTEBOOKS, out)}


def test_the_student_edition_has_no_solution(editions):
    assert sorted(editions) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        edition = nbformat.read(editions[path.name], as_version=4)
        assert not [c for c in edition.cells if student.SOLUTION in c.metadata.get("tags", [])]
        text = "\n".join(c.source for c in edition.cells)
        for cell in _cells(path, student.SOLUTION):
            assert cell.source.strip() not in text, f"{path.name}: a solution survived"
        assert student.BANNER in text
        assert len(_cells(path, student.SCAFFOLD)) == len([c for c in edition.cells if student.SCAFFOLD in c.metadata.get("tags", [])])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_checkable_exercise_has_a_scaffold_and_a_solution_that_asserts_its_check(path):
    scaffolds, solutions = _cells(path, student.SCAFFOLD), _cells(path, student.SOLUTION)
    names = _checked(scaffolds)
    registered = {name for name in exercises.all_exercises() if name.startswith(path.name[:2] + ".")}
    assert sorted(names) == sorted(registered), f"{path.name}: scaffolds check {names}, registered {sorted(registered)}"
    asserted = {name for c in solutions for name in re.findall(r"""assert exercises\.check\(\s*["']([^"']+)["']""", c.source)}
    assert asserted == set(names), f"{path.name}: solutions assert {sorted(asserted)}"
    for cell in solutions:  # collapsed: a reader does not see a solution by accident
        hidden = cell.metadata.get("jupyter", {})
        assert hidden.get("source_hidden") and (cell.cell_type == "markdown" or hidden.get("outputs_hidden")), cell.source[:60]


def _run_scaffold(source):
    """A scaffold cell on its own (it must not need the notebook's variables): what its check said."""
    exercises.results.clear()
    namespace = {"np": np, "exercises": exercises}
    exec(compile(source, "<scaffold>", "exec"), namespace)
    return dict(exercises.results)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_scaffold_runs_on_its_own_and_its_check_fails_until_answered(path, capsys):
    for cell in _cells(path, student.SCAFFOLD):
        verdicts = _run_scaffold(cell.source)
        assert verdicts and not any(verdicts.values()), f"{path.name}: an empty scaffold passed its check: {cell.source[:80]}"
        assert "✗" in capsys.readouterr().out


def test_check_says_what_is_wrong(capsys):
    assert not exercises.check("02.receptive_field", None)
    assert "not answered yet" in capsys.readouterr().out
    assert not exercises.check("02.receptive_field", 15)
    assert "pool" in capsys.readouterr().out
    assert exercises.check("02.receptive_field", 22)
    assert not exercises.check("02.output_size", lambda n, k, p, s: n // s)
    assert "Keras gives" in capsys.readouterr().out
    assert not exercises.check("02.output_size", lambda n, k, p, s: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out
    with pytest.raises(KeyError, match="02.receptive_field"):
        exercises.check("02.no_such_exercise", 1)


def test_every_notebook_has_three_checkable_exercises():
    names = exercises.all_exercises()
    for path in NOTEBOOKS:
        mine = [n for n in names if n.startswith(path.name[:2] + ".")]
        assert len(mine) >= 3, f"{path.name}: {mine}"


def test_mmcourse_student_writes_every_notebook(tmp_path, capsys):
    from mmcourse import cli

    assert cli.main(["student", "--out", str(tmp_path / "student")]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "student").glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    assert f"{len(NOTEBOOKS)} student notebooks" in out and "exercises with a check" in out


def test_a_verdict_is_printed_once_and_is_true_or_false(capsys):
    verdict = exercises.check("02.receptive_field", 22)
    assert verdict and repr(verdict).startswith("✓") and capsys.readouterr().out.count("✓") == 1
    assert not exercises.check("02.receptive_field", 21)
