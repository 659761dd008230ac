"""Run folders: ``run.json`` provenance, one registry entry per run, no silent overwrite."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from poisonlab.models.checkpoint import read_card
from poisonlab.models.store import ModelStore
from poisonlab.provenance import (
    TRAINING_REVISION,
    claim_run_dir,
    git_commit,
    holds_run,
    new_run_id,
    read_run_json,
    record_resumable_run,
    run_record,
    write_run_json,
)
from poisonlab.reporting.stamp import result_provenance
from poisonlab.training.config import TrainConfig
from poisonlab.training.save import train_and_save

TINY = TrainConfig(epochs=1, batch_size=12, lr=0.05, augment=None, seed=3)


@pytest.fixture
def data(make_colour_dataset):
    return make_colour_dataset(per_class=8, name="colours-train")


def _train(data, out: Path, **kwargs):
    return train_and_save(data, TINY, out, test_data=data, device="cpu", progress=False, **kwargs)


def test_a_training_run_writes_run_json_with_its_provenance(data, tmp_path):
    out = tmp_path / "m"
    trained = _train(data, out, given_config={"preset": "tiny", "epochs": 1}, run_info={"note": "x"})
    record = json.loads((out / "run.json").read_text())
    assert record["run_id"] == trained.run_id and record["run_id"].startswith("run-")
    assert record["kind"] == "train"
    assert record["created_at"].endswith("+00:00")
    versions = record["versions"]
    assert versions["poisonlab"] == metadata.version("poisonlab")
    assert versions["torch"] == metadata.version("torch") and versions["torch"] is not None
    assert versions["python"] == platform.python_version()
    assert versions["training_revision"] == str(TRAINING_REVISION)
    assert record["command"] == sys.argv
    assert record["config"] == {"preset": "tiny", "epochs": 1}  # the config as given
    assert record["train_config"]["epochs"] == 1 and record["train_config"]["seed"] == 3
    assert record["model_id"] == read_card(out).id == trained.card.id
    assert record["dataset_hash"] == data.content_hash and record["note"] == "x"
    assert record["metrics"]["test_accuracy"] == trained.test_accuracy
    assert "commit" in record and record["commit"] == git_commit()


def test_the_registry_entry_is_the_run(data, tmp_path):
    trained = _train(data, tmp_path / "m", name="exp")
    entry = ModelStore().get(trained.run_id)
    assert entry.id == trained.card.id and (entry.name, entry.version) == ("exp", 1)
    assert Path(entry.path) == (tmp_path / "m").resolve()


def test_an_existing_run_folder_is_refused_before_training(data, tmp_path, monkeypatch):
    out = tmp_path / "m"
    first = _train(data, out)
    weights = (out / "weights.safetensors").read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the folder was refused")

    monkeypatch.setattr("poisonlab.training.save.train", no_training)
    with pytest.raises(FileExistsError, match=rf"already holds run {first.run_id} of .*overwrite=True"):
        _train(data, out)
    assert (out / "weights.safetensors").read_bytes() == weights
    assert read_run_json(out)["run_id"] == first.run_id
    assert len(ModelStore().list()) == 1


def test_overwrite_replaces_the_folder_and_registers_a_second_run(data, tmp_path):
    out = tmp_path / "m"
    first = _train(data, out, name="exp")
    second = _train(data, out, name="exp", overwrite=True)
    assert second.run_id != first.run_id
    assert read_run_json(out)["run_id"] == second.run_id
    assert second.card.id == first.card.id  # same seed and data: the same weights ...
    runs = ModelStore().runs_of(first.card.id)
    assert [r.run_id for r in runs] == [first.run_id, second.run_id]  # ... two runs sharing the hash
    assert [r.version for r in runs] == [1, 2]


def test_a_folder_holding_a_model_without_run_json_is_refused(saved_model):
    folder, _ = saved_model
    with pytest.raises(FileExistsError, match="already holds a saved model"):
        claim_run_dir(folder)
    assert claim_run_dir(folder, overwrite=True) == folder


def test_empty_or_missing_folders_may_be_claimed(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    for name in ("empty", "missing", "other"):
        assert not holds_run(tmp_path / name)
        assert claim_run_dir(tmp_path / name) == tmp_path / name


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_at_or_above_the_folder_is_refused_before_any_work(tmp_path, overwrite):
    (tmp_path / "notes.txt").write_text("x")
    for folder in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "run"):
        with pytest.raises(FileExistsError, match=r"notes\.txt is a file, not a folder"):
            claim_run_dir(folder, overwrite=overwrite)
    assert (tmp_path / "notes.txt").read_text() == "x"  # nothing lost


def test_run_record_and_json_round_trip(tmp_path):
    record = run_record(
        "experiment", config={"a": [1, 2]}, argv=["poisonlab", "run", "x y.yaml"], extra={"k": 1}
    )
    assert record["command_line"] == "poisonlab run 'x y.yaml'"
    assert record["config"] == {"a": [1, 2]} and record["k"] == 1 and record["kind"] == "experiment"
    path = write_run_json(tmp_path / "f", record)
    assert path == tmp_path / "f" / "run.json"
    assert read_run_json(tmp_path / "f") == record
    assert holds_run(tmp_path / "f")
    assert read_run_json(tmp_path / "nothing") is None


def test_run_ids_are_unique_and_sortable():
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("run-2") and len(i) == len("run-20240101T000000-abcdef") for i in ids)


def test_git_commit_outside_a_checkout_is_none(tmp_path):
    assert git_commit(tmp_path) is None


def test_a_resumed_run_keeps_its_first_record_and_lists_each_later_session(tmp_path):
    first = run_record("clean-label", config={"trials": 10}, argv=["poisonlab", "clean-label"])
    record_resumable_run(tmp_path, first, resume=False)
    later = run_record("clean-label", config={"trials": 50}, argv=["poisonlab", "clean-label", "--resume"])
    record_resumable_run(tmp_path, later, resume=True)
    record_resumable_run(tmp_path, later, resume=True)
    kept = read_run_json(tmp_path)
    assert kept["run_id"] == first["run_id"] and kept["config"] == {"trials": 10}
    assert [s["run_id"] for s in kept["resumed"]] == [later["run_id"]] * 2
    assert kept["resumed"][0]["command_line"].endswith("--resume")
    assert set(kept["resumed"][0]) == {"run_id", "created_at", "commit", "versions", "command_line"}
    fresh = run_record("clean-label", config={"trials": 3})
    record_resumable_run(tmp_path, fresh, resume=False)  # a fresh run replaces the record whole
    assert read_run_json(tmp_path) == json.loads(json.dumps(fresh, default=str))


def test_resuming_a_folder_without_run_json_starts_its_record(tmp_path):
    record = run_record("clean-label", config={})
    record_resumable_run(tmp_path, record, resume=True)
    assert read_run_json(tmp_path)["run_id"] == record["run_id"]
    assert "resumed" not in read_run_json(tmp_path)


def test_records_name_the_machine_whose_kernels_made_the_numbers(monkeypatch):
    """fp32 training repeats on one kind of CPU, not across CPUs: a record says which it ran on."""
    import torch  # loaded, as in any run that trains

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    record = run_record("experiment", config={})
    found = record["machine"]
    assert found["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert found["kernel_env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert found["cpu"] is None or (isinstance(found["cpu"], str) and found["cpu"])
    assert found["cuda"] is None or torch.cuda.is_available()
    json.dumps(record)  # JSON-ready
    assert result_provenance(seeds=[0], parameters={})["machine"] == found


def test_the_machine_record_imports_no_torch():
    code = (
        "import sys; from poisonlab.provenance import machine; m = machine(); "
        "assert 'torch' not in sys.modules, 'torch imported'; assert m['torch_cpu_capability'] is None"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
