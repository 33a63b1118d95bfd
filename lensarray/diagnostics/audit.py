"""``diagnose``: every diagnostic of a cube in one bounded-memory pass, plus the core LR boxes.

Pass 1 reduces the cube to a per-pair table (:func:`~lensarray.diagnostics.features.pair_table`);
pass 2 reads the central boxes of at most ``max_lr_pairs`` pairs (a seeded, sorted subsample) for
the core LR. Everything else is exact numpy/scipy/sklearn on those small arrays.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import xarray as xr

from .. import __version__
from ..config import RunConfig
from ..errors import BadInputError
from ._compute import peak_memory
from .anchors import anchor_brightness, compare_brightness, cube_central_brightness, iter_anchor_cutouts
from .core_flux import core_flux_summary
from .core_lr import core_lr_auc
from .features import core_box_features, cube_config, lr_subsample, pair_table
from .gates import evaluate_gates
from .inner_image import inner_image_summary, sis_inner_image_radius
from .leakage import metadata_leakage
from .snr import arc_snr_distribution
from .systematics import systematics_by_class
from .visibility import visibility_summary

__all__ = ["diagnose", "core_lr_on_cube", "check_null_twin", "DEFAULT_ABLATION"]

#: The centre-mask ablation measured in the report: per stamp r_mask uniform in [3, 7] px.
DEFAULT_ABLATION = {"mode": "uniform", "r_mask": (3.0, 7.0)}


def core_lr_on_cube(ds: xr.Dataset, *, box: int, max_pairs: int = 20000, seed: int = 0, n_boot: int = 200,
                    ablation: dict | None = None, progress: bool = False) -> dict:
    """Core LR AUC of a cube (and of its centre-masked stamps when ``ablation`` is given).

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
        ``plain`` (see :func:`~lensarray.diagnostics.core_lr.core_lr_auc`) and ``masked`` (or None).
    """
    n = ds.sizes["pair"]
    idx = lr_subsample(n, max_pairs, seed)
    boxes = core_box_features(ds, idx, box=box, ablation=ablation, seed=seed, progress=progress)
    neg = ds["hard_negative"].values[idx] if "hard_negative" in ds else np.zeros(idx.size, np.int8)
    y = np.concatenate([neg == 0, np.zeros(idx.size, bool)])
    groups = np.concatenate([idx, idx])
    te = ds["theta_e"].values[idx].astype(float)
    te = np.concatenate([te, te])
    out = {"plain": core_lr_auc(np.concatenate([boxes["lens"], boxes["control"]]), y, groups, theta_e=te,
                                n_boot=n_boot, seed=seed), "masked": None,
           "subsample": {"n_pairs_cube": int(n), "n_pairs_used": int(idx.size), "max_pairs": int(max_pairs),
                         "seed": int(seed)}}
    if ablation is not None:
        out["masked"] = core_lr_auc(np.concatenate([boxes["lens_masked"], boxes["control_masked"]]), y, groups,
                                    theta_e=te, n_boot=n_boot, seed=seed)
        out["masked"]["ablation"] = {k: list(v) if isinstance(v, tuple) else v for k, v in ablation.items()}
    # hard negatives (arc-like features that are not lenses): can the core alone tell a real lens
    # stamp from a hard-negative stamp? Needs a few of each class for grouped CV.
    hn = neg > 0
    out["hard_negatives"] = None
    if hn.sum() >= 10 and (~hn).sum() >= 10:
        feats = np.concatenate([boxes["lens"][~hn], boxes["lens"][hn]])
        yy = np.concatenate([np.ones(int((~hn).sum()), bool), np.zeros(int(hn.sum()), bool)])
        out["hard_negatives"] = core_lr_auc(feats, yy, np.concatenate([idx[~hn], idx[hn]]), n_boot=n_boot, seed=seed)
        out["hard_negatives"]["n_hard_negative_pairs"] = int(hn.sum())
    return out


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
    diff = [f"{s}.{k}" for s in sorted(set(mine) | set(theirs))
            for k in sorted(set(mine.get(s, {})) | set(theirs.get(s, {})))
            if mine.get(s, {}).get(k) != theirs.get(s, {}).get(k)]
    if diff:
        raise BadInputError(f"{where}: not a null twin of STORE: its configuration differs in {', '.join(diff[:6])}"
                            + (f" (+{len(diff) - 6} more)" if len(diff) > 6 else "")
                            + "; allowed the same configuration built with --null")
    if ds.sizes.get("pair") != null_ds.sizes.get("pair") or not np.array_equal(ds["pair"].values, null_ds["pair"].values):
        raise BadInputError(f"{where}: not a null twin of STORE: it holds other pairs "
                            f"({null_ds.sizes.get('pair')} vs {ds.sizes.get('pair')})")
    for name in ("theta_e", "host_id"):
        if name in ds and name in null_ds and not np.array_equal(ds[name].values, null_ds[name].values, equal_nan=True):
            raise BadInputError(f"{where}: not a null twin of STORE: per-pair {name} differs")


def diagnose(ds: xr.Dataset, *, null_ds: xr.Dataset | None = None, anchors=None, max_lr_pairs: int = 20000,
             seed: int = 0, n_boot: int = 200, ablation: dict | None = DEFAULT_ABLATION, progress: bool = False,
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
        The auditor's configuration: its ``diagnostics`` section (core radius, core box, gate
        thresholds) sets the bar. Default: lensarray's defaults. The bar never comes from the
        audited cube; the cube's recorded configuration supplies only the targets it is checked
        against (arc S/N bins and fractions) and is reported beside the thresholds.
    source
        Where the cube came from (recorded in the report).

    Returns
    -------
    (dict, dict)
        The JSON-ready results (with ``gates``) and the arrays the report plots.
    """
    t0 = time.perf_counter()
    cube_cfg = cube_config(ds)
    bar = (config or RunConfig()).diagnostics
    cfg = dataclasses.replace(cube_cfg, diagnostics=bar)
    if null_ds is not None:
        check_null_twin(ds, null_ds)
    table = pair_table(ds, progress=progress, config=cfg)
    P, M = table.pairs, table.meas
    is_lens = table.is_lens()
    ps = float(ds.attrs.get("pixel_scale", cfg.run.pixel_scale))
    res: dict = {"package_version": __version__, "source": source, "n_pairs": table.n, "bands": table.bands,
                 "stamp_size": table.size, "config": cfg.to_dict(),
                 "thresholds": {"source": "auditor configuration" if config is not None else "lensarray defaults",
                                **dataclasses.asdict(bar)},
                 "cube_config": {"diagnostics": cube_cfg.to_dict()["diagnostics"], "recorded": cube_cfg.to_dict()},
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

    lr = core_lr_on_cube(ds, box=cfg.diagnostics.core_box, max_pairs=max_lr_pairs, seed=seed, n_boot=n_boot,
                         ablation=ablation, progress=progress)
    res["core_lr"] = lr["plain"]
    res["core_lr"]["subsample"] = lr["subsample"]
    res["core_lr"]["box"] = cfg.diagnostics.core_box
    res["core_lr_masked"] = lr["masked"]
    res["core_lr_hard_negatives"] = lr["hard_negatives"]
    res["null_lr"] = None
    if null_ds is not None:
        if null_ds.sizes.get("y") != ds.sizes.get("y") or list(null_ds["band"].values) != list(ds["band"].values):
            raise BadInputError("null cube: allowed a cube with the same bands and stamp size as STORE")
        nl = core_lr_on_cube(null_ds, box=cfg.diagnostics.core_box, max_pairs=max_lr_pairs, seed=seed,
                             n_boot=n_boot, ablation=None, progress=progress)
        res["null_lr"] = nl["plain"]
        # checked on the LR subsample only, so the null cube is read once at most
        sub = lr_subsample(null_ds.sizes["pair"], max_lr_pairs, seed)
        res["null_lr"]["max_abs_arc"] = float(abs(null_ds["arc"].isel(pair=sub)).max().compute())

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
            anchor_vals = anchor_brightness(iter_anchor_cutouts(anchors))
            kind = "cutout files"
        res["anchors"] = compare_brightness(host_cb, anchor_vals, seed=seed)
        res["anchors"]["kind"] = kind

    res["gates"] = [g.to_dict() for g in evaluate_gates(res, cfg.diagnostics)]
    res["passed"] = all(g["passed"] for g in res["gates"])
    res["elapsed_s"] = round(time.perf_counter() - t0, 2)
    res["memory"] = peak_memory()
    extras = {"theta_e": np.asarray(P["theta_e"]), "is_lens": is_lens, "arc_snr": np.asarray(P["arc_snr"]),
              "lens_visibility": table.samples["lens"]["visibility"],
              "control_visibility": table.samples["control"]["visibility"],
              "host_central_brightness": host_cb, "anchor_central_brightness": anchor_vals,
              "core_flux_frac": M["core_flux_frac"],
              "examples": _example_stamps(ds, np.asarray(P["arc_snr"], float), is_lens)}
    return res, extras
