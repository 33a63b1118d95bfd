"""Save a PNG grid of pairs: lens (host + arc), control (host) and the arc alone, as Lupton RGB.

Colours map z, r, g to red, green, blue (astropy's make_lupton_rgb); the same stretch is used for
lens and control so that the only visible difference is the arc. The arc column uses its own
stretch so that faint arcs are visible.
"""

from __future__ import annotations

import numpy as np

from ._common import BadInputError, add_cluster_arguments, open_cube_from_args

NAME = "preview"
HELP = "PNG grid of lens | control | arc for a range of pairs (Lupton RGB)"


def add_arguments(p) -> None:
    p.add_argument("store", help="cube location (local path or s3://...)")
    p.add_argument("--pairs", default="0:16", help="pair index range START:STOP (default 0:16, at most 64 pairs)")
    p.add_argument("--out", required=True, help="output PNG file")
    p.add_argument("--stretch", type=float, default=0.5, help="Lupton stretch, nanomaggy (default 0.5)")
    p.add_argument("--q", type=float, default=8.0, help="Lupton softening Q (default 8)")
    add_cluster_arguments(p)


def parse_range(text: str, n: int) -> slice:
    """``"A:B"`` -> slice, checked against ``n`` pairs (BadInputError naming the allowed range)."""
    try:
        a, b = (int(t) for t in text.split(":"))
    except ValueError:
        raise BadInputError(f"--pairs {text!r}: allowed START:STOP with integers, e.g. 0:16") from None
    if not (0 <= a < b <= n) or b - a > 64:
        raise BadInputError(f"--pairs {text!r}: allowed 0 <= START < STOP <= {n} with at most 64 pairs")
    return slice(a, b)


def _rgb(img: np.ndarray, bands: list[str], stretch: float, q: float) -> np.ndarray:
    from astropy.visualization import make_lupton_rgb

    def plane(name, fallback):
        return img[bands.index(name)] if name in bands else img[fallback]

    r, g, b = plane("z", -1), plane("r", len(bands) // 2), plane("g", 0)
    with np.errstate(invalid="ignore", divide="ignore"):  # all-zero pixels (no arc): 0/0 -> black
        return make_lupton_rgb(np.clip(r, 0, None), np.clip(g, 0, None), np.clip(b, 0, None), stretch=stretch, Q=q)


#: Image formats the preview can be saved as (matplotlib's Agg canvas).
FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


def check_output(out: str) -> str:
    """``out`` if it names a file in an existing folder with a known image extension."""
    import os

    ext = os.path.splitext(out)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise BadInputError(f"--out = {out!r}: allowed a file name ending in {', '.join('.' + f for f in FORMATS)}")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise BadInputError(f"--out = {out!r}: folder {folder} does not exist")
    if os.path.isdir(out):
        raise BadInputError(f"--out = {out!r}: is a directory; allowed an image file name")
    return ext


def run(args) -> int:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..cluster import cluster_section

    if not (args.stretch > 0 and np.isfinite(args.stretch)):
        raise BadInputError(f"--stretch = {args.stretch}: allowed a finite number > 0 (nanomaggy)")
    if not (args.q > 0 and np.isfinite(args.q)):
        raise BadInputError(f"--q = {args.q}: allowed a finite number > 0")
    check_output(args.out)
    cluster_section(args)
    ds = open_cube_from_args(args.store, args)
    sel = parse_range(args.pairs, ds.sizes["pair"])
    part = ds.isel(pair=sel)[["host", "arc", "theta_e", "arc_snr", "hard_negative"]].compute()
    bands = [str(b) for b in ds["band"].values]
    n = part.sizes["pair"]
    from ..masking import control_stamp, control_weights_of

    w_core = control_weights_of(ds.attrs, int(ds.sizes["x"]))  # a core-matched control carries core light
    fig = Figure(figsize=(6.0, 2.0 * n))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 3, squeeze=False)
    for k in range(n):
        host = part["host"].values[k]
        arc = part["arc"].values[k]
        amax = float(np.nanmax(arc)) if np.isfinite(arc).any() else 0.0
        arc_stretch = max(amax / 3.0, 1e-6)
        label = "negative" if int(part["hard_negative"].values[k]) else "lens"
        panels = [
            (host + arc, args.stretch, f"{label} #{int(part['pair'].values[k])}"),
            (control_stamp(host, arc, w_core), args.stretch, "control"),
            (
                arc,
                arc_stretch,
                f'arc  thetaE={float(part["theta_e"].values[k]):.2f}" S/N={float(part["arc_snr"].values[k]):.1f}',
            ),
        ]
        for j, (img, stretch, title) in enumerate(panels):
            ax = axes[k, j]
            ax.imshow(_rgb(img, bands, stretch, args.q), origin="lower", interpolation="nearest")
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out} ({n} pairs)")
    return 0
