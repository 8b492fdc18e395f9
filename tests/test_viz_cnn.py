"""Plot helpers for CNNs: training curves, confusion matrices, filters, feature maps, heat maps."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mmcourse import viz  # noqa: E402


def test_plot_history_draws_training_and_validation_curves():
    logs = {"loss": [1.0, 0.5, 0.2], "val_loss": [1.1, 0.6, 0.4], "accuracy": [0.5, 0.7, 0.9]}
    fig = viz.plot_history(logs, ["loss", "accuracy"])
    loss_ax, acc_ax = fig.axes
    assert [len(loss_ax.lines), len(acc_ax.lines)] == [2, 1]
    np.testing.assert_array_equal(loss_ax.lines[1].get_ydata(), logs["val_loss"])
    np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), [1, 2, 3])
    with pytest.raises(KeyError, match="it has: accuracy, loss, val_loss"):
        viz.plot_history(logs, ["shape_accuracy"])
    plt.close("all")


def test_confusion_matrix_writes_every_count_in_its_cell():
    cm = np.array([[5, 1, 0], [0, 7, 2], [1, 0, 9]])
    ax = viz.plot_confusion_matrix(cm, ["circle", "square", "triangle"], title="shape")
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(i, j): str(cm[i, j]) for i in range(3) for j in range(3)}
    assert [t.get_text() for t in ax.get_yticklabels()] == ["circle", "square", "triangle"]
    with pytest.raises(ValueError, match="one row per label"):
        viz.plot_confusion_matrix(cm, ["a", "b"])
    plt.close("all")


def test_show_filters_draws_rgb_filters_with_zero_as_mid_grey():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 3, 5))
    kernel[0, 0, :, 0] = 0.0
    fig = viz.show_filters(kernel, ncols=4)
    assert len(fig.axes) == 8  # 2 rows of 4, three left empty
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(shown[0, 0], [0.5, 0.5, 0.5])
    assert 0 <= shown.min() and shown.max() <= 1
    many = rng.normal(size=(3, 3, 16, 2))
    grey = viz.show_filters(many)
    np.testing.assert_allclose(grey.axes[1].images[0].get_array(), many[..., 0, 1])  # first input channel
    with pytest.raises(ValueError, match="get_weights"):
        viz.show_filters(kernel[..., 0])
    plt.close("all")


def test_show_feature_maps_one_panel_per_channel():
    maps = np.arange(4 * 4 * 6, dtype=float).reshape(1, 4, 4, 6)
    fig = viz.show_feature_maps(maps, ncols=3)
    assert len(fig.axes) == 6
    np.testing.assert_array_equal(fig.axes[4].images[0].get_array(), maps[0, ..., 4])
    titled = viz.show_feature_maps(maps[0], max_maps=2, title="block 1")
    assert len(titled.axes) == 2 and titled._suptitle.get_text() == "block 1"
    # the title sits above the panels, not on them
    renderer = titled.canvas.get_renderer()
    assert titled._suptitle.get_window_extent(renderer).y0 >= max(ax.get_window_extent(renderer).y1 for ax in titled.axes) - 1
    with pytest.raises(ValueError, match=r"\(h, w, channels\)"):
        viz.show_feature_maps(maps[0, 0])
    plt.close("all")


def test_overlay_heatmap_stretches_a_scaled_heatmap_over_the_image():
    image = np.zeros((64, 64, 3), np.uint8)
    heat = np.arange(64, dtype=float).reshape(8, 8) * 3 + 10
    _, ax = plt.subplots()
    viz.overlay_heatmap(ax, image, heat)
    shown = ax.images[1]
    np.testing.assert_allclose(shown.get_array(), (heat - 10) / (63 * 3))
    assert shown.get_extent() == [-0.5, 63.5, 63.5, -0.5]
    with pytest.raises(ValueError, match="2-D"):
        viz.overlay_heatmap(ax, image, heat[None])
    plt.close("all")
