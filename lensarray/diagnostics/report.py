"""Write diagnose results: ``report.json`` (every figure) and a self-contained ``report.html``.

The HTML page has no external resources: figures are matplotlib PNGs embedded as base64 data
URIs, styles are inline, so the file can be mailed or archived as is. It is written to be read
in a minute: the verdicts first (pass / fail / not run, each with its number, CI and one line of
meaning), then the key figures and the example stamps, then every table, collapsed.
Figures use matplotlib's object API only (``Figure`` + ``FigureCanvasAgg``): no pyplot state, no
backend switching in a library.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np

__all__ = [
    "write_report",
    "write_json",
    "render_html",
    "figures",
    "new_figure",
    "png_b64",
    "table",
    "details",
    "fmt_cell",
    "gallery",
    "stretch",
    "sky_sigma",
]


def _clean(obj):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def write_json(results: dict, path: str | Path) -> Path:
    """``results`` as strict JSON (NaN written as null)."""
    path = Path(path)
    path.write_text(json.dumps(_clean(results), indent=2, allow_nan=False))
    return path


def new_figure(figsize=(6, 3.6)):
    """A matplotlib ``Figure`` on an Agg canvas (object API: no pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def png_b64(fig) -> str:
    """Base64 PNG of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _mid(rows):
    return [0.5 * (r["lo"] + r["hi"]) for r in rows]


def _errorbars(ax, rows, fmt, label, dx=0.0):
    rows = [r for r in rows if r.get("auc") is not None]
    if not rows:
        return
    x = np.array(_mid(rows)) + dx
    y = np.array([r["auc"] for r in rows])
    lo = np.array([r["ci"][0] if r["ci"][0] is not None else r["auc"] for r in rows])
    hi = np.array([r["ci"][1] if r["ci"][1] is not None else r["auc"] for r in rows])
    ax.errorbar(x, y, yerr=np.clip(np.stack([y - lo, hi - y]), 0, None), fmt=fmt, capsize=3, label=label)


def stretch(img: np.ndarray, sigma: float) -> np.ndarray:
    """The gallery stretch: ``asinh(I / sigma)``, ``sigma`` the sky noise (nanomaggy)."""
    return np.arcsinh(np.asarray(img, np.float64) / max(float(sigma), 1e-12))


def sky_sigma(img: np.ndarray) -> float:
    """Robust sky noise of a stamp (1.4826 MAD of its outer pixels, r > 0.4 size)."""
    from ..geometry import radius_grid

    size = img.shape[-1]
    outer = radius_grid(size) > 0.4 * size
    v = np.asarray(img)[outer]
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1.0
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) or float(np.std(v)) or 1.0


def gallery(ex: dict, *, lo: float = -3.0, hi: float = 20.0):
    """Lens, control and lens - control of example pairs at one labelled asinh stretch."""
    k = len(ex["pair"])
    fig = new_figure((2.0 * k, 6.6))
    axes = fig.subplots(3, k, squeeze=False)
    ctrl_all = ex.get("control", ex["host"])
    for j in range(k):
        lens = ex["host"][j] + ex["arc"][j]
        control = ctrl_all[j]
        sig = sky_sigma(control)
        vmin, vmax = np.arcsinh(lo), np.arcsinh(hi)
        for i, (img, title) in enumerate(((lens, "lens"), (control, "control"), (lens - control, "lens - control"))):
            axes[i, j].imshow(
                stretch(img, sig),
                origin="lower",
                cmap="gray" if i < 2 else "magma",
                vmin=vmin if i < 2 else 0.0,
                vmax=vmax,
            )
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(title)
        axes[0, j].set_title(f'pair {ex["pair"][j]}\nθE={ex["theta_e"][j]:.2f}" S/N={ex["arc_snr"][j]:.1f}', fontsize=8)
    fig.suptitle(
        f"Examples ({ex['band']} band). Stretch: asinh(I / σ_sky), σ_sky = per-stamp sky noise; "
        f"grey range [{lo:g}, {hi:g}] σ_sky",
        fontsize=9,
    )
    return fig


def figures(res: dict, extras: dict) -> dict[str, str]:
    """Base64 PNGs of the report figures, by title (the first two are the key figures)."""
    figs: dict[str, str] = {}
    # core LR AUC per theta_E bin, by region
    regions = res.get("core_lr_regions") or {"box": res["core_lr"]}
    fig = new_figure((6.4, 3.8))
    ax = fig.subplots()
    for off, (reg, fmt) in zip((-0.02, 0.0, 0.02), (("disc", "o-"), ("box", "s--"), ("ring", "^:")), strict=True):
        part = regions.get(reg)
        if part:
            _errorbars(ax, part["by_theta_e"], fmt, f"{reg} (all: {part['auc']:.3f})", off)
    if res.get("core_lr_masked"):
        m = res["core_lr_masked"]
        _errorbars(ax, m["by_theta_e"], "x-.", f"centre-masked {m.get('region', '')} (all: {m['auc']:.3f})", 0.04)
    gate = next((g for g in res["gates"] if g["name"] == "core_lr_auc"), None)
    if gate:
        ax.axhline(gate["threshold"], color="red", lw=1, label=f"gate {gate['threshold']}")
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_ylim(0.4, 1.02)
    ax.set_xlabel("theta_E (arcsec)")
    ax.set_ylabel("AUC (out of fold, 95% CI)")
    ax.set_title("Core logistic regression AUC per theta_E bin: disc, box, ring")
    ax.legend(fontsize=7)
    figs["Core LR AUC per theta_E bin (disc / box / ring)"] = png_b64(fig)

    ex = extras.get("examples")
    if ex is not None and len(ex["pair"]):
        figs[
            "Example stamps: lens, control, lens - control (stretch asinh(I / σ_sky), σ_sky the stamp's "
            "sky noise; grey range [-3, 20] σ_sky)"
        ] = png_b64(gallery(ex))

    # core flux fraction vs theta_E
    fig = new_figure()
    ax = fig.subplots()
    for band, info in res["core_flux"]["bands"].items():
        rows = [r for r in info["by_theta_e"] if r["median"] is not None]
        if rows:
            ax.plot(_mid(rows), [r["median"] for r in rows], "o-", label=f"{band} median")
            ax.fill_between(_mid(rows), [r["q25"] for r in rows], [r["q75"] for r in rows], alpha=0.2)
    ax.set_xlabel("theta_E (arcsec)")
    ax.set_ylabel("core flux fraction (r < core radius)")
    ax.set_title("Arc light in the core vs Einstein radius (IQR shaded)")
    ax.legend(fontsize=8)
    figs["Core flux fraction vs theta_E"] = png_b64(fig)

    # arc_snr vs target
    fig = new_figure()
    ax = fig.subplots()
    bins = res["arc_snr"]["bins"]
    idx = np.arange(len(bins))
    ax.bar(idx - 0.2, [b["fraction"] for b in bins], width=0.4, label="cube")
    ax.bar(idx + 0.2, [b["target"] for b in bins], width=0.4, label="target")
    ax.set_xticks(idx, [f"{b['lo']:g}-{b['hi']:g}" for b in bins])
    ax.set_xlabel("arc_snr bin (matched filter)")
    ax.set_ylabel("fraction of injections")
    ax.set_title("arc_snr distribution vs configured target")
    ax.legend(fontsize=8)
    figs["arc_snr histogram vs target"] = png_b64(fig)

    # systematics by class
    fig = new_figure((8, 3.4))
    axes = fig.subplots(1, 2)
    groups = [("all", res["systematics"]["by_role"])] + list(res["systematics"]["by_split"].items())
    x = np.arange(len(groups))
    for i, role in enumerate(("lens", "control")):
        axes[0].bar(
            x + (i - 0.5) * 0.4, [d[role]["bad_pixel_frac_mean"] or 0 for _, d in groups], width=0.4, label=role
        )
        axes[1].bar(
            x + (i - 0.5) * 0.4,
            [
                d[role]["nan_count_total"] + d[role]["inf_count_total"] + d[role]["nodata_flux_count_total"]
                for _, d in groups
            ],
            width=0.4,
            label=role,
        )
    for a, t in zip(axes, ("mean bad-pixel fraction", "NaN + inf + flux-in-no-data pixels"), strict=True):
        a.set_xticks(x, [g for g, _ in groups])
        a.set_title(t, fontsize=9)
        a.legend(fontsize=8)
    fig.suptitle("Systematics by role and split")
    figs["Systematics by class"] = png_b64(fig)

    # visibility vs arc_snr
    fig = new_figure()
    ax = fig.subplots()
    m = extras["is_lens"]
    ax.scatter(extras["arc_snr"][m], extras["lens_visibility"][m], s=4, alpha=0.5, label="lens")
    ax.scatter(extras["arc_snr"][m], extras["control_visibility"][m], s=4, alpha=0.5, label="control")
    ax.set_xscale("symlog")
    ax.set_xlabel("arc_snr (matched filter)")
    ax.set_ylabel("visibility proxy")
    ax.set_title("Arc visibility proxy vs arc_snr")
    ax.legend(fontsize=8)
    figs["Arc visibility vs arc_snr"] = png_b64(fig)

    if extras.get("anchor_central_brightness") is not None:
        fig = new_figure()
        ax = fig.subplots()
        h = extras["host_central_brightness"]
        a = extras["anchor_central_brightness"]
        allv = np.concatenate([h[np.isfinite(h)], a[np.isfinite(a)]])
        edges = np.quantile(allv, np.linspace(0, 1, 21)) if allv.size > 2 else 10
        ax.hist(h, bins=edges, density=True, alpha=0.5, label="cube hosts")
        ax.hist(a, bins=edges, density=True, alpha=0.5, label="anchors")
        ax.set_xscale("log")
        ax.set_xlabel("central brightness (nmgy / pixel, median r < 8 px, r band)")
        ax.set_title("Host brightness vs anchors")
        ax.legend(fontsize=8)
        figs["Host brightness vs anchors"] = png_b64(fig)
    return figs


def _num(v, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    return f"{float(v):.{digits}g}" if abs(float(v)) < 1e4 else f"{float(v):.4g}"


def _ci(ci) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "n/a"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def fmt_cell(v) -> str:
    """One table cell as text: numbers to 4 significant digits, lists joined, dicts as ``k: v`` pairs."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return html.escape("; ".join(f"{k}: {fmt_cell(x)}" for k, x in v.items()))
    if isinstance(v, list):
        return ", ".join(fmt_cell(x) for x in v)
    return html.escape("" if v is None else str(v))


def _readable(v):
    """A JSON-encoded attribute as the dict it encodes (so it is shown as ``k: v`` pairs)."""
    if isinstance(v, str) and v.startswith("{"):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def table(rows: list[dict], cols: list[tuple[str, str]] | None = None) -> str:
    """HTML table; ``cols`` = [(key, header with unit)], default every key of the first row."""
    if not rows:
        return "<p><em>none</em></p>"
    cols = cols or [(k, k) for k in rows[0].keys()]
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in cols)
    body = "".join("<tr>" + "".join(f"<td>{fmt_cell(r.get(k))}</td>" for k, _ in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def details(summary: str, inner: str, open_: bool = False) -> str:
    """A collapsible section."""
    return f"<details{' open' if open_ else ''}><summary>{html.escape(summary)}</summary>{inner}</details>"


_BIN_COLS = [
    ("lo", "θE lo (arcsec)"),
    ("hi", "θE hi (arcsec)"),
    ("n_pairs", "pairs"),
    ("auc", "AUC"),
    ("ci", "AUC 95% CI"),
]
_Q_COLS = [("lo", "lo"), ("hi", "hi"), ("count", "count"), ("median", "median"), ("q25", "q25"), ("q75", "q75")]


def _verdict_rows(gates: list[dict]) -> str:
    out = []
    for g in gates:
        status = g.get("status") or ("not run" if g["passed"] is None else "pass" if g["passed"] else "fail")
        cls = {"pass": "pass", "fail": "fail"}.get(status, "notrun")
        thr = g["threshold"]
        thr = (
            f"{thr[0]:g} - {thr[1]:g}"
            if isinstance(thr, list) and len(thr) == 2 and all(isinstance(t, (int, float)) for t in thr)
            else fmt_cell(thr)
        )
        out.append(
            f"<tr><td class='{cls} badge'>{status.upper()}</td><td><b>{html.escape(g['name'])}</b></td>"
            f"<td>{_num(g['value'])}</td><td>{_ci(g.get('ci'))}</td><td>{thr} ({html.escape(g['rule'])})</td>"
            f"<td>{html.escape(g.get('meaning') or '')}<br><small>{html.escape(g['description'])}</small></td></tr>"
        )
    return (
        "<table class='verdicts'><thead><tr><th>verdict</th><th>gate</th><th>value</th><th>95% CI</th>"
        "<th>threshold</th><th>what it means</th></tr></thead><tbody>" + "".join(out) + "</tbody></table>"
    )


def render_html(res: dict, figs: dict[str, str]) -> str:
    """The report page (a string of self-contained HTML)."""
    res = _clean(res)
    gates = res["gates"]
    n_fail = sum(g["passed"] is False for g in gates)
    n_not = sum(g["passed"] is None for g in gates)
    verdict = (
        f"{n_fail} gate{'s' if n_fail > 1 else ''} fail"
        if n_fail
        else "all gates that ran pass" + (f" ({n_not} not run)" if n_not else "")
    )
    pol = {k: _readable(v) for k, v in (res.get("policies") or {}).items()}
    parts = [
        f"<h1>lensarray diagnose report</h1><p>source: <code>{html.escape(str(res.get('source')))}</code> "
        f"&middot; {res['n_pairs']} pairs &middot; bands {', '.join(res['bands'])} &middot; "
        f"{res['stamp_size']}x{res['stamp_size']} px &middot; lensarray {res['package_version']}</p>",
        f"<h2 class='{'fail' if n_fail else ('notrun' if n_not else 'pass')}'>Verdict: {verdict}</h2>",
        _verdict_rows(gates),
    ]
    # one line per extra fact an astronomer asks first
    facts = []
    fl = res.get("below_snr_floor")
    if fl:
        facts.append(
            f"S/N floor {fl['floor']:g} ({fl['action']}): {fl['n_labelled']} of {fl['n_pairs']} pairs "
            "labelled non-lens because their stored arc fell below it"
        )
    sd = res.get("snr_definitions")
    if sd and sd["n_lenses"]:
        facts.append(
            f"median lens S/N: matched filter {_num(sd['matched_filter'][2])}, aperture "
            f"{_num(sd['aperture'][2])} (aperture/matched median {_num(sd['ratio_aperture_over_matched'][2])})"
        )
    if pol.get("core_mask_policy"):
        facts.append(
            f"core mask: {fmt_cell(pol['core_mask_policy'])}; control = "
            f"{html.escape(str(pol.get('control_stamp', 'host')))}"
        )
    elif res.get("core_mask_policy"):
        facts.append(f"core mask: {html.escape(str(res['core_mask_policy']))}")
    if facts:
        parts.append("<ul>" + "".join(f"<li>{f}</li>" for f in facts) + "</ul>")
    titles = list(figs)
    parts.append("<h2>Key figures</h2>")
    for title in titles[:2]:
        parts.append(
            f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{figs[title]}'>"
            f"<figcaption>{html.escape(title)}</figcaption></figure>"
        )

    # core LR by region
    regions = res.get("core_lr_regions") or {}
    rows = [
        {
            "region": k,
            "auc": v["auc"],
            "ci": _ci(v["ci"]),
            "n_pixels": v.get("n_pixels"),
            "pairs": v["n_pairs"],
            "meaning": v.get("meaning", ""),
        }
        for k, v in regions.items()
    ]
    lr = res["core_lr"]
    inner = table(
        rows,
        [
            ("region", "region"),
            ("auc", "AUC"),
            ("ci", "AUC 95% CI"),
            ("n_pixels", "pixels per band"),
            ("pairs", "pairs"),
            ("meaning", "what it measures"),
        ],
    )
    inner += (
        f"<p>Logistic regression on the region's pixels of every band; GroupKFold by pair (a lens and its control "
        f"never straddle folds); subsample {lr['subsample']['n_pairs_used']} of {lr['subsample']['n_pairs_cube']} "
        f"pairs; the gate reads <b>{html.escape(str(lr.get('region', 'box')))}</b>.</p>"
    )
    for k, v in regions.items():
        inner += details(
            f"{k}: AUC per theta_E bin (bins from the cube's theta_E prior)", table(v["by_theta_e"], _BIN_COLS)
        )
    if res.get("core_lr_masked"):
        m = res["core_lr_masked"]
        inner += details(
            f"centre-masked stamps ({fmt_cell(m['ablation'])}): AUC {_num(m['auc'])} {_ci(m['ci'])}",
            table(m["by_theta_e"], _BIN_COLS),
        )
    if res.get("core_lr_hard_negatives"):
        h = res["core_lr_hard_negatives"]
        inner += f"<p>core: real lens vs hard negative AUC {_num(h['auc'])} {_ci(h['ci'])}</p>"
    parts.append(details("Core logistic regression: disc, box, ring", inner, open_=True))
    ep = res.get("edge_probe")
    if ep:
        parts.append(
            details(
                f"Mask-edge probe: {_num(ep['frac_sharp'])} of lenses step from ~0 to significant at r = {ep['radius_px']} px",
                "<p>per lens pair, the mean band-summed lens - control light in 1-px annuli; a step is an annulus holding "
                f">= {ep['significant']:g} of the arc's level next to an inner one holding <= {ep['ratio_max']:g} of it "
                "(a hard mask's edge; seeing-blurred light never does this)</p>"
                + table(
                    ep["by_radius"], [("radius_px", "radius (px)"), ("frac_sharp", "fraction of lenses with a step")]
                ),
            )
        )
    ni = res.get("null_identity")
    if ni:
        parts.append(
            details(
                f"Null identity check: {'PASS' if ni['passed'] else 'FAIL'} ({ni['n_pairs']} pairs)",
                "<p>null lens and control stamps compared bit for bit after each step of the training "
                "path, with the same random draws for both stamps of a pair; max |arc| stored "
                f"{_num(ni['max_abs_arc'])} nanomaggy</p>"
                + table(
                    ni["steps"],
                    [
                        ("step", "step"),
                        ("identical", "identical"),
                        ("n_differing_pairs", "pairs differing"),
                        ("dtype", "dtype"),
                    ],
                ),
            )
        )
    if sd:
        rows = [
            {"stat": name, **{f"q{int(q * 100):02d}": v for q, v in zip(sd["quantiles"], sd[key], strict=True)}}
            for name, key in (
                ("matched filter (arc_snr)", "matched_filter"),
                ("aperture (arc_snr_aperture)", "aperture"),
                ("aperture / matched filter", "ratio_aperture_over_matched"),
            )
        ]
        defs = "".join(
            f"<li>{html.escape(k)}: {fmt_cell(pol[k])}</li>"
            for k in ("arc_snr_definition", "arc_snr_aperture_definition", "arc_snr_calibration")
            if k in pol
        )
        parts.append(details("S/N definitions (lenses)", f"<ul>{defs}</ul>" + table(rows)))
    if pol:
        parts.append(
            details("Policies recorded in the cube", table([{"attribute": k, "value": v} for k, v in pol.items()]))
        )

    body = []
    for band, info in res["core_flux"]["bands"].items():
        body.append(
            f"<h3>band {html.escape(band)}: median {_num(info['median'])}, IQR [{_num(info['q25'])}, "
            f"{_num(info['q75'])}], fraction above 0.1: {_num(info['frac_gt_0p1'])}</h3>"
        )
        body.append(table(info["by_theta_e"], [("lo", "θE lo (arcsec)"), ("hi", "θE hi (arcsec)")] + _Q_COLS[2:]))
        if band == "r" or len(res["core_flux"]["bands"]) == 1:
            body.append("<p>by theta_E / PSF FWHM</p>" + table(info["by_theta_e_over_psf"], _Q_COLS))
            body.append(
                "<p>by src_reff</p>"
                + table(
                    info["by_src_reff"], [("lo", "src_reff lo (arcsec)"), ("hi", "src_reff hi (arcsec)")] + _Q_COLS[2:]
                )
            )
    parts.append(details("Core flux fraction (stored arc flux at r < core radius / total)", "".join(body)))
    ii = res["inner_image"]
    parts.append(
        details(
            "Inner (counter) image: analytic SIS radius |theta_E - beta| from the lens centre (pixels)",
            table([{k: v for k, v in ii.items() if k != "by_theta_e"}])
            + table(
                ii["by_theta_e"],
                [
                    ("lo", "θE lo (arcsec)"),
                    ("hi", "θE hi (arcsec)"),
                    ("count", "count"),
                    ("median", "median (px)"),
                    ("q25", "q25 (px)"),
                    ("q75", "q75 (px)"),
                ],
            ),
        )
    )
    rows = []
    for grp, d in [("all", res["systematics"]["by_role"])] + list(res["systematics"]["by_split"].items()):
        for role in ("lens", "control"):
            r = d[role]
            rows.append(
                {
                    "group": grp,
                    "role": role,
                    "n": r["n"],
                    "bad_pixel_frac": r["bad_pixel_frac_mean"],
                    "nan": r["nan_count_total"],
                    "inf": r["inf_count_total"],
                    "nodata_flux": r["nodata_flux_count_total"],
                    "invvar_median_q50": {b: v[1] for b, v in r["invvar_median_q05_q50_q95"].items()},
                }
            )
    parts.append(
        details(
            "Systematics by class",
            "<p>flags: "
            + (html.escape("; ".join(res["systematics"]["flags"])) or "none")
            + "</p>"
            + table(
                rows,
                [
                    ("group", "group"),
                    ("role", "role"),
                    ("n", "stamps"),
                    ("bad_pixel_frac", "bad-pixel fraction"),
                    ("nan", "NaN pixels"),
                    ("inf", "inf pixels"),
                    ("nodata_flux", "flux in no-data pixels"),
                    ("invvar_median_q50", "median invvar per band (nmgy^-2)"),
                ],
            ),
        )
    )
    lk = res["leakage"]
    parts.append(
        details(
            f"Metadata leakage: max symmetrised AUC {_num(lk['max_auc_sym'])} ({lk['worst']})",
            f"<p>flagged: {html.escape(', '.join(lk['flagged']) or 'none')}</p>"
            + table(
                sorted(lk["audited"], key=lambda a: -(a["auc_sym"] or 0))[:15],
                [
                    ("name", "variable"),
                    ("kind", "kind"),
                    ("auc", "AUC"),
                    ("auc_sym", "max(AUC, 1-AUC)"),
                    ("flagged", "flagged"),
                ],
            )
            + "<h3>signal statistics (carry the arc by design; not gated)</h3>"
            + table(lk["signal"]),
        )
    )
    parts.append(
        details(
            "arc_snr vs target",
            table(
                res["arc_snr"]["bins"],
                [
                    ("lo", "S/N lo"),
                    ("hi", "S/N hi"),
                    ("count", "lenses"),
                    ("fraction", "fraction"),
                    ("target", "target fraction"),
                    ("diff", "fraction - target"),
                ],
            ),
        )
    )
    parts.append(
        details(
            f"Arc visibility proxy (Spearman rho with arc_snr {_num(res['visibility']['spearman_rho_vs_arc_snr'])})",
            table(res["visibility"]["by_arc_snr"]),
        )
    )
    if res.get("anchors"):
        parts.append(details("Brightness vs anchors", table([res["anchors"]])))
    if len(titles) > 2:
        parts.append(
            details(
                "More figures",
                "".join(
                    f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{figs[t]}'>"
                    f"<figcaption>{html.escape(t)}</figcaption></figure>"
                    for t in titles[2:]
                ),
                open_=True,
            )
        )
    mem = res.get("memory", {})
    parts.append(details("Run", table([dict(elapsed_s=res.get("elapsed_s"), **mem)])))
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1150px}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px;vertical-align:top}th{background:#eee}"
        ".pass{color:#070}.fail{color:#b00}.notrun{color:#777}.badge{font-weight:bold}"
        "details{margin:.4em 0}summary{cursor:pointer;font-weight:bold}"
        "figure{display:inline-block;margin:.5em}figcaption{font-size:12px;text-align:center}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>lensarray diagnose</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_report(res: dict, extras: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (created); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j = write_json(res, out / "report.json")
    h = out / "report.html"
    h.write_text(render_html(res, figures(res, extras)), encoding="utf-8")
    return {"json": j, "html": h}
