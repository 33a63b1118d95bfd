"""``diagnose``: every diagnostic of a cube in one bounded-memory pass, plus the core LR boxes.

Pass 1 reduces the cube to a per-pair table (:func:`~lensarray.diagnostics.features.pair_table`);
pass 2 reads the central boxes of at most ``max_lr_pairs`` pairs (a seeded, sorted subsample) for
the core LR. Everything else is exact numpy/scipy/sklearn on those small arrays.
"""

from __future__ import annotations

import time

import numpy as np
import xarray as xr

from .. import __version__
from ..cube import NEGATIVE_KINDS
from ..masking import control_stamp, control_weights_of
from ..config import RunConfig
from ._compute import peak_memory
from .anchors import anchor_brightness, compare_brightness, cube_central_brightness, read_anchor_cutouts
from .core_flux import core_flux_summary
from .core_lr import (REGION_MEANING, REGIONS, THETA_E_EDGES, arc_level, central_side, core_lr_auc, mask_edge_probe,
                      region_masks, select_region, theta_e_edges)
from .features import core_box_features, cube_config, lr_subsample, pair_table
from .gates import evaluate_gates
from .inner_image import inner_image_summary, sis_inner_image_radius
from .leakage import metadata_leakage
from .null_identity import null_identity
from .snr import arc_snr_distribution
from .systematics import systematics_by_class
from .visibility import visibility_summary

__all__ = ["diagnose", "core_lr_on_cube", "DEFAULT_ABLATION"]

#: The centre-mask ablation measured in the report: per stamp r_mask uniform in [3, 7] px.
DEFAULT_ABLATION = {"mode": "uniform", "r_mask": (3.0, 7.0)}


def _pixel_scale(ds: xr.Dataset) -> float:
    return float(ds.attrs.get("pixel_scale", cube_config(ds).run.pixel_scale))


def core_lr_from_squares(sq: dict, side: int, pair_ids: np.ndarray, hard_negative: np.ndarray,
                         theta_e: np.ndarray, arc_flux: np.ndarray, *, pixel_scale: float, box: int,
                         core_radius: float, region: str = "disc", theta_e_edges=THETA_E_EDGES, n_boot: int = 200,
                         seed: int = 0) -> dict:
    """Core LR on the disc, box and ring, and the mask-edge probe, from central squares.

    Parameters
    ----------
    sq
        ``lens``, ``control``: ``(n, nb * side * side)`` central squares (nanomaggy), as
        :func:`~lensarray.diagnostics.features.core_box_features` returns them.
    side
        Side of the squares, pixels.
    pair_ids, hard_negative, theta_e, arc_flux
        Per pair (``(n,)``; ``arc_flux (n, band)`` nanomaggy, ``theta_e`` arcsec).
    pixel_scale
        Arcsec per pixel.
    box, core_radius, region, theta_e_edges, n_boot, seed
        As :func:`core_lr_on_cube`.

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
    regions = {}
    for reg in REGIONS:
        X = np.concatenate([select_region(sq["lens"], side, masks[reg]), select_region(sq["control"], side, masks[reg])])
        regions[reg] = core_lr_auc(X, y, groups, theta_e=te, theta_e_edges=theta_e_edges, n_boot=n_boot, seed=seed)
        regions[reg].update(region=reg, n_pixels=int(masks[reg].sum()), meaning=REGION_MEANING[reg])
    edge = mask_edge_probe(sq["lens"], sq["control"], side, is_lens=neg == 0,
                           reference=arc_level(arc_flux, np.asarray(theta_e, float) / pixel_scale))
    return {"plain": regions[region], "regions": regions, "edge_probe": edge, "masked": None}


def core_lr_on_cube(ds: xr.Dataset, *, box: int, max_pairs: int = 20000, seed: int = 0, n_boot: int = 200,
                    ablation: dict | None = None, progress: bool = True, core_radius: float = 5.0,
                    region: str = "disc", theta_e_edges=None, edge_radius: float = 0.0) -> dict:
    """Core LR AUC of a cube on the disc, the published box and the ring between them (and of
    the centre-masked stamps when ``ablation`` is given), plus the mask-edge probe.

    Parameters
    ----------
    ds
        The cube (read only).
    box
        Published central box side, pixels.
    max_pairs
        At most this many pairs enter the LR: all of them if the cube is smaller, else a
        subsample drawn by ``numpy.random.default_rng(seed).choice`` without replacement.
    seed
        Subsample, bootstrap and ablation seed.
    ablation
        :func:`~lensarray.diagnostics.ablation.centre_mask` keywords for the masked LR.
    core_radius
        Disc radius, pixels.
    region
        Region of the gate (one of :data:`~lensarray.diagnostics.core_lr.REGIONS`): ``plain``,
        ``masked`` and ``hard_negatives`` use it.
    theta_e_edges
        Bin edges of the per-bin AUCs, arcsec (default :data:`THETA_E_EDGES`).
    edge_radius
        Largest radius the mask-edge probe must reach (e.g. the core-mask radius), pixels.

    Returns
    -------
    dict
        ``plain`` (see :func:`~lensarray.diagnostics.core_lr.core_lr_auc`), ``regions`` (disc,
        box, ring), ``masked`` (or None), ``hard_negatives`` (or None), ``edge_probe``.
    """
    if region not in REGIONS:
        raise ValueError(f"diagnostics.core_lr_region = {region!r}: allowed one of {', '.join(REGIONS)}")
    edges = THETA_E_EDGES if theta_e_edges is None else tuple(theta_e_edges)
    n = ds.sizes["pair"]
    idx = lr_subsample(n, max_pairs, seed)
    side = min(central_side(core_radius, box, edge_radius), int(ds.sizes["x"]) - int(ds.sizes["x"]) % 2)
    sq = core_box_features(ds, idx, box=side, ablation=ablation, seed=seed, progress=progress)
    neg = ds["hard_negative"].values[idx] if "hard_negative" in ds else np.zeros(idx.size, np.int8)
    out = core_lr_from_squares(sq, side, idx, neg, ds["theta_e"].values[idx].astype(float),
                               ds["arc_flux"].values[idx], pixel_scale=_pixel_scale(ds), box=box,
                               core_radius=core_radius, region=region, theta_e_edges=edges, n_boot=n_boot,
                               seed=seed)
    out["subsample"] = {"n_pairs_cube": int(n), "n_pairs_used": int(idx.size), "max_pairs": int(max_pairs),
                        "seed": int(seed)}
    masks = region_masks(side, core_radius, box)
    y = np.concatenate([neg == 0, np.zeros(idx.size, bool)])
    groups = np.concatenate([idx, idx])
    te = np.concatenate([ds["theta_e"].values[idx].astype(float)] * 2)

    def feats(key: str, reg: str) -> np.ndarray:
        return select_region(sq[key], side, masks[reg])

    if ablation is not None:
        out["masked"] = core_lr_auc(np.concatenate([feats("lens_masked", region), feats("control_masked", region)]),
                                    y, groups, theta_e=te, theta_e_edges=edges, n_boot=n_boot, seed=seed)
        out["masked"]["ablation"] = {k: list(v) if isinstance(v, tuple) else v for k, v in ablation.items()}
        out["masked"]["region"] = region
    # hard negatives (arc-like features that are not lenses): can the core alone tell a real lens
    # stamp from a hard-negative stamp? Needs a few of each class for grouped CV.
    hn = neg > 0
    out["hard_negatives"] = None
    if hn.sum() >= 10 and (~hn).sum() >= 10:
        lens_f = feats("lens", region)
        X = np.concatenate([lens_f[~hn], lens_f[hn]])
        yy = np.concatenate([np.ones(int((~hn).sum()), bool), np.zeros(int(hn.sum()), bool)])
        out["hard_negatives"] = core_lr_auc(X, yy, np.concatenate([idx[~hn], idx[hn]]), n_boot=n_boot, seed=seed)
        out["hard_negatives"]["n_hard_negative_pairs"] = int(hn.sum())
    return out


def snr_definitions(pairs: dict, is_lens: np.ndarray) -> dict | None:
    """Both stored S/N definitions over the lenses: quantiles and their ratio (aperture / matched)."""
    if "arc_snr_aperture" not in pairs:
        return None
    mf = np.asarray(pairs["arc_snr"], float)[is_lens]
    ap = np.asarray(pairs["arc_snr_aperture"], float)[is_lens]
    ok = np.isfinite(mf) & np.isfinite(ap) & (mf > 0)
    q = (0.05, 0.25, 0.5, 0.75, 0.95)

    def quant(v):
        return [float(x) for x in np.quantile(v, q)] if v.size else [None] * len(q)

    return {"quantiles": list(q), "matched_filter": quant(mf[ok]), "aperture": quant(ap[ok]),
            "ratio_aperture_over_matched": quant(ap[ok] / mf[ok]), "n_lenses": int(ok.sum())}


def _example_stamps(ds: xr.Dataset, arc_snr: np.ndarray, is_lens: np.ndarray, k: int = 6) -> dict:
    """r-band host, arc and control of ``k`` real injections spread over the arc_snr range (report gallery)."""
    bands = [str(b) for b in ds["band"].values]
    b = bands.index("r") if "r" in bands else 0
    cand = np.flatnonzero(is_lens & np.isfinite(arc_snr))
    if cand.size == 0:
        cand = np.arange(min(k, ds.sizes["pair"]))
    else:
        order = cand[np.argsort(arc_snr[cand])]
        cand = order[np.unique(np.linspace(0, order.size - 1, min(k, order.size)).round().astype(int))]
    sub = ds.isel(pair=np.sort(cand), band=b)[["host", "arc", "theta_e", "arc_snr"]].compute()
    w_core = control_weights_of(ds.attrs, int(ds.sizes["x"]))
    return {"pair": sub["pair"].values, "host": sub["host"].values, "arc": sub["arc"].values,
            "control": control_stamp(sub["host"].values, sub["arc"].values, w_core),
            "theta_e": sub["theta_e"].values, "arc_snr": sub["arc_snr"].values, "band": bands[b]}


def diagnose(ds: xr.Dataset, *, null_ds: xr.Dataset | None = None, anchors=None, max_lr_pairs: int = 20000,
             seed: int = 0, n_boot: int = 200, ablation: dict | None = DEFAULT_ABLATION, progress: bool = True,
             config: RunConfig | None = None, source: str | None = None) -> tuple[dict, dict]:
    """Run every diagnostic on a cube.

    Parameters
    ----------
    ds
        The cube (lazy; only read).
    null_ds
        A null-injection cube (arcs zero) for the null LR test.
    anchors
        Another cube (``xarray.Dataset``) or cutout files (directory, glob, list; see
        :func:`~lensarray.diagnostics.anchors.read_anchor_cutouts`).
    max_lr_pairs
        Largest number of pairs fed to the core LR (deterministic subsample beyond).
    seed
        Seed of the LR subsample, bootstraps and ablation draws.
    n_boot
        Bootstrap resamples of every CI.
    ablation
        Centre-mask keywords for the masked LR (None: skip).
    config
        Thresholds and bins (default: the configuration stored in the cube).
    source
        Where the cube came from (recorded in the report).

    Returns
    -------
    (dict, dict)
        The JSON-ready results (with ``gates``) and the arrays the report plots.
    """
    t0 = time.perf_counter()
    cfg = config or cube_config(ds)
    table = pair_table(ds, progress=progress, config=cfg)
    P, M = table.pairs, table.meas
    is_lens = table.is_lens()
    ps = float(ds.attrs.get("pixel_scale", cfg.run.pixel_scale))
    res: dict = {"package_version": __version__, "source": source, "n_pairs": table.n, "bands": table.bands,
                 "stamp_size": table.size, "config": cfg.to_dict(),
                 "core_mask_policy": ds.attrs.get("core_mask_policy", cfg.core_mask.policy)}
    res["core_flux"] = core_flux_summary(M["core_flux_frac"], P["theta_e"], P["psf_fwhm"], P["src_reff"], table.bands,
                                         stored=P.get("core_flux_frac"), is_lens=is_lens)
    inner = P.get("inner_image_r")
    inner_src = "stored inner_image_r"
    if inner is None or not np.isfinite(inner).any():
        beta = np.hypot(P["src_x"], P["src_y"]) if "src_x" in P else np.full(table.n, np.nan)
        inner = sis_inner_image_radius(P["theta_e"], beta) / ps
        inner_src = "SIS theta_E - |beta| from stored theta_e, src_x, src_y"
    res["inner_image"] = inner_image_summary(np.asarray(inner)[is_lens], np.asarray(P["theta_e"])[is_lens])
    res["inner_image"]["source"] = inner_src

    D = cfg.diagnostics
    lr_kw = dict(box=D.core_box, max_pairs=max_lr_pairs, seed=seed, n_boot=n_boot, progress=progress,
                 core_radius=D.core_radius, region=D.core_lr_region,
                 theta_e_edges=theta_e_edges(cfg.lens.theta_e_min, cfg.lens.theta_e_max),
                 edge_radius=max(cfg.core_mask.radius, D.core_radius))
    lr = core_lr_on_cube(ds, ablation=ablation, **lr_kw)
    res["core_lr"] = lr["plain"]
    res["core_lr"]["subsample"] = lr["subsample"]
    res["core_lr"]["box"] = D.core_box
    res["core_lr_regions"] = lr["regions"]
    res["edge_probe"] = lr["edge_probe"]
    res["policies"] = {k: ds.attrs.get(k) for k in ("core_mask_policy", "control_stamp", "arc_snr_calibration",
                                                   "arc_snr_definition", "arc_snr_aperture_definition",
                                                   "core_centre") if k in ds.attrs}
    is_lens_all = np.asarray(P.get("hard_negative", np.zeros(table.n)))
    res["below_snr_floor"] = {"floor": cfg.brightness.snr_floor, "action": cfg.brightness.snr_floor_action,
                              "n_labelled": int((is_lens_all == NEGATIVE_KINDS.index("below_snr_floor")).sum()),
                              "n_pairs": table.n}
    res["core_lr_masked"] = lr["masked"]
    res["core_lr_hard_negatives"] = lr["hard_negatives"]
    res["null_identity"] = None
    if null_ds is not None:
        if null_ds.sizes.get("y") != ds.sizes.get("y") or list(null_ds["band"].values) != list(ds["band"].values):
            raise ValueError("null cube: allowed a cube with the same bands and stamp size as STORE")
        res["null_identity"] = null_identity(null_ds, centre_mask=ablation, seed=seed)
    res["snr_definitions"] = snr_definitions(P, is_lens)

    res["systematics"] = systematics_by_class(table, ds)
    res["leakage"] = metadata_leakage(table, ds, threshold=cfg.diagnostics.leak_auc_max)
    res["visibility"] = visibility_summary(table.samples["lens"]["visibility"][is_lens],
                                           table.samples["control"]["visibility"][is_lens],
                                           np.asarray(P["arc_snr"])[is_lens],
                                           cfg.brightness.snr_edges)
    res["arc_snr"] = arc_snr_distribution(P["arc_snr"], cfg.brightness.snr_edges, cfg.brightness.snr_fractions,
                                          measured=M["arc_snr"], is_lens=is_lens)
    res["anchors"] = None
    host_cb = table.samples["control"]["central_brightness"]
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
    # a gate that did not run (passed None) neither passes nor fails the cube; it is shown as not run
    res["passed"] = not any(g["passed"] is False for g in res["gates"])
    res["elapsed_s"] = round(time.perf_counter() - t0, 2)
    res["memory"] = peak_memory()
    extras = {"theta_e": np.asarray(P["theta_e"]), "is_lens": is_lens, "arc_snr": np.asarray(P["arc_snr"]),
              "lens_visibility": table.samples["lens"]["visibility"],
              "control_visibility": table.samples["control"]["visibility"],
              "host_central_brightness": host_cb, "anchor_central_brightness": anchor_vals,
              "core_flux_frac": M["core_flux_frac"],
              "examples": _example_stamps(ds, np.asarray(P["arc_snr"], float), is_lens)}
    return res, extras
