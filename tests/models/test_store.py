"""The SQLite model registry: one entry per run, ids, prefixes, names, versions, lineage, paths."""

from __future__ import annotations

import os
import sqlite3
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


def test_registering_the_same_weights_twice_gives_two_runs(store, tmp_path, tiny_model):
    original = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    card = save_model(tiny_model, tmp_path / "a", class_names=CLASSES, name="exp")
    first = store.register(card, tmp_path / "a")
    second = save_model(_variant(tiny_model, 1.0), tmp_path / "b", class_names=CLASSES, name="exp")
    store.register(second, tmp_path / "b")
    tiny_model.load_state_dict(original)
    moved = save_model(tiny_model, tmp_path / "moved", class_names=CLASSES, name="exp")
    assert moved.id == card.id  # same weights as "a"
    updated = moved.model_copy(update={"metrics": {"test_accuracy": 0.9}})
    rerun = store.register(updated, tmp_path / "moved")
    # a new run that shares the weights hash; the first run is neither re-pointed nor updated
    assert rerun.id == first.id and rerun.run_id != first.run_id
    assert rerun.version == 3 and Path(rerun.path) == (tmp_path / "moved").resolve()
    assert store.get(first.run_id) == first
    assert Path(first.path) == (tmp_path / "a").resolve() and first.metrics == {}
    assert [e.run_id for e in store.runs_of(card.id)] == [first.run_id, rerun.run_id]
    assert store.get(card.id) == rerun  # the model id resolves to its newest run
    assert len(store.list()) == 3


def test_entries_are_never_renamed(store, tmp_path, tiny_model):
    card = save_model(tiny_model, tmp_path / "a", class_names=CLASSES, name="alpha")
    a = store.register(card, tmp_path / "a")
    renamed = card.model_copy(update={"name": "beta"})
    b = store.register(renamed, tmp_path / "a")
    assert (store.get(a.run_id).name, store.get(a.run_id).version) == ("alpha", 1)
    assert (b.name, b.version) == ("beta", 1)
    assert store.get("alpha") == a and store.get("beta") == b


def test_the_same_run_registered_again_is_unchanged(store, saved_model, tmp_path):
    folder, card = saved_model
    entry = store.register(card, folder, run_id="run-fixed-1")
    assert store.register(card, folder, run_id="run-fixed-1") == entry
    assert len(store.list()) == 1
    with pytest.raises(ValueError, match="never re-pointed"):
        store.register(card, tmp_path / "elsewhere", run_id="run-fixed-1")
    assert Path(store.get("run-fixed-1").path) == folder.resolve()


def test_get_by_run_id_and_run_id_prefix(store, saved_model):
    folder, card = saved_model
    entry = store.register(card, folder)
    assert entry.run_id.startswith("run-")
    assert store.get(entry.run_id) == entry
    assert store.get(entry.run_id[:-2]) == entry


def test_the_old_one_entry_per_model_table_is_migrated(tmp_path):
    db_path = tmp_path / "old.sqlite"
    db = sqlite3.connect(db_path)
    db.execute(
        "CREATE TABLE models (id TEXT PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL, "
        "arch TEXT NOT NULL, path TEXT NOT NULL, parent_id TEXT, dataset_name TEXT, dataset_hash TEXT, "
        "created_at TEXT NOT NULL, metrics TEXT NOT NULL)"
    )
    db.execute(
        "INSERT INTO models VALUES ('simple-cifar10-0123456789ab', 'old', 2, 'simple-cifar10', '/m', "
        "NULL, 'd', NULL, '2024-01-01T00:00:00+00:00', '{\"test_accuracy\": 0.5}')"
    )
    db.commit()
    db.close()
    store = ModelStore(db_path)
    entry = store.get("old:2")
    assert entry.run_id == "run-v1-simple-cifar10-0123456789ab"
    assert entry.id == "simple-cifar10-0123456789ab" and entry.metrics == {"test_accuracy": 0.5}
    assert len(ModelStore(db_path).list()) == 1  # opened again: not migrated twice
    tables = {r[0] for r in sqlite3.connect(db_path).execute("SELECT name FROM sqlite_master")}
    assert {"runs", "models_v1"} <= tables and "models" not in tables
    # an older poisonlab sharing the registry writes a new ``models`` table: merged on next open
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE models AS SELECT * FROM models_v1 WHERE 0")
    db.execute(
        "INSERT INTO models VALUES ('simple-cifar10-ba9876543210', 'later', 1, 'simple-cifar10', '/n', "
        "NULL, 'd', NULL, '2024-02-01T00:00:00+00:00', '{}')"
    )
    db.commit()
    db.close()
    assert {e.name for e in ModelStore(db_path).list()} == {"old", "later"}
    tables = {r[0] for r in sqlite3.connect(db_path).execute("SELECT name FROM sqlite_master")}
    assert "models" not in tables
    assert sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM models_v1").fetchone()[0] == 2


def test_an_entry_repr_is_one_short_line(store, saved_model):
    folder, card = saved_model
    entry = store.register(
        card.model_copy(update={"metrics": {"history": [{"epoch": i} for i in range(500)]}}), folder
    )
    text = repr(entry)
    assert text.startswith("RegistryEntry(run_id=") and entry.run_id in text and "tiny:1" in text
    assert len(text) < 160 and "epoch" not in text


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
