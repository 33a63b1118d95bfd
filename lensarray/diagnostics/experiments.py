"""Controlled experiments: core flux fraction as a function of one parameter, the others fixed.

Three mechanisms put arc light into the core: the inner (counter) image at theta_E - |beta|,
the PSF spreading the arc inwards, and the extent of the source. Each experiment sweeps one
parameter (``reff``: source half-light radius; ``offset``: source x position; ``theta-e``:
Einstein radius) and renders noise-free unit-flux arcs with the physics kernel twice: with the
survey PSF and with a negligible one (0.05" FWHM), so the table separates the PSF's share from
the lensing geometry's. The analytic SIS inner-image radius is listed beside.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..derived import core_flux_fraction, inner_image_radius_px

__all__ = ["EXPERIMENTS", "ExperimentSpec", "run_experiment", "write_experiment"]

#: Negligible PSF used for the "no PSF" column, arcsec (the kernel wants a positive FWHM).
NO_PSF_FWHM = 0.0  # the renderer: FWHM 0 = no PSF (pixel-integrated light only)


@dataclass(frozen=True)
class ExperimentSpec:
    """The swept parameter (DESIGN name), its default range and unit."""

    param: str
    lo: float
    hi: float
    unit: str


EXPERIMENTS = {
    "reff": ExperimentSpec("src_reff", 0.1, 1.0, "arcsec"),
    "offset": ExperimentSpec("src_x", -0.5, 0.5, "arcsec"),
    "theta-e": ExperimentSpec("theta_e", 0.5, 3.0, "arcsec"),
}


def run_experiment(
    name: str,
    *,
    n_points: int = 10,
    theta_e: float = 1.5,
    src_reff: float = 0.3,
    offset: float = 0.2,
    src_n: float = 1.0,
    psf_fwhm: float = 1.3,
    core_radius: float = 5.0,
    size: int = 64,
    pixel_scale: float = 0.262,
    bands=("g", "r", "z"),
    supersample: int = 4,
    lo: float | None = None,
    hi: float | None = None,
) -> dict:
    """Sweep one parameter and measure the core flux fraction of the rendered arcs.

    Parameters
    ----------
    name
        ``reff``, ``offset`` or ``theta-e``.
    n_points
        Number of values from ``lo`` to ``hi`` (defaults: the experiment's range).
    theta_e, src_reff, offset, src_n, psf_fwhm
        Fixed values of the other parameters (arcsec; ``offset`` is the source x position,
        source y = 0; a round SIS lens and a round source).
    core_radius
        Pixels.

    Returns
    -------
    dict
        ``experiment``, ``param``, ``fixed`` and ``rows`` (one per value: the value,
        ``core_flux_frac`` and ``core_flux_frac_nopsf`` per band, ``mu``, ``inner_image_r_px``).
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment = {name!r}: allowed one of {', '.join(EXPERIMENTS)}")
    if not (2 <= n_points <= 1000):
        raise ValueError(f"n_points = {n_points}: allowed range [2, 1000]")
    from ..physics.render import render_unit_arcs

    spec = EXPERIMENTS[name]
    lo = spec.lo if lo is None else lo
    hi = spec.hi if hi is None else hi
    values = np.linspace(lo, hi, n_points)
    n, nb = n_points, len(bands)
    params = {
        k: np.zeros(n)
        for k in ("lens_e1", "lens_e2", "lens_x", "lens_y", "shear_g1", "shear_g2", "src_y", "src_e1", "src_e2")
    }
    params.update(
        theta_e=np.full(n, theta_e), src_x=np.full(n, offset), src_reff=np.full(n, src_reff), src_n=np.full(n, src_n)
    )
    params[spec.param] = values.copy()
    cols = {}
    for label, fwhm in (("", psf_fwhm), ("_nopsf", NO_PSF_FWHM)):
        p = dict(params, psf_fwhm=np.full((n, nb), fwhm))
        arcs, mu = render_unit_arcs(
            p,
            size=size,
            pixel_scale=pixel_scale,
            bands=tuple(bands),
            supersample=supersample,
            psf_model="gaussian",
            psf_beta=3.5,
        )
        cols["core_flux_frac" + label] = core_flux_fraction(np.asarray(arcs), core_radius=core_radius)
        if label == "":
            cols["mu"] = np.asarray(mu, float)
    inner = inner_image_radius_px(params["theta_e"], params["src_x"], params["src_y"], pixel_scale=pixel_scale)
    rows = []
    for i, v in enumerate(values):
        row: dict[str, float | None] = {spec.param: float(v)}
        for b, band in enumerate(bands):
            row[f"core_flux_frac_{band}"] = float(cols["core_flux_frac"][i, b])
            row[f"core_flux_frac_nopsf_{band}"] = float(cols["core_flux_frac_nopsf"][i, b])
        row["mu"] = float(cols["mu"][i])
        row["inner_image_r_px"] = None if not np.isfinite(inner[i]) else float(inner[i])
        rows.append(row)
    fixed = {
        "theta_e": theta_e,
        "src_reff": src_reff,
        "src_x": offset,
        "src_y": 0.0,
        "src_n": src_n,
        "psf_fwhm": psf_fwhm,
        "core_radius_px": core_radius,
        "size": size,
        "pixel_scale": pixel_scale,
        "supersample": supersample,
        "psf_model": "gaussian",
        "lens": "SIS (e = 0, no shear)",
    }
    fixed.pop({"src_reff": "src_reff", "src_x": "src_x", "theta_e": "theta_e"}[spec.param])
    return {
        "experiment": name,
        "param": spec.param,
        "unit": spec.unit,
        "bands": list(bands),
        "fixed": fixed,
        "rows": rows,
    }


def write_experiment(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<name>.csv``, ``<name>.json`` and ``<name>.png`` into ``out_dir``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = result["experiment"].replace("-", "_")
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json", "png": out / f"{stem}.png"}
    rows = result["rows"]
    with open(paths["csv"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    paths["json"].write_text(json.dumps(result, indent=2))
    x = [r[result["param"]] for r in rows]
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)  # no pyplot: the caller's matplotlib backend is left alone
    ax = fig.subplots()
    for band in result["bands"]:
        ax.plot(
            x, [r[f"core_flux_frac_{band}"] for r in rows], "o-", label=f'{band}, PSF {result["fixed"]["psf_fwhm"]}"'
        )
    ax.plot(x, [r[f"core_flux_frac_nopsf_{result['bands'][0]}"] for r in rows], "k--", label="no PSF")
    ax.set_xlabel(f"{result['param']} ({result['unit']})")
    ax.set_ylabel(f"core flux fraction (r < {result['fixed']['core_radius_px']:g} px)")
    fixed = ", ".join(
        f"{k}={v}" for k, v in result["fixed"].items() if k in ("theta_e", "src_reff", "src_x", "psf_fwhm")
    )
    ax.set_title(f"experiment {result['experiment']}: {fixed}", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(paths["png"], dpi=100, bbox_inches="tight")
    return paths
