"""A built-in baseline lens finder (scikit-learn), so evaluation and the centre-mask ablation run
end to end without a deep-learning stack.

Features per stamp and band: azimuthally averaged profile in 1-pixel rings and the ring-wise
residual from the azimuthal mean (arcs are azimuthally *localised* excess, a bright core is not),
on asinh-scaled images. A gradient-boosted tree classifier is trained on the train split and
scores any stamps.
"""

from __future__ import annotations

import numpy as np

from .geometry import offsets, radius_grid

__all__ = ["stamp_features", "BaselineClassifier"]


def stamp_features(images: np.ndarray, *, n_rings: int = 16, n_sectors: int = 8) -> np.ndarray:
    """Features ``(n, band * (2 * n_rings))`` of stamps ``(n, band, size, size)`` (nanomaggy)."""
    x = np.arcsinh(np.asarray(images, dtype=np.float64) / 0.01)
    n, nb, size, _ = x.shape
    dy, dx = offsets(size)
    r = radius_grid(size)
    ring = np.minimum(r.astype(int), n_rings)  # last ring collects everything beyond
    sector = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * n_sectors).astype(int) % n_sectors
    cell = (ring * n_sectors + sector).ravel()
    n_cells = (n_rings + 1) * n_sectors
    counts = np.bincount(cell, minlength=n_cells).reshape(n_rings + 1, n_sectors)[:n_rings]
    flat = x.reshape(n * nb, -1)
    sums = np.zeros((n * nb, n_cells))
    for c in range(n_cells):  # small loop over cells; vectorised over stamps
        sel = cell == c
        if sel.any():
            sums[:, c] = flat[:, sel].sum(axis=1)
    sums = sums.reshape(n * nb, n_rings + 1, n_sectors)[:, :n_rings]
    means = sums / np.maximum(counts, 1)
    prof = means.mean(axis=2)
    spread = means.max(axis=2) - np.median(means, axis=2)
    return np.concatenate([prof, spread], axis=1).reshape(n, nb * 2 * n_rings)


class BaselineClassifier:
    """Histogram gradient boosting on :func:`stamp_features`.

    Parameters
    ----------
    seed
        Random state of the classifier (deterministic fits).
    """

    def __init__(self, seed: int = 0):
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.model = HistGradientBoostingClassifier(
            max_iter=150, learning_rate=0.1, max_leaf_nodes=15, l2_regularization=1.0, random_state=seed
        )

    def fit(self, images: np.ndarray, labels: np.ndarray) -> BaselineClassifier:
        y = np.asarray(labels).astype(int)
        if np.unique(y).size < 2:
            raise ValueError("baseline: the training stamps hold a single class; need lenses and non-lenses")
        self.model.fit(stamp_features(images), y)
        return self

    def score(self, images: np.ndarray) -> np.ndarray:
        """p(lens) per stamp."""
        return self.model.predict_proba(stamp_features(images))[:, 1]
