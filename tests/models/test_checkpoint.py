"""Saved model folders: round trip, model.json contents, tamper detection, card updates."""

from __future__ import annotations

import json
import re
from datetime import datetime

import numpy as np
import pytest
import torch

import poisonlab
from poisonlab.inference import forward_pass
from poisonlab.models import PreActResNet18
from poisonlab.models.checkpoint import (
    CARD_FILE,
    WEIGHTS_FILE,
    file_sha256,
    load_model,
    read_card,
    save_model,
    write_card,
)


def _images(n: int = 6, shape=(8, 8, 3), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _perturb_batchnorm(model: torch.nn.Module) -> None:
    """Give BN buffers non-default values so the round trip must restore buffers too."""
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def test_round_trip_gives_identical_outputs(tmp_path, tiny_model):
    _perturb_batchnorm(tiny_model)
    card = save_model(tiny_model, tmp_path / "m", class_names=["red", "green", "blue"])
    loaded, loaded_card = load_model(tmp_path / "m")
    assert loaded is not tiny_model
    assert not loaded.training  # loaded in eval mode
    assert loaded_card == card
    x = _images()
    np.testing.assert_array_equal(
        forward_pass(loaded, x, device="cpu").logits, forward_pass(tiny_model, x, device="cpu").logits
    )
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_round_trip_preact_resnet(tmp_path):
    torch.manual_seed(0)
    model = PreActResNet18(input_shape=(8, 8, 1), num_classes=2, width=4).eval()
    _perturb_batchnorm(model)
    save_model(model, tmp_path / "r", class_names=("a", "b"))
    loaded, card = load_model(tmp_path / "r")
    assert isinstance(loaded, PreActResNet18) and loaded.width == 4
    assert card.arch == "preact-resnet18" and card.input_shape == (8, 8, 1)
    x = _images(shape=(8, 8, 1))
    np.testing.assert_array_equal(
        forward_pass(loaded, x, device="cpu").logits, forward_pass(model, x, device="cpu").logits
    )


def test_model_json_fields(tmp_path, tiny_model):
    before = datetime.now().astimezone()
    card = save_model(
        tiny_model,
        tmp_path / "my-model",
        class_names=("red", "green", "blue"),
        train_config={"epochs": 3},
        dataset_name="colours",
        dataset_hash="cd" * 32,
        parent_id="simple-cifar10-000000000000",
        metrics={"test_accuracy": 0.5},
        notes="hello",
    )
    data = json.loads((tmp_path / "my-model" / CARD_FILE).read_text(encoding="utf-8"))
    digest = file_sha256(tmp_path / "my-model" / WEIGHTS_FILE)
    assert data["weights_sha256"] == digest
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert data["id"] == f"simple-cifar10-{digest[:12]}" == card.id
    assert data["name"] == "my-model"  # defaults to the folder name
    assert data["class_names"] == ["red", "green", "blue"]
    assert data["spec"] == tiny_model.spec()
    assert data["spec"]["arch"] == "simple-cifar10"
    assert data["poisonlab_version"] == poisonlab.__version__
    assert data["parent_id"] == "simple-cifar10-000000000000"
    assert data["dataset_name"] == "colours" and data["dataset_hash"] == "cd" * 32
    assert data["train_config"] == {"epochs": 3}
    assert data["metrics"] == {"test_accuracy": 0.5}
    assert data["notes"] == "hello"
    created = datetime.fromisoformat(data["created_at"])
    assert created.tzinfo is not None
    assert abs((created - before).total_seconds()) < 60
    assert not list((tmp_path / "my-model").glob("*.tmp"))


def test_explicit_name_and_defaults(tmp_path, tiny_model):
    card = save_model(tiny_model, tmp_path / "folder", class_names=("a", "b", "c"), name="custom")
    assert card.name == "custom"
    assert card.parent_id is None and card.dataset_hash is None and card.metrics == {}


def test_same_weights_give_the_same_id(tmp_path, tiny_model):
    a = save_model(tiny_model, tmp_path / "a", class_names=("a", "b", "c"))
    b = save_model(tiny_model, tmp_path / "b", class_names=("a", "b", "c"))
    assert a.id == b.id
    with torch.no_grad():
        tiny_model.classifier.bias.add_(1.0)
    c = save_model(tiny_model, tmp_path / "c", class_names=("a", "b", "c"))
    assert c.id != a.id


def test_class_name_count_must_match(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="3 classes"):
        save_model(tiny_model, tmp_path / "m", class_names=("a", "b"))
    assert not (tmp_path / "m" / CARD_FILE).exists()


def test_flipping_one_weight_byte_is_detected(saved_model):
    folder, _ = saved_model
    weights = folder / WEIGHTS_FILE
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit, inside the tensor data
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="modified"):
        load_model(folder)
    # verify=False skips the hash check (the header is intact so the weights still load)
    model, _ = load_model(folder, verify=False)
    assert model.num_classes == 3


def test_swapped_weights_of_another_model_are_detected(tmp_path, saved_model, tiny_model):
    folder, _ = saved_model
    with torch.no_grad():
        tiny_model.classifier.weight.mul_(2)
    save_model(tiny_model, tmp_path / "other", class_names=("a", "b", "c"))
    (folder / WEIGHTS_FILE).write_bytes((tmp_path / "other" / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ValueError, match="modified"):
        load_model(folder)


def test_missing_files(tmp_path, saved_model):
    folder, _ = saved_model
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "does-not-exist")
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="weights"):
        load_model(folder)
    (folder / CARD_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=CARD_FILE):
        load_model(folder)
    with pytest.raises(FileNotFoundError):
        read_card(folder)


@pytest.mark.parametrize(
    "text",
    ["{not json", "[]", '{"id": "x"}', "", "\x00\x01"],
    ids=["invalid-json", "list", "missing-fields", "empty", "binary"],
)
def test_corrupt_model_json_is_a_value_error(saved_model, text):
    folder, _ = saved_model
    (folder / CARD_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError):
        read_card(folder)
    with pytest.raises(ValueError):
        load_model(folder)


def test_unknown_field_or_bad_hash_in_model_json(saved_model):
    folder, _ = saved_model
    data = json.loads((folder / CARD_FILE).read_text())
    (folder / CARD_FILE).write_text(json.dumps({**data, "extra": 1}))
    with pytest.raises(ValueError, match="corrupt"):
        read_card(folder)
    (folder / CARD_FILE).write_text(json.dumps({**data, "weights_sha256": "not-a-hash"}))
    with pytest.raises(ValueError, match="corrupt"):
        read_card(folder)


def test_spec_not_matching_the_weights_is_a_value_error(saved_model):
    folder, _ = saved_model
    data = json.loads((folder / CARD_FILE).read_text())
    data["spec"]["num_classes"] = 4
    data["class_names"] = ["a", "b", "c", "d"]
    (folder / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="cannot load weights"):
        load_model(folder)


def test_truncated_weights_without_verification_is_a_value_error(saved_model):
    folder, _ = saved_model
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="modified"):
        load_model(folder)
    with pytest.raises(ValueError, match="cannot load weights"):
        load_model(folder, verify=False)


def test_write_card_updates_metrics(saved_model):
    folder, card = saved_model
    updated = card.model_copy(update={"metrics": {"test_accuracy": 0.75, "epochs": 2}})
    write_card(updated, folder)
    reread = read_card(folder)
    assert reread.metrics == {"test_accuracy": 0.75, "epochs": 2}
    assert reread.id == card.id and reread.weights_sha256 == card.weights_sha256
    assert not list(folder.glob("*.tmp"))
    model, loaded_card = load_model(folder)  # still verifies
    assert loaded_card.metrics["test_accuracy"] == 0.75
