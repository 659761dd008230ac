"""Concise reprs of the public result values: class, sizes, counts, a few fields (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.evaluation import evaluate
from poisonlab.inference import forward_pass
from poisonlab.models.checkpoint import read_card
from poisonlab.reprs import concise_repr, short
from poisonlab.training.config import TrainConfig
from poisonlab.training.save import train_and_save

TINY = TrainConfig(epochs=2, batch_size=12, lr=0.05, augment=None, seed=0)


@pytest.fixture
def trained(make_colour_dataset, tmp_path):
    data = make_colour_dataset(per_class=8, name="colours-train")
    return data, train_and_save(data, TINY, tmp_path / "m", test_data=data, device="cpu", progress=False)


def _one_short_line(text: str, limit: int = 260) -> None:
    assert "\n" not in text and len(text) < limit, text


def test_model_card_repr(trained):
    _, t = trained
    card = t.card.model_copy(
        update={"metrics": {**t.card.metrics, "history": [{"epoch": i} for i in range(300)]}}
    )
    text = repr(card)
    _one_short_line(text)
    assert text.startswith(f"ModelCard(id='{card.id}', name='m', classes=3")
    assert "test_accuracy=" in text and "history" not in text and "spec" not in text
    assert str(card) == text
    assert repr(read_card(t.path)).startswith("ModelCard(")


def test_trained_model_and_train_result_reprs(trained):
    _, t = trained
    text = repr(t)
    _one_short_line(text)
    assert text.startswith(f"TrainedModel(run_id='{t.run_id}', model_id='{t.card.id}'")
    assert "Conv2d" not in text  # not the network's layers
    result = repr(t.result)
    _one_short_line(result)
    assert result.startswith("TrainResult(model='simple-cifar10', epochs=2, seconds=")


def test_forward_and_evaluation_reprs(trained):
    data, t = trained
    fwd = forward_pass(t.result.model, data.x, features=True, device="cpu")
    assert (
        repr(fwd)
        == f"ForwardResult(logits=float32[{len(data)}, 3], features=float32{list(fwd.features.shape)})"
    )
    ev = evaluate(t.result.model, data, device="cpu")
    text = repr(ev)
    _one_short_line(text)
    assert text.startswith(f"Evaluation(dataset='colours-train', n={len(data)}, classes=3, accuracy=")


def test_short_renders_values_compactly():
    assert short(np.zeros((5000, 3), np.int64)) == "int64[5000, 3]"
    assert short(frozenset(range(4000))) == "<frozenset of 4000>"
    assert short([1, 2]) == "[1, 2]"
    assert short(0.123456789) == "0.1235" and short(np.float32(2.5)) == "2.5"
    assert short(np.int64(7)) == "7" and short(None) == "None" and short(True) == "True"
    assert short("x" * 500).endswith("...'") and len(short("x" * 500)) < 130
    assert short(object()) == "object"
    assert concise_repr(3, a=1, b="c") == "int(a=1, b='c')"


def test_short_never_prints_a_network(tiny_model):
    assert short(tiny_model) == "SimpleCifarCNN"


def test_dataset_repr_is_sizes_and_counts(make_colour_dataset):
    data = make_colour_dataset(per_class=2000, size=4)
    poisoned = data.replace(poison_mask=np.arange(len(data)) < 25)
    text = repr(poisoned)
    assert text.startswith("Dataset(name='colours', n=6000, shape=(4, 4, 3), classes=3, poisoned=25, hash=")
    _one_short_line(text, limit=130)
