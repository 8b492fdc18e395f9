"""Stored tqdm bars read as finished text where widgets do not render."""

from mmcourse.runner import WIDGET_STATE, WIDGET_VIEW, finish_progress_bars


def _model(name, **state):
    return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}


def _notebook(value, maximum):
    states = {
        "box": _model("HBoxModel", children=["IPY_MODEL_left", "IPY_MODEL_bar", "IPY_MODEL_right"]),
        "left": _model("HTMLModel", value="train\u2007GAN:\u2007100%"),
        "bar": _model("FloatProgressModel", value=value, max=maximum),
        "right": _model("HTMLModel", value="\u200750/50\u2007[21:07&lt;00:00,\u200725.3s/epoch]"),
        "other": _model("VBoxModel", children=[]),
    }
    bar = {"output_type": "display_data", "metadata": {},
           "data": {WIDGET_VIEW: {"model_id": "box", "version_major": 2, "version_minor": 0}, "text/plain": ["0epoch [00:00, ?epoch/s]"]}}
    other = {"output_type": "display_data", "metadata": {}, "data": {WIDGET_VIEW: {"model_id": "other"}, "text/plain": ["VBox()"]}}
    return {"metadata": {"widgets": {WIDGET_STATE: {"state": states}}}, "cells": [{"cell_type": "code", "outputs": [bar, other]}]}


def test_a_finished_bar_gets_its_last_text_and_other_widgets_are_left_alone():
    nb = _notebook(50.0, 50.0)
    assert finish_progress_bars(nb) == 1
    bar, other = nb["cells"][0]["outputs"]
    assert bar["data"]["text/plain"] == "train GAN: 100%|██████████| 50/50 [21:07<00:00, 25.3s/epoch]"
    assert other["data"]["text/plain"] == ["VBox()"]


def test_a_bar_stopped_halfway_shows_half_a_bar():
    nb = _notebook(5.0, 10.0)
    finish_progress_bars(nb)
    assert "|█████     |" in nb["cells"][0]["outputs"][0]["data"]["text/plain"]


def test_a_notebook_without_widget_state_is_unchanged():
    nb = {"metadata": {}, "cells": [{"cell_type": "markdown", "source": "x"}]}
    assert finish_progress_bars(nb) == 0
