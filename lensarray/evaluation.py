"""Evaluate lens-finder scores on a cube: ROC AUC (overall, stratified), recall at a fixed false
positive rate with bootstrap CIs, completeness (the selection function) in (theta_E, PSF, arc_snr)
cells, recall on anchors, and the mean score on hard negatives.

Scores are per stamp: ``pair``, ``role`` (1 lens stamp, 0 control stamp) and ``score``.
Positives are lens stamps of non-hard-negative pairs; negatives are all control stamps and both
stamps of hard-negative pairs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .conventions import reference_band_index
from .errors import BadInputError
from .statistics import PSF_EDGES, THETA_E_EDGES, bin_index, bin_masks, pair_bootstrap_ci, roc_auc

__all__ = [
    "ScoreTable",
    "Evaluation",
    "load_scores",
    "evaluate_scores",
    "baseline_scores",
    "recall_at_fpr",
    "THETA_E_OVER_PSF_BINS",
]

#: theta_E / PSF bins of the evaluation tables (coarser than diagnose's: scores are per test split).
THETA_E_OVER_PSF_BINS = (0.2, 0.5, 1.0, 1.5, 4.0)


@dataclass
class ScoreTable:
    """Per-stamp scores: ``pair`` (int64), ``role`` (1 lens stamp, 0 control), ``score``."""

    pair: np.ndarray
    role: np.ndarray
    score: np.ndarray


def load_scores(path: str) -> ScoreTable:
    """Read scores from ``.npz`` (arrays pair, role, score) or ``.csv`` (header pair,role,score)."""
    import os

    if not os.path.isfile(path):
        raise BadInputError(f"--scores {path}: no such file")
    if path.endswith(".npz"):
        with np.load(path) as z:
            missing = [k for k in ("pair", "role", "score") if k not in z.files]
            if missing:
                raise BadInputError(f"--scores {path}: missing arrays {missing}; allowed npz with pair, role, score")
            return ScoreTable(z["pair"].astype(np.int64), z["role"].astype(np.int8), z["score"].astype(np.float64))
    if path.endswith(".csv"):
        data = np.genfromtxt(path, delimiter=",", names=True)
        names = data.dtype.names or ()
        missing = [k for k in ("pair", "role", "score") if k not in names]
        if missing:
            raise BadInputError(f"--scores {path}: missing columns {missing}; allowed csv with pair,role,score")
        return ScoreTable(data["pair"].astype(np.int64), data["role"].astype(np.int8), data["score"].astype(np.float64))
    raise BadInputError(f"--scores {path}: allowed a .npz or .csv file")


def recall_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = 0.01) -> float:
    """Fraction of positives scored above the (1 - fpr) quantile of the negatives."""
    neg = scores[labels == 0]
    pos = scores[labels == 1]
    if neg.size == 0 or pos.size == 0:
        return float("nan")
    thr = np.quantile(neg, 1 - fpr, method="higher")
    return float((pos > thr).mean())


def _bootstrap(fn, labels, scores, groups, n_boot: int, seed: int) -> tuple[float, float]:
    """95% CI resampling pairs (a lens stamp and its control together)."""
    return pair_bootstrap_ci(fn, (labels, scores), groups, n_boot=n_boot, seed=seed)


def _bin_table(values, edges, labels, scores, thr) -> list[dict]:
    rows = []
    pos = labels == 1
    for lo, hi, sel in bin_masks(values, edges):
        p = sel & pos
        rows.append(
            {
                "lo": lo,
                "hi": hi,
                "n_pos": int(p.sum()),
                "n_neg": int((sel & ~pos).sum()),
                "auc": roc_auc(labels[sel], scores[sel]) if sel.any() else float("nan"),
                "completeness": float((scores[p] > thr).mean()) if p.any() else float("nan"),
            }
        )
    return rows


@dataclass
class Evaluation:
    """All evaluation figures of one set of per-stamp scores (:func:`evaluate_scores`).

    Attributes
    ----------
    n_stamps, n_pos, n_neg
        Stamps scored, of them lenses (lens role, not a hard negative) and non-lenses.
    split, fpr
        The split evaluated (``None``: all) and the false-positive rate of the threshold.
    threshold
        Score above which a stamp is called a lens: the (1 - fpr) quantile of the non-lens scores.
    auc, auc_ci95
        ROC AUC and its 95% pair-bootstrap interval.
    recall_at_fpr, recall_ci95
        Completeness at ``threshold`` and its 95% pair-bootstrap interval.
    by_theta_e, by_theta_e_over_psf, by_arc_snr, by_psf
        One row per bin (edges, counts, AUC, completeness) of theta_E (arcsec), theta_E / PSF FWHM,
        arc S/N (the cube's ``brightness.snr_edges``) and r-band PSF FWHM (arcsec).
    completeness_grid
        Completeness of the lenses per (theta_E, arc S/N) cell.
    hard_negatives
        Per hard-negative kind: count, mean score, fraction above ``threshold``.
    anchors
        ``{"n", "recall_at_threshold"}`` of the anchor lenses' scores, or ``None``.
    """

    n_stamps: int
    n_pos: int
    n_neg: int
    split: str | None
    fpr: float
    threshold: float
    auc: float
    auc_ci95: tuple[float, float]
    recall_at_fpr: float
    recall_ci95: tuple[float, float]
    by_theta_e: list[dict]
    by_theta_e_over_psf: list[dict]
    by_arc_snr: list[dict]
    by_psf: list[dict]
    completeness_grid: list[dict] = field(default_factory=list)
    hard_negatives: dict[str, dict] = field(default_factory=dict)
    anchors: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The figures as a JSON-able dict (the ``evaluation.json`` layout)."""
        out = asdict(self)
        if out["anchors"] is None:
            del out["anchors"]
        return out


def evaluate_scores(
    ds,
    table: ScoreTable,
    *,
    split: str | None = "test",
    fpr: float = 0.01,
    n_boot: int = 200,
    seed: int = 0,
    anchors: ScoreTable | None = None,
) -> Evaluation:
    """All evaluation figures for per-stamp scores on cube ``ds`` (per-pair variables only).

    Parameters
    ----------
    ds
        The cube (built or lazy); only its per-pair variables are read.
    table
        Scores per (pair, role) stamp.
    split
        Evaluate the pairs of this split only (``None``: all pairs).
    fpr
        False-positive rate defining the threshold, in (0, 0.5).
    n_boot
        Pair-bootstrap replicates of the confidence intervals (0: none).
    seed
        Seed of the bootstrap.
    anchors
        Scores of anchor lenses (e.g. known lenses): their recall at the threshold.

    Returns
    -------
    Evaluation
        The figures (``.to_dict()`` for JSON).
    """
    from .cube import NEGATIVE_KINDS, SPLIT_NAMES
    from .diagnostics.features import cube_config

    snr_edges = list(cube_config(ds).brightness.snr_edges)

    pair = np.asarray(table.pair, dtype=np.int64)
    role = np.asarray(table.role, dtype=np.int8)
    score = np.asarray(table.score, dtype=np.float64)
    n = int(ds.sizes["pair"])
    if pair.size == 0 or pair.min() < 0 or pair.max() >= n:
        raise BadInputError(f"scores: pair ids must lie in [0, {n - 1}]")
    neg_kind = ds["hard_negative"].values[pair] if "hard_negative" in ds else np.zeros(pair.size, np.int8)
    if split is not None and "split" in ds:
        keep = ds["split"].values[pair] == SPLIT_NAMES.index(split)
        if keep.any():
            pair, role, score, neg_kind = pair[keep], role[keep], score[keep], neg_kind[keep]
    labels = ((role == 1) & (neg_kind == 0)).astype(np.int8)
    neg = labels == 0
    thr = float(np.quantile(score[neg], 1 - fpr, method="higher")) if neg.any() else float("nan")
    theta_e = ds["theta_e"].values[pair]
    snr = ds["arc_snr"].values[pair]
    rb = reference_band_index(ds["band"].values)
    psf = ds["psf_fwhm"].values[pair, rb]
    out = Evaluation(
        n_stamps=int(pair.size),
        n_pos=int(labels.sum()),
        n_neg=int(neg.sum()),
        split=split,
        fpr=fpr,
        threshold=thr,
        auc=roc_auc(labels, score),
        auc_ci95=_bootstrap(roc_auc, labels, score, pair, n_boot, seed),
        recall_at_fpr=recall_at_fpr(labels, score, fpr),
        recall_ci95=_bootstrap(lambda y, s: recall_at_fpr(y, s, fpr), labels, score, pair, n_boot, seed + 1),
        by_theta_e=_bin_table(theta_e, THETA_E_EDGES, labels, score, thr),
        by_theta_e_over_psf=_bin_table(theta_e / psf, THETA_E_OVER_PSF_BINS, labels, score, thr),
        by_arc_snr=_bin_table(snr, snr_edges, labels, score, thr),
        by_psf=_bin_table(psf, PSF_EDGES, labels, score, thr),
    )
    grid = []
    pos = labels == 1
    te_bin, snr_bin = bin_index(theta_e, THETA_E_EDGES), bin_index(snr, snr_edges)
    for i in range(len(THETA_E_EDGES) - 1):
        for j in range(len(snr_edges) - 1):
            sel = pos & (te_bin == i) & (snr_bin == j)
            grid.append(
                {
                    "theta_e": [THETA_E_EDGES[i], THETA_E_EDGES[i + 1]],
                    "arc_snr": [snr_edges[j], snr_edges[j + 1]],
                    "n": int(sel.sum()),
                    "completeness": float((score[sel] > thr).mean()) if sel.any() else None,
                }
            )
    out.completeness_grid = grid
    hn = {}
    for code in np.unique(neg_kind[neg_kind > 0]):
        sel = neg_kind == code
        hn[NEGATIVE_KINDS[int(code)]] = {
            "n": int(sel.sum()),
            "mean_score": float(score[sel].mean()),
            "fpr_at_threshold": float((score[sel] > thr).mean()),
        }
    out.hard_negatives = hn
    if anchors is not None:
        out.anchors = {"n": int(anchors.score.size), "recall_at_threshold": float((anchors.score > thr).mean())}
    return out


def baseline_scores(
    ds,
    *,
    centre_mask: dict | None = None,
    seed: int = 0,
    max_train_pairs: int = 20000,
    progress: bool = False,
    anchor_images: np.ndarray | None = None,
) -> tuple[ScoreTable, dict]:
    """Train the built-in baseline on the train split, score the test split.

    Stamps stream through :func:`lensarray.training.batches` (bounded memory); with
    ``centre_mask`` the same transform is applied at training and test time.
    Returns the test scores and a small dict of training facts (with ``anchor_scores`` when
    ``anchor_images`` (n, band, y, x) of known lenses are given). ``progress`` shows a bar per
    split while features are computed; off by default (the CLI turns it on).
    """
    import sys

    from tqdm.auto import tqdm

    from .baseline import BaselineClassifier, stamp_features
    from .cube import SPLIT_NAMES
    from .training import batches

    codes = np.asarray(ds["split"].values) if "split" in ds else np.full(int(ds.sizes["pair"]), -1)

    def collect(split: str, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        feats, labels, pairs, roles = [], [], [], []
        n = 0
        stamps = 2 * min(int((codes == SPLIT_NAMES.index(split)).sum()), limit)
        with tqdm(
            total=stamps, desc=f"baseline: {split} features", unit="stamp", disable=not progress, file=sys.stderr
        ) as bar:
            for b in batches(
                ds, split, batch_size=256, seed=seed, augment=(), centre_mask=centre_mask, shuffle_buffer=0
            ):
                feats.append(stamp_features(b["images"]))
                labels.append(b["labels"])
                pairs.append(b["pair"])
                roles.append(b["role"])
                n += len(b["pair"])
                bar.update(len(b["pair"]))
                if n >= 2 * limit:
                    break
        if not feats:
            return None
        return np.concatenate(feats), np.concatenate(labels), np.concatenate(pairs), np.concatenate(roles)

    train = collect("train", max_train_pairs)
    test = collect("test", 10**12)
    if train is None or test is None:
        raise BadInputError("baseline: the cube needs train and test splits (built with region-disjoint splits)")
    clf = BaselineClassifier(seed=seed)
    clf.model.fit(train[0], train[1])
    scores = clf.model.predict_proba(test[0])[:, 1]
    facts: dict[str, Any] = {"n_train_stamps": int(train[0].shape[0]), "n_test_stamps": int(test[0].shape[0])}
    if anchor_images is not None:
        imgs = np.asarray(anchor_images, dtype=np.float32)
        if centre_mask is not None:
            from .diagnostics.ablation import apply_centre_mask_spec

            imgs = apply_centre_mask_spec(imgs, centre_mask, seed=seed)
        facts["anchor_scores"] = clf.score(imgs)
    return ScoreTable(test[2], test[3], scores), facts
