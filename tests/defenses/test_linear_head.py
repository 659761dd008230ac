"""``fit_linear_head``: scikit-learn's L2 logistic regression, solved by the defenses' own L-BFGS."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from poisonlab.defenses.helpers.linear_head import fit_linear_head
from poisonlab.defenses.helpers.robust_stats import cross_class_z, grouped_class_z, robust_threshold


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    x = rng.normal(size=(4, 12))[y] * 2.0 + rng.normal(size=(400, 12)) * np.linspace(0.5, 5.0, 12)
    return x + 10.0, y


def _objective(x: np.ndarray, y: np.ndarray, weight: np.ndarray, bias: np.ndarray, c: float) -> float:
    z = x @ weight.T + bias
    z = z - z.max(axis=1, keepdims=True)
    ce = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]
    return float(0.5 * np.square(weight).sum() + c * ce.sum())


def test_same_problem_as_scikit_learn(blobs) -> None:
    x, y = blobs
    head = fit_linear_head(x, y, 4, C=0.5, max_iter=1000, scale=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LogisticRegression(C=0.5, max_iter=5000, tol=1e-10).fit(x, y)
    assert np.mean(head.predict(x) == ref.predict(x)) >= 0.99
    ours = _objective(x, y, head.weight, head.bias, 0.5)
    theirs = _objective(x, y, ref.coef_, ref.intercept_, 0.5)
    assert ours <= theirs + 1e-3 * abs(theirs)


def test_scaling_is_folded_back_and_absent_classes_are_never_predicted(blobs) -> None:
    x, y = blobs
    keep = y != 2
    head = fit_linear_head(x[keep], y[keep], 5, C=1.0)
    assert head.weight.shape == (5, 12) and head.bias.shape == (5,)
    assert np.isneginf(head.bias[[2, 4]]).all() and not np.isin(head.predict(x), [2, 4]).any()
    assert np.mean(head.predict(x[keep]) == y[keep]) >= 0.9  # reads the raw features
    with pytest.raises(ValueError, match="at least two classes"):
        fit_linear_head(x[:5], np.zeros(5, np.int64), 4)


def test_robust_statistics() -> None:
    values = np.array([1.0, 1.1, 0.9, 1.05, 0.95, 3.0])
    z = np.array(cross_class_z(values))
    assert z.argmax() == 5 and z[5] > 10
    assert cross_class_z(np.ones(4)) == [0.0] * 4  # floored MAD: no division by zero
    # a reference: median and MAD of the selected classes only, every class scored against them
    ref = np.array([True, True, True, True, True, False])
    z_ref = np.array(cross_class_z(np.append(values[:5], 50.0), reference=ref))
    assert z_ref[:5] == pytest.approx(cross_class_z(values[:5])) and z_ref[5] > 100
    with pytest.raises(ValueError, match="at least one reference class"):
        cross_class_z(values, reference=np.zeros(6, bool))
    # grouped classes set the reference when there are enough of them, else all classes do
    grouped = np.array([True, True, True, True, True, False])
    assert grouped_class_z(np.append(values[:5], 50.0), grouped, 5) == z_ref.tolist()
    assert grouped_class_z(values, ~grouped, 5) == pytest.approx(z.tolist())
    assert grouped_class_z(values[:4], grouped[:4], 5) == [None] * 4
    med, mad, cut = robust_threshold(values, 3.0)
    assert med == pytest.approx(1.025) and cut == pytest.approx(med + 3.0 * mad)
