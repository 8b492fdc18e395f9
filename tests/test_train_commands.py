"""Every ``train_command`` (what each ``mmcourse train`` target runs) checks its arguments and
its ``--out`` before it makes any data or trains: each bad argument gives one ``ValueError``
naming what was wrong, at once, and ``--out`` is not created."""

import pytest

from mmcourse._tf import tensorflow

from mmcourse.metrics import judge
from mmcourse.models import captioning, embeddings, gan, generative, latent_diffusion, retrieval, vlm, vqa

# each command, with the defaults it needs and one bad option of its own
COMMANDS = {
    "embeddings": (embeddings, {"corpus": "lee"}, ({"corpus": "wiki"}, "unknown corpus 'wiki'")),  # and --epochs 0: its own test
    "vae": (generative, {}, ({"latent_dim": 0}, "latent_dim must be")),
    "judge": (judge, {}, None),
    "gan": (gan, {}, None),
    "captioner": (captioning, {}, ({"fusion": "late"}, "fusion must be one of")),
    "retrieval": (retrieval, {}, ({"text_encoder": "lstm"}, "text_encoder must be one of")),
    "vqa": (vqa, {}, ({"fusion": "concat"}, "fusion must be one of")),
    "vlm": (vlm, {}, None),
    "diffusion": (latent_diffusion, {}, None),
}
SHARED = [({"seed": -1}, "seed must be a non-negative whole number"), ({"precision": "half"}, "precision must be one of"),
          ({"profile": "huge"}, "not a profile"), ({"cpu_replicas": 0}, "cpu_replicas must be")]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_train_command_checks_its_arguments_before_anything_else(name, tmp_path, monkeypatch):
    module, needed, own = COMMANDS[name]
    monkeypatch.setattr("mmcourse.data.shapes.generate", lambda *a, **k: pytest.fail("made data before checking"))
    for bad, message in [*SHARED, *([own] if own else [])]:
        with pytest.raises(ValueError, match=message):
            module.train_command(tmp_path / "out", **{**needed, **bad})
    # this process's runtime starts with the CPU split in two (tests/conftest.py): three is too late
    tensorflow().constant(0.0)  # the runtime has started
    with pytest.raises(RuntimeError, match="cannot split the CPU into 3 devices: TensorFlow has already started"):
        module.train_command(tmp_path / "out", **needed, cpu_replicas=3)
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("occupied")
    with pytest.raises(ValueError, match="is a file"):
        module.train_command(tmp_path / "file", **needed, profile="quick")
