"""The scene composer, driven by setting its controls as a learner would."""

import io

import numpy as np
from PIL import Image

from mmcourse.data import shapes as S
from mmcourse.widgets import SceneComposer


def shown_image(composer):
    big = np.asarray(Image.open(io.BytesIO(composer.image.value)).convert("RGB"))
    return big[:: composer.scale, :: composer.scale]


def pixel_at(image, obj):
    x, y = obj.centre
    return image[int(y), int(x)].astype(int)


def test_changing_a_colour_changes_the_image_and_the_captions():
    c = SceneComposer()
    before = c.image.value
    c.colour[0].value = "green"
    assert c.image.value != before
    green = [o for o in c.scene.objects if o.colour == "green"]
    assert len(green) == 1
    assert np.abs(pixel_at(shown_image(c), green[0]) - S.COLOURS["green"]).max() <= S.NOISE_CLIP
    assert all("green circle" in cap for cap in c.caption_list)
    assert "green circle" in c.captions.value and "red" not in c.captions.value


def test_the_relation_control_moves_the_objects():
    c = SceneComposer()
    for relation in S.RELATIONS:
        c.relation.value = relation
        first = next(o for o in c.scene.objects if o.colour == "red")
        second = next(o for o in c.scene.objects if o.colour == "blue")
        dx, dy = second.centre[0] - first.centre[0], second.centre[1] - first.centre[1]
        expected = {"left of": dx > 0, "right of": dx < 0, "above": dy > 0, "below": dy < 0}[relation]
        assert expected, relation
        assert all(S.parse_caption(cap).describes(c.scene) for cap in c.caption_list)


def test_one_object_disables_the_second_and_the_relation():
    c = SceneComposer()
    c.count.value = 1
    assert len(c.scene.objects) == 1 and c.relation.disabled and c.shape[1].disabled
    assert all(" of " not in cap.replace("picture of", "").replace("image of", "").replace("drawing of", "") for cap in c.caption_list)
    c.shape[0].value = "triangle"
    assert c.scene.objects[0].shape == "triangle"
    assert (shown_image(c) == S.render(c.scene)).all()


def test_jitter_draws_like_the_dataset_and_the_seed_changes_it():
    c = SceneComposer()
    c.jitter.value = True
    first = c.scene
    c.seed.value = 7
    assert c.scene != first and not c.seed.disabled
    assert "how many objects are there" in c.answers.value
