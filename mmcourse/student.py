"""The student edition of the notebooks: ``mmcourse student`` (``make student``).

In the course's notebooks (the instructor edition) every exercise's solution sits in cells
tagged ``solution``, collapsed, and each checkable exercise has a cell tagged ``scaffold`` just
before its solution: what to fill in, then ``exercises.check(...)``. The student edition is the
same notebook with the ``solution`` cells removed by nbconvert's ``TagRemovePreprocessor`` (the
scaffolds stay, so every exercise keeps a place to answer and a check), and one line at the top
saying which edition it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nbformat and nbconvert load only when an edition is written
    import nbformat

__all__ = ["SOLUTION", "SCAFFOLD", "student_edition", "write_student_editions", "count_exercises"]

SOLUTION, SCAFFOLD = "solution", "scaffold"
BANNER = ("*Student edition*: the solutions are not in this copy. Each exercise that can be checked has a cell to fill in, "
          "ending in `exercises.check(...)`, which says whether your answer is right and gives a hint when it is not.")


def student_edition(path) -> "nbformat.NotebookNode":
    """The notebook at ``path`` without its ``solution`` cells, with a banner cell first."""
    import nbformat
    from nbconvert.exporters import NotebookExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = NotebookExporter()
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={SOLUTION}, enabled=True), enabled=True)
    body, _ = exporter.from_filename(str(path))
    notebook = nbformat.reads(body, as_version=4)
    notebook.cells.insert(1 if notebook.cells and notebook.cells[0].cell_type == "markdown" else 0,
                          nbformat.v4.new_markdown_cell(BANNER, metadata={"tags": ["student-edition"]}))
    return notebook


def write_student_editions(notebooks=None, out="student") -> list[Path]:
    """Write the student edition of each notebook (default: every course notebook) into ``out``,
    under the same file name. Returns the paths written."""
    import nbformat

    from mmcourse.runner import find_notebooks

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in find_notebooks(notebooks or []):
        target = out / path.name
        nbformat.write(student_edition(path), target)
        written.append(target)
    return written


def count_exercises(path) -> int:
    """How many ``scaffold`` cells (exercises with a check) the notebook at ``path`` has."""
    import nbformat

    return sum(SCAFFOLD in c.metadata.get("tags", []) for c in nbformat.read(str(path), as_version=4).cells)
