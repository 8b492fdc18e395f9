"""The Shapes world: grammar, geometry, colours, splits, determinism, errors."""

import numpy as np
import pytest

from mmcourse.data import shapes as S


@pytest.fixture(scope="module")
def big():
    return S.generate(10_000, seed=7)


def test_arrays_have_the_documented_shapes_and_types():
    d = S.generate(50, seed=1)
    assert d.images.shape == (50, 64, 64, 3) and d.images.dtype == np.uint8
    assert d.labels.shape == (50, 64, 64) and d.labels.dtype == np.uint8
    assert d.masks.shape == (50, 2, 64, 64) and d.masks.dtype == bool
    assert len(d.captions) == 50 and all(len(c) == 5 for c in d.captions)
    assert len(d.scenes) == 50 and isinstance(d.scenes[0], S.Scene)
    assert set(np.unique(d.n_objects)) <= {1, 2}


def test_design_constants_are_the_stated_ones():
    assert S.COLOURS == {
        "red": (220, 50, 50), "green": (50, 170, 70), "blue": (50, 90, 220),
        "yellow": (235, 200, 40), "purple": (150, 70, 190), "orange": (245, 140, 30),
    }
    assert S.SHAPES == ("circle", "square", "triangle")
    assert S.SIZES == {"small": 12, "large": 24}
    assert set(S.RELATIONS) == {"left of", "right of", "above", "below"}


def test_same_seed_same_bytes_and_other_seed_other_bytes():
    a, b, c = S.generate(300, seed=3), S.generate(300, seed=3), S.generate(300, seed=4)
    assert a.images.tobytes() == b.images.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert a.captions == b.captions
    assert a.images.tobytes() != c.images.tobytes()


def test_threaded_rendering_matches_single_threaded():
    d = S.generate(5000, seed=5)  # large enough to be rendered in chunks on threads
    from mmcourse.data.shapes.rendering import _render_arrays

    images, labels = _render_arrays(d._arrays, threads=1)
    assert np.array_equal(images, d.images) and np.array_equal(labels, d.labels)


def test_every_reference_caption_parses_back_to_its_scene(big):
    for scene, caps in zip(big.scenes, big.captions):
        assert len(set(caps)) == 5
        for cap in caps:
            parsed = S.parse_caption(cap)
            assert parsed.describes(scene), (cap, scene)
            assert parsed.is_true_of(scene)
            assert parsed.text() == cap


def test_two_object_captions_use_both_word_orders(big):
    for scene, caps in zip(big.scenes[:500], big.captions[:500]):
        if len(scene.objects) == 2:
            said_first = {S.parse_caption(c).objects[0] for c in caps}
            assert len(said_first) == 2 or scene.objects[0].phrase == scene.objects[1].phrase


def test_objects_lie_inside_the_image_and_masks_match_their_boxes(big):
    d = big.subset(slice(0, 2000))
    rows = np.arange(64) + 0.5
    for scene, masks in zip(d.scenes, d.masks):
        for k, obj in enumerate(scene.objects):
            x0, y0, x1, y1 = obj.bbox
            assert 0 <= x0 and 0 <= y0 and x1 <= 64 and y1 <= 64
            ys, xs = np.nonzero(masks[k])
            assert len(xs) > 0
            assert (rows[xs] >= x0).all() and (rows[xs] <= x1).all()
            assert (rows[ys] >= y0).all() and (rows[ys] <= y1).all()
        assert not masks[len(scene.objects):].any()


def test_mask_areas_match_the_shapes_geometry(big):
    area = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}  # times extent squared
    d = big.subset(slice(0, 1000))
    for scene, masks in zip(d.scenes, d.masks):
        for k, obj in enumerate(scene.objects):
            expected = area[obj.shape] * obj.extent**2
            assert abs(masks[k].sum() - expected) <= 0.12 * expected + 4, (obj, masks[k].sum())


def test_objects_do_not_overlap(big):
    d = big.subset(big.n_objects == 2).subset(slice(0, 1000))
    for scene in d.scenes:
        alone = [S.render(S.Scene((o,), None, scene.background, scene.noise_id), masks=True)[1][0] for o in scene.objects]
        assert not (alone[0] & alone[1]).any()
        a, b = scene.objects
        if scene.relation == "left of":
            assert a.bbox[2] + S.MIN_GAP <= b.bbox[0] + 1e-4
        else:
            assert a.bbox[3] + S.MIN_GAP <= b.bbox[1] + 1e-4


def test_relation_words_match_the_geometry(big):
    d = big.subset(big.n_objects == 2)
    for scene, masks in zip(d.scenes[:3000], d.masks[:3000]):
        (ax, ay), (bx, by) = scene.objects[0].centre, scene.objects[1].centre
        ys0, xs0 = np.nonzero(masks[0])
        ys1, xs1 = np.nonzero(masks[1])
        if scene.relation == "left of":
            assert xs0.max() < xs1.min()  # every pixel of the first is left of the second
            assert abs(by - ay) < bx - ax  # side by side, not one above the other
        else:
            assert scene.relation == "above"
            assert ys0.max() < ys1.min()
            assert abs(bx - ax) < by - ay
        assert scene.relation_between(1, 0) == {"left of": "right of", "above": "below"}[scene.relation]
    assert {s.relation for s in d.scenes[:200]} == {"left of", "above"}


def test_colours_are_the_stated_ones_within_the_jitter(big):
    d = big.subset(slice(0, 2000))
    for scene, image, masks in zip(d.scenes, d.images, d.masks):
        for k, obj in enumerate(scene.objects):
            nominal = np.array(S.COLOURS[obj.colour])
            assert (np.abs(np.array(obj.rgb) - nominal) <= S.COLOUR_JITTER).all()
            pixels = image[masks[k]].astype(int)
            assert (np.abs(pixels - np.array(obj.rgb)) <= S.NOISE_CLIP).all()
            assert (np.abs(pixels.mean(axis=0) - nominal) <= S.COLOUR_JITTER + 1.5).all()
        background = image[~masks.any(axis=0)].astype(int)
        assert abs(background.mean() - S.BACKGROUND) <= S.BACKGROUND_JITTER + 1
        assert background.std() < 5  # mild noise


def test_sizes_are_small_or_large_with_a_little_jitter(big):
    for scene in big.scenes[:2000]:
        for obj in scene.objects:
            assert abs(obj.extent - S.SIZES[obj.size]) <= S.SIZE_JITTER[obj.size] + 1e-5


def test_all_attributes_and_both_object_counts_occur(big):
    seen = {(o.shape, o.colour, o.size) for s in big.scenes[:3000] for o in s.objects}
    assert len(seen) == 36
    counts = np.bincount(big.n_objects)
    assert counts[1] > 4000 and counts[2] > 4000


def test_render_reproduces_the_dataset_images():
    d = S.generate(40, seed=11)
    for i, scene in enumerate(d.scenes):
        image, masks = S.render(scene, masks=True)
        assert np.array_equal(image, d.images[i])
        assert np.array_equal(masks, d.masks[i, : len(scene.objects)])


def test_holdout_pairs_never_appear_in_training_splits():
    held = [("red", "circle"), ("blue", "triangle")]
    parts = S.splits(train=3000, val=500, test=3000, seed=2, holdout=held)
    for name in ("train", "val"):
        for colour, shape in held:
            assert not parts[name].contains(colour=colour, shape=shape).any(), name
    for colour, shape in held:
        assert parts["test"].contains(colour=colour, shape=shape).sum() > 50
    # the splits come from different seeds
    assert parts["train"].images[:500].tobytes() != parts["test"].images[:500].tobytes()
    assert not S.generate(2000, seed=0, holdout=held).contains(colour="red", shape="circle").any()


def test_contains_agrees_with_the_scenes():
    d = S.generate(300, seed=9)
    hits = d.contains(colour="green", size="large")
    for scene, hit in zip(d.scenes, hits):
        assert hit == any(o.colour == "green" and o.size == "large" for o in scene.objects)


def test_single_object_datasets():
    d = S.generate(200, seed=1, objects=(1,))
    assert (d.n_objects == 1).all()
    assert all(len(S.parse_caption(c).objects) == 1 for caps in d.captions for c in caps)


@pytest.mark.parametrize("n", [0, -3])
def test_generate_rejects_a_non_positive_count(n):
    with pytest.raises(ValueError, match="at least 1"):
        S.generate(n)


@pytest.mark.parametrize("n", [2.5, "10", True])
def test_generate_rejects_a_count_that_is_not_a_whole_number(n):
    with pytest.raises(TypeError, match="whole number"):
        S.generate(n)


def test_generate_rejects_bad_holdout_and_object_counts():
    with pytest.raises(ValueError, match="unknown colour 'pink'"):
        S.generate(10, holdout=[("pink", "circle")])
    with pytest.raises(ValueError, match="no colour–shape pair"):
        S.generate(10, holdout=[(c, s) for c in S.COLOURS for s in S.SHAPES])
    with pytest.raises(ValueError, match="object counts"):
        S.generate(10, objects=(3,))


def test_render_names_an_unknown_colour_or_shape():
    scene = S.compose([("small", "red", "circle")])
    bad = S.Scene((S.ShapeObject("hexagon", "red", "small", (32.0, 32.0), 12.0, (220, 50, 50)),))
    with pytest.raises(ValueError, match="unknown shape 'hexagon'.*circle, square, triangle"):
        S.render(bad)
    bad = S.Scene((S.ShapeObject("circle", "pink", "small", (32.0, 32.0), 12.0, (220, 50, 50)),))
    with pytest.raises(ValueError, match="unknown colour 'pink'"):
        S.render(bad)
    assert S.render(scene).shape == (64, 64, 3)


@pytest.mark.parametrize(
    "text, word",
    [
        ("a big red circle", "big"),
        ("a small pink circle", "pink"),
        ("a small red hexagon", "hexagon"),
        ("a small red circle next to a large blue square", "next"),
        ("a small red circle left a large blue square", "a"),
        ("the small red circle", "the"),
        ("a small red circle above a large blue square please", "please"),
    ],
)
def test_parse_caption_names_the_first_word_it_cannot_place(text, word):
    with pytest.raises(S.CaptionError) as info:
        S.parse_caption(text)
    assert info.value.word == word
    assert repr(word) in str(info.value)


def test_parse_caption_reports_a_caption_that_ends_too_early():
    with pytest.raises(S.CaptionError, match="ends too early"):
        S.parse_caption("a small red")
    with pytest.raises(S.CaptionError):
        S.parse_caption("")


def test_parse_caption_inverts_the_grammar():
    p = S.parse_caption("there is a large blue square right of a small red circle")
    assert p.prefix == "there is"
    assert p.objects == (S.ObjectPhrase("large", "blue", "square"), S.ObjectPhrase("small", "red", "circle"))
    assert p.relation == "right of"
    assert p.description() == S.Description(
        (S.ObjectPhrase("small", "red", "circle"), S.ObjectPhrase("large", "blue", "square")), "left of"
    )


def test_a_partial_caption_is_true_but_not_complete():
    scene = S.compose([("small", "red", "circle"), ("large", "blue", "square")], "left of")
    assert S.parse_caption("a small red circle").is_true_of(scene)
    assert not S.parse_caption("a small red circle").describes(scene)
    assert not S.parse_caption("a small red circle right of a large blue square").is_true_of(scene)
    assert not S.parse_caption("a large red circle").is_true_of(scene)


def test_compose_puts_the_objects_where_the_relation_says():
    for relation in S.RELATIONS:
        scene = S.compose([("small", "red", "circle"), ("large", "blue", "square")], relation)
        first = next(i for i, o in enumerate(scene.objects) if o.colour == "red")
        assert scene.relation_between(first, 1 - first) == relation
        caps = S.captions_of(scene)
        assert len(set(caps)) == 5 and all(S.parse_caption(c).describes(scene) for c in caps)
        image = S.render(scene)
        x, y = scene.objects[first].centre
        assert np.abs(image[int(y), int(x)].astype(int) - S.COLOURS["red"]).max() <= S.NOISE_CLIP


def test_compose_with_a_seed_draws_like_the_dataset():
    scene = S.compose([("large", "green", "triangle")], seed=4)
    assert abs(scene.objects[0].extent - 24) <= 2 and scene.objects[0].rgb != S.COLOURS["green"]
    with pytest.raises(ValueError, match="unknown relation 'beside'"):
        S.compose([("small", "red", "circle"), ("large", "blue", "square")], "beside")
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        S.compose([("huge", "red", "circle")])


def _object_by_reference(scene, ref):
    words = ref.split()
    return [o for o in scene.objects if all(w in (o.size, o.colour, o.shape, "object") for w in words)]


def test_question_answers_are_true_of_the_scene():
    d = S.generate(500, seed=12)
    kinds = set()
    for scene in d.scenes:
        for qa in S.questions(scene):
            kinds.add(qa.kind)
            q = qa.question
            if qa.kind in ("colour", "shape", "size"):
                ref = q.split(" is the ", 1)[1]
                (obj,) = _object_by_reference(scene, ref)  # the reference is unambiguous
                assert getattr(obj, qa.kind) == qa.answer
            elif q == "how many objects are there":
                assert qa.answer == str(len(scene.objects))
            elif qa.kind == "count":
                shape = q.split()[2][:-1]
                assert qa.answer == str(sum(o.shape == shape for o in scene.objects))
            elif qa.kind == "existence":
                _, _, _, colour, shape = q.split()
                present = any(o.colour == colour and o.shape == shape for o in scene.objects)
                assert qa.answer == ("yes" if present else "no")
            elif q.startswith("where is the "):
                a_ref, b_ref = q[len("where is the "):].split(" relative to the ")
                (a,), (b,) = _object_by_reference(scene, a_ref), _object_by_reference(scene, b_ref)
                dx, dy = b.centre[0] - a.centre[0], b.centre[1] - a.centre[1]
                expected = ("left" if dx > 0 else "right") if abs(dx) > abs(dy) else ("above" if dy > 0 else "below")
                assert qa.answer == expected
    assert kinds == {"colour", "shape", "size", "count", "existence", "relation"}


def test_existence_questions_are_balanced():
    d = S.generate(500, seed=13)
    answers = [qa.answer for s in d.scenes for qa in S.questions(s) if qa.kind == "existence"]
    assert answers.count("yes") == answers.count("no")


def test_vocabulary_words_cover_every_caption(big):
    words = set(S.vocabulary_words())
    assert {w for caps in big.captions[:1000] for c in caps for w in c.split()} <= words


def test_encode_captions_checks_as_strictly_as_asked():
    vocab = S.caption_vocabulary()
    ids = S.encode_captions(["A  small red circle"])
    assert ids.shape == (1, S.CAPTION_LENGTH) and ids[0, 0] == vocab.start_id and vocab.decode(ids[0]) == "a small red circle"
    assert S.encode_captions(["circle a"], vocab, length=3, bounds=False, check="words").tolist() == [[vocab.index("circle"), vocab.index("a"), 0]]
    with pytest.raises(S.CaptionError, match="'circle'"):
        S.encode_captions(["circle a"])
    with pytest.raises(ValueError, match="unknown word 'hexagon'"):
        S.encode_captions(["a small red hexagon"], check="words")
    with pytest.raises(ValueError, match="at most 2"):
        S.encode_captions(["a small red"], length=2, bounds=False, check="words")
    assert S.encode_captions(["a small red hexagon"], check=None)[0, 4] == vocab.unk_id  # <start> a small red <unk>
    with pytest.raises(TypeError, match="wrap a single caption in a list"):
        S.encode_captions("a small red circle")
    assert max(len(c.split()) for c in S.caption_distribution()) == S.LONGEST_CAPTION == 13


def test_question_vocabulary_reads_every_question(big):
    vocab = S.question_vocabulary()
    assert {w for s in big.scenes[:300] for qa in S.questions(s) for w in qa.question.split()} <= set(vocab.words[4:])
