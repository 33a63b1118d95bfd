"""Region-disjoint train/val/test splits.

Pairs are grouped into sky regions (HEALPix tiles, or blocks of contiguous DR10 brick rows) and
whole regions are assigned to splits, so that no sky systematic (PSF pattern, depth, calibration,
a bright star) is shared between a training and a test stamp. The assignment is planned once
over all pairs (:func:`plan_splits`, pure, cheap: no pixels) and applied per chunk by
:meth:`SplitPlan.assign`, a pure function of sky position, so it is chunk-independent.

Planning balances two things: split fractions by pair count (as close as region granularity
allows) and similar distributions of difficulty proxies (PSF, depth, theta_E/PSF, target S/N)
in every split, by a seeded search over region assignments.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .cube import SPLIT_NAMES
from .errors import BadInputError

__all__ = [
    "SplitPlan",
    "SplitError",
    "RegionTally",
    "plan_splits",
    "plan_splits_over_pairs",
    "planning_table",
    "planning_fields",
    "planning_band",
    "region_of",
    "check_split_integrity",
    "PROXIES",
]

logger = logging.getLogger(__name__)

#: Brick rows (0.25 deg each in dec) per region for scheme "bricks".
BRICK_ROWS_PER_REGION = 8


class SplitError(BadInputError):
    """Splits cannot be planned as configured (too few regions, ...)."""


def region_of(ra: np.ndarray, dec: np.ndarray, brickname: np.ndarray | None, *, scheme: str, nside: int) -> np.ndarray:
    """Region id (int64) of each position.

    ``healpix``: nested HEALPix pixel at ``nside``. ``bricks``: DR10 brick rows are 0.25 deg in
    dec; ``BRICK_ROWS_PER_REGION`` consecutive rows times 10 degrees of RA form a region (taken
    from the brick name when given, so regions follow real bricks exactly).
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    if scheme == "healpix":
        import astropy.units as u
        from astropy_healpix import HEALPix

        hp = HEALPix(nside=nside, order="nested")
        return np.asarray(hp.lonlat_to_healpix(ra * u.deg, dec * u.deg), dtype=np.int64)
    if scheme == "bricks":
        if brickname is not None and len(brickname):
            # DR10 names "RRRRsDDD": read the digits as code points, vectorised
            code = np.ascontiguousarray(np.asarray(brickname).astype("<U8")).view(np.uint32).reshape(-1, 8)
            digit = code.astype(np.int64) - ord("0")
            num = digit[:, [0, 1, 2, 3, 5, 6, 7]]
            bad = ((num < 0) | (num > 9)).any(1) | ~np.isin(code[:, 4], [ord("p"), ord("m")])
            if bad.any():
                raise SplitError(
                    f"brickname = {str(np.asarray(brickname)[np.argmax(bad)])!r}: allowed DR10 brick "
                    "names RRRR[pm]DDD (e.g. 0001m040)"
                )
            ra_b = (digit[:, :4] @ np.array([1000, 100, 10, 1])) / 10.0
            dec_b = np.where(code[:, 4] == ord("p"), 1.0, -1.0) * (digit[:, 5:8] @ np.array([100, 10, 1])) / 10.0
        else:
            ra_b, dec_b = ra, dec
        row = np.floor((dec_b + 90.0) / 0.25).astype(np.int64) // BRICK_ROWS_PER_REGION
        col = np.floor(np.mod(ra_b, 360.0) / 10.0).astype(np.int64)
        return row * 36 + col
    if scheme == "none":
        return np.zeros(ra.shape, dtype=np.int64)
    raise SplitError(f"splits.scheme = {scheme!r}: allowed healpix, bricks or none")


@dataclass
class SplitPlan:
    """Region -> split mapping (JSON-serialisable; stored in the cube attrs)."""

    scheme: str
    nside: int
    region_split: dict[int, int] = field(default_factory=dict)
    fractions: list[float] = field(default_factory=list)
    achieved: list[float] = field(default_factory=list)

    def assign(self, ra, dec, brickname=None) -> tuple[np.ndarray, np.ndarray]:
        """``(region int32, split int8)`` for positions; split -1 for regions unseen at planning."""
        reg = region_of(ra, dec, brickname, scheme=self.scheme, nside=self.nside)
        lut_keys = np.fromiter(self.region_split.keys(), dtype=np.int64, count=len(self.region_split))
        lut_vals = np.fromiter(self.region_split.values(), dtype=np.int8, count=len(self.region_split))
        order = np.argsort(lut_keys)
        lut_keys, lut_vals = lut_keys[order], lut_vals[order]
        idx = np.clip(np.searchsorted(lut_keys, reg), 0, max(len(lut_keys) - 1, 0))
        found = (lut_keys.size > 0) & (lut_keys[idx] == reg) if lut_keys.size else np.zeros(reg.shape, bool)
        split = np.where(found, lut_vals[idx] if lut_keys.size else -1, -1).astype(np.int8)
        return reg.astype(np.int32), split

    def to_json(self) -> str:
        return json.dumps(
            {
                "scheme": self.scheme,
                "nside": self.nside,
                "fractions": self.fractions,
                "achieved": self.achieved,
                "region_split": {str(k): int(v) for k, v in self.region_split.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SplitPlan:
        d = json.loads(text)
        return cls(
            scheme=d["scheme"],
            nside=int(d["nside"]),
            fractions=list(d["fractions"]),
            achieved=list(d.get("achieved", [])),
            region_split={int(k): int(v) for k, v in d["region_split"].items()},
        )


def _cover_small(assign: np.ndarray, order: np.ndarray, n_reg: int) -> None:
    """With a handful of regions the fraction-greedy fill can leave test (or val) empty: give
    test a region when there are >= 2 and val one when there are >= 3, keeping one for train."""
    for split, need in ((2, 2), (1, 3)):
        if n_reg >= need and not (assign == split).any():
            donors = [r for r in order if assign[r] == 0]
            if len(donors) > 1:
                assign[donors[-1]] = split


#: Region ids below this are tallied by a bincount over the id itself (no unique of the pairs).
_DIRECT_BINS = 1 << 16

#: Difficulty proxies the planner balances between splits (columns of a planning table).
PROXIES = ("psf_fwhm_r", "psfdepth_r", "theta_e", "theta_e_over_psf", "target_snr")


@dataclass
class RegionTally:
    """Pairs per sky region and the moments of their difficulty proxies, summed block by block.

    All the planner needs: memory is O(regions), whatever the number of pairs. Proxy moments
    count finite values only (a missing proxy is balanced as the mean, as before).
    """

    scheme: str
    nside: int
    regions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    proxies: tuple[str, ...] = ()
    n_finite: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    sum1: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    sum2: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def add(self, table: dict) -> None:
        """Add a block of pairs: ``ra``, ``dec`` (deg), ``brickname`` and any :data:`PROXIES`."""
        self.merge(RegionTally._of_table(table, self.scheme, self.nside))

    def merge(self, other: RegionTally) -> None:
        """Add the pairs of another tally (the planner merges block tallies in pair order, so
        every sum is accumulated in the same order whatever computed the blocks)."""
        if not self.regions.size and not self.proxies:
            self.proxies = other.proxies
        elif other.proxies != self.proxies:
            raise SplitError(f"planning table columns {other.proxies}: every block must carry {self.proxies}")
        merged = np.union1d(self.regions, other.regions)
        old, new = np.searchsorted(merged, self.regions), np.searchsorted(merged, other.regions)
        n_reg, n_prox = merged.size, len(self.proxies)

        def grow(a: np.ndarray) -> np.ndarray:
            out = np.zeros((n_reg, *a.shape[1:]), dtype=a.dtype)
            out[old] = a
            return out

        self.counts = grow(self.counts)
        self.counts[new] += other.counts
        mats = [grow(m.reshape(self.regions.size, n_prox)) for m in (self.n_finite, self.sum1, self.sum2)]
        for m, o in zip(mats, (other.n_finite, other.sum1, other.sum2), strict=True):
            m[new] += o.reshape(other.regions.size, n_prox)
        self.n_finite, self.sum1, self.sum2 = mats
        self.regions = merged

    @classmethod
    def of_table(cls, table: dict, cfg) -> RegionTally:
        """The tally of one table of pairs (see :func:`plan_splits`), regions as ``cfg.splits`` sets them."""
        return cls._of_table(table, cfg.splits.scheme, int(cfg.splits.nside))

    @classmethod
    def _of_table(cls, table: dict, scheme: str, nside: int) -> RegionTally:
        reg = region_of(table["ra"], table["dec"], table.get("brickname"), scheme=scheme, nside=int(nside))
        names = tuple(p for p in PROXIES if p in table)
        n_prox = len(names)
        if reg.size and reg.min() >= 0 and reg.max() < _DIRECT_BINS:
            # small region ids (HEALPix nside <= 64, brick rows): bin by the id itself, no unique
            at, n_bins = reg, int(reg.max()) + 1
            counts = np.bincount(at, minlength=n_bins)
            regions = np.flatnonzero(counts)
        else:
            regions = np.unique(reg)  # a hash-based unique: no sort of the pairs
            at, n_bins = np.searchsorted(regions, reg), regions.size
            counts = np.bincount(at, minlength=n_bins)
        rows = regions if n_bins != regions.size else slice(None)
        tally = cls(scheme=scheme, nside=int(nside), regions=regions, counts=counts[rows])
        tally.proxies = names
        sums = [np.zeros((regions.size, n_prox)) for _ in range(3)]
        if n_prox:
            x = _proxy_columns(table, names)
            ok = np.isfinite(x)
            x = np.where(ok, x, 0.0)
            # one weighted bincount per moment over (region, proxy) bins; within a bin the pairs
            # are summed in table order, as a bincount per proxy would
            bins = (at[:, None] * n_prox + np.arange(n_prox)).ravel()
            for m, v in zip(sums, (ok.astype(np.float64), x, x * x), strict=True):
                m[:] = np.bincount(bins, weights=v.ravel(), minlength=n_bins * n_prox).reshape(n_bins, n_prox)[rows]
        tally.n_finite, tally.sum1, tally.sum2 = sums
        return tally

    def standardized_sums(self) -> np.ndarray:
        """``(region, proxy)`` sums of the proxies standardised over all pairs (mean 0, std 1)."""
        n = self.n_finite.sum(0)
        mean = self.sum1.sum(0) / np.maximum(n, 1)
        std = np.sqrt(np.maximum(self.sum2.sum(0) / np.maximum(n, 1) - mean**2, 0.0))
        return (self.sum1 - self.n_finite * mean) / (std + 1e-12)


def _proxy_columns(table: dict, names: tuple[str, ...]) -> np.ndarray:
    cols = []
    for name in names:
        v = np.asarray(table[name], dtype=np.float64)
        cols.append(np.log(np.clip(v, 1e-3, None)) if name == "target_snr" else v)
    return np.stack(cols, axis=1)


def planning_fields(cfg) -> tuple[str, ...]:
    """The host facts :func:`planning_table` reads: positions, PSF and depth (of
    :func:`planning_band` only), and the brick name only for scheme ``bricks`` (where it sets
    the region)."""
    return ("ra", "dec", "psf_fwhm", "psfdepth") + (("brickname",) if cfg.splits.scheme == "bricks" else ())


def planning_band(cfg) -> str:
    """The band whose PSF and depth the planner balances: ``r``, else the first of ``run.bands``."""
    from .conventions import reference_band_index

    return str(cfg.run.bands[reference_band_index(cfg.run.bands)])


def planning_table(pair_ids: np.ndarray, props: dict, cfg) -> dict[str, np.ndarray]:
    """The columns the planner reads for ``pair_ids``: position, brick and :data:`PROXIES`.

    ``props`` are the pairs' host facts (:func:`planning_fields`: ``ra``, ``dec`` deg,
    ``psf_fwhm`` and ``psfdepth`` per band of ``run.bands`` or of :func:`planning_band` alone,
    ``brickname`` for scheme ``bricks``); theta_E and the target S/N are the pairs' own
    parameter draws (:func:`lensarray.sampling.sample_balance_params`: the values the build
    renders).
    """
    from .sampling import sample_balance_params

    psf, depth = np.asarray(props["psf_fwhm"]), np.asarray(props["psfdepth"])
    n_bands = len(cfg.run.bands)
    if psf.shape[1:] not in ((n_bands,), (1,)) or depth.shape[1:] != psf.shape[1:]:
        raise SplitError(
            f"host facts psf_fwhm {psf.shape[1:]}, psfdepth {depth.shape[1:]} per pair: allowed one "
            f"column per band of run.bands ({n_bands}) or of the planning band alone (1)"
        )
    rb = list(cfg.run.bands).index(planning_band(cfg)) if psf.shape[1] == n_bands else 0
    params = sample_balance_params(pair_ids, cfg)
    psf_r = psf[:, rb]
    out = {
        "ra": props["ra"],
        "dec": props["dec"],
        "brickname": props.get("brickname"),
        "psf_fwhm_r": psf_r,
        "psfdepth_r": depth[:, rb],
        "theta_e": params["theta_e"],
        "theta_e_over_psf": np.asarray(params["theta_e"]) / psf_r,
    }
    if "target_snr" in params:
        out["target_snr"] = params["target_snr"]
    return out


def plan_splits_over_pairs(
    cfg,
    host_properties: Callable[[np.ndarray], dict],
    *,
    block: int,
    progress: bool = False,
    threads: int | None = None,
) -> SplitPlan:
    """Plan the splits of all ``cfg.run.n_pairs`` pairs, drawing their facts block by block.

    Parameters
    ----------
    cfg
        :class:`lensarray.config.RunConfig`.
    host_properties
        ``host_properties(pair_ids)``: the host facts of those pairs (no pixels), as the build
        sees them (synthetic draws or an ingested host cube); called from ``threads`` threads.
    block
        Pairs per block (memory: the draws of ``2 threads`` blocks plus O(regions); values do
        not depend on it).
    progress
        Show a progress bar on stderr (the CLI turns it on; off for library calls).
    threads
        Threads drawing blocks at once (default: up to 4, one per CPU). Block tallies are merged
        in pair order, so the plan does not depend on it.
    """
    import sys
    import time
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    from tqdm.auto import tqdm

    n = int(cfg.run.n_pairs)
    if cfg.splits.scheme == "none":
        return plan_splits(
            RegionTally(
                scheme="none", nside=int(cfg.splits.nside), regions=np.zeros(1, np.int64), counts=np.array([n])
            ),
            cfg,
        )
    t0 = time.perf_counter()
    tally = RegionTally(scheme=cfg.splits.scheme, nside=int(cfg.splits.nside))
    n_threads = max(1, int(threads) if threads is not None else min(4, os.cpu_count() or 1))

    def block_tally(start: int) -> RegionTally:
        # numpy, scipy and astropy-healpix release the GIL in their loops: blocks overlap
        ids = np.arange(start, min(start + int(block), n), dtype=np.int64)
        return RegionTally.of_table(planning_table(ids, host_properties(ids), cfg), cfg)

    with (
        ThreadPoolExecutor(n_threads, thread_name_prefix="lensarray-plan") as pool,
        tqdm(
            total=n,
            disable=not progress,
            desc="split planning",
            unit="pair",
            unit_scale=True,
            file=sys.stderr,
            mininterval=0.5,
            dynamic_ncols=True,
        ) as bar,
    ):
        pending: deque[Future[RegionTally]] = deque()
        starts = iter(range(0, n, int(block)))
        while True:
            # keep 2 blocks per thread in flight (bounded memory), merge the oldest first
            for a in starts:
                pending.append(pool.submit(block_tally, a))
                if len(pending) >= 2 * n_threads:
                    break
            if not pending:
                break
            part = pending.popleft().result()
            tally.merge(part)
            bar.update(int(part.counts.sum()))
    t1 = time.perf_counter()
    plan = plan_splits(tally, cfg)
    logger.debug(
        "split planning: %d pairs in %d regions, facts drawn in %.2f s (%d threads), assignment searched in %.2f s",
        n,
        tally.regions.size,
        t1 - t0,
        n_threads,
        time.perf_counter() - t1,
    )
    return plan


def plan_splits(table: dict | RegionTally, cfg) -> SplitPlan:
    """Plan region-disjoint splits for all pairs.

    Parameters
    ----------
    table
        Per-pair arrays for every pair: ``ra``, ``dec`` (deg), ``brickname``; optional difficulty
        proxies ``psf_fwhm_r`` (arcsec), ``psfdepth_r`` (AB mag), ``theta_e`` (arcsec),
        ``theta_e_over_psf``, ``target_snr``; or their :class:`RegionTally` (what
        :func:`plan_splits_over_pairs` accumulates: the plan is the same).
    cfg
        :class:`lensarray.config.RunConfig` (``splits`` section, ``run.seed``).

    Returns
    -------
    SplitPlan
        At least ``min_test_regions`` regions wholly in test; fractions by pair count as close as
        the regions allow; proxy means per split balanced by a seeded random search. With fewer
        regions than that needs (a small real host set), a warning is logged and the best
        region-disjoint split is returned: one region for test and one for val when there are
        regions to spare, train first. Scheme ``none``: every pair in train, no held-out sky.
    """
    sp = cfg.splits
    tally = table if isinstance(table, RegionTally) else RegionTally.of_table(table, cfg)
    regions, counts = tally.regions, tally.counts
    n_reg = regions.size
    if sp.scheme == "none":
        return SplitPlan(
            scheme="none",
            nside=sp.nside,
            fractions=[float(f) for f in sp.fractions],
            achieved=[1.0, 0.0, 0.0],
            region_split={int(r): 0 for r in regions},
        )
    need = sp.min_test_regions + 2
    min_test = sp.min_test_regions
    if n_reg < need:
        min_test = max(1, min(sp.min_test_regions, n_reg - 2)) if n_reg >= 2 else 0
        logger.warning(
            "splits: only %d sky region(s) hold pairs (%d asked for: %d test + train + val); "
            "using the best region-disjoint split they allow%s",
            n_reg,
            need,
            sp.min_test_regions,
            " (all in train: one region)"
            if n_reg == 1
            else " (no val split)"
            if n_reg == 2
            else f" ({min_test} test region(s))",
        )
    sums = tally.standardized_sums() if tally.proxies else np.zeros((n_reg, 0))
    fr = np.asarray(sp.fractions, dtype=np.float64)
    total = counts.sum()
    rng = np.random.default_rng(np.random.SeedSequence([cfg.run.seed, 0x5911]))

    def score(assign: np.ndarray) -> float:
        got = np.array([counts[assign == s].sum() for s in range(3)]) / total
        frac_err = np.abs(got - fr).sum()
        means = [sums[assign == s].sum(0) / max(counts[assign == s].sum(), 1) for s in range(3)]
        bal = sum(np.abs(means[s] - means[0]).sum() for s in (1, 2) if counts[assign == s].sum() > 0)
        n_test = int((assign == 2).sum())
        penalty = 10.0 * max(0, min(min_test, n_reg) - n_test)
        return 4.0 * frac_err + 0.05 * bal + penalty

    best, best_score = np.zeros(n_reg, dtype=np.int8), np.inf
    for _ in range(400 if n_reg < 2000 else 50):
        order = rng.permutation(n_reg)
        cum = np.cumsum(counts[order]) / total
        assign = np.zeros(n_reg, dtype=np.int8)
        # greedy fill in random region order: train first, then val, then test
        cut1, cut2 = fr[0], fr[0] + fr[1]
        mid = cum - counts[order] / (2 * total)
        assign[order] = np.where(mid < cut1, 0, np.where(mid < cut2, 1, 2)).astype(np.int8)
        if n_reg >= min_test and (assign == 2).sum() < min_test:
            tail = order[::-1][:min_test]
            assign[tail] = 2
        _cover_small(assign, order, n_reg)
        s = score(assign)
        if s < best_score:
            best, best_score = assign.copy(), s
    achieved = [float(counts[best == s].sum() / total) for s in range(3)]
    return SplitPlan(
        scheme=sp.scheme,
        nside=sp.nside,
        fractions=[float(f) for f in fr],
        achieved=achieved,
        region_split={int(r): int(s) for r, s in zip(regions, best, strict=True)},
    )


def check_split_integrity(data, cfg=None, *, tolerance: float = 0.1) -> dict:
    """Check that splits are region-disjoint and as asked.

    Parameters
    ----------
    data
        A cube (``xarray.Dataset``) or a dict of per-pair arrays with ``split``, ``region``,
        ``brickname`` and ``host_id``.
    cfg
        Run configuration for the asked fractions (default: the cube's stored config or 0.8/0.1/0.1).
    tolerance
        Allowed absolute difference between asked and achieved fraction per split.

    Returns
    -------
    dict
        ``passed``, ``problems`` (one line each), ``fractions`` achieved, ``n_regions`` per split.
    """
    get = (lambda k: np.asarray(data[k].values)) if hasattr(data, "data_vars") else (lambda k: np.asarray(data[k]))
    split, region = get("split"), get("region")
    problems: list[str] = []
    assigned = split >= 0
    if not assigned.all():
        problems.append(f"{int((~assigned).sum())} pairs have no split")
    for key in ("region", "brickname", "host_id"):
        try:
            vals = get(key)
        except KeyError:
            continue
        per = {}
        for s in range(3):
            per[s] = set(np.unique(vals[split == s]).tolist())
        for a in range(3):
            for b in range(a + 1, 3):
                both = per[a] & per[b]
                if key == "host_id":
                    both.discard(-1)
                if both:
                    problems.append(
                        f"{len(both)} {key} value(s) in both {SPLIT_NAMES[a]} and {SPLIT_NAMES[b]}, "
                        f"e.g. {sorted(both)[:3]}"
                    )
    fractions = [float((split == s).mean()) for s in range(3)]
    asked = None
    if cfg is not None:
        asked = list(cfg.splits.fractions)
    elif hasattr(data, "attrs") and data.attrs.get("config"):
        asked = json.loads(data.attrs["config"]).get("splits", {}).get("fractions")
    if asked:
        for s, (want, got) in enumerate(zip(asked, fractions, strict=False)):
            if abs(want - got) > tolerance:
                problems.append(f"{SPLIT_NAMES[s]} fraction {got:.3f}, asked {want:.3f} (tolerance {tolerance})")
    n_regions = {SPLIT_NAMES[s]: int(np.unique(region[split == s]).size) for s in range(3)}
    if n_regions["test"] < 1 and assigned.any():
        problems.append("no region is held out for test")
    return {
        "passed": not problems,
        "problems": problems,
        "fractions": dict(zip(SPLIT_NAMES, fractions, strict=True)),
        "n_regions": n_regions,
    }
