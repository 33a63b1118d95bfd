"""Build a cube: config -> hosts -> params -> render arcs -> Zarr shards.

The pipeline orchestrates; it knows no lens equation. Work is split into one task per Zarr
shard: a shard is the stored object, so a task that owns a whole shard can write it without
coordination, a retried task rewrites identical bytes (every random number comes from
``(seed, pair id, stream)``), and a done marker written after the data makes resume exact.
We submit shard tasks directly (``client.submit``) rather than ``map_blocks`` over a dask array:
a build's output is a side effect per shard, not an array to keep, and per-shard futures give
a progress bar and resume bookkeeping for free.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import numpy as np

from .config import ConfigError, RunConfig, config_from_dict
from .cube import NEGATIVE_KINDS, VARIABLES

__all__ = ["render_pairs", "render_physical", "build", "plan_build", "BuildPlan", "BuildResult", "config_of_store"]


def _optional(module: str):
    """Import an optional pipeline stage (splits, negatives, ingested hosts) if present."""
    try:
        return import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


@dataclass
class BuildPlan:
    """What every shard task needs besides its pair ids (small and picklable)."""

    config_json: str
    split_plan_json: str = ""
    hosts_url: str = ""
    host_permutation_seed: int = 0
    n_hosts: int = 0

    @property
    def cfg(self) -> RunConfig:
        return config_from_dict(json.loads(self.config_json))


@dataclass
class BuildResult:
    """Outcome of :func:`build`."""

    url: str
    n_pairs: int
    n_shards: int
    shards_written: int
    seconds: float

    def __str__(self) -> str:
        rate = self.n_pairs / self.seconds if self.seconds > 0 and self.shards_written == self.n_shards else float("nan")
        return (f"{self.url}: {self.n_pairs} pairs in {self.n_shards} shards; wrote {self.shards_written} "
                f"shards in {self.seconds:.1f} s" + (f" ({rate:.0f} pairs/s)" if np.isfinite(rate) else ""))


# --------------------------------------------------------------------------------------
# hosts
# --------------------------------------------------------------------------------------
def _host_ids_for(pair_ids: np.ndarray, plan: BuildPlan) -> np.ndarray:
    """Ingested hosts are assigned to pairs through a seeded permutation, so the cube order is
    random with respect to the (usually sky-sorted) host catalogue; pairs beyond the number of
    hosts reuse hosts in a second permutation cycle."""
    perm = np.random.default_rng(np.random.SeedSequence([plan.host_permutation_seed, 0x4057])).permutation(plan.n_hosts)
    return perm[np.asarray(pair_ids) % plan.n_hosts]


def _hosts(pair_ids: np.ndarray, cfg: RunConfig, plan: BuildPlan) -> dict[str, np.ndarray]:
    if plan.hosts_url:
        cutouts = import_module("lensarray.hosts.cutouts")
        return cutouts.HostCube(plan.hosts_url).take(_host_ids_for(pair_ids, plan))
    from .hosts.synthetic import synthetic_hosts

    return synthetic_hosts(pair_ids, cfg)


def _host_properties(pair_ids: np.ndarray, cfg: RunConfig, plan: BuildPlan) -> dict[str, np.ndarray]:
    if plan.hosts_url:
        cutouts = import_module("lensarray.hosts.cutouts")
        return cutouts.HostCube(plan.hosts_url).properties(_host_ids_for(pair_ids, plan))
    from .hosts.synthetic import synthetic_host_properties

    return synthetic_host_properties(pair_ids, cfg)


# --------------------------------------------------------------------------------------
# one batch of pairs
# --------------------------------------------------------------------------------------
def render_physical(pair_ids: np.ndarray, cfg: RunConfig, plan: BuildPlan | None = None) -> dict[str, Any]:
    """The expensive, brightness-free part of :func:`render_pairs`: hosts, parameters, unit-flux
    arcs (and hard-negative features), magnifications. Depends on neither ``[brightness]``,
    ``[core_mask]`` nor ``[diagnostics]``, so a remedy study renders it once per set of priors."""
    from .sampling import sample_params

    plan = plan or BuildPlan(config_json=cfg.to_json())
    pair_ids = np.asarray(pair_ids, dtype=np.int64)
    hosts = _hosts(pair_ids, cfg, plan)
    params = sample_params(pair_ids, cfg, hosts)
    unit_arcs, mu = _unit_arcs(params, cfg)
    negative_kind = np.zeros(pair_ids.size, dtype=np.int8)
    negatives = _optional("lensarray.negatives")
    if negatives is not None and cfg.negatives.fraction > 0:
        negative_kind = negatives.draw_negative_kinds(pair_ids, cfg).astype(np.int8)
        is_neg = negative_kind > 0
        if is_neg.any():
            feats = negatives.render_negative_features(pair_ids, negative_kind, params, cfg)
            unit_arcs[is_neg] = feats[is_neg]
            mu = mu.copy()
            mu[is_neg] = np.nan  # not a lens: no magnification
    return {"pair_ids": pair_ids, "hosts": hosts, "params": params, "unit_arcs": unit_arcs, "mu": mu,
            "negative_kind": negative_kind}


def _unit_arcs(params: dict, cfg: RunConfig):
    from .physics.render import render_unit_arcs

    return render_unit_arcs(params, size=cfg.run.size, pixel_scale=cfg.run.pixel_scale, bands=tuple(cfg.run.bands),
                            supersample=cfg.render.supersample, tolerance=cfg.render.tolerance,
                            psf_model=cfg.psf.model, psf_beta=cfg.psf.moffat_beta)


def _brighten(unit_arcs: np.ndarray, params: dict, invvar: np.ndarray, cfg: RunConfig) -> dict[str, np.ndarray]:
    """Scale unit arcs to their brightness, apply the core-mask policy, measure the label signal.

    The label signal is ``d = lens - control``: the stored arc after the policy (``apply_to =
    "arc"``), or ``arc * w`` when the control carries the core light (``"control"``). Both S/N
    definitions are linear in flux, so a target set on ``d`` (``snr_calibrate = "stored"``) is met
    exactly; ``"unmasked"`` sets it on the arc before the policy.
    """
    from .derived import aperture_snr, arc_statistics, matched_filter_snr
    from .masking import core_mask_weights
    from .physics.photometry import mag_to_nmgy, nmgy_to_mag
    from .sampling import calibrate_flux

    r, cm, B = cfg.run, cfg.core_mask, cfg.brightness
    bands = list(r.bands)
    snr_band = bands.index(B.snr_band)
    n = unit_arcs.shape[0]
    w = None if cm.policy == "none" else core_mask_weights(r.size, cm.policy, cm.radius, cm.width)
    lens_px = (np.asarray(params.get("lens_x", np.zeros(n)), np.float64) / r.pixel_scale,
               np.asarray(params.get("lens_y", np.zeros(n)), np.float64) / r.pixel_scale)
    theta_px = np.asarray(params["theta_e"], np.float64) / r.pixel_scale
    half_px = B.aperture_halfwidth / r.pixel_scale
    observed = invvar > 0

    def snr_of(signal_band: np.ndarray, iv_band: np.ndarray, definition: str) -> np.ndarray:
        if definition == "aperture":
            return aperture_snr(signal_band, iv_band, theta_px, half_px, centre=lens_px)
        return matched_filter_snr(signal_band, iv_band)

    color = np.asarray(params["src_color"], dtype=np.float64)  # (n, nb) mag relative to the S/N band
    if B.mode == "snr":
        stored = B.snr_calibrate == "stored" or (B.snr_calibrate == "auto" and cm.policy != "none")
        rel = 10.0 ** (-0.4 * color[:, snr_band])  # S/N band flux / S/N-band flux (1 unless colours shift)
        unit_sn = unit_arcs[:, snr_band].astype(np.float64) * rel[:, None, None]
        if stored and w is not None:
            unit_sn = unit_sn * w
        unit_sn = np.where(observed[:, snr_band], unit_sn, 0.0)
        unit_snr = snr_of(unit_sn, invvar[:, snr_band], B.snr_definition)
        flux_ref = calibrate_flux(None, None, params["target_snr"], snr_band, unit_snr=unit_snr)
        src_mag = nmgy_to_mag(flux_ref, r.zero_point)[:, None] + color
    else:
        src_mag = np.asarray(params["src_mag"], dtype=np.float64)
    flux = mag_to_nmgy(src_mag, r.zero_point)  # (n, nb)
    arc = unit_arcs * np.nan_to_num(flux, nan=0.0)[:, :, None, None].astype(np.float32)
    if w is not None and cm.apply_to == "arc":
        arc = arc * w
    # where there is no data (invvar 0) nothing is observed: injecting light there would make
    # lens and control stamps differ in dead pixels, a label leak
    arc = np.where(observed, arc, np.float32(0.0))
    if r.null:
        arc = arc * np.float32(0.0)  # null injection: only the arc changes
    arc = arc.astype(np.float32)
    signal = arc if (w is None or cm.apply_to == "arc") else arc * w  # d = lens - control
    centre = lens_px if cfg.diagnostics.core_centre == "lens" else None
    stats = arc_statistics(arc, invvar, core_radius=cfg.diagnostics.core_radius, snr_band_index=snr_band,
                           core_centre=centre)
    stats["arc_snr"] = snr_of(signal[:, snr_band], invvar[:, snr_band], "matched_filter").astype(np.float32)
    stats["arc_snr_aperture"] = snr_of(signal[:, snr_band], invvar[:, snr_band], "aperture").astype(np.float32)
    stats["arc"], stats["src_mag"] = arc, src_mag
    return stats


def _below_floor(stats: dict, negative_kind: np.ndarray, cfg: RunConfig) -> np.ndarray:
    """Lens injections whose stored S/N (the configured definition) is below the floor (or NaN)."""
    B = cfg.brightness
    if B.snr_floor <= 0 or cfg.run.null:
        return np.zeros(negative_kind.shape, bool)
    snr = stats["arc_snr_aperture" if B.snr_definition == "aperture" else "arc_snr"]
    return (negative_kind == 0) & ~(snr >= B.snr_floor)


def render_pairs(pair_ids: np.ndarray, cfg: RunConfig, plan: BuildPlan | None = None, *,
                 physical: dict | None = None) -> dict[str, np.ndarray]:
    """Every cube variable for ``pair_ids`` (numpy arrays, first axis = pair).

    Deterministic: the result for a pair depends only on the configuration and its id, never on
    which other pairs are rendered with it. Used by the shard writer, ``verify`` and tests.
    ``physical`` is :func:`render_physical`'s output for the same pairs and priors (reused by
    the remedy study, whose remedies differ only in brightness, core mask and diagnostics).
    """
    from .derived import inner_image_radius_px

    plan = plan or BuildPlan(config_json=cfg.to_json())
    pair_ids = np.asarray(pair_ids, dtype=np.int64)
    phys = physical if physical is not None else render_physical(pair_ids, cfg, plan)
    n = pair_ids.size
    r = cfg.run
    hosts, negative_kind = phys["hosts"], phys["negative_kind"].copy()
    params = {k: np.array(v, copy=True) for k, v in phys["params"].items()}
    unit_arcs, mu = phys["unit_arcs"], np.array(phys["mu"], copy=True)
    stats = _brighten(unit_arcs, params, hosts["invvar"], cfg)

    below = _below_floor(stats, negative_kind, cfg)
    if below.any() and cfg.brightness.snr_floor_action == "redraw":
        from .sampling import sample_params

        # a lens with no visible arc is re-drawn (lens, source, brightness) from the pair's own
        # re-draw streams, so the result still depends only on (seed, pair id)
        for attempt in range(1, cfg.brightness.snr_floor_redraws + 1):
            idx = np.flatnonzero(below)
            if idx.size == 0:
                break
            sub_hosts = {"psf_fwhm": np.asarray(hosts["psf_fwhm"])[idx]}
            sub = sample_params(pair_ids[idx], cfg, sub_hosts, attempt=attempt)
            sub_arcs, sub_mu = _unit_arcs(sub, cfg)
            sub_stats = _brighten(sub_arcs, sub, np.asarray(hosts["invvar"])[idx], cfg)
            ok = ~_below_floor(sub_stats, negative_kind[idx], cfg)
            take = idx[ok]
            for k in params:
                if k in sub:
                    params[k][take] = sub[k][ok]
            for k in stats:
                stats[k][take] = sub_stats[k][ok]
            mu[take] = sub_mu[ok]
            below[take] = False
    # never silently a "lens" without an arc: what stays below the floor is labelled a non-lens
    negative_kind = np.where(below, np.int8(NEGATIVE_KINDS.index("below_snr_floor")), negative_kind).astype(np.int8)

    inner = inner_image_radius_px(params["theta_e"], params["src_x"], params["src_y"], pixel_scale=r.pixel_scale,
                                  lens_x=params.get("lens_x", 0.0), lens_y=params.get("lens_y", 0.0))
    inner = np.where(phys["negative_kind"] > 0, np.nan, inner)

    region = np.full(n, -1, np.int32)
    split = np.full(n, -1, np.int8)
    if plan.split_plan_json:
        splits = import_module("lensarray.splits")
        region, split = splits.SplitPlan.from_json(plan.split_plan_json).assign(
            hosts["ra"], hosts["dec"], hosts["brickname"])

    out: dict[str, Any] = {
        "host": hosts["host"], "invvar": hosts["invvar"], "maskbits": hosts["maskbits"], "arc": stats["arc"],
        "src_mag": stats["src_mag"], "psf_fwhm": params["psf_fwhm"],
        "psf_beta": params.get("psf_beta", np.full(n, np.nan)),
        "arc_flux": stats["arc_flux"], "arc_snr": stats["arc_snr"], "arc_snr_aperture": stats["arc_snr_aperture"],
        "core_flux_frac": stats["core_flux_frac"],
        "mu": mu, "inner_image_r": inner, "region": region, "split": split, "hard_negative": negative_kind,
    }
    for name in ("theta_e", "lens_e1", "lens_e2", "lens_x", "lens_y", "shear_g1", "shear_g2",
                 "src_x", "src_y", "src_reff", "src_n", "src_e1", "src_e2"):
        out[name] = params.get(name, np.zeros(n))
    for name in ("ra", "dec", "brickname", "psfdepth", "host_mag", "host_reff", "host_id"):
        out[name] = hosts.get(name, np.full(n, VARIABLES[name].fill))
    return {k: np.asarray(v).astype(VARIABLES[k].dtype, copy=False) for k, v in out.items()}


# --------------------------------------------------------------------------------------
# planning (pure: all pairs, no pixels)
# --------------------------------------------------------------------------------------
#: Pairs drawn at once while planning the splits (bounds the planner's temporaries).
_PLAN_BLOCK = 16384


def plan_build(cfg: RunConfig, *, hosts_url: str = "", storage_options: dict | None = None) -> BuildPlan:
    """Everything decided once for the whole cube before any shard runs: the split plan over all
    pairs (cheap host properties and parameter draws, no pixels) and the host assignment."""
    plan = BuildPlan(config_json=cfg.to_json(), hosts_url=hosts_url, host_permutation_seed=cfg.run.seed)
    if hosts_url:
        cutouts = import_module("lensarray.hosts.cutouts")
        plan.n_hosts = int(cutouts.HostCube(hosts_url).n_hosts)
        if plan.n_hosts == 0:
            raise ConfigError(f"hosts.source = {hosts_url!r}: the host cube holds no hosts")
    splits = _optional("lensarray.splits")
    if splits is not None:
        from .sampling import sample_params

        rb = list(cfg.run.bands).index("r") if "r" in cfg.run.bands else 0
        # in blocks: only the ~10 columns the split planner reads are kept for every pair
        # (~100 bytes a pair), never the full host and parameter draws (every draw comes from the
        # pair's own stream, so the blocks do not change any value)
        parts = []
        for a in range(0, cfg.run.n_pairs, _PLAN_BLOCK):
            ids = np.arange(a, min(a + _PLAN_BLOCK, cfg.run.n_pairs), dtype=np.int64)
            props = _host_properties(ids, cfg, plan)
            params = sample_params(ids, cfg, props)
            psf_r = np.asarray(props["psf_fwhm"])[:, rb]
            part = {"ra": props["ra"], "dec": props["dec"], "brickname": props["brickname"],
                    "host_id": props["host_id"], "psf_fwhm_r": psf_r,
                    "psfdepth_r": np.asarray(props["psfdepth"])[:, rb], "theta_e": params["theta_e"],
                    "theta_e_over_psf": np.asarray(params["theta_e"]) / psf_r}
            if "target_snr" in params:
                part["target_snr"] = params["target_snr"]
            parts.append({k: np.asarray(v) for k, v in part.items()})
        table = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        plan.split_plan_json = splits.plan_splits(table, cfg).to_json()
    return plan


# --------------------------------------------------------------------------------------
# execution
# --------------------------------------------------------------------------------------
def _write_one_shard(url: str, storage_options: dict | None, shard_index: int, start: int, stop: int,
                     plan: BuildPlan) -> int:
    from .store import open_group, write_shard

    cfg = plan.cfg
    arrays = render_pairs(np.arange(start, stop, dtype=np.int64), cfg, plan)
    write_shard(open_group(url, storage_options), shard_index, start, stop, arrays)
    return shard_index


def config_of_store(url: str, storage_options: dict | None = None) -> RunConfig:
    """The run configuration recorded in a cube's attrs."""
    from .store import open_group

    from .cube import check_schema_version

    attrs = dict(open_group(url, storage_options, mode="r").attrs)
    check_schema_version(attrs, where=url, for_build=True)
    return config_from_dict(json.loads(attrs["config"]))


def _progress_bar(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="shard", file=sys.stderr,
                mininterval=0.5, dynamic_ncols=True)


def build(cfg: RunConfig, out: str, *, overwrite: bool = False, resume: bool = False, client=None,
          progress: bool = True, storage_options: dict | None = None,
          on_shard_done: Callable[[int], None] | None = None) -> BuildResult:
    """Build (or finish) a cube at ``out``.

    Parameters
    ----------
    cfg
        Run configuration; validated completely before anything is touched.
    out
        Local path or fsspec URL of the Zarr store.
    overwrite
        Replace an existing store. Without it (and without ``resume``) an existing store is
        refused before any work and left untouched.
    resume
        Finish an interrupted build: only shards without a done marker are rendered. The stored
        configuration must equal ``cfg`` (apart from cluster settings).
    client
        A ``distributed.Client``; ``None`` runs every shard synchronously in this process.
    progress
        Show a progress bar (works with and without a distributed client).
    storage_options
        fsspec options for the destination (never written into the cube).
    """
    from .store import (StoreExistsError, completed_shards, create_store, cube_attrs, open_group,
                        shard_bounds, store_exists)

    t0 = time.perf_counter()
    cfg.validate()
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume exclude each other: choose one")
    from .storage import check_destination

    check_destination(out, storage_options)
    exists = store_exists(out, storage_options)
    hosts_url = "" if cfg.hosts.source == "synthetic" else cfg.hosts.source
    bounds = shard_bounds(cfg.run.n_pairs, cfg.run.shard_pairs)

    if resume and exists:
        stored = config_of_store(out, storage_options)
        mine, theirs = cfg.to_dict(), stored.to_dict()
        mine.pop("cluster"), theirs.pop("cluster")
        if mine != theirs:
            diff = [f"{s}.{k}" for s in mine for k in mine[s] if theirs.get(s, {}).get(k) != mine[s][k]]
            raise ConfigError(f"--resume: the configuration differs from the stored one in {', '.join(diff)}")
        plan_json = dict(open_group(out, storage_options, mode="r").attrs).get("split_plan", "")
        plan = BuildPlan(config_json=cfg.to_json(), split_plan_json=plan_json, hosts_url=hosts_url,
                         host_permutation_seed=cfg.run.seed)
        if hosts_url:
            plan.n_hosts = int(import_module("lensarray.hosts.cutouts").HostCube(hosts_url).n_hosts)
    else:
        if exists and not overwrite:
            raise StoreExistsError(f"{out} already exists: pass --overwrite to replace it or --resume to finish it")
        plan = plan_build(cfg, hosts_url=hosts_url, storage_options=storage_options)
        create_store(out, n_pairs=cfg.run.n_pairs, bands=list(cfg.run.bands), size=cfg.run.size,
                     chunk_pairs=cfg.run.chunk_pairs, shard_pairs=cfg.run.shard_pairs,
                     attrs=cube_attrs(cfg, split_plan_json=plan.split_plan_json),
                     storage_options=storage_options, overwrite=overwrite)

    done = completed_shards(open_group(out, storage_options))
    todo = [i for i in range(len(bounds)) if not done[i]]
    bar = _progress_bar(len(bounds), progress, f"build {out}")
    bar.update(len(bounds) - len(todo))
    written = 0
    try:
        if client is None:
            for i in todo:
                _write_one_shard(out, storage_options, i, *bounds[i], plan)
                written += 1
                bar.update(1)
                if on_shard_done:
                    on_shard_done(i)
        else:
            from distributed import as_completed

            futures = [client.submit(_write_one_shard, out, storage_options, i, *bounds[i], plan,
                                     key=f"lensarray-shard-{i}-{cfg.run.seed}", pure=False, retries=2)
                       for i in todo]
            for fut in as_completed(futures):
                i = fut.result()
                written += 1
                bar.update(1)
                if on_shard_done:
                    on_shard_done(i)
    finally:
        bar.close()
    return BuildResult(url=out, n_pairs=cfg.run.n_pairs, n_shards=len(bounds), shards_written=written,
                       seconds=time.perf_counter() - t0)
