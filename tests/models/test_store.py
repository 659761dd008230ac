"""The SQLite model registry: ids, prefixes, names, versions, lineage, path resolution."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from poisonlab.models.checkpoint import save_model
from poisonlab.models.store import ModelStore, resolve_model_path
from poisonlab.models.store import poisonlab_home as home_dir

CLASSES = ("red", "green", "blue")


def _variant(model, k: float):
    """``model`` with its classifier bias shifted by ``k`` (a different weights hash)."""
    with torch.no_grad():
        model.classifier.bias.add_(k)
    return model


@pytest.fixture
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "db" / "registry.sqlite")


def test_default_database_lives_in_poisonlab_home(poisonlab_home):
    assert os.environ["POISONLAB_HOME"] == str(poisonlab_home)
    assert home_dir() == poisonlab_home
    store = ModelStore()
    assert store.db_path == poisonlab_home / "registry.sqlite"
    assert store.db_path.is_file()
    assert not str(store.db_path).startswith(str(Path.home() / ".cache"))


def test_register_list_and_get(store, saved_model):
    folder, card = saved_model
    entry = store.register(card, folder)
    assert entry.id == card.id and entry.name == "tiny" and entry.version == 1
    assert entry.arch == "simple-cifar10"
    assert Path(entry.path) == folder.resolve()
    assert entry.dataset_name == "colours" and entry.dataset_hash == "ab" * 32
    assert entry.metrics == {}
    assert [e.id for e in store.list()] == [card.id]
    assert store.get(card.id) == entry
    assert store.get(card.id[:18]) == entry  # unique id prefix
    assert store.get("tiny") == entry  # name
    assert store.get("tiny:1") == entry  # name:version


def test_empty_registry(store):
    assert store.list() == []
    with pytest.raises(ValueError, match="no model"):
        store.get("simple-cifar10-123")


def test_versions_increment_per_name(store, tmp_path, tiny_model):
    cards = []
    for k in range(3):
        card = save_model(_variant(tiny_model, 1.0), tmp_path / f"run{k}", class_names=CLASSES, name="exp")
        cards.append(card)
        assert store.register(card, tmp_path / f"run{k}").version == k + 1
    other = save_model(_variant(tiny_model, 1.0), tmp_path / "other", class_names=CLASSES, name="other")
    assert store.register(other, tmp_path / "other").version == 1
    assert store.get("exp").id == cards[2].id  # latest version
    assert store.get("exp:1").id == cards[0].id
    assert store.get("exp:2").id == cards[1].id
    assert len(store.list()) == 4
    with pytest.raises(ValueError):
        store.get("exp:9")


def test_re_registering_the_same_id_keeps_its_version(store, tmp_path, tiny_model):
    original = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    card = save_model(tiny_model, tmp_path / "a", class_names=CLASSES, name="exp")
    store.register(card, tmp_path / "a")
    second = save_model(_variant(tiny_model, 1.0), tmp_path / "b", class_names=CLASSES, name="exp")
    store.register(second, tmp_path / "b")
    tiny_model.load_state_dict(original)
    moved = save_model(tiny_model, tmp_path / "moved", class_names=CLASSES, name="exp")
    assert moved.id == card.id  # same weights as "a"
    updated = moved.model_copy(update={"metrics": {"test_accuracy": 0.9}})
    entry = store.register(updated, tmp_path / "moved")
    assert entry.version == 1
    assert Path(entry.path) == (tmp_path / "moved").resolve()
    assert entry.metrics == {"test_accuracy": 0.9}
    assert len(store.list()) == 2


def test_ambiguous_prefix_is_an_error(store, tmp_path, tiny_model):
    for k in range(2):
        card = save_model(_variant(tiny_model, 1.0), tmp_path / f"m{k}", class_names=CLASSES)
        store.register(card, tmp_path / f"m{k}")
    with pytest.raises(ValueError, match="ambiguous"):
        store.get("simple-cifar10-")


def test_lineage_follows_parent_ids(store, tmp_path, tiny_model):
    base = save_model(tiny_model, tmp_path / "base", class_names=CLASSES)
    child = save_model(_variant(tiny_model, 1.0), tmp_path / "child", class_names=CLASSES, parent_id=base.id)
    grandchild = save_model(
        _variant(tiny_model, 1.0), tmp_path / "grandchild", class_names=CLASSES, parent_id=child.id
    )
    for card, name in ((base, "base"), (child, "child"), (grandchild, "grandchild")):
        store.register(card, tmp_path / name)
    assert [e.id for e in store.lineage(grandchild.id)] == [grandchild.id, child.id, base.id]
    assert [e.id for e in store.lineage("child")] == [child.id, base.id]
    assert [e.id for e in store.lineage(base.id)] == [base.id]
    assert store.get(grandchild.id).parent_id == child.id


def test_lineage_stops_at_an_unregistered_parent(store, tmp_path, tiny_model):
    orphan = save_model(
        tiny_model, tmp_path / "orphan", class_names=CLASSES, parent_id="simple-cifar10-ffffffffffff"
    )
    store.register(orphan, tmp_path / "orphan")
    assert [e.id for e in store.lineage(orphan.id)] == [orphan.id]


def test_unknown_reference_is_a_value_error(store, saved_model):
    folder, card = saved_model
    store.register(card, folder)
    for ref in ("nope", "tiny:2", "preact-resnet18-"):
        with pytest.raises(ValueError, match="no model"):
            store.get(ref)


def test_non_numeric_version_is_a_value_error(store, saved_model):
    folder, card = saved_model
    store.register(card, folder)
    with pytest.raises(ValueError):
        store.get("tiny:latest")


def test_the_registry_persists_across_instances(tmp_path, saved_model):
    folder, card = saved_model
    ModelStore(tmp_path / "reg.sqlite").register(card, folder)
    assert ModelStore(tmp_path / "reg.sqlite").get(card.id).id == card.id


def test_resolve_model_path_with_a_folder(store, saved_model):
    folder, _ = saved_model
    assert resolve_model_path(folder, store) == folder
    assert resolve_model_path(str(folder), store) == folder


def test_resolve_model_path_with_a_registry_reference(store, saved_model):
    folder, card = saved_model
    store.register(card, folder)
    for ref in (card.id, card.id[:20], "tiny", "tiny:1"):
        assert resolve_model_path(ref, store) == folder.resolve()


def test_resolve_model_path_uses_the_default_store(saved_model):
    folder, card = saved_model
    ModelStore().register(card, folder)  # in $POISONLAB_HOME
    assert resolve_model_path(card.id) == folder.resolve()


def test_resolve_model_path_garbage_is_file_not_found(store, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a model folder nor a registered model"):
        resolve_model_path("garbage-model-ref", store)
    with pytest.raises(FileNotFoundError):
        resolve_model_path(tmp_path / "missing" / "folder", store)


def test_resolve_model_path_folder_without_card(store, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="model.json"):
        resolve_model_path(empty, store)


def test_resolve_model_path_garbage_with_colon_is_file_not_found(store):
    with pytest.raises(FileNotFoundError):
        resolve_model_path("garbage:latest", store)
