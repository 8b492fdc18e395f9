"""The one tf.data builder: row batches in order or in orders drawn up front from a seed, tables
gathered row by row, a reference caption picked per row from (seed, step)."""

import numpy as np
import pytest

from mmcourse.data import pipeline


def rows_of(ds):
    return [b.numpy().tolist() for b in ds]


def test_row_batches_in_order_or_each_pass_in_its_own_seeded_order():
    assert rows_of(pipeline.row_batches(7, batch_size=3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert rows_of(pipeline.row_batches(7, batch_size=3, epochs=2, full_batches=True)) == [[0, 1, 2], [3, 4, 5]] * 2
    shuffled = rows_of(pipeline.row_batches(10, batch_size=4, epochs=3, seed=5))
    assert [len(b) for b in shuffled] == [4, 4, 2] * 3
    passes = [sum(shuffled[3 * p : 3 * p + 3], []) for p in range(3)]
    assert all(sorted(p) == list(range(10)) for p in passes) and len({tuple(p) for p in passes}) > 1
    assert shuffled == rows_of(pipeline.row_batches(10, batch_size=4, epochs=3, seed=5))  # a function of the seed
    assert pipeline.row_batches(4, batch_size=2, seed=0).element_spec.dtype.name == "int64"
    with pytest.raises(ValueError, match="batch_size"):
        pipeline.row_batches(4, batch_size=0)


def test_table_batches_gather_every_table_row_by_row():
    x, y = np.arange(12).reshape(6, 2), {"a": np.arange(6.0) * 10}
    for xb, yb in pipeline.table_batches((x, y), batch_size=4, epochs=2, seed=1):
        np.testing.assert_array_equal(xb.numpy()[:, 0] / 2 * 10, yb["a"].numpy())


def test_pick_reference_is_a_function_of_seed_and_step_and_take_uses_it():
    table = np.arange(5 * 3).reshape(5, 3)  # row r, reference k holds 3r + k
    seen = set()

    def gather(step, rows):
        k = pipeline.pick_reference(rows, 3, seed=2, step=step)
        return rows, k, pipeline.take(table, rows, k)

    first = [tuple(t.numpy() for t in b) for b in pipeline.batches(5, gather, batch_size=5, epochs=20, seed=0)]
    for rows, k, chosen in first:
        np.testing.assert_array_equal(chosen, 3 * rows + k)
        seen |= {(int(r), int(j)) for r, j in zip(rows, k)}
    assert len(seen) == 15  # over 20 steps every row brings each of its references
    again = [tuple(t.numpy() for t in b) for b in pipeline.batches(5, gather, batch_size=5, epochs=20, seed=0)]
    assert all((a[1] == b[1]).all() for a, b in zip(first, again))
