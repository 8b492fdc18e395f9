import numpy as np
import pytest

from mmcourse.metrics.seeds import mean_spread, over_seeds, seed_table, separated


def test_over_seeds_collects_each_number_in_seed_order():
    got = over_seeds(lambda seed: {"a": seed * 2, "b": 1.0}, [3, 1, 2])
    assert list(got) == ["a", "b"]
    np.testing.assert_array_equal(got["a"], [6, 2, 4])


def test_over_seeds_refuses_runs_that_disagree_on_names():
    with pytest.raises(ValueError, match="same names"):
        over_seeds(lambda seed: {"a": 1} if seed == 0 else {"b": 1}, [0, 1])


def test_mean_spread_is_mean_and_sample_standard_deviation():
    values = [0.90, 0.93, 0.99]
    assert mean_spread(values) == f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} (3 seeds)"
    assert mean_spread([0.5]) == "0.500 (1 seed)"


def test_separated_needs_ranges_that_do_not_overlap():
    assert separated([0.9, 0.95, 0.92], [0.5, 0.6, 0.89])
    assert not separated([0.9, 0.95, 0.92], [0.5, 0.6, 0.91])  # one seed of the lower beat one of the higher
    assert not separated([0.5], [0.5])


def test_seed_table_has_a_row_per_model_and_the_spread():
    table = seed_table({"attention": {"exact": np.array([1.0, 0.98, 0.99])}, "none": {"exact": np.array([0.0, 0.01, 0.0])}})
    lines = table.splitlines()
    assert len(lines) == 3 and "exact" in lines[0]
    assert lines[1].startswith("attention") and "0.990 ± 0.010" in lines[1]
