"""The scan context: one pass over the dataset and one over the trusted set per scan."""

from __future__ import annotations

import numpy as np
import pytest

import poisonlab.defenses.context as context_module
from poisonlab.defenses import ScanContext, get_defense
from poisonlab.defenses.scan import scan


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Lengths of the image batches the context runs the model over."""
    calls: list[int] = []
    real = context_module.forward_pass

    def counting(model, images, **kwargs):
        calls.append(len(images))
        return real(model, images, **kwargs)

    monkeypatch.setattr(context_module, "forward_pass", counting)
    return calls


@pytest.fixture
def trusted(make_colour_dataset):
    return make_colour_dataset(per_class=5, seed=1, name="trusted")


def test_representations_are_computed_once(colour_data, tiny_model, trusted, counted) -> None:
    ctx = ScanContext(colour_data, tiny_model, trusted=trusted, device="cpu")
    first = ctx.features()
    assert ctx.features() is first and ctx.representations().features is first
    embedded = ctx.trusted_features("test")
    assert ctx.trusted_features("test") is embedded
    assert embedded.dtype == np.float32 and embedded.shape == (len(trusted), first.shape[1])
    assert counted == [len(colour_data), len(trusted)]


def test_a_scan_embeds_the_trusted_set_once(colour_data, tiny_model, trusted, counted) -> None:
    result = scan(colour_data, ["roni", "provenance"], model=tiny_model, trusted=trusted, device="cpu")
    # the scan's own pass covers the dataset; the context adds exactly one pass over the trusted set
    assert counted == [len(trusted)]
    assert result.forward is not None and [m.name for m in result.methods] == ["roni", "provenance"]


def test_fit_builds_its_own_context(colour_data, tiny_model, trusted, counted) -> None:
    get_defense("roni", device="cpu").fit(colour_data, tiny_model, trusted=trusted)
    assert sorted(counted) == sorted([len(colour_data), len(trusted)])  # one pass each


def test_context_errors(colour_data, tiny_model, trusted) -> None:
    with pytest.raises(ValueError, match="must be a poisonlab Dataset"):
        ScanContext(colour_data.x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trusted images must have shape"):
        ScanContext(colour_data, trusted=trusted.replace(x=trusted.x[:, :4, :4]))
    with pytest.raises(ValueError, match="context must be a ScanContext"):
        get_defense("zscore").fit_context(colour_data)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a trusted clean reference dataset"):
        get_defense("roni").fit_context(ScanContext(colour_data, tiny_model))
    only_pass = ScanContext(colour_data, forward=ScanContext(colour_data, tiny_model).representations())
    with pytest.raises(ValueError, match="needs the model itself"):
        only_pass.trusted_features("RONI")
    with pytest.raises(AttributeError):
        only_pass.model = tiny_model  # type: ignore[misc]  # frozen
