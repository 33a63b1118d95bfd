"""Save a PNG grid of pairs: lens (host + arc), control (host) and the arc alone, as Lupton RGB.

Colours map z, r, g to red, green, blue (astropy's make_lupton_rgb); the same stretch is used for
lens and control so that the only visible difference is the arc. The arc column uses its own
stretch so that faint arcs are visible.
"""

from __future__ import annotations

import numpy as np

from ..storage import add_storage_arguments
from ._common import fail, storage_options_from_args

NAME = "preview"
HELP = "PNG grid of lens | control | arc for a range of pairs (Lupton RGB)"


def add_arguments(p) -> None:
    p.add_argument("store", help="cube location (local path or s3://...)")
    p.add_argument("--pairs", default="0:16", help="pair index range START:STOP (default 0:16, at most 64 pairs)")
    p.add_argument("--out", required=True, help="output PNG file")
    p.add_argument("--stretch", type=float, default=0.5, help="Lupton stretch, nanomaggy (default 0.5)")
    p.add_argument("--q", type=float, default=8.0, help="Lupton softening Q (default 8)")
    add_storage_arguments(p)


def parse_range(text: str, n: int) -> slice:
    """``"A:B"`` -> slice, checked against ``n`` pairs (ValueError naming the allowed range)."""
    try:
        a, b = (int(t) for t in text.split(":"))
    except ValueError:
        raise ValueError(f"--pairs {text!r}: allowed START:STOP with integers, e.g. 0:16") from None
    if not (0 <= a < b <= n) or b - a > 64:
        raise ValueError(f"--pairs {text!r}: allowed 0 <= START < STOP <= {n} with at most 64 pairs")
    return slice(a, b)


def _rgb(img: np.ndarray, bands: list[str], stretch: float, q: float) -> np.ndarray:
    from astropy.visualization import make_lupton_rgb

    def plane(name, fallback):
        return img[bands.index(name)] if name in bands else img[fallback]

    r, g, b = plane("z", -1), plane("r", len(bands) // 2), plane("g", 0)
    with np.errstate(invalid="ignore", divide="ignore"):  # all-zero pixels (no arc): 0/0 -> black
        return make_lupton_rgb(np.clip(r, 0, None), np.clip(g, 0, None), np.clip(b, 0, None), stretch=stretch, Q=q)


def run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..cube import CubeSchemaError, open_cube

    try:
        ds = open_cube(args.store, storage_options=storage_options_from_args(args))
        sel = parse_range(args.pairs, ds.sizes["pair"])
    except (CubeSchemaError, ValueError) as exc:
        return fail(str(exc))
    part = ds.isel(pair=sel)[["host", "arc", "theta_e", "arc_snr", "hard_negative"]].compute()
    bands = [str(b) for b in ds["band"].values]
    n = part.sizes["pair"]
    from ..masking import control_stamp, control_weights_of

    w_core = control_weights_of(ds.attrs, int(ds.sizes["x"]))  # a core-matched control carries core light
    fig, axes = plt.subplots(n, 3, figsize=(6.0, 2.0 * n), squeeze=False)
    for k in range(n):
        host = part["host"].values[k]
        arc = part["arc"].values[k]
        amax = float(np.nanmax(arc)) if np.isfinite(arc).any() else 0.0
        arc_stretch = max(amax / 3.0, 1e-6)
        label = "negative" if int(part["hard_negative"].values[k]) else "lens"
        panels = [(host + arc, args.stretch, f"{label} #{int(part['pair'].values[k])}"),
                  (control_stamp(host, arc, w_core), args.stretch, "control"),
                  (arc, arc_stretch, f"arc  thetaE={float(part['theta_e'].values[k]):.2f}\" S/N={float(part['arc_snr'].values[k]):.1f}")]
        for j, (img, stretch, title) in enumerate(panels):
            ax = axes[k, j]
            ax.imshow(_rgb(img, bands, stretch, args.q), origin="lower", interpolation="nearest")
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(f"wrote {args.out} ({n} pairs)")
    return 0
