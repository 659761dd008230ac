from __future__ import annotations

import numpy as np
import pytest

from poisonlab.attacks import BackdoorAttack, BackdoorPoisoning, apply_trigger

AIRPLANE, BIRD = 0, 2


def _attack(trigger, **kw):
    params = dict(perturbation=trigger, trigger_name="corner", source="airplane", target="bird")
    params.update(kw)
    return BackdoorPoisoning(**params)


# ------------------------------------------------------------------------------ dataset level
def test_concat_all_source_samples(clean, trigger, snapshot, assert_unchanged):
    snap = snapshot(clean)
    res = _attack(trigger).poison_dataset(clean)
    ds = res.dataset
    src_idx = np.flatnonzero(clean.y == AIRPLANE)
    assert len(ds) == 220
    assert res.poison_indices == frozenset(range(200, 220))
    assert int(ds.poison_mask.sum()) == 20
    np.testing.assert_array_equal(ds.x[:200], clean.x)  # clean originals stay
    np.testing.assert_array_equal(ds.y[:200], clean.y)
    np.testing.assert_array_equal(ds.x[200:], trigger(clean.x[src_idx]))
    assert (ds.y[200:] == BIRD).all()
    assert set(ds.source[200:]) == {"backdoor:corner"}
    assert res.description == "backdoor[corner]: 20 airplane->bird, concat"
    assert_unchanged(clean, snap)


def test_poison_is_alias(clean, trigger):
    a = _attack(trigger)
    assert a.poison(clean).dataset.content_hash == a.poison_dataset(clean).dataset.content_hash


def test_replace_in_place(clean, trigger, snapshot, assert_unchanged):
    snap = snapshot(clean)
    res = _attack(trigger, count=6, integration="replace", seed=2).poison(clean)
    ds, idx = res.dataset, res.indices_array()
    assert len(ds) == 200 and idx.size == 6 == int(ds.poison_mask.sum())
    assert (clean.y[idx] == AIRPLANE).all() and (ds.y[idx] == BIRD).all()
    np.testing.assert_array_equal(ds.x[idx], trigger(clean.x[idx]))
    assert set(ds.source[idx]) == {"backdoor:corner"}
    others = np.setdiff1d(np.arange(200), idx)
    np.testing.assert_array_equal(ds.x[others], clean.x[others])
    np.testing.assert_array_equal(ds.y[others], clean.y[others])
    np.testing.assert_array_equal(ds.source[others], clean.source[others])
    assert res.description.endswith(", replace")
    assert_unchanged(clean, snap)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(count=7), 7),
        (dict(fraction=0.5), 10),  # of the 20 airplanes
        (dict(fraction=1.0), 20),
        (dict(fraction=0.05, fraction_of="train"), 10),  # of the 200 training samples
        (dict(fraction=0.1, fraction_of="train"), 20),  # the chapter: all airplanes ~ 10%
    ],
)
def test_count_and_fractions(clean, trigger, kwargs, expected):
    res = _attack(trigger, **kwargs).poison(clean)
    assert res.num_poison == expected == len(res.poisoned_only)
    assert len(res.dataset) == 200 + expected


def test_all_to_one(clean, trigger):
    res = _attack(trigger, source=None, fraction=0.5, integration="replace").poison(clean)
    idx = res.indices_array()
    assert idx.size == 90  # half of the 180 non-bird samples
    assert not (clean.y[idx] == BIRD).any()
    assert (res.dataset.y[idx] == BIRD).all()
    assert len(set(clean.y[idx].tolist())) > 3  # drawn from many classes
    assert res.description == "backdoor[corner]: 90 all->bird, replace"
    full = _attack(trigger, source=None).poison(clean)
    assert full.num_poison == 180


def test_seeds(clean, trigger):
    a = _attack(trigger, count=5, seed=0).poison(clean)
    b = _attack(trigger, count=5, seed=0).poison(clean)
    c = _attack(trigger, count=5, seed=1).poison(clean)
    assert a.dataset.content_hash == b.dataset.content_hash != c.dataset.content_hash
    r1 = _attack(trigger, count=5, seed=0, integration="replace").poison(clean)
    r2 = _attack(trigger, count=5, seed=1, integration="replace").poison(clean)
    assert r1.poison_indices != r2.poison_indices


def test_different_triggers_give_different_poisons(clean, trigger, other_trigger):
    """Regression for the chapter notebook, whose poison_dataset always used the single-pixel trigger."""
    a = _attack(trigger).poison(clean)
    b = _attack(other_trigger).poison(clean)
    assert a.dataset.content_hash != b.dataset.content_hash
    np.testing.assert_array_equal(b.poisoned_only.x, other_trigger(clean.x[clean.y == 0]))


def test_list_of_perturbations(clean, trigger, other_trigger):
    res = _attack([trigger, other_trigger]).poison(clean)
    np.testing.assert_array_equal(res.poisoned_only.x, other_trigger(trigger(clean.x[clean.y == 0])))


def test_perturbation_must_keep_shape_and_dtype(clean):
    with pytest.raises(ValueError, match=r"keep the shape: expected \(20, 8, 8, 3\), got \(20, 7, 8, 3\)"):
        _attack(lambda x: x[:, 1:]).poison(clean)
    with pytest.raises(ValueError, match="keep the dtype: expected uint8, got float64"):
        _attack(lambda x: x / 255.0).poison(clean)
    with pytest.raises(ValueError, match="must return a numpy array, got list"):
        _attack(lambda x: x.tolist()).poison(clean)
    with pytest.raises(ValueError, match="perturbation must be a callable or a non-empty list of callables"):
        _attack("pattern")


def test_in_place_trigger_does_not_mutate_clean(clean, snapshot, assert_unchanged):
    snap = snapshot(clean)

    def in_place(x):
        x[:, 0, 0, :] = 255
        return x

    res = _attack(in_place, integration="replace").poison(clean)
    assert_unchanged(clean, snap)
    assert (res.poisoned_only.x[:, 0, 0, :] == 255).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(count=3, fraction=0.1), "exactly one of count or fraction"),
        (dict(fraction=0.0), r"fraction must be in \(0, 1\], got 0.0"),
        (dict(fraction=1.01), r"fraction must be in \(0, 1\], got 1.01"),
        (dict(count=-1), "count must be an integer >= 1, got -1"),
        (dict(integration="append"), r"integration must be one of \['concat', 'replace'\], got 'append'"),
        (
            dict(fraction_of="test", fraction=0.1),
            r"fraction_of must be one of \['source', 'train'\], got 'test'",
        ),
        (dict(fraction_of="train", count=3), "fraction_of='train' needs fraction"),
        (dict(source="bird"), "source and target must differ, got both 'bird'"),
        (dict(target=None), "target must be a class name or index"),
        (dict(trigger_name=""), "trigger_name must be a non-empty string"),
        (dict(seed=1.5), "seed must be an integer >= 0"),
    ],
)
def test_bad_params(trigger, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _attack(trigger, **kwargs)


def test_source_is_required(trigger):
    with pytest.raises(TypeError, match="source"):
        BackdoorPoisoning(perturbation=trigger, target="bird")  # type: ignore[call-arg]


def test_errors_at_poison_time(clean, trigger):
    with pytest.raises(ValueError, match="source: unknown class 'plane'; expected one of"):
        _attack(trigger, source="plane").poison(clean)
    with pytest.raises(ValueError, match="target: unknown class 'birb'"):
        _attack(trigger, target="birb").poison(clean)
    with pytest.raises(
        ValueError, match="cannot poison 21 samples: only 20 available in source class 'airplane'"
    ):
        _attack(trigger, count=21).poison(clean)
    with pytest.raises(ValueError, match="cannot poison 40 samples: only 20 available"):
        _attack(trigger, fraction=0.2, fraction_of="train").poison(clean)
    with pytest.raises(ValueError, match="source and target must be different classes"):
        _attack(trigger, source=2).poison(clean)


# ------------------------------------------------------------------------------ triggered test set
def test_apply_trigger_keeps_true_labels(clean, trigger, snapshot, assert_unchanged):
    snap = snapshot(clean)
    t = apply_trigger(clean, trigger, exclude_class="bird", trigger_name="corner")
    keep = clean.y != BIRD
    assert len(t) == 180
    np.testing.assert_array_equal(t.y, clean.y[keep])
    np.testing.assert_array_equal(t.x, trigger(clean.x[keep]))
    assert t.poison_mask.all()
    assert set(t.source) == {"synthetic:train+trigger:corner"}
    assert_unchanged(clean, snap)
    assert len(apply_trigger(clean, trigger)) == 200
    with pytest.raises(ValueError, match="keep the dtype"):
        apply_trigger(clean, lambda x: x.astype(np.float32))


def test_apply_trigger_nothing_left(clean, trigger):
    only_birds = clean.subset(np.flatnonzero(clean.y == BIRD))
    with pytest.raises(ValueError, match="no samples left to trigger after excluding class 'bird'"):
        apply_trigger(only_birds, trigger, exclude_class="bird")
    with pytest.raises(ValueError, match="exclude_class: unknown class"):
        apply_trigger(clean, trigger, exclude_class="cow")


def test_triggered_test_method(clean, trigger):
    t = _attack(trigger).triggered_test(clean)
    assert len(t) == 180 and not (t.y == BIRD).any()


# ------------------------------------------------------------------------------ array level
def test_array_attack_int_labels(clean, trigger):
    x = clean.x[:5]
    before = x.copy()
    y = np.array([2, 2, 2, 2, 2])
    xp, yp = BackdoorAttack(trigger).poison(x, y)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(xp, trigger(before))
    assert xp.dtype == np.uint8
    np.testing.assert_array_equal(yp, y)
    assert yp is not y and yp.shape == (5,)


def test_array_attack_one_hot_and_broadcast(trigger):
    x = np.random.default_rng(0).random((4, 6, 6, 3)).astype(np.float32)
    onehot = np.eye(10)[[2, 2, 2, 2]]
    xp, yp = BackdoorAttack(trigger).poison(x, onehot)
    assert xp.dtype == np.float32 and yp.shape == (4, 10)
    np.testing.assert_array_equal(yp, onehot)
    _, yb = BackdoorAttack(trigger).poison(x, np.eye(10)[2], broadcast=True)
    np.testing.assert_array_equal(yb, onehot)
    yb[0, 0] = 1.0  # a fresh writeable array, not a broadcast view
    _, yi = BackdoorAttack(trigger).poison(x, 2, broadcast=True)
    np.testing.assert_array_equal(yi, [2, 2, 2, 2])


def test_array_attack_errors(clean, trigger):
    atk = BackdoorAttack(trigger)
    with pytest.raises(ValueError, match="target labels y must be provided"):
        atk.poison(clean.x[:2])
    with pytest.raises(ValueError, match=r"y must have shape \(2,\) or \(2, K\).*got shape \(3,\)"):
        atk.poison(clean.x[:2], np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"y must have shape \(2,\).*got shape \(\)"):
        atk.poison(clean.x[:2], 2)
    with pytest.raises(ValueError, match="with broadcast=True y must be one target"):
        atk.poison(clean.x[:2], np.eye(3), broadcast=True)
    with pytest.raises(ValueError, match="at least one sample"):
        atk.poison(clean.x[:0], np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="dtype uint8 or a float dtype, got int64"):
        atk.poison(clean.x[:2].astype(np.int64), np.array([1, 1]))
    with pytest.raises(ValueError, match="keep the shape"):
        BackdoorAttack(lambda x: x[:1]).poison(clean.x[:2], np.array([1, 1]))
    with pytest.raises(ValueError, match="callable or a non-empty list"):
        BackdoorAttack([])


def test_with_registered_trigger(clean):
    triggers = pytest.importorskip("poisonlab.triggers")
    pattern = triggers.get_trigger("pattern")
    single = triggers.get_trigger("single_pixel")
    a = _attack(pattern, trigger_name="pattern").poison(clean)
    b = _attack(single, trigger_name="single_pixel").poison(clean)
    assert a.num_poison == b.num_poison == 20
    assert a.dataset.content_hash != b.dataset.content_hash
    assert set(a.poisoned_only.source) == {"backdoor:pattern"}
