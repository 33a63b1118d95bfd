"""``diagnose``: every diagnostic of a cube from one pass over its pixels.

The pass (:func:`~lensarray.diagnostics.features.pair_table`) reduces the cube to a per-pair
``xarray.Dataset`` and keeps the central squares of the lens and control stamps (plain and
centre-masked) of the core-LR subsample; by-class summaries are flox groupbys of that table;
everything else is exact numpy/scipy/sklearn on it. Conversion to dicts happens here, for the
report, and nowhere earlier.
"""

from __future__ import annotations

import time

import numpy as np
import xarray as xr

from .. import __version__
from ..config import RunConfig
from ..derived import inner_image_radius_px
from ._compute import peak_memory
from .anchors import anchor_brightness, compare_brightness, cube_central_brightness, read_anchor_cutouts
from .core_flux import core_flux_summary
from .core_lr import core_lr_auc
from .features import core_box, cube_config, lr_subsample, measure_spec, pair_table
from .gates import evaluate_gates
from .inner_image import inner_image_summary
from .leakage import metadata_leakage
from .snr import arc_snr_distribution
from .systematics import systematics_by_class
from .visibility import visibility_summary

__all__ = ["diagnose", "core_lr_on_cube", "core_lr_from_table", "DEFAULT_ABLATION", "MAX_VISIBILITY_PAIRS"]

#: The centre-mask ablation measured in the report: per stamp r_mask uniform in [3, 7] px.
DEFAULT_ABLATION = {"mode": "uniform", "r_mask": (3.0, 7.0)}
#: The visibility proxy (ring medians per stamp: ~2/3 of the pixel pass's cost) is measured on at
#: most this many pairs (a seeded subsample): its summary is a median per arc_snr bin and a
#: rank correlation, which 5,000 pairs pin to ~0.01.
MAX_VISIBILITY_PAIRS = 5000


def core_lr_from_table(table: xr.Dataset, *, box: int, n_boot: int = 200, seed: int = 0,
                       ablation: dict | None = None) -> dict:
    """Core LR AUCs from the central squares of a per-pair table (see :func:`core_lr_on_cube`)."""
    lr_pos = np.searchsorted(table["pair"].values, table["lr_pair"].values)
    m = lr_pos.size
    neg = table["hard_negative"].values[lr_pos] if "hard_negative" in table else np.zeros(m, np.int8)
    ids = table["lr_pair"].values
    boxes = core_box(table["central"].values, box).reshape(m, 2, -1)
    y = np.concatenate([neg == 0, np.zeros(m, bool)])
    groups = np.concatenate([ids, ids])
    te = table["theta_e"].values[lr_pos].astype(float)
    te = np.concatenate([te, te])
    out = {"plain": core_lr_auc(np.concatenate([boxes[:, 0], boxes[:, 1]]), y, groups, theta_e=te,
                                n_boot=n_boot, seed=seed), "masked": None}
    if ablation is not None and "central_masked" in table:
        mb = core_box(table["central_masked"].values, box).reshape(m, 2, -1)
        out["masked"] = core_lr_auc(np.concatenate([mb[:, 0], mb[:, 1]]), y, groups, theta_e=te,
                                    n_boot=n_boot, seed=seed)
        out["masked"]["ablation"] = {k: list(v) if isinstance(v, tuple) else v for k, v in ablation.items()}
    # hard negatives (arc-like features that are not lenses): can the core alone tell a real lens
    # stamp from a hard-negative stamp? Needs a few of each class for grouped CV.
    hn = neg > 0
    out["hard_negatives"] = None
    if hn.sum() >= 10 and (~hn).sum() >= 10:
        feats = np.concatenate([boxes[~hn, 0], boxes[hn, 0]])
        yy = np.concatenate([np.ones(int((~hn).sum()), bool), np.zeros(int(hn.sum()), bool)])
        out["hard_negatives"] = core_lr_auc(feats, yy, np.concatenate([ids[~hn], ids[hn]]), n_boot=n_boot, seed=seed)
        out["hard_negatives"]["n_hard_negative_pairs"] = int(hn.sum())
    return out


def core_lr_on_cube(ds: xr.Dataset, *, box: int, max_pairs: int = 20000, seed: int = 0, n_boot: int = 200,
                    ablation: dict | None = None, progress: bool = True, config: RunConfig | None = None) -> dict:
    """Core LR AUC of a cube (and of its centre-masked stamps when ``ablation`` is given), reading
    only the pixels of the LR subsample (a cube used for nothing else, e.g. the null cube).

    Parameters
    ----------
    ds
        The cube (read only).
    box
        Central box side, pixels.
    max_pairs
        At most this many pairs enter the LR: all of them if the cube is smaller, else a
        subsample drawn by ``numpy.random.default_rng(seed).choice`` without replacement.
    seed
        Subsample, bootstrap and ablation seed.
    ablation
        :func:`~lensarray.diagnostics.ablation.centre_mask` keywords for the masked LR.

    Returns
    -------
    dict
        ``plain`` (see :func:`~lensarray.diagnostics.core_lr.core_lr_auc`), ``masked`` (or None),
        ``hard_negatives`` (or None), ``subsample`` and ``max_abs_arc`` (largest |arc| in the subsample).
    """
    n = int(ds.sizes["pair"])
    idx = lr_subsample(n, max_pairs, seed)
    sub = ds.isel(pair=idx)
    spec = measure_spec(sub, config, ablation=ablation, seed=seed, tables=False, box=box)
    table = pair_table(sub, spec=spec, lr_index=np.arange(idx.size), progress=progress)
    out = core_lr_from_table(table, box=box, n_boot=n_boot, seed=seed, ablation=ablation)
    out["subsample"] = _subsample_facts(n, idx, max_pairs, seed)
    out["max_abs_arc"] = float(np.nanmax(table["arc_abs_max"].values)) if idx.size else 0.0
    return out


def _subsample_facts(n: int, idx: np.ndarray, max_pairs: int, seed: int) -> dict:
    return {"n_pairs_cube": int(n), "n_pairs_used": int(idx.size), "max_pairs": int(max_pairs), "seed": int(seed)}


def _example_stamps(ds: xr.Dataset, arc_snr: np.ndarray, is_lens: np.ndarray, k: int = 4) -> dict:
    """r-band host and arc of ``k`` real injections spread over the arc_snr range (for the report)."""
    bands = [str(b) for b in ds["band"].values]
    b = bands.index("r") if "r" in bands else 0
    cand = np.flatnonzero(is_lens & np.isfinite(arc_snr))
    if cand.size == 0:
        cand = np.arange(min(k, ds.sizes["pair"]))
    else:
        order = cand[np.argsort(arc_snr[cand])]
        cand = order[np.unique(np.linspace(0, order.size - 1, min(k, order.size)).round().astype(int))]
    sub = ds.isel(pair=np.sort(cand), band=b)[["host", "arc", "theta_e", "arc_snr"]].compute()
    return {"pair": sub["pair"].values, "host": sub["host"].values, "arc": sub["arc"].values,
            "theta_e": sub["theta_e"].values, "arc_snr": sub["arc_snr"].values, "band": bands[b]}


def diagnose(ds: xr.Dataset, *, null_ds: xr.Dataset | None = None, anchors=None, max_lr_pairs: int = 20000,
             seed: int = 0, n_boot: int = 200, ablation: dict | None = DEFAULT_ABLATION, progress: bool = True,
             config: RunConfig | None = None, source: str | None = None,
             max_visibility_pairs: int = MAX_VISIBILITY_PAIRS) -> tuple[dict, dict]:
    """Run every diagnostic on a cube, reading its pixels once.

    Parameters
    ----------
    ds
        The cube: opened from a store, lazy (dask-backed, never stored) or in memory; only read.
    null_ds
        A null-injection cube (arcs zero) for the null LR test.
    anchors
        Another cube (``xarray.Dataset``) or cutout files (directory, glob, list; see
        :func:`~lensarray.diagnostics.anchors.read_anchor_cutouts`).
    max_lr_pairs
        Largest number of pairs fed to the core LR (deterministic subsample beyond).
    seed
        Seed of the LR and visibility subsamples, bootstraps and ablation draws.
    n_boot
        Bootstrap resamples of every CI.
    ablation
        Centre-mask keywords for the masked LR (None: skip).
    config
        Thresholds and bins (default: the configuration stored in the cube).
    source
        Where the cube came from (recorded in the report).
    max_visibility_pairs
        Largest number of pairs whose visibility proxy is measured (see :data:`MAX_VISIBILITY_PAIRS`).

    Returns
    -------
    (dict, dict)
        The JSON-ready results (with ``gates``) and the arrays the report plots.
    """
    t0 = time.perf_counter()
    cfg = config or cube_config(ds)
    n = int(ds.sizes["pair"])
    lr_idx = lr_subsample(n, max_lr_pairs, seed)
    vis_idx = lr_subsample(n, max_visibility_pairs, seed + 1)
    spec = measure_spec(ds, cfg, ablation=ablation, seed=seed)
    table = pair_table(ds, spec=spec, lr_index=lr_idx, vis_index=vis_idx, progress=progress)
    stages = {"pixel_pass": time.perf_counter() - t0}

    def lap(name: str) -> None:
        stages[name] = time.perf_counter() - t0 - sum(stages.values())
    bands = list(table.attrs["bands"])
    is_lens = np.asarray(table["is_lens"].values, bool)
    theta_e = table["theta_e"].values
    arc_snr = table["arc_snr"].values
    ps = spec.pixel_scale
    res: dict = {"package_version": __version__, "source": source, "n_pairs": n, "bands": bands,
                 "stamp_size": int(ds.sizes["x"]), "config": cfg.to_dict(),
                 "core_mask_policy": ds.attrs.get("core_mask_policy", cfg.core_mask.policy)}
    cff = table["core_flux_frac_measured"].values
    res["core_flux"] = core_flux_summary(cff, theta_e, table["psf_fwhm"].values, table["src_reff"].values, bands,
                                         stored=table["core_flux_frac"].values if "core_flux_frac" in table else None,
                                         is_lens=is_lens)
    inner = table["inner_image_r"].values if "inner_image_r" in table else None
    inner_src = "stored inner_image_r"
    if inner is None or not np.isfinite(inner).any():
        inner = inner_image_radius_px(theta_e, table["src_x"].values, table["src_y"].values, pixel_scale=ps,
                                      lens_x=table["lens_x"].values if "lens_x" in table else 0.0,
                                      lens_y=table["lens_y"].values if "lens_y" in table else 0.0) \
            if "src_x" in table else np.full(n, np.nan)
        inner_src = "SIS theta_E - |beta| from stored theta_e, src_x, src_y (lens_x, lens_y)"
    res["inner_image"] = inner_image_summary(np.asarray(inner)[is_lens], np.asarray(theta_e)[is_lens])
    res["inner_image"]["source"] = inner_src

    lap("core_flux_inner_image")
    box = cfg.diagnostics.core_box
    lr = core_lr_from_table(table, box=box, n_boot=n_boot, seed=seed, ablation=ablation)
    res["core_lr"] = lr["plain"]
    res["core_lr"]["subsample"] = _subsample_facts(n, lr_idx, max_lr_pairs, seed)
    res["core_lr"]["box"] = box
    res["core_lr_masked"] = lr["masked"]
    res["core_lr_hard_negatives"] = lr["hard_negatives"]
    lap("core_lr")
    res["null_lr"] = None
    if null_ds is not None:
        if null_ds.sizes.get("y") != ds.sizes.get("y") or list(null_ds["band"].values) != list(ds["band"].values):
            raise ValueError("null cube: allowed a cube with the same bands and stamp size as STORE")
        nl = core_lr_on_cube(null_ds, box=box, max_pairs=max_lr_pairs, seed=seed, n_boot=n_boot, ablation=None,
                             progress=progress, config=cfg)
        res["null_lr"] = nl["plain"]
        res["null_lr"]["max_abs_arc"] = nl["max_abs_arc"]  # on the LR subsample: the null cube is read once

    lap("null_lr")
    res["systematics"] = systematics_by_class(table, ds)
    lap("systematics")
    res["leakage"] = metadata_leakage(table, ds, threshold=cfg.diagnostics.leak_auc_max)
    lap("leakage")
    vis = table["visibility"]
    measured = np.asarray(table["visibility_measured"].values, bool)
    lens_vis, ctrl_vis = vis.sel(role="lens").values, vis.sel(role="control").values
    res["visibility"] = visibility_summary(lens_vis[is_lens & measured], ctrl_vis[is_lens & measured],
                                           arc_snr[is_lens & measured], cfg.brightness.snr_edges)
    res["visibility"]["n_pairs_measured"] = int(measured.sum())
    res["arc_snr"] = arc_snr_distribution(arc_snr, cfg.brightness.snr_edges, cfg.brightness.snr_fractions,
                                          measured=table["arc_snr_measured"].values, is_lens=is_lens)
    res["anchors"] = None
    host_cb = table["central_brightness"].sel(role="control").values
    anchor_vals = None
    if anchors is not None:
        if isinstance(anchors, xr.Dataset):
            anchor_vals = cube_central_brightness(anchors, progress=progress)
            kind = f"cube ({anchors.sizes['pair']} pairs)"
        else:
            anchor_vals = anchor_brightness(read_anchor_cutouts(anchors))
            kind = "cutout files"
        res["anchors"] = compare_brightness(host_cb, anchor_vals, seed=seed)
        res["anchors"]["kind"] = kind

    res["gates"] = [g.to_dict() for g in evaluate_gates(res, cfg.diagnostics)]
    res["passed"] = all(g["passed"] for g in res["gates"])
    examples = _example_stamps(ds, np.asarray(arc_snr, float), is_lens)
    lap("other")
    res["elapsed_s"] = round(time.perf_counter() - t0, 2)
    res["elapsed_by_stage_s"] = {k: round(v, 3) for k, v in stages.items()}
    res["memory"] = peak_memory()
    extras = {"theta_e": np.asarray(theta_e), "is_lens": is_lens, "arc_snr": np.asarray(arc_snr),
              "lens_visibility": lens_vis, "control_visibility": ctrl_vis,
              "host_central_brightness": host_cb, "anchor_central_brightness": anchor_vals,
              "core_flux_frac": cff, "table": table,
              "examples": examples}
    return res, extras
