"""``diagnose``: every diagnostic of a cube from one pass over its pixels.

The pass (:func:`~lensarray.diagnostics.features.pair_table`) reduces the cube to a per-pair
``xarray.Dataset`` and keeps the central squares of the lens and control stamps (plain and
centre-masked) of the core-LR subsample; by-class summaries are flox groupbys of that table;
everything else is exact numpy/scipy/sklearn on it. Conversion to dicts happens here, for the
report, and nowhere earlier.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from .. import __version__
from ..config import RunConfig
from ..conventions import reference_band_index
from ..cube import NEGATIVE_KINDS
from ..derived import inner_image_radius_px
from ..errors import BadInputError
from ..masking import control_stamp, control_weights_of
from ._compute import peak_memory, store_source
from .anchors import anchor_brightness, compare_brightness, cube_central_brightness, iter_anchor_cutouts
from .core_flux import core_flux_summary
from .core_lr import (
    REGION_MEANING,
    REGIONS,
    THETA_E_EDGES,
    arc_level,
    auc_summary,
    core_lr_auc,
    edge_annulus_means,
    mask_edge_probe,
    oof_scores_by_subset,
    region_columns,
    region_masks,
    select_region,
    theta_e_edges,
)
from .features import cube_config, lr_subsample, measure_spec, pair_table, squares_by_role
from .gates import evaluate_gates
from .inner_image import inner_image_summary
from .leakage import HOST_FACTS, metadata_leakage
from .null_identity import null_identity
from .snr import arc_snr_distribution
from .systematics import systematics_by_class
from .visibility import visibility_summary

__all__ = [
    "diagnose",
    "core_lr_on_cube",
    "core_lr_from_table",
    "core_lr_from_squares",
    "snr_definitions",
    "check_null_twin",
    "DEFAULT_ABLATION",
    "DIAGNOSE_STORED",
    "MAX_VISIBILITY_PAIRS",
]

#: The centre-mask ablation measured in the report: per stamp r_mask uniform in [3, 7] px.
DEFAULT_ABLATION = {"mode": "uniform", "r_mask": (3.0, 7.0)}
#: Stored per-pair variables diagnose reads (with the pixel pass, :func:`pair_table`): the injection truth its
#: summaries bin by, the stored quantities it re-measures, the labels and the host facts the
#: leakage audit reads (:data:`~lensarray.diagnostics.leakage.HOST_FACTS`).
DIAGNOSE_STORED = tuple(
    dict.fromkeys(
        (
            "theta_e",
            "psf_fwhm",
            "src_reff",
            "core_flux_frac",
            "arc_flux",
            "arc_snr",
            "arc_snr_aperture",
            "inner_image_r",
            "hard_negative",
            "split",
        )
        + tuple(v for v in HOST_FACTS if v != "pair")
    )
)
#: The visibility proxy (ring medians per stamp, ~0.4 ms a stamp: more than the rest of the pixel
#: pass per pair) is measured on at most this many pairs (a seeded subsample): its summary is a
#: median per arc_snr bin and a rank correlation, which 2,000 pairs pin to ~0.02 (5,000 cost
#: ~0.6-1.5 raw reads of a 10k cube).
MAX_VISIBILITY_PAIRS = 2000


def core_lr_from_squares(
    sq: dict,
    side: int,
    pair_ids: np.ndarray,
    hard_negative: np.ndarray,
    theta_e: np.ndarray,
    arc_flux: np.ndarray,
    *,
    pixel_scale: float,
    box: int,
    core_radius: float,
    region: str = "disc",
    theta_e_edges=THETA_E_EDGES,
    n_boot: int = 200,
    seed: int = 0,
    edge_means: np.ndarray | None = None,
) -> dict:
    """Core LR on the disc, box and ring, and the mask-edge probe, from central squares.

    Parameters
    ----------
    sq
        ``lens``, ``control``: ``(n, nb * side * side)`` central squares (nanomaggy), as
        :func:`~lensarray.diagnostics.features.squares_by_role` lays them out.
    side
        Side of the squares, pixels.
    pair_ids, hard_negative, theta_e, arc_flux
        Per pair (``(n,)``; ``arc_flux (n, band)`` nanomaggy, ``theta_e`` arcsec).
    pixel_scale
        Arcsec per pixel.
    box, core_radius, region, theta_e_edges, n_boot, seed
        As :func:`core_lr_on_cube`.
    edge_means
        ``(n, n_annuli)`` annulus means of the mask-edge probe
        (:func:`~lensarray.diagnostics.core_lr.edge_annulus_means`, nanomaggy per pixel), as the
        pixel pass measures them on a square wider than ``sq``'s; default: measured on ``sq``.

    Returns
    -------
    dict
        ``plain`` (the gate region's result), ``regions`` (disc, box, ring), ``edge_probe``.
    """
    masks = region_masks(side, core_radius, box)
    neg = np.asarray(hard_negative)
    idx = np.asarray(pair_ids)
    y = np.concatenate([neg == 0, np.zeros(idx.size, bool)])
    groups = np.concatenate([idx, idx])
    te = np.concatenate([np.asarray(theta_e, float)] * 2)
    # one discriminant fit serves every region: the regions are column subsets of their union
    union = np.logical_or.reduce([masks[reg] for reg in REGIONS])
    X = np.concatenate([select_region(sq["lens"], side, union), select_region(sq["control"], side, union)])
    scores = oof_scores_by_subset(X, y, groups, region_columns(masks, union, len(X[0]) // max(int(union.sum()), 1)))
    del X
    regions = {}
    for reg in REGIONS:
        regions[reg] = auc_summary(
            y, scores[reg], groups, theta_e=te, theta_e_edges=theta_e_edges, n_boot=n_boot, seed=seed
        )
        regions[reg].update(region=reg, n_pixels=int(masks[reg].sum()), meaning=REGION_MEANING[reg])
    if edge_means is None:
        edge_means = edge_annulus_means(sq["lens"], sq["control"], side)
    edge = mask_edge_probe(
        edge_means,
        is_lens=neg == 0,
        reference=arc_level(arc_flux, np.asarray(theta_e, float) / pixel_scale),
    )
    return {"plain": regions[region], "regions": regions, "edge_probe": edge, "masked": None}


def core_lr_from_table(
    table: xr.Dataset,
    *,
    box: int,
    core_radius: float,
    region: str = "disc",
    theta_e_edges=THETA_E_EDGES,
    n_boot: int = 200,
    seed: int = 0,
    ablation: dict | None = None,
) -> dict:
    """Core LR AUCs (disc / box / ring, the centre-masked stamps, hard negatives) and the
    mask-edge probe from the central squares of a per-pair table (see :func:`core_lr_on_cube`)."""
    if region not in REGIONS:
        raise ValueError(f"diagnostics.core_lr_region = {region!r}: allowed one of {', '.join(REGIONS)}")
    edges = THETA_E_EDGES if theta_e_edges is None else tuple(theta_e_edges)
    lr_pos = np.searchsorted(table["pair"].values, table["lr_pair"].values)
    m = lr_pos.size
    side = int(table.sizes["cy"])
    neg = table["hard_negative"].values[lr_pos] if "hard_negative" in table else np.zeros(m, np.int8)
    ids = table["lr_pair"].values
    theta_e = table["theta_e"].values[lr_pos].astype(float)
    sq = squares_by_role(table["central"].values)
    out = core_lr_from_squares(
        sq,
        side,
        ids,
        neg,
        theta_e,
        table["arc_flux"].values[lr_pos],
        pixel_scale=float(table.attrs["pixel_scale"]),
        box=box,
        core_radius=core_radius,
        region=region,
        theta_e_edges=edges,
        n_boot=n_boot,
        seed=seed,
        edge_means=table["edge_annulus_mean"].values,
    )
    mask = region_masks(side, core_radius, box)[region]
    y = np.concatenate([neg == 0, np.zeros(m, bool)])
    groups = np.concatenate([ids, ids])
    te = np.concatenate([theta_e, theta_e])
    if ablation is not None and "central_masked" in table:
        mq = squares_by_role(table["central_masked"].values)
        X = np.concatenate([select_region(mq["lens"], side, mask), select_region(mq["control"], side, mask)])
        out["masked"] = core_lr_auc(X, y, groups, theta_e=te, theta_e_edges=edges, n_boot=n_boot, seed=seed)
        out["masked"]["ablation"] = {k: list(v) if isinstance(v, tuple) else v for k, v in ablation.items()}
        out["masked"]["region"] = region
    # hard negatives (arc-like features that are not lenses): can the core alone tell a real lens
    # stamp from a hard-negative stamp? Needs a few of each class for grouped CV.
    hn = neg > 0
    out["hard_negatives"] = None
    if hn.sum() >= 10 and (~hn).sum() >= 10:
        lens_f = select_region(sq["lens"], side, mask)
        feats = np.concatenate([lens_f[~hn], lens_f[hn]])
        yy = np.concatenate([np.ones(int((~hn).sum()), bool), np.zeros(int(hn.sum()), bool)])
        out["hard_negatives"] = core_lr_auc(feats, yy, np.concatenate([ids[~hn], ids[hn]]), n_boot=n_boot, seed=seed)
        out["hard_negatives"]["n_hard_negative_pairs"] = int(hn.sum())
    return out


def core_lr_on_cube(
    ds: xr.Dataset,
    *,
    box: int,
    max_pairs: int = 20000,
    seed: int = 0,
    n_boot: int = 200,
    ablation: dict | None = None,
    progress: bool = False,
    config: RunConfig | None = None,
    core_radius: float | None = None,
    region: str | None = None,
    theta_e_edges=None,
    edge_radius: float = 0.0,
) -> dict:
    """Core LR AUC of a cube on the disc, the published box and the ring between them (and of
    the centre-masked stamps when ``ablation`` is given), plus the mask-edge probe, reading only
    the pixels of the LR subsample (a cube used for nothing else).

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
    config
        Configuration (default: the cube's own) whose ``diagnostics.core_radius`` and
        ``core_lr_region`` apply unless given here.
    core_radius
        Disc radius, pixels.
    region
        Region the ``plain`` (gate) result reads: ``disc``, ``box`` or ``ring``.
    theta_e_edges
        theta_E bin edges, arcsec (default :data:`~lensarray.statistics.THETA_E_EDGES`).
    edge_radius
        Largest radius (pixels) the mask-edge probe must see, e.g. the core mask's.

    Returns
    -------
    dict
        ``plain`` (see :func:`~lensarray.diagnostics.core_lr.core_lr_auc`), ``regions`` (disc,
        box, ring), ``masked`` (or None), ``hard_negatives`` (or None), ``edge_probe``,
        ``subsample`` and ``max_abs_arc`` (largest |arc| in the subsample).
    """
    cfg = config or cube_config(ds)
    core_radius = float(cfg.diagnostics.core_radius if core_radius is None else core_radius)
    region = cfg.diagnostics.core_lr_region if region is None else region
    if region not in REGIONS:
        raise ValueError(f"diagnostics.core_lr_region = {region!r}: allowed one of {', '.join(REGIONS)}")
    n = int(ds.sizes["pair"])
    idx = lr_subsample(n, max_pairs, seed)
    sub = ds.isel(pair=idx)
    spec = measure_spec(
        sub, cfg, ablation=ablation, seed=seed, tables=False, box=box, core_radius=core_radius, edge_radius=edge_radius
    )
    table = pair_table(
        sub, spec=spec, lr_index=np.arange(idx.size), progress=progress, stored=("theta_e", "arc_flux", "hard_negative")
    )
    out = core_lr_from_table(
        table,
        box=box,
        core_radius=core_radius,
        region=region,
        theta_e_edges=theta_e_edges,
        n_boot=n_boot,
        seed=seed,
        ablation=ablation,
    )
    out["subsample"] = _subsample_facts(n, idx, max_pairs, seed)
    out["max_abs_arc"] = float(np.nanmax(table["arc_abs_max"].values)) if idx.size else 0.0
    return out


def _subsample_facts(n: int, idx: np.ndarray, max_pairs: int, seed: int) -> dict:
    return {"n_pairs_cube": int(n), "n_pairs_used": int(idx.size), "max_pairs": int(max_pairs), "seed": int(seed)}


def snr_definitions(pairs, is_lens: np.ndarray) -> dict | None:
    """Both stored S/N definitions over the lenses: quantiles and their ratio (aperture / matched)."""
    if "arc_snr_aperture" not in pairs:
        return None
    mf = np.asarray(pairs["arc_snr"], float)[is_lens]
    ap = np.asarray(pairs["arc_snr_aperture"], float)[is_lens]
    ok = np.isfinite(mf) & np.isfinite(ap) & (mf > 0)
    q = (0.05, 0.25, 0.5, 0.75, 0.95)

    def quant(v):
        return [float(x) for x in np.quantile(v, q)] if v.size else [None] * len(q)

    return {
        "quantiles": list(q),
        "matched_filter": quant(mf[ok]),
        "aperture": quant(ap[ok]),
        "ratio_aperture_over_matched": quant(ap[ok] / mf[ok]),
        "n_lenses": int(ok.sum()),
    }


def _example_stamps(
    ds: xr.Dataset, arc_snr: np.ndarray, is_lens: np.ndarray, k: int = 6, scheduler: str | None = None
) -> dict:
    """r-band host, arc and control of ``k`` real injections spread over the arc_snr range (report
    gallery); ``scheduler`` for the read (None: dask's current one)."""
    b = reference_band_index(ds["band"].values)
    cand = np.flatnonzero(is_lens & np.isfinite(arc_snr))
    if cand.size == 0:
        cand = np.arange(min(k, ds.sizes["pair"]))
    else:
        order = cand[np.argsort(arc_snr[cand])]
        cand = order[np.unique(np.linspace(0, order.size - 1, min(k, order.size)).round().astype(int))]
    sub = ds.isel(pair=np.sort(cand), band=b)[["host", "arc", "theta_e", "arc_snr"]].compute(scheduler=scheduler)
    w_core = control_weights_of(ds.attrs, int(ds.sizes["x"]))
    return {
        "pair": sub["pair"].values,
        "host": sub["host"].values,
        "arc": sub["arc"].values,
        "control": control_stamp(sub["host"].values, sub["arc"].values, w_core),
        "theta_e": sub["theta_e"].values,
        "arc_snr": sub["arc_snr"].values,
        "band": str(ds["band"].values[b]),
    }


def _examples_during_pass(ds: xr.Dataset) -> Future | None:
    """The gallery's read (:func:`_example_stamps`) started in a thread beside the pixel pass when
    the cube's ``arc_snr`` and ``hard_negative`` are plain store reads (the values the table
    carries); None for a lazy or selected cube, whose stored variables exist only in the pass's
    tasks. The thread ends with its read (a few stamps), whether or not the result is asked for."""
    src = {v: store_source(ds[v].data) if v in ds.variables else None for v in ("arc_snr", "hard_negative")}
    if src["arc_snr"] is None or ("hard_negative" in ds.variables and src["hard_negative"] is None):
        return None

    def read() -> dict:
        arc_snr = np.asarray(src["arc_snr"], float)
        neg = np.asarray(src["hard_negative"]) if src["hard_negative"] is not None else np.zeros(arc_snr.size)
        # read here, not on the workers: their queue holds the pixel pass
        return _example_stamps(ds, arc_snr, neg == 0, scheduler="threads")

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(read)
    finally:
        pool.shutdown(wait=False)  # the submitted read still runs; the pool takes no more


#: Sections of a cube's recorded configuration that a null twin may differ in (besides run.null).
_TWIN_IGNORED = ("cluster", "storage")


def check_null_twin(ds: xr.Dataset, null_ds: xr.Dataset, *, where: str = "--null") -> None:
    """Refuse (:class:`~lensarray.errors.BadInputError`, one line) unless ``null_ds`` is the null
    twin of ``ds``: built with ``run.null = true`` from the same configuration otherwise, so it
    holds the same pairs (ids, hosts, lens parameters) with every arc zero."""
    mine, theirs = cube_config(ds).to_dict(), cube_config(null_ds).to_dict()
    if not theirs["run"].get("null") or not int(null_ds.attrs.get("null_injection", 1)):
        raise BadInputError(f"{where}: not a null-injection cube (built without --null; run.null = false)")
    for d in (mine, theirs):
        d["run"].pop("null", None)
        for sec in _TWIN_IGNORED:
            d.pop(sec, None)
    diff = [
        f"{s}.{k}"
        for s in sorted(set(mine) | set(theirs))
        for k in sorted(set(mine.get(s, {})) | set(theirs.get(s, {})))
        if mine.get(s, {}).get(k) != theirs.get(s, {}).get(k)
    ]
    if diff:
        raise BadInputError(
            f"{where}: not a null twin of STORE: its configuration differs in {', '.join(diff[:6])}"
            + (f" (+{len(diff) - 6} more)" if len(diff) > 6 else "")
            + "; allowed the same configuration built with --null"
        )
    if ds.sizes.get("pair") != null_ds.sizes.get("pair") or not np.array_equal(
        ds["pair"].values, null_ds["pair"].values
    ):
        raise BadInputError(
            f"{where}: not a null twin of STORE: it holds other pairs "
            f"({null_ds.sizes.get('pair')} vs {ds.sizes.get('pair')})"
        )
    for name in ("theta_e", "host_id"):
        if name in ds and name in null_ds and not np.array_equal(ds[name].values, null_ds[name].values, equal_nan=True):
            raise BadInputError(f"{where}: not a null twin of STORE: per-pair {name} differs")


def diagnose(
    ds: xr.Dataset,
    *,
    null_ds: xr.Dataset | None = None,
    anchors=None,
    max_lr_pairs: int = 20000,
    seed: int = 0,
    n_boot: int = 200,
    ablation: dict | None = DEFAULT_ABLATION,
    progress: bool = False,
    config: RunConfig | None = None,
    source: str | None = None,
    max_visibility_pairs: int = MAX_VISIBILITY_PAIRS,
) -> tuple[dict, dict]:
    """Run every diagnostic on a cube, reading its pixels once.

    Parameters
    ----------
    ds
        The cube: opened from a store, lazy (dask-backed, never stored) or in memory; only read.
    null_ds
        A null-injection cube (arcs zero) for the null identity test.
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
        The auditor's configuration: its ``diagnostics`` section (core radius, core box, gate
        thresholds) sets the bar. Default: lensarray's defaults. The bar never comes from the
        audited cube; the cube's recorded configuration supplies only the targets it is checked
        against (arc S/N bins and fractions) and is reported beside the thresholds.
    source
        Where the cube came from (recorded in the report).
    max_visibility_pairs
        Largest number of pairs whose visibility proxy is measured (see :data:`MAX_VISIBILITY_PAIRS`).

    Returns
    -------
    (dict, dict)
        The JSON-ready results (with ``gates``) and the arrays the report plots.
    """
    # one BLAS thread for the client's statistics: while the pixel pass runs the workers hold the
    # cores, and OpenBLAS's threads spin against them (the core LR's solves took 60x longer)
    with threadpool_limits(limits=1, user_api="blas"):
        return _diagnose(
            ds,
            null_ds=null_ds,
            anchors=anchors,
            max_lr_pairs=max_lr_pairs,
            seed=seed,
            n_boot=n_boot,
            ablation=ablation,
            progress=progress,
            config=config,
            source=source,
            max_visibility_pairs=max_visibility_pairs,
        )


def _diagnose(
    ds: xr.Dataset,
    *,
    null_ds: xr.Dataset | None,
    anchors,
    max_lr_pairs: int,
    seed: int,
    n_boot: int,
    ablation: dict | None,
    progress: bool,
    config: RunConfig | None,
    source: str | None,
    max_visibility_pairs: int,
) -> tuple[dict, dict]:
    t0 = time.perf_counter()
    cube_cfg = cube_config(ds)
    bar = (config or RunConfig()).diagnostics
    cfg = dataclasses.replace(cube_cfg, diagnostics=bar)
    if null_ds is not None:
        check_null_twin(ds, null_ds)
    n = int(ds.sizes["pair"])
    lr_idx = lr_subsample(n, max_lr_pairs, seed)
    vis_idx = lr_subsample(n, max_visibility_pairs, seed + 1)
    D = cfg.diagnostics
    # the mask-edge probe's annuli reach 2 px beyond the core mask (spec.edge_side; measured in the pass)
    edge_radius = max(cfg.core_mask.radius, D.core_radius)
    spec = measure_spec(ds, cfg, ablation=ablation, seed=seed, edge_radius=edge_radius)
    early_examples = _examples_during_pass(ds)
    table = pair_table(ds, spec=spec, lr_index=lr_idx, vis_index=vis_idx, progress=progress, stored=DIAGNOSE_STORED)
    stages = {"pixel_pass": time.perf_counter() - t0}

    def lap(name: str) -> None:
        stages[name] = time.perf_counter() - t0 - sum(stages.values())

    bands = list(table.attrs["bands"])
    is_lens = np.asarray(table["is_lens"].values, bool)
    theta_e = table["theta_e"].values
    arc_snr = table["arc_snr"].values
    ps = spec.pixel_scale
    res: dict = {
        "package_version": __version__,
        "source": source,
        "n_pairs": n,
        "bands": bands,
        "stamp_size": int(ds.sizes["x"]),
        "config": cfg.to_dict(),
        "thresholds": {
            "source": "auditor configuration" if config is not None else "lensarray defaults",
            **dataclasses.asdict(bar),
        },
        "cube_config": {"diagnostics": cube_cfg.to_dict()["diagnostics"], "recorded": cube_cfg.to_dict()},
        "core_mask_policy": ds.attrs.get("core_mask_policy", cfg.core_mask.policy),
    }
    cff = table["core_flux_frac_measured"].values
    te_edges = theta_e_edges(cfg.lens.theta_e_min, cfg.lens.theta_e_max)  # bins from the cube's own prior
    res["core_flux"] = core_flux_summary(
        cff,
        theta_e,
        table["psf_fwhm"].values,
        table["src_reff"].values,
        bands,
        stored=table["core_flux_frac"].values if "core_flux_frac" in table else None,
        is_lens=is_lens,
        theta_e_edges=te_edges,
    )
    inner = table["inner_image_r"].values if "inner_image_r" in table else None
    inner_src = "stored inner_image_r"
    if inner is None or not np.isfinite(inner).any():
        # a cube without inner_image_r (rare): its source and lens positions, read for this only
        pos = ds[[v for v in ("src_x", "src_y", "lens_x", "lens_y") if v in ds.variables]].reset_coords(drop=True)
        pos = pos.compute()
        inner = (
            inner_image_radius_px(
                theta_e,
                pos["src_x"].values,
                pos["src_y"].values,
                pixel_scale=ps,
                lens_x=pos["lens_x"].values if "lens_x" in pos else 0.0,
                lens_y=pos["lens_y"].values if "lens_y" in pos else 0.0,
            )
            if "src_x" in pos
            else np.full(n, np.nan)
        )
        inner_src = "SIS theta_E - |beta| from stored theta_e, src_x, src_y (lens_x, lens_y)"
    res["inner_image"] = inner_image_summary(
        np.asarray(inner)[is_lens], np.asarray(theta_e)[is_lens], theta_e_edges=te_edges
    )
    res["inner_image"]["source"] = inner_src

    lap("core_flux_inner_image")
    box = D.core_box
    lr = core_lr_from_table(
        table,
        box=box,
        core_radius=D.core_radius,
        region=D.core_lr_region,
        theta_e_edges=te_edges,
        n_boot=n_boot,
        seed=seed,
        ablation=ablation,
    )
    res["core_lr"] = lr["plain"]
    res["core_lr"]["subsample"] = _subsample_facts(n, lr_idx, max_lr_pairs, seed)
    res["core_lr"]["box"] = box
    res["core_lr_regions"] = lr["regions"]
    res["edge_probe"] = lr["edge_probe"]
    res["policies"] = {
        k: ds.attrs.get(k)
        for k in (
            "core_mask_policy",
            "control_stamp",
            "arc_snr_calibration",
            "arc_snr_definition",
            "arc_snr_aperture_definition",
            "core_centre",
        )
        if k in ds.attrs
    }
    kinds = table["hard_negative"].values if "hard_negative" in table else np.zeros(n, np.int8)
    res["below_snr_floor"] = {
        "floor": cfg.brightness.snr_floor,
        "action": cfg.brightness.snr_floor_action,
        "n_labelled": int((kinds == NEGATIVE_KINDS.index("below_snr_floor")).sum()),
        "n_pairs": n,
    }
    res["core_lr_masked"] = lr["masked"]
    res["core_lr_hard_negatives"] = lr["hard_negatives"]
    # the masked squares (~140 MB for 20,000 LR pairs) are done with; the plain ones stay in extras
    table = table.drop_vars([v for v in ("central_masked",) if v in table])
    lap("core_lr")
    # the null test is a bit-identity check through the training path, not an AUC
    res["null_identity"] = None
    if null_ds is not None:
        if null_ds.sizes.get("y") != ds.sizes.get("y") or list(null_ds["band"].values) != list(ds["band"].values):
            raise BadInputError("null cube: allowed a cube with the same bands and stamp size as STORE")
        res["null_identity"] = null_identity(null_ds, centre_mask=ablation, seed=seed)
    res["snr_definitions"] = snr_definitions(table, is_lens)

    lap("null_identity")
    res["systematics"] = systematics_by_class(table, ds).to_dict()
    lap("systematics")
    res["leakage"] = metadata_leakage(table, ds, threshold=cfg.diagnostics.leak_auc_max)
    lap("leakage")
    vis = table["visibility"]
    measured = np.asarray(table["visibility_measured"].values, bool)
    lens_vis, ctrl_vis = vis.sel(role="lens").values, vis.sel(role="control").values
    res["visibility"] = visibility_summary(
        lens_vis[is_lens & measured],
        ctrl_vis[is_lens & measured],
        arc_snr[is_lens & measured],
        cfg.brightness.snr_edges,
    )
    res["visibility"]["n_pairs_measured"] = int(measured.sum())
    res["arc_snr"] = arc_snr_distribution(
        arc_snr,
        cfg.brightness.snr_edges,
        cfg.brightness.snr_fractions,
        measured=table["arc_snr_measured"].values,
        is_lens=is_lens,
    )
    res["anchors"] = None
    host_cb = table["central_brightness"].sel(role="control").values
    anchor_vals = None
    if anchors is not None:
        if isinstance(anchors, xr.Dataset):
            anchor_vals = cube_central_brightness(anchors, progress=progress)
            kind = f"cube ({anchors.sizes['pair']} pairs)"
        else:
            anchor_vals = anchor_brightness(iter_anchor_cutouts(anchors))
            kind = "cutout files"
        res["anchors"] = compare_brightness(host_cb, anchor_vals, seed=seed)
        res["anchors"]["kind"] = kind

    res["gates"] = [g.to_dict() for g in evaluate_gates(res, cfg.diagnostics)]
    # a gate that did not run (passed None) neither passes nor fails the cube; it is shown as not run
    res["passed"] = not any(g["passed"] is False for g in res["gates"])
    if early_examples is not None:
        examples = early_examples.result()
    else:
        examples = _example_stamps(ds, np.asarray(arc_snr, float), is_lens)
    lap("other")
    res["elapsed_s"] = round(time.perf_counter() - t0, 2)
    res["elapsed_by_stage_s"] = {k: round(v, 3) for k, v in stages.items()}
    res["memory"] = peak_memory()
    extras = {
        "theta_e": np.asarray(theta_e),
        "is_lens": is_lens,
        "arc_snr": np.asarray(arc_snr),
        "lens_visibility": lens_vis,
        "control_visibility": ctrl_vis,
        "host_central_brightness": host_cb,
        "anchor_central_brightness": anchor_vals,
        "core_flux_frac": cff,
        "table": table,
        "examples": examples,
    }
    return res, extras
