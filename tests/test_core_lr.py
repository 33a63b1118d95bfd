"""The closed-form cross-validated core discriminant: exact against a per-fold refit, one fit per
region set, folds that keep pairs together, and the batched pair bootstrap."""

import numpy as np
import pytest

from lensarray.diagnostics.core_lr import fold_of, oof_scores, oof_scores_by_subset
from lensarray.statistics import pair_resample_counts, pair_resample_weights


def _data(n_pairs=300, p=12, shift=0.4, seed=0):
    rng = np.random.default_rng(seed)
    host = rng.normal(size=(n_pairs, p)) @ (np.eye(p) + 0.3 * rng.normal(size=(p, p)))
    host = 50.0 + 3.0 * host  # far from zero mean and unit scale: the conditioning step must not matter
    lens = host + shift * rng.normal(size=p) + 0.5 * rng.normal(size=(n_pairs, p))
    X = np.concatenate([lens, host + 0.5 * rng.normal(size=(n_pairs, p))])
    y = np.r_[np.ones(n_pairs), np.zeros(n_pairs)]
    g = np.r_[np.arange(n_pairs), np.arange(n_pairs)]
    return X, y, g


def _refit_reference(X, y, g, cols, ridge=None):
    """Each fold refitted from its own training rows (standardised by them), float64 throughout."""
    fold, k = fold_of(y, g)
    out = np.zeros(y.size)
    for f in range(k):
        tr, te = fold != f, fold == f
        Xt, yt = X[tr][:, cols], y[tr]
        mu, sd = Xt.mean(axis=0), Xt.std(axis=0)
        Z = (Xt - mu) / sd
        m0, m1 = Z[yt == 0].mean(axis=0), Z[yt == 1].mean(axis=0)
        c0, c1 = Z[yt == 0] - m0, Z[yt == 1] - m1
        within = (c0.T @ c0 + c1.T @ c1) / (len(yt) - 2)
        lam = 4.0 / len(yt) if ridge is None else ridge
        w = np.linalg.solve(within + lam * np.eye(len(cols)), m1 - m0)
        Zte = (X[te][:, cols] - mu) / sd
        out[te] = (Zte - 0.5 * (m0 + m1)) @ w + np.log((yt == 1).sum() / (yt == 0).sum())
    return out


@pytest.mark.parametrize("ridge", [None, 0.3])
def test_closed_form_cv_equals_a_refit_of_every_fold(ridge):
    X, y, g = _data()
    cols = np.arange(X.shape[1])
    got = oof_scores(X, y, g, ridge=ridge)
    ref = _refit_reference(X, y, g, cols, ridge)
    # float32 Gram: agreement to ~1e-4 of the score scale, not bit for bit
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-4 * np.abs(ref).max())
    assert np.corrcoef(got, ref)[0, 1] > 0.99999


def test_one_fit_serves_every_subset():
    X, y, g = _data(p=10)
    subsets = {"first": np.arange(4), "rest": np.arange(4, 10), "mask": np.arange(10) % 3 == 0}
    both = oof_scores_by_subset(X, y, g, subsets)
    for name, cols in subsets.items():
        alone = oof_scores(X[:, cols], y, g)
        np.testing.assert_allclose(both[name], alone, rtol=0, atol=1e-6 * np.abs(alone).max())


def test_identical_lens_and_control_stamps_tie_exactly():
    X, y, g = _data()
    n = len(y) // 2
    X[:n] = X[n:]  # a null cube: lens == control
    s = oof_scores(X, y, g)
    np.testing.assert_array_equal(s[:n], s[n:])


def test_folds_keep_pairs_together_and_are_balanced():
    g = np.r_[np.arange(101), np.arange(101), np.arange(0, 101, 2)]  # pairs of 2-3 samples
    y = np.r_[np.ones(101), np.zeros(101 + 51)]
    fold, k = fold_of(y, g)
    assert k == 5
    for grp in np.unique(g):
        assert np.unique(fold[g == grp]).size == 1
    per_fold = [np.unique(g[fold == f]).size for f in range(k)]
    assert max(per_fold) - min(per_fold) <= 1
    with pytest.raises(ValueError, match="both labels"):
        fold_of(np.ones(10), np.arange(10))


def test_batched_bootstrap_draws_are_the_sequential_draws():
    g = np.repeat(np.arange(50), 2)
    seq = np.random.default_rng(7)
    expected = [np.bincount(seq.integers(0, 50, 50), minlength=50)[np.repeat(np.arange(50), 2)] for _ in range(23)]
    got = list(pair_resample_weights(g, 23, 7))
    assert len(got) == 23
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    batches = list(pair_resample_counts(g, 23, 7, max_elements=500))  # 5 replicates of 100 samples a batch
    assert [c.shape[0] for c, _ in batches] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate([c[:, inv] for c, inv in batches]), np.stack(expected))
