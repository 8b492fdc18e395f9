"""The layout stage of grounded text to image: what-is-where maps, and the bank that places a
caption's objects where training scenes put them; and the denoiser that reads the maps."""

import numpy as np
import pytest

from mmcourse.data import shapes
from mmcourse.models import denoiser, diffusion, layout


@pytest.fixture(scope="module")
def scenes():
    return shapes.generate(300, seed=(8, 1))


def test_maps_are_discs_where_the_objects_are(scenes):
    maps = layout.scene_maps(scenes, side=64)  # one cell a pixel: compare with the rendered masks
    masks = scenes.masks  # (n, 2, 64, 64)
    for i, scene in enumerate(scenes.scenes[:60]):
        for k, obj in enumerate(scene.objects):
            colour = maps[i, :, :, layout.CHANNELS.index(obj.colour)]
            shape = maps[i, :, :, layout.CHANNELS.index(obj.shape)]
            inside = masks[i, k]
            # the object's own pixels are lit in its colour's and its shape's channels (a triangle's corners lie outside its disc)
            assert colour[inside].mean() > 0.7 and shape[inside].mean() > 0.7, (i, k)
            # and the lit disc is centred on the object (centre of mass within a pixel)
            alone = np.clip((obj.extent / 2 - np.hypot(np.arange(64)[None] + 0.5 - obj.centre[0], np.arange(64)[:, None] + 0.5 - obj.centre[1]))
                            / layout.SOFTNESS + 0.5, 0, 1)  # the formula, written again
            if not any(o.colour == obj.colour for j, o in enumerate(scene.objects) if j != k):
                assert np.allclose(colour, alone, atol=1e-5)
        lit = maps[i].sum(-1) > 0
        assert not lit[masks[i].sum(0) == 0].all()  # the background stays dark somewhere
    # every lit cell belongs to a channel of an object the scene holds
    for i, scene in enumerate(scenes.scenes[:60]):
        named = {o.colour for o in scene.objects} | {o.shape for o in scene.objects}
        for c, channel in enumerate(layout.CHANNELS):
            assert (maps[i, :, :, c].max() > 0) == (channel in named), (i, channel)


def test_the_bank_places_objects_as_the_caption_says(scenes):
    bank = layout.LayoutBank.fit(scenes)
    assert len(bank) == len(scenes)
    captions = [c for cs in shapes.generate(200, seed=(8, 2)).captions for c in cs[:2]]
    placed = bank.sample(captions, seed=3)
    for i, caption in enumerate(captions):
        parse = shapes.parse_caption(caption)
        assert placed["present"][i].sum() == len(parse.objects)
        for k, obj in enumerate(parse.objects):
            assert layout.CHANNELS[placed["colour"][i, k]] == obj.colour and layout.CHANNELS[6 + placed["shape"][i, k]] == obj.shape
            assert abs(placed["extent"][i, k] - shapes.SIZES[obj.size]) <= shapes.SIZE_JITTER[obj.size] + 1e-4
            assert np.all(placed["centre"][i, k] - placed["extent"][i, k] / 2 >= 0) and np.all(placed["centre"][i, k] + placed["extent"][i, k] / 2 <= 64)
        if parse.relation is not None:
            (ax, ay), (bx, by) = placed["centre"][i]
            assert {"left of": ax < bx, "right of": ax > bx, "above": ay < by, "below": ay > by}[parse.relation], caption
    # layouts come from the bank's own scenes, drawn afresh for each seed
    again, other = bank.sample(captions, seed=3), bank.sample(captions, seed=4)
    assert np.array_equal(again["centre"], placed["centre"]) and not np.array_equal(other["centre"], placed["centre"])
    stored = {tuple(np.round(c, 4)) for c in scenes._arrays.centre.reshape(-1, 2)}
    assert all(tuple(np.round(c, 4)) in stored for c in placed["centre"][placed["present"]])


def test_the_bank_names_what_it_cannot_place(tmp_path):
    one_object = layout.LayoutBank.fit(shapes.generate(50, seed=1, objects=(1,)))
    with pytest.raises(ValueError, match="no training layout"):
        one_object.sample(["a small red circle left of a large blue square"])
    with pytest.raises(ValueError, match="blob"):
        one_object.sample(["a small red blob"])
    saved = layout.LayoutBank.load(one_object.save(tmp_path / "layouts.npz"))
    assert np.array_equal(saved.maps(["a large green square"], seed=2), one_object.maps(["a large green square"], seed=2))


def test_a_denoiser_given_layouts_starts_as_the_caption_only_one_and_then_reads_them(scenes):
    plain = denoiser.build_denoiser((8, 8, 4), width=16, text_width=16, num_heads=2)
    rng = np.random.default_rng(0)
    for layer in plain.layers:  # the output starts at zero; give it weights so differences show
        if layer.name == "out_conv" or layer.name.endswith("_film"):
            layer.set_weights([0.3 * rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    grounded = denoiser.with_layout(plain, len(layout.CHANNELS))
    assert denoiser.layout_channels(plain) == 0 and denoiser.layout_channels(grounded) == len(layout.CHANNELS)
    captions = [c[0] for c in scenes.captions[:3]]
    inputs = {"noisy": rng.normal(size=(3, 8, 8, 4)).astype("float32"), "t": np.array([0, 500, 900], np.int32),
              "caption": shapes.encode_captions(captions)}
    maps = layout.scene_maps(scenes.subset(range(3)), side=8)
    assert np.allclose(np.asarray(grounded({**inputs, "layout": maps})), np.asarray(plain(inputs)), atol=1e-6)
    for name in ("layout_full", "layout_half"):
        grounded.get_layer(name).set_weights([0.1 * rng.normal(size=w.shape).astype("float32") for w in grounded.get_layer(name).get_weights()])
    moved = np.asarray(grounded({**inputs, "layout": maps}))
    assert not np.allclose(moved, np.asarray(plain(inputs)), atol=1e-3)
    assert not np.allclose(moved, np.asarray(grounded({**inputs, "layout": maps[::-1]})), atol=1e-3)  # another layout, another guess


def test_layouts_travel_with_their_rows_and_go_dark_with_the_caption():
    from mmcourse.models.denoiser import null_caption

    sched = diffusion.schedule(100)
    rng = np.random.default_rng(6)
    latents = rng.normal(size=(40, 4, 4, 2)).astype("float32")
    captions = rng.integers(4, 30, size=(40, 3, 16)).astype("int32")
    maps = np.broadcast_to(np.arange(40, dtype=np.float32)[:, None, None, None] + 1, (40, 4, 4, 3)).copy()  # row r's map is r + 1
    dark = lit = 0
    for inputs, noise in diffusion.noised_batches(latents, captions, sched, batch_size=40, epochs=10, seed=1, drop=0.3, layouts=maps):
        noisy, t, caption, got = (np.asarray(inputs[k]) for k in ("noisy", "t", "caption", "layout"))
        x0 = (noisy - np.sqrt(1 - sched.alpha_bars[t])[:, None, None, None] * np.asarray(noise)) / np.sqrt(sched.alpha_bars[t])[:, None, None, None]
        rows = np.abs(x0[:, None] - latents[None]).reshape(40, 40, -1).max(-1).argmin(1)
        dropped = (caption == null_caption()).all(1)
        assert np.all(got[dropped] == 0) and np.all(got[~dropped] == (rows[~dropped] + 1)[:, None, None, None])
        dark, lit = dark + dropped.sum(), lit + (~dropped).sum()
    assert 0.2 < dark / (dark + lit) < 0.4


def test_a_grounded_denoiser_needs_layouts_to_draw():
    plain = denoiser.build_denoiser((8, 8, 4), width=8, text_width=8, num_heads=2)
    grounded = denoiser.with_layout(plain, 9)
    ids = shapes.encode_captions(["a small red circle"])
    with pytest.raises(ValueError, match="pass layouts"):
        diffusion.guided_predictor(grounded, ids)
    with pytest.raises(ValueError, match="takes no layouts"):
        diffusion.guided_predictor(plain, ids, layouts=np.zeros((1, 8, 8, 9)))
    latents = diffusion.draw_latents(grounded, ids, sched=diffusion.schedule(20), steps=3, layouts=np.zeros((1, 8, 8, 9), np.float32))
    assert latents.shape == (1, 8, 8, 4)


def test_grounded_fine_tuning_trains_alike_on_two_replicas_and_in_mixed_precision(scenes):
    """The fine-tuning stage (start_from plus layouts) in the course's training idiom: two CPU
    replicas follow one device, and mixed float16 (scaled loss) follows float32."""
    import keras

    from mmcourse import device

    rng = np.random.default_rng(10)
    plain = denoiser.build_denoiser((8, 8, 2), width=16, text_width=16, num_heads=2)
    ids = shapes.encode_captions([c[0] for c in scenes.captions[:64]])[:, None]
    maps = layout.scene_maps(scenes.subset(range(64)), side=8)
    latents = rng.normal(size=(64, 8, 8, 2)).astype("float32")
    arguments = dict(sched=diffusion.schedule(50), epochs=2, batch_size=16, learning_rate=1e-3, seed=0, progress=False,
                     layouts=maps, start_from=plain)
    runs = {}
    for precision, replicas in (("float32", None), ("float32", 2), ("mixed", 2)):
        with device.use(precision, replicas):
            model, history, _ = diffusion.train_denoiser(latents, ids, **arguments)
        runs[precision, replicas] = history["loss"]
        assert denoiser.layout_channels(model) == len(layout.CHANNELS)
    np.testing.assert_allclose(runs["float32", 2], runs["float32", None], rtol=1e-4)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) and np.isfinite(runs["mixed", 2]).all()
    np.testing.assert_allclose(runs["mixed", 2], runs["float32", None], rtol=0.05)
