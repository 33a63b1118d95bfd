"""Run configuration: dataclasses, TOML loading, complete validation before any work.

Every field carries its allowed range (``range=(lo, hi)``) or its allowed values
(``choices=...``) in the dataclass field metadata, so validation and error messages come from
one place. A configuration is validated as a whole and every problem is reported in one
line each (``section.field = value: allowed ...``) before a single pixel is rendered.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInputError

__all__ = [
    "ConfigError",
    "RunConfig",
    "load_config",
    "config_from_dict",
]


class ConfigError(BadInputError):
    """Raised when a run configuration is invalid; the message names every bad field."""


def _f(
    default: Any,
    *,
    range: tuple[float, float] | None = None,
    choices: tuple | None = None,
    doc: str = "",
    item_range: tuple[float, float] | None = None,
) -> Any:
    """A dataclass field with validation metadata (``range`` inclusive, or ``choices``)."""
    meta = {"range": range, "choices": choices, "doc": doc, "item_range": item_range}
    if isinstance(default, (list, dict)):
        return field(default_factory=functools.partial(copy.deepcopy, default), metadata=meta)
    return field(default=default, metadata=meta)


def field_default(f: dataclasses.Field) -> Any:
    """The default value of a configuration field (a fresh copy for list, dict and section fields)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"configuration field {f.name} has no default")


@dataclass
class RunSection:
    """Size, geometry and layout of the cube."""

    n_pairs: int = _f(256, range=(1, 100_000_000), doc="number of lens/control pairs")
    seed: int = _f(12345, range=(0, 2**63 - 1), doc="root seed; every random number derives from (seed, pair id)")
    size: int = _f(64, range=(16, 512), doc="stamp side in pixels")
    pixel_scale: float = _f(0.262, range=(0.01, 2.0), doc="arcsec per pixel")
    bands: list = _f(["g", "r", "z"], choices=("g", "r", "i", "z"), doc="band names, in stored order")
    zero_point: float = _f(22.5, range=(0.0, 40.0), doc="AB zero point of the image unit (nanomaggy: 22.5)")
    chunk_pairs: int = _f(16, range=(1, 4096), doc="pairs per inner Zarr chunk (read unit)")
    shard_pairs: int = _f(256, range=(1, 65536), doc="pairs per Zarr shard (write unit); a multiple of chunk_pairs")
    null: bool = _f(False, doc="null injection: every arc scaled to zero, everything else identical")


@dataclass
class HostsSection:
    """Where host galaxies come from."""

    source: str = _f("synthetic", doc="'synthetic' or the URL of a host cube written by `lensarray ingest`")
    mask_rate: float = _f(0.08, range=(0.0, 1.0), doc="fraction of synthetic hosts with some mask bits set")
    r_mag_min: float = _f(17.0, range=(10.0, 26.0), doc="brightest synthetic host r mag (AB)")
    r_mag_max: float = _f(21.5, range=(10.0, 26.0), doc="faintest synthetic host r mag (AB)")


@dataclass
class LensSection:
    """Priors of the deflector (SIE + external shear)."""

    theta_e_min: float = _f(
        0.5, range=(0.3, 3.5), doc="Einstein radius lower bound, arcsec (the renderer's verified range)"
    )
    theta_e_max: float = _f(
        3.0, range=(0.3, 3.5), doc="Einstein radius upper bound, arcsec (the renderer's verified range)"
    )
    theta_e_prior: str = _f("uniform", choices=("uniform", "loguniform"), doc="Einstein radius prior shape")
    e_sigma: float = _f(
        0.15, range=(0.0, 0.5), doc="per-component sigma of lens ellipticity e1,e2 (truncated at |e| < 0.5)"
    )
    shear_sigma: float = _f(0.03, range=(0.0, 0.3), doc="per-component sigma of external shear g1,g2")
    offset_sigma: float = _f(
        0.0,
        range=(0.0, 0.2),
        doc='sigma of the lens centre offset from the stamp origin, arcsec (truncated at 3 sigma; offsets <= 0.6" verified)',
    )


@dataclass
class SourceSection:
    """Priors of the background Sersic source."""

    beta_frac_min: float = _f(0.1, range=(0.0, 2.0), doc="source offset |beta| / theta_E lower bound")
    beta_frac_max: float = _f(1.0, range=(0.0, 2.0), doc="source offset |beta| / theta_E upper bound")
    reff_min: float = _f(
        0.1, range=(0.05, 5.0), doc="source half-light radius lower bound, arcsec (the renderer's verified range)"
    )
    reff_max: float = _f(0.6, range=(0.05, 5.0), doc="source half-light radius upper bound, arcsec")
    n_min: float = _f(0.7, range=(0.5, 4.0), doc="Sersic index lower bound (the renderer's verified range)")
    n_max: float = _f(2.5, range=(0.5, 4.0), doc="Sersic index upper bound")
    e_sigma: float = _f(
        0.2, range=(0.0, 0.6), doc="per-component sigma of source ellipticity e1,e2 (truncated at |e| < 0.6)"
    )
    color_g_r_min: float = _f(
        0.0, range=(-1.0, 3.0), doc="source g-r colour lower bound, mag (blue star-forming sources)"
    )
    color_g_r_max: float = _f(0.8, range=(-1.0, 3.0), doc="source g-r colour upper bound, mag")
    color_r_z_min: float = _f(-0.1, range=(-1.0, 3.0), doc="source r-z colour lower bound, mag")
    color_r_z_max: float = _f(0.6, range=(-1.0, 3.0), doc="source r-z colour upper bound, mag")


#: Narrowest target arc_snr bin the sampler can fill to its fraction: a bin a few ulps wide has
#: no float inside it for the inverse CDF to land on (hypothesis found edges 0, 5e-324, 1).
MIN_SNR_BIN_WIDTH = 1e-3


@dataclass
class BrightnessSection:
    """How bright the arcs are: by source magnitude or calibrated to a target arc S/N."""

    mode: str = _f("snr", choices=("snr", "mag"), doc="'snr': scale to a target arc_snr; 'mag': draw source r mag")
    snr_edges: list = _f(
        [0.8, 2.0, 8.0, 20.0, 50.0],
        item_range=(0.0, 1e6),
        doc="target arc_snr bin edges, increasing, at least 0.001 apart (last bin closed at the final edge)",
    )
    snr_fractions: list = _f(
        [0.40, 0.40, 0.15, 0.05], item_range=(0.0, 1.0), doc="fraction of pairs per arc_snr bin; sums to 1"
    )
    snr_band: str = _f("r", choices=("g", "r", "i", "z"), doc="band whose matched-filter S/N defines arc_snr")
    src_mag_min: float = _f(20.0, range=(10.0, 30.0), doc="mode 'mag': source r mag lower bound (unlensed, AB)")
    src_mag_max: float = _f(24.5, range=(10.0, 30.0), doc="mode 'mag': source r mag upper bound (unlensed, AB)")
    snr_definition: str = _f(
        "matched_filter",
        choices=("matched_filter", "aperture"),
        doc="S/N the target is set on: 'matched_filter' (arc_snr) or 'aperture' (arc_snr_aperture)",
    )
    snr_calibrate: str = _f(
        "auto",
        choices=("auto", "stored", "unmasked"),
        doc="arc the target S/N is set on: 'stored' (lens - control, after the core-mask "
        "policy), 'unmasked' (before the policy), 'auto' = stored when a core mask is set",
    )
    aperture_halfwidth: float = _f(
        0.5, range=(0.05, 5.0), doc="aperture S/N: half-width w of the theta_E +/- w annulus, arcsec"
    )
    snr_floor: float = _f(0.5, range=(0.0, 1e6), doc="lens labels need a stored arc_snr >= this (0: no floor)")
    snr_floor_action: str = _f(
        "label",
        choices=("label", "redraw"),
        doc="below the floor: 'label' the pair a non-lens (hard_negative kind 'below_snr_floor'), "
        "or 'redraw' its lens and source from the pair's own stream (then label)",
    )
    snr_floor_redraws: int = _f(8, range=(1, 100), doc="'redraw': attempts per pair before it is labelled")


@dataclass
class PsfSection:
    """PSF model; FWHM per pair and band comes from the host."""

    model: str = _f("gaussian", choices=("gaussian", "moffat"), doc="analytic PSF profile")
    moffat_beta: float = _f(3.5, range=(2.5, 10.0), doc="Moffat beta (model 'moffat'; the renderer's verified range)")


@dataclass
class RenderSection:
    """Numerical settings of the renderer."""

    supersample: int = _f(
        18,
        range=(6, 32),
        doc="ray-tracing points per pixel side of the fixed refinement level (next to the lens centre and where the error estimate asks for it; beyond it an error-controlled quadtree), even",
    )
    tolerance: float = _f(
        0.02,
        range=(1e-4, 0.1),
        doc="per-cell error target of the adaptive ray tracing, in units of the source's surface brightness at R_sersic (sub-pixel sources: its mean over a pixel) x the cell area; 0.1 x this of each cell's own flux is always enough",
    )


@dataclass
class CoreMaskSection:
    """Core-mask policy applied to the arc at injection."""

    policy: str = _f(
        "none",
        choices=("none", "hard", "taper"),
        doc="'none', 'hard' (zero inside radius) or 'taper' (tanh apodisation)",
    )
    radius: float = _f(5.0, range=(0.0, 64.0), doc="mask radius, pixels")
    width: float = _f(1.0, range=(0.01, 32.0), doc="tanh width of policy 'taper', pixels")
    apply_to: str = _f(
        "arc",
        choices=("arc", "control"),
        doc="'arc': the stored arc is masked; 'control': core-matched control, the control "
        "receives the arc's core light (arc * (1 - w)) and the lens keeps its whole arc",
    )


@dataclass
class DiagnosticsSection:
    """Core radius and gate thresholds used by derived quantities and diagnose."""

    core_radius: float = _f(5.0, range=(0.5, 64.0), doc="core radius for core_flux_frac and the core-LR disc, pixels")
    core_centre: str = _f(
        "stamp",
        choices=("stamp", "lens"),
        doc="centre of the core of core_flux_frac: the stamp origin or the lens centre (lens_x, lens_y)",
    )
    core_box: int = _f(10, range=(2, 64), doc="side of the central box of the published core LR, pixels")
    core_lr_region: str = _f(
        "disc",
        choices=("disc", "box", "ring"),
        doc="pixels the core-LR gate reads: 'disc' r < core_radius, 'box' the central "
        "core_box square, 'ring' the box minus the disc",
    )
    edge_frac_max: float = _f(
        0.05,
        range=(0.0, 1.0),
        doc="mask-edge probe: largest fraction of lenses whose lens-control light steps "
        "from ~0 to significant across one pixel at any radius",
    )
    lr_auc_max: float = _f(0.65, range=(0.5, 1.0), doc="gate: core LR AUC must stay below this")
    null_auc_tol: float = _f(0.03, range=(0.0, 0.5), doc="gate: null-injection LR AUC within 0.5 +/- this")
    leak_auc_max: float = _f(0.55, range=(0.5, 1.0), doc="gate: any metadata variable's AUC must stay below this")


@dataclass
class SplitsSection:
    """Region-disjoint train/val/test splits."""

    scheme: str = _f(
        "healpix",
        choices=("healpix", "bricks", "none"),
        doc="regions are HEALPix tiles or groups of DR10 bricks; 'none': one region, every pair in train (no held-out sky)",
    )
    nside: int = _f(8, range=(1, 1024), doc="HEALPix nside of a region (scheme 'healpix')")
    fractions: list = _f([0.8, 0.1, 0.1], item_range=(0.0, 1.0), doc="train, val, test fractions; sum to 1")
    min_test_regions: int = _f(2, range=(1, 10_000), doc="regions wholly held out for test, at least")


@dataclass
class NegativesSection:
    """Hard negatives: arc-like features that are not lenses."""

    fraction: float = _f(0.0, range=(0.0, 0.9), doc="fraction of pairs whose injected feature is a hard negative")
    kinds: list = _f(
        ["ring", "spiral", "tidal"], choices=("ring", "spiral", "tidal"), doc="procedural negative kinds mixed equally"
    )


@dataclass
class ClusterSection:
    """Where the work runs."""

    kind: str = _f(
        "local",
        choices=("local", "k8s", "none"),
        doc="'local' LocalCluster, 'k8s' KubeCluster, 'none' synchronous in-process",
    )
    address: str = _f("", doc="address of an existing scheduler (tcp://host:port); overrides kind")
    workers: int = _f(2, range=(1, 10_000), doc="number of workers")
    threads_per_worker: int = _f(1, range=(1, 256), doc="threads per worker")
    memory_limit: str = _f("4GiB", doc="memory limit per worker (dask syntax)")
    image: str = _f("ghcr.io/example/lensarray:0.1.0", doc="container image of scheduler and workers (kind 'k8s')")
    k8s_secret: str = _f(
        "lensarray-s3",
        doc="Kubernetes Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for the pods (kind 'k8s'; '' = none)",
    )
    k8s_name: str = _f("lensarray", doc="name of the DaskCluster resource (kind 'k8s')")


@dataclass
class StorageSection:
    """fsspec options for the output store (never written into attrs)."""

    endpoint_url: str = _f("", doc="S3 endpoint URL (empty: AWS default)")
    profile: str = _f("", doc="AWS profile name")
    anon: bool = _f(False, doc="anonymous access")


@dataclass
class QuantizeSection:
    """Optional lossy storage (off by default; see lensarray/quantize.py for the bounds)."""

    host: bool = _f(
        False, doc="store host pixels rounded to a power-of-two step <= host_step x the plane's smallest noise sigma"
    )
    host_step: float = _f(
        0.2,
        range=(0.001, 0.2),
        doc="host quantisation step in units of the pixel noise sigma; max error host_step/2 sigma (<= 0.1)",
    )
    arc_keepbits: int = _f(
        23,
        range=(6, 23),
        doc="float32 mantissa bits kept in the stored arc (23: lossless); relative error <= 2**-(arc_keepbits + 1)",
    )


@dataclass
class RunConfig:
    """Complete configuration of one build. ``RunConfig()`` is the embedded default."""

    run: RunSection = field(default_factory=RunSection)
    hosts: HostsSection = field(default_factory=HostsSection)
    lens: LensSection = field(default_factory=LensSection)
    source: SourceSection = field(default_factory=SourceSection)
    brightness: BrightnessSection = field(default_factory=BrightnessSection)
    psf: PsfSection = field(default_factory=PsfSection)
    render: RenderSection = field(default_factory=RenderSection)
    core_mask: CoreMaskSection = field(default_factory=CoreMaskSection)
    diagnostics: DiagnosticsSection = field(default_factory=DiagnosticsSection)
    splits: SplitsSection = field(default_factory=SplitsSection)
    negatives: NegativesSection = field(default_factory=NegativesSection)
    cluster: ClusterSection = field(default_factory=ClusterSection)
    storage: StorageSection = field(default_factory=StorageSection)
    quantize: QuantizeSection = field(default_factory=QuantizeSection)

    # -- serialisation ---------------------------------------------------------------
    def to_dict(self, *, include_secrets: bool = False) -> dict:
        """Plain dict of every section; storage options are dropped unless asked for."""
        out = dataclasses.asdict(self)
        if not include_secrets:
            out.pop("storage", None)
        return out

    def to_json(self) -> str:
        """JSON of :meth:`to_dict` (no storage options), as stored in the cube attrs."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **sections_fields: Any) -> RunConfig:
        """Copy with dotted overrides, e.g. ``cfg.replace(**{"run.n_pairs": 10})``."""
        data = self.to_dict(include_secrets=True)
        for dotted, value in sections_fields.items():
            section, _, name = dotted.partition(".")
            if section not in data or name not in data[section]:
                raise ConfigError(f"unknown configuration field {dotted!r}")
            data[section][name] = value
        return config_from_dict(data)

    # -- validation --------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Every validation problem, one line each (empty when the configuration is valid)."""
        errs: list[str] = []
        for sec in dataclasses.fields(self):
            section = getattr(self, sec.name)
            for f in dataclasses.fields(section):
                errs.extend(_check_field(sec.name, f, getattr(section, f.name)))
        errs.extend(self._cross_checks())
        return errs

    def validate(self) -> RunConfig:
        """Raise :class:`ConfigError` listing every problem; return ``self`` when valid."""
        errs = self.problems()
        if errs:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(errs))
        return self

    def _cross_checks(self) -> list[str]:
        errs = []
        r, lens, src, br = self.run, self.lens, self.source, self.brightness
        if r.shard_pairs % r.chunk_pairs:
            errs.append(f"run.shard_pairs = {r.shard_pairs}: allowed a multiple of run.chunk_pairs ({r.chunk_pairs})")
        if len(set(r.bands)) != len(r.bands) or not r.bands:
            errs.append(f"run.bands = {r.bands}: allowed a non-empty list of distinct bands from g, r, i, z")
        if br.snr_band not in r.bands:
            errs.append(f"brightness.snr_band = {br.snr_band!r}: allowed one of run.bands {r.bands}")
        for sec, lo, hi in (
            ("hosts", "r_mag_min", "r_mag_max"),
            ("lens", "theta_e_min", "theta_e_max"),
            ("source", "beta_frac_min", "beta_frac_max"),
            ("source", "reff_min", "reff_max"),
            ("source", "n_min", "n_max"),
            ("source", "color_g_r_min", "color_g_r_max"),
            ("source", "color_r_z_min", "color_r_z_max"),
            ("brightness", "src_mag_min", "src_mag_max"),
        ):
            s = getattr(self, sec)
            if getattr(s, lo) > getattr(s, hi):
                errs.append(f"{sec}.{lo} = {getattr(s, lo)}: allowed <= {sec}.{hi} ({getattr(s, hi)})")
        edges, fr = br.snr_edges, br.snr_fractions
        if len(edges) != len(fr) + 1:
            errs.append(
                f"brightness.snr_fractions has {len(fr)} entries: allowed len(snr_edges) - 1 = {len(edges) - 1}"
            )
        elif any(b - a < MIN_SNR_BIN_WIDTH * (1 - 1e-9) for a, b in itertools.pairwise(edges)):
            errs.append(
                f"brightness.snr_edges = {edges}: allowed increasing, consecutive edges at least {MIN_SNR_BIN_WIDTH} apart"
            )
        if fr and not math.isclose(sum(fr), 1.0, abs_tol=1e-6):
            errs.append(f"brightness.snr_fractions = {fr}: allowed fractions summing to 1 (sum {sum(fr):.6g})")
        sf = self.splits.fractions
        if len(sf) != 3 or not math.isclose(sum(sf), 1.0, abs_tol=1e-6):
            errs.append(f"splits.fractions = {sf}: allowed three fractions (train, val, test) summing to 1")
        if self.core_mask.policy != "none" and self.core_mask.radius <= 0:
            errs.append(
                f"core_mask.radius = {self.core_mask.radius}: allowed > 0 with policy {self.core_mask.policy!r}"
            )
        if self.core_mask.radius > r.size / 2:
            errs.append(f"core_mask.radius = {self.core_mask.radius}: allowed <= size/2 = {r.size / 2}")
        if self.diagnostics.core_box > r.size:
            errs.append(f"diagnostics.core_box = {self.diagnostics.core_box}: allowed <= run.size ({r.size})")
        if self.render.supersample % 2:
            errs.append(
                f"render.supersample = {self.render.supersample}: allowed an even number (2 convolution cells per pixel)"
            )
        if not self.negatives.kinds and self.negatives.fraction > 0:
            errs.append("negatives.kinds = []: allowed a non-empty list when negatives.fraction > 0")
        del lens, src
        return errs


def _check_field(section: str, f: dataclasses.Field, value: Any) -> list[str]:
    name = f"{section}.{f.name}"
    meta = f.metadata
    expected = type(f.default) if f.default is not dataclasses.MISSING else list
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is bool:
        if not isinstance(value, bool):
            return [f"{name} = {value!r}: allowed true or false"]
        return []
    if expected in (int, float):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (expected is int and not isinstance(value, int))
        ):
            return [
                f"{name} = {value!r}: allowed a{'n integer' if expected is int else ' number'}"
                + (f" in [{meta['range'][0]}, {meta['range'][1]}]" if meta.get("range") else "")
            ]
        if not math.isfinite(value):
            return [f"{name} = {value!r}: allowed a finite number"]
    rng = meta.get("range")
    if rng and not (rng[0] <= value <= rng[1]):
        return [f"{name} = {value!r}: allowed range [{rng[0]}, {rng[1]}]"]
    choices = meta.get("choices")
    if expected is str:
        if not isinstance(value, str):
            return [f"{name} = {value!r}: allowed a string"]
        if choices and value not in choices:
            return [f"{name} = {value!r}: allowed one of {', '.join(choices)}"]
    if expected is list:
        if not isinstance(value, list):
            return [f"{name} = {value!r}: allowed a list"]
        if choices and any(v not in choices for v in value):
            return [f"{name} = {value!r}: allowed items from {', '.join(choices)}"]
        irng = meta.get("item_range")
        if irng and any(
            (not isinstance(v, (int, float))) or isinstance(v, bool) or not (irng[0] <= v <= irng[1]) for v in value
        ):
            return [f"{name} = {value!r}: allowed numbers in [{irng[0]}, {irng[1]}]"]
    return []


def config_from_dict(data: dict) -> RunConfig:
    """Build a :class:`RunConfig` from nested dicts (TOML layout); unknown keys are errors.

    The result is not validated; call :meth:`RunConfig.validate`.
    """
    errs = []
    sections = {}
    known = {f.name: f for f in dataclasses.fields(RunConfig)}
    for key, value in (data or {}).items():
        if key not in known:
            errs.append(f"{key}: unknown section; allowed {', '.join(known)}")
            continue
        if not isinstance(value, dict):
            errs.append(f"{key} = {value!r}: allowed a table of fields")
            continue
        cls = type(field_default(known[key]))
        names = {f.name for f in dataclasses.fields(cls)}
        for k in value:
            if k not in names:
                errs.append(f"{key}.{k}: unknown field; allowed {', '.join(sorted(names))}")
        sections[key] = cls(**{k: v for k, v in value.items() if k in names})
    if errs:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errs))
    return RunConfig(**sections)


def load_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """Load a TOML run configuration (``None``: the embedded default), apply dotted overrides,
    validate, and return it.

    Parameters
    ----------
    path
        TOML file with sections named like :class:`RunConfig`'s fields.
    **overrides
        Dotted ``section.field`` values (``None`` values are ignored), e.g. from CLI flags.
    """
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    cfg = config_from_dict(data)
    todo = {k: v for k, v in overrides.items() if v is not None}
    if todo:
        cfg = cfg.replace(**todo)
    return cfg.validate()
