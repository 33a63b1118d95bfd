"""Build a cube: config -> hosts -> params -> render arcs -> Zarr shards.

The pipeline orchestrates; it knows no lens equation. :func:`lazy_cube` plans eagerly (splits,
host assignment: cheap, no pixels) and returns the cube as ``xr.map_blocks`` of the per-pair
kernel :func:`render_pairs` over the template, so nothing renders until computed and any
selection renders only its blocks. :func:`build` is that lazy cube handed to the one writer,
:func:`lensarray.store.write_cube`, which owns whole shards (a retried task rewrites identical
bytes: every random number comes from ``(seed, pair id, stream)``) and writes a done marker with
a content digest after the data, so resume is exact and verification can trust nothing else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib import import_module
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from . import conventions
from .config import ConfigError, RunConfig, config_from_dict
from .cube import NEGATIVE_KINDS, VARIABLES

__all__ = [
    "render_pairs",
    "render_physical",
    "lazy_cube",
    "build",
    "stored_plan",
    "plan_build",
    "BuildPlan",
    "BuildResult",
    "config_of_store",
]


@dataclass
class BuildPlan:
    """What every shard task needs besides its pair ids (small and picklable)."""

    config_json: str
    split_plan_json: str = ""
    hosts_url: str = ""
    host_permutation_seed: int = 0
    n_hosts: int = 0
    #: fsspec options to read the host cube (from the caller's flags; never stored in the cube)
    hosts_storage_options: dict | None = None

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
    repaired: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        rate = (
            self.n_pairs / self.seconds if self.seconds > 0 and self.shards_written == self.n_shards else float("nan")
        )
        fixed = f" (repaired shards {self.repaired})" if self.repaired else ""
        return (
            f"{self.url}: {self.n_pairs} pairs in {self.n_shards} shards; wrote {self.shards_written} "
            f"shards{fixed} in {self.seconds:.1f} s" + (f" ({rate:.0f} pairs/s)" if np.isfinite(rate) else "")
        )


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
        return cutouts.HostCube(plan.hosts_url, plan.hosts_storage_options).take(_host_ids_for(pair_ids, plan))
    from .hosts.synthetic import synthetic_hosts

    return synthetic_hosts(pair_ids, cfg)


def _host_properties(
    pair_ids: np.ndarray,
    cfg: RunConfig,
    plan: BuildPlan,
    fields: tuple[str, ...] | None = None,
    bands: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Host facts of ``pair_ids``; synthetic hosts draw only ``fields`` and the per-band ones
    only for ``bands`` (default all)."""
    if plan.hosts_url:
        cutouts = import_module("lensarray.hosts.cutouts")
        return cutouts.HostCube(plan.hosts_url, plan.hosts_storage_options).properties(_host_ids_for(pair_ids, plan))
    from .hosts.synthetic import synthetic_host_properties

    return synthetic_host_properties(pair_ids, cfg, fields=fields, bands=bands)


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
    if cfg.negatives.fraction > 0:
        from . import negatives

        negative_kind = negatives.draw_negative_kinds(pair_ids, cfg).astype(np.int8)
        is_neg = negative_kind > 0
        if is_neg.any():
            feats = negatives.render_negative_features(pair_ids, negative_kind, params, cfg)
            unit_arcs[is_neg] = feats[is_neg]
            mu = mu.copy()
            mu[is_neg] = np.nan  # not a lens: no magnification
    return {
        "pair_ids": pair_ids,
        "hosts": hosts,
        "params": params,
        "unit_arcs": unit_arcs,
        "mu": mu,
        "negative_kind": negative_kind,
    }


def _unit_arcs(params: dict, cfg: RunConfig):
    from .physics.render import render_unit_arcs

    return render_unit_arcs(
        params,
        size=cfg.run.size,
        pixel_scale=cfg.run.pixel_scale,
        bands=tuple(cfg.run.bands),
        supersample=cfg.render.supersample,
        tolerance=cfg.render.tolerance,
        psf_model=cfg.psf.model,
        psf_beta=cfg.psf.moffat_beta,
    )


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
    lens_px = (
        np.asarray(params.get("lens_x", np.zeros(n)), np.float64) / r.pixel_scale,
        np.asarray(params.get("lens_y", np.zeros(n)), np.float64) / r.pixel_scale,
    )
    theta_px = np.asarray(params["theta_e"], np.float64) / r.pixel_scale
    half_px = B.aperture_halfwidth / r.pixel_scale
    observed = invvar > 0
    unobserved = ~observed
    iv_sn = np.asarray(invvar[:, snr_band], dtype=np.float64)  # converted once for every S/N below

    def snr_of(signal_band: np.ndarray, definition: str) -> np.ndarray:
        if definition == "aperture":
            return aperture_snr(signal_band, iv_sn, theta_px, half_px, centre=lens_px)
        return matched_filter_snr(signal_band, iv_sn)

    color = np.asarray(params["src_color"], dtype=np.float64)  # (n, nb) mag relative to the S/N band
    if B.mode == "snr":
        stored = B.snr_calibrate == "stored" or (B.snr_calibrate == "auto" and cm.policy != "none")
        rel = 10.0 ** (-0.4 * color[:, snr_band])  # S/N band flux / S/N-band flux (1 unless colours shift)
        unit_sn = unit_arcs[:, snr_band].astype(np.float64)
        unit_sn *= rel[:, None, None]
        if stored and w is not None:
            unit_sn *= w
        np.copyto(unit_sn, 0.0, where=unobserved[:, snr_band])
        unit_snr = snr_of(unit_sn, B.snr_definition)
        flux_ref = calibrate_flux(unit_arcs, invvar, params["target_snr"], snr_band, unit_snr=unit_snr)
        src_mag = nmgy_to_mag(flux_ref, r.zero_point)[:, None] + color
    else:
        src_mag = np.asarray(params["src_mag"], dtype=np.float64)
    flux = mag_to_nmgy(src_mag, r.zero_point)  # (n, nb)
    # one new array, then every step in place (the same float operations, in the same order, as
    # the chain of temporaries they replace: the stored arc is unchanged bit for bit)
    arc = unit_arcs * np.nan_to_num(flux, nan=0.0)[:, :, None, None].astype(np.float32)
    if w is not None and cm.apply_to == "arc":
        arc *= w
    # where there is no data (invvar 0) nothing is observed: injecting light there would make
    # lens and control stamps differ in dead pixels, a label leak
    np.copyto(arc, 0.0, where=unobserved)
    if r.null:
        arc *= np.float32(0.0)  # null injection: only the arc changes
    arc = arc.astype(np.float32, copy=False)
    arc_is_signal = w is None or cm.apply_to == "arc"
    signal_sn = arc[:, snr_band] if arc_is_signal else arc[:, snr_band] * w  # d = lens - control
    centre = lens_px if cfg.diagnostics.core_centre == "lens" else None
    stats = arc_statistics(
        arc, invvar, core_radius=cfg.diagnostics.core_radius, snr_band_index=snr_band, core_centre=centre
    )
    if not arc_is_signal:  # arc_statistics measured the stored arc, which is the signal otherwise
        stats["arc_snr"] = snr_of(signal_sn, "matched_filter").astype(np.float32)
    stats["arc_snr_aperture"] = snr_of(signal_sn, "aperture").astype(np.float32)
    stats["arc"], stats["src_mag"] = arc, src_mag
    return stats


def _below_floor(stats: dict, negative_kind: np.ndarray, cfg: RunConfig) -> np.ndarray:
    """Lens injections whose stored S/N (the configured definition) is below the floor (or NaN)."""
    B = cfg.brightness
    if B.snr_floor <= 0 or cfg.run.null:
        return np.zeros(negative_kind.shape, bool)
    snr = stats["arc_snr_aperture" if B.snr_definition == "aperture" else "arc_snr"]
    return (negative_kind == 0) & ~(snr >= B.snr_floor)


def render_pairs(
    pair_ids: np.ndarray, cfg: RunConfig, plan: BuildPlan | None = None, *, physical: dict | None = None
) -> dict[str, np.ndarray]:
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

    inner = inner_image_radius_px(
        params["theta_e"],
        params["src_x"],
        params["src_y"],
        pixel_scale=r.pixel_scale,
        lens_x=params.get("lens_x", 0.0),
        lens_y=params.get("lens_y", 0.0),
    )
    inner = np.where(phys["negative_kind"] > 0, np.nan, inner)

    region = np.full(n, -1, np.int32)
    split = np.full(n, -1, np.int8)
    if plan.split_plan_json:
        splits = import_module("lensarray.splits")
        region, split = splits.SplitPlan.from_json(plan.split_plan_json).assign(
            hosts["ra"], hosts["dec"], hosts["brickname"]
        )

    out: dict[str, Any] = {
        "host": hosts["host"],
        "invvar": hosts["invvar"],
        "maskbits": hosts["maskbits"],
        "arc": stats["arc"],
        "src_mag": stats["src_mag"],
        "psf_fwhm": params["psf_fwhm"],
        "psf_beta": params.get("psf_beta", np.full(n, np.nan)),
        "arc_flux": stats["arc_flux"],
        "arc_snr": stats["arc_snr"],
        "arc_snr_aperture": stats["arc_snr_aperture"],
        "core_flux_frac": stats["core_flux_frac"],
        "mu": mu,
        "inner_image_r": inner,
        "region": region,
        "split": split,
        "hard_negative": negative_kind,
    }
    for name in (
        "theta_e",
        "lens_e1",
        "lens_e2",
        "lens_x",
        "lens_y",
        "shear_g1",
        "shear_g2",
        "src_x",
        "src_y",
        "src_reff",
        "src_n",
        "src_e1",
        "src_e2",
    ):
        out[name] = params.get(name, np.zeros(n))
    for name in ("ra", "dec", "brickname", "psfdepth", "host_mag", "host_reff", "host_id"):
        out[name] = hosts.get(name, np.full(n, VARIABLES[name].fill))
    return {k: np.asarray(v).astype(VARIABLES[k].dtype, copy=False) for k, v in out.items()}


# --------------------------------------------------------------------------------------
# planning (pure: all pairs, no pixels)
# --------------------------------------------------------------------------------------
#: Pairs drawn at once while planning the splits (bounds the planner's temporaries).
_PLAN_BLOCK = 16384


def plan_build(
    cfg: RunConfig, *, hosts_url: str = "", storage_options: dict | None = None, progress: bool = False
) -> BuildPlan:
    """Everything decided once for the whole cube before any shard runs: the split plan over all
    pairs (cheap host properties and parameter draws, no pixels; a progress bar on stderr with
    ``progress``) and the host assignment."""
    plan = BuildPlan(
        config_json=cfg.to_json(),
        hosts_url=hosts_url,
        host_permutation_seed=cfg.run.seed,
        hosts_storage_options=storage_options,
    )
    if hosts_url:
        cutouts = import_module("lensarray.hosts.cutouts")
        plan.n_hosts = int(cutouts.HostCube(hosts_url, storage_options).n_hosts)
        if plan.n_hosts == 0:
            raise ConfigError(f"hosts.source = {hosts_url!r}: the host cube holds no hosts")
    from . import splits

    split_plan = splits.plan_splits_over_pairs(
        cfg,
        lambda ids: _host_properties(ids, cfg, plan, splits.planning_fields(cfg), (splits.planning_band(cfg),)),
        block=_PLAN_BLOCK,
        progress=progress,
    )
    plan.split_plan_json = split_plan.to_json()
    return plan


# --------------------------------------------------------------------------------------
# the lazy cube
# --------------------------------------------------------------------------------------
def _render_block(pair_ids: np.ndarray, plan: BuildPlan) -> dict[str, np.ndarray]:
    """The per-pair kernel over one block of pairs (one dask task; every variable at once), with
    the configured ``[quantize]`` applied: the lazy cube holds the values a build stores.

    The shard writer applies the same record again (it also takes arrays straight from
    :func:`render_pairs`); both operations are idempotent, so the stored bytes do not change.
    """
    from .quantize import apply_quantization, quantization_attrs

    cfg = plan.cfg
    arrays = render_pairs(np.asarray(pair_ids, dtype=np.int64), cfg, plan)  # looked up at call time
    return apply_quantization(arrays, quantization_attrs(cfg))


def _variable_of(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    return arrays[name]


def _hosts_source(cfg: RunConfig, hosts) -> tuple[RunConfig, str]:
    """The configuration with ``hosts.source`` set from ``hosts`` (a HostCube, a URL or None)."""
    if hosts is not None:
        url = str(getattr(hosts, "url", hosts))
        if not url:
            raise ConfigError("hosts = '': allowed a host cube URL or a HostCube made by `lensarray ingest`")
        cfg = cfg.replace(**{"hosts.source": url})
    return cfg, ("" if cfg.hosts.source == "synthetic" else cfg.hosts.source)


def _lazy_from_plan(cfg: RunConfig, plan: BuildPlan, chunk_pairs: int | None = None) -> xr.Dataset:
    from dask.base import tokenize

    from .cube import template_attrs, template_coords
    from .physics.blas import single_threaded_blas
    from .store import cube_attrs

    # here, in the caller's thread: OpenBLAS takes a thread count only from the main thread, and a
    # threaded scheduler renders the blocks in pool threads
    single_threaded_blas()

    r = cfg.run
    block = int(chunk_pairs or r.shard_pairs)
    sizes = {"band": len(r.bands), "y": r.size, "x": r.size}
    # dask.array.map_blocks, not xarray.map_blocks: xarray's builds the graph block by block in
    # Python (measured 9 s for 10^6 pairs in 3907 blocks); a blockwise layer is symbolic, so
    # construction does not grow with the number of blocks. One render task per block returns
    # every variable; each variable is a blockwise getitem of it (keys carry the plan's token).
    ids = da.arange(r.n_pairs, chunks=block, dtype=np.int64)
    token = tokenize(plan, block, r.n_pairs)
    rendered = da.map_blocks(
        _render_block, ids, plan=plan, dtype=object, meta=np.empty((0,), dtype=object), name=f"lensarray-render-{token}"
    )
    data_vars = {}
    for name, spec in VARIABLES.items():
        rest = tuple(sizes[d] for d in spec.dims[1:])
        data = da.map_blocks(
            _variable_of,
            rendered,
            name,
            dtype=np.dtype(spec.dtype),
            chunks=(ids.chunks[0], *((s,) for s in rest)),
            new_axis=list(range(1, len(rest) + 1)) or None,
            meta=np.empty((0,) * len(spec.dims), dtype=np.dtype(spec.dtype)),
            name=f"lensarray-{name}-{token}",
        )
        data_vars[name] = xr.Variable(spec.dims, data, attrs={"units": spec.units, "description": spec.description})
    coords = {"pair": np.arange(r.n_pairs, dtype=np.int64), **template_coords(list(r.bands), r.size)}
    attrs = {**template_attrs(), **cube_attrs(cfg, split_plan_json=plan.split_plan_json)}
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    conventions.apply(ds, VARIABLES)  # the same CF attributes as the template
    return ds


def lazy_cube(cfg: RunConfig, *, hosts=None, chunk_pairs: int | None = None, progress: bool = False) -> xr.Dataset:
    """The cube of ``cfg`` as a lazy ``xarray.Dataset``: nothing renders until it is computed.

    Every variable is a dask array made by ``map_blocks`` of the per-pair kernel
    (:func:`render_pairs`) over the pair axis of the cube template (one render task per block). Planning (the split plan over all pairs, the
    host assignment) runs now, eagerly and without pixels; rendering runs per block when
    computed, and a selection (``ds.isel(pair=...)``) renders only the blocks it touches.
    Values equal, bit for bit, the cube ``lensarray build`` writes, whatever the chunking, also
    with ``[quantize]`` on (the quantised host and arc planes, as stored).

    Parameters
    ----------
    cfg
        Run configuration (validated here).
    hosts
        ``None`` (``cfg.hosts.source``), an ingested host cube URL, or a
        :class:`lensarray.hosts.cutouts.HostCube`; recorded as ``hosts.source`` in the attrs.
    chunk_pairs
        Pairs per dask block (default ``run.shard_pairs``, the store's write unit).
    progress
        Show a progress bar of the split planning on stderr.

    Returns
    -------
    xarray.Dataset
        The full schema (:data:`lensarray.cube.VARIABLES`) with the build's attrs; write it with
        ``ds.lensarray.to_zarr(url)``.
    """
    cfg, hosts_url = _hosts_source(cfg, hosts)
    cfg.validate()
    if chunk_pairs is not None and int(chunk_pairs) < 1:
        raise ConfigError(f"chunk_pairs = {chunk_pairs}: allowed >= 1 (pairs per dask block)")
    return _lazy_from_plan(cfg, plan_build(cfg, hosts_url=hosts_url, progress=progress), chunk_pairs)


# --------------------------------------------------------------------------------------
# build = lazy cube, then the one writer
# --------------------------------------------------------------------------------------
def config_of_store(url: str, storage_options: dict | None = None) -> RunConfig:
    """The run configuration recorded in a cube's attrs."""
    from .store import stored_cube_attrs

    return config_from_dict(json.loads(stored_cube_attrs(url, storage_options)["config"]))


def stored_plan(
    cfg: RunConfig, attrs: dict, *, storage_options: dict | None = None, hosts_url: str | None = None
) -> BuildPlan:
    """The plan a cube was built with: ``cfg`` and the split plan recorded in its attrs (the
    recorded one, not a re-plan, so a resume or re-render reproduces the stored pairs exactly).

    ``hosts_url`` replaces the host cube named in ``cfg`` (``verify`` passes the one its caller
    gave: it never opens a URL named inside the cube it checks); ``storage_options`` reach it.
    """
    if hosts_url is None:
        _, hosts_url = _hosts_source(cfg, None)
    plan = BuildPlan(
        config_json=cfg.to_json(),
        split_plan_json=attrs.get("split_plan", ""),
        hosts_url=hosts_url,
        host_permutation_seed=cfg.run.seed,
        hosts_storage_options=storage_options,
    )
    if hosts_url:
        plan.n_hosts = int(import_module("lensarray.hosts.cutouts").HostCube(hosts_url, storage_options).n_hosts)
    return plan


def build(
    cfg: RunConfig,
    out: str,
    *,
    overwrite: bool = False,
    resume: bool = False,
    repair: bool = False,
    client=None,
    progress: bool = False,
    storage_options: dict | None = None,
    on_shard_done: Callable[[int], None] | None = None,
) -> BuildResult:
    """Build (or finish) a cube at ``out``: :func:`lazy_cube`, then :func:`lensarray.store.write_cube`.

    Parameters
    ----------
    cfg
        Run configuration; validated completely (and the hosts opened, the splits planned)
        before anything at ``out`` is touched.
    out
        Local path or fsspec URL of the Zarr store.
    overwrite
        Replace an existing lensarray cube. Without it (and without ``resume``) an existing
        store is refused before any work and left untouched; anything that is not a lensarray
        cube is never removed.
    resume
        Finish an interrupted build: only shards without a done marker are rendered. The stored
        configuration must equal ``cfg`` (apart from cluster settings).
    repair
        With ``resume``: first check every finished shard against its digest and rewrite the
        shards that fail (missing, swapped, stale or truncated chunks).
    client
        A ``distributed.Client``; ``None`` runs every shard synchronously in this process.
    progress
        Show a progress bar on stderr (works with and without a distributed client).
    storage_options
        fsspec options for the destination (never written into the cube).
    on_shard_done
        Called with each shard index once its done marker is written.
    """
    from .storage import check_destination
    from .store import StoreExistsError, StoreLock, nothing_to_resume, store_exists, stored_cube_attrs, write_cube

    t0 = time.perf_counter()
    cfg.validate()
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume exclude each other: choose one")
    if repair and not resume:
        raise ConfigError("--repair needs --resume (it rewrites the bad shards of an existing cube)")
    check_destination(out, storage_options)
    cfg, hosts_url = _hosts_source(cfg, None)
    exists = store_exists(out, storage_options)
    if exists:
        StoreLock(out, storage_options).check()  # being written: refused before any planning
    elif resume:
        raise nothing_to_resume(out)  # before planning, which may take minutes
    if resume and exists:
        # a non-cube or another schema version is refused here, before anything is written
        plan = stored_plan(cfg, stored_cube_attrs(out, storage_options), storage_options=storage_options)
    else:
        if exists and not overwrite and not resume:  # refuse before planning (which may take a while)
            raise StoreExistsError(f"{out} already exists: pass --overwrite to replace it or --resume to finish it")
        plan = plan_build(cfg, hosts_url=hosts_url, storage_options=storage_options, progress=progress)
    ds = _lazy_from_plan(cfg, plan)
    res = write_cube(
        ds,
        out,
        resume=resume,
        repair=repair,
        overwrite=overwrite,
        client=client,
        storage_options=storage_options,
        progress=progress,
        on_shard_done=on_shard_done,
        # one task per shard renders and writes it (the values are ds's: the same kernel and plan)
        render=partial(_render_block, plan=plan),
    )
    return BuildResult(
        url=out,
        n_pairs=cfg.run.n_pairs,
        n_shards=res.n_shards,
        shards_written=res.shards_written,
        seconds=time.perf_counter() - t0,
        repaired=res.repaired,
    )
