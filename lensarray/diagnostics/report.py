"""Write diagnose results: ``report.json`` (every figure) and a self-contained ``report.html``.

The HTML page has no external resources: figures are matplotlib PNGs embedded as base64 data
URIs, styles are inline, so the file can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np

__all__ = ["write_report", "write_json", "render_html", "figures"]


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


def _subplots(*grid, figsize, **kwargs):
    """``(figure, axes)`` on an Agg canvas of its own: pyplot and the global backend are never
    touched, so a notebook's inline plots keep working."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*grid, **kwargs)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _mid(rows):
    return [0.5 * (r["lo"] + r["hi"]) for r in rows]


def figures(res: dict, extras: dict) -> dict[str, str]:
    """Base64 PNGs of the report figures, by title."""
    figs: dict[str, str] = {}
    # core flux fraction vs theta_E
    fig, ax = _subplots(figsize=(6, 3.6))
    for band, info in res["core_flux"]["bands"].items():
        rows = info["by_theta_e"]
        x = [m for m, r in zip(_mid(rows), rows) if r["median"] is not None]
        med = [r["median"] for r in rows if r["median"] is not None]
        lo = [r["q25"] for r in rows if r["median"] is not None]
        hi = [r["q75"] for r in rows if r["median"] is not None]
        if x:
            ax.plot(x, med, "o-", label=f"{band} median")
            ax.fill_between(x, lo, hi, alpha=0.2)
    ax.set_xlabel("theta_E (arcsec)")
    ax.set_ylabel("core flux fraction (r < core radius)")
    ax.set_title("Arc light in the core vs Einstein radius (IQR shaded)")
    ax.legend(fontsize=8)
    figs["Core flux fraction vs theta_E"] = _png(fig)

    # LR AUC per theta_E bin
    fig, ax = _subplots(figsize=(6, 3.6))
    for key, label, fmt in (("core_lr", "core LR", "o-"), ("core_lr_masked", "centre-masked", "s--"),
                            ("null_lr", "null cube", "^:")):
        part = res.get(key)
        if not part:
            continue
        rows = [r for r in part["by_theta_e"] if r["auc"] is not None]
        if rows:
            x = _mid(rows)
            y = [r["auc"] for r in rows]
            err = np.array([[r["auc"] - (r["ci"][0] if r["ci"][0] is not None else r["auc"]) for r in rows],
                            [(r["ci"][1] if r["ci"][1] is not None else r["auc"]) - r["auc"] for r in rows]])
            ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt=fmt, capsize=3, label=f"{label} (all: {part['auc']:.3f})")
    gate = next((g for g in res["gates"] if g["name"] == "core_lr_auc"), None)
    if gate:
        ax.axhline(gate["threshold"], color="red", lw=1, label=f"gate {gate['threshold']}")
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_ylim(0.4, 1.02)
    ax.set_xlabel("theta_E (arcsec)")
    ax.set_ylabel("AUC (out of fold, 95% CI)")
    ax.set_title("Core logistic regression AUC per theta_E bin")
    ax.legend(fontsize=8)
    figs["Core LR AUC per theta_E bin"] = _png(fig)

    # arc_snr vs target
    fig, ax = _subplots(figsize=(6, 3.6))
    bins = res["arc_snr"]["bins"]
    idx = np.arange(len(bins))
    ax.bar(idx - 0.2, [b["fraction"] for b in bins], width=0.4, label="cube")
    ax.bar(idx + 0.2, [b["target"] for b in bins], width=0.4, label="target")
    ax.set_xticks(idx, [f"{b['lo']:g}-{b['hi']:g}" for b in bins])
    ax.set_xlabel("arc_snr bin")
    ax.set_ylabel("fraction of injections")
    ax.set_title("arc_snr distribution vs configured target")
    ax.legend(fontsize=8)
    figs["arc_snr histogram vs target"] = _png(fig)

    # systematics by class
    fig, axes = _subplots(1, 2, figsize=(8, 3.4))
    groups = [("all", res["systematics"]["by_role"])] + list(res["systematics"]["by_split"].items())
    names = [g for g, _ in groups]
    x = np.arange(len(names))
    for i, role in enumerate(("lens", "control")):
        axes[0].bar(x + (i - 0.5) * 0.4, [d[role]["bad_pixel_frac_mean"] or 0 for _, d in groups], width=0.4,
                    label=role)
        axes[1].bar(x + (i - 0.5) * 0.4, [d[role]["nan_count_total"] + d[role]["inf_count_total"]
                                           + d[role]["nodata_flux_count_total"] for _, d in groups], width=0.4, label=role)
    for a, t in zip(axes, ("mean bad-pixel fraction", "NaN + inf + flux-in-no-data pixels")):
        a.set_xticks(x, names)
        a.set_title(t, fontsize=9)
        a.legend(fontsize=8)
    fig.suptitle("Systematics by role and split")
    figs["Systematics by class"] = _png(fig)

    # visibility vs arc_snr
    fig, ax = _subplots(figsize=(6, 3.6))
    m = extras["is_lens"]
    ax.scatter(extras["arc_snr"][m], extras["lens_visibility"][m], s=4, alpha=0.5, label="lens")
    ax.scatter(extras["arc_snr"][m], extras["control_visibility"][m], s=4, alpha=0.5, label="control")
    ax.set_xscale("symlog")
    ax.set_xlabel("arc_snr")
    ax.set_ylabel("visibility proxy")
    ax.set_title("Arc visibility proxy vs arc_snr")
    ax.legend(fontsize=8)
    figs["Arc visibility vs arc_snr"] = _png(fig)

    if extras.get("anchor_central_brightness") is not None:
        fig, ax = _subplots(figsize=(6, 3.6))
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
        figs["Host brightness vs anchors"] = _png(fig)

    ex = extras.get("examples")
    if ex is not None and len(ex["pair"]):
        k = len(ex["pair"])
        fig, axes = _subplots(3, k, figsize=(2.1 * k, 6.4), squeeze=False)
        for j in range(k):
            host, arc = ex["host"][j], ex["arc"][j]
            lens = host + arc
            vmin, vmax = np.nanpercentile(host, [1, 99.5])
            amax = float(np.nanmax(np.abs(arc))) or 1.0
            for i, (img, title, kw) in enumerate(((lens, "lens", dict(vmin=vmin, vmax=vmax)),
                                                  (host, "control", dict(vmin=vmin, vmax=vmax)),
                                                  (arc, "arc", dict(vmin=0, vmax=amax)))):
                axes[i, j].imshow(np.arcsinh(img / max(abs(vmax), 1e-6)) if title != "arc" else img, origin="lower",
                                  cmap="gray" if title != "arc" else "magma",
                                  **({} if title != "arc" else kw))
                axes[i, j].set_xticks([])
                axes[i, j].set_yticks([])
                if j == 0:
                    axes[i, j].set_ylabel(title)
            axes[0, j].set_title(f"pair {ex['pair'][j]}\nθE={ex['theta_e'][j]:.2f}\" S/N={ex['arc_snr'][j]:.1f}",
                                 fontsize=8)
        fig.suptitle(f"Examples ({ex['band']} band): lens, control, arc")
        figs["Example stamps"] = _png(fig)
    return figs


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _table(rows: list[dict], cols: list[str] | None = None) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    cols = cols or list(rows[0].keys())

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return html.escape("" if v is None else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(res: dict, figs: dict[str, str]) -> str:
    """The report page (a string of self-contained HTML)."""
    res = _clean(res)
    gates = [dict(g, verdict="PASS" if g["passed"] else "FAIL") for g in res["gates"]]
    parts = [f"<h1>lensarray diagnose report</h1><p>source: <code>{html.escape(str(res.get('source')))}</code> "
             f"&middot; {res['n_pairs']} pairs &middot; bands {', '.join(res['bands'])} &middot; core-mask policy "
             f"{html.escape(str(res.get('core_mask_policy')))} &middot; lensarray {res['package_version']}</p>",
             f"<h2 class='{'pass' if res['passed'] else 'fail'}'>Verdict: "
             f"{'all gates pass' if res['passed'] else 'a gate fails'}</h2>",
             _table(gates, ["name", "value", "threshold", "rule", "verdict", "description"])]
    lr = res["core_lr"]
    parts.append("<h2>Core logistic regression</h2>")
    summary = [{"test": "core LR", "auc": lr["auc"], "ci95": lr["ci"], "pairs": lr["n_pairs"]}]
    if res.get("core_lr_masked"):
        m = res["core_lr_masked"]
        summary.append({"test": f"centre-masked ({m['ablation']})", "auc": m["auc"], "ci95": m["ci"], "pairs": m["n_pairs"]})
    if res.get("null_lr"):
        summary.append({"test": "null cube", "auc": res["null_lr"]["auc"], "ci95": res["null_lr"]["ci"],
                        "pairs": res["null_lr"]["n_pairs"]})
    parts.append(_table(summary))
    parts.append(f"<p>central {lr['box']}x{lr['box']} pixels of every band; GroupKFold by pair; subsample "
                 f"{lr['subsample']['n_pairs_used']} of {lr['subsample']['n_pairs_cube']} pairs.</p>")
    parts.append(_table(lr["by_theta_e"], ["lo", "hi", "n_pairs", "auc", "ci"]))
    parts.append("<h2>Core flux fraction</h2>")
    for band, info in res["core_flux"]["bands"].items():
        parts.append(f"<h3>band {html.escape(band)}: median {_num(info['median'])}, IQR [{_num(info['q25'])}, "
                     f"{_num(info['q75'])}], fraction above 0.1: {_num(info['frac_gt_0p1'])}</h3>")
        parts.append(_table(info["by_theta_e"], ["lo", "hi", "count", "median", "q25", "q75", "iqr"]))
        if band == "r" or len(res["core_flux"]["bands"]) == 1:
            parts.append("<p>by theta_E / PSF FWHM</p>")
            parts.append(_table(info["by_theta_e_over_psf"], ["lo", "hi", "count", "median", "q25", "q75", "iqr"]))
            parts.append("<p>by src_reff (arcsec)</p>")
            parts.append(_table(info["by_src_reff"], ["lo", "hi", "count", "median", "q25", "q75", "iqr"]))
    ii = res["inner_image"]
    parts.append("<h2>Inner (counter) image</h2>")
    parts.append(_table([{k: v for k, v in ii.items() if k != "by_theta_e"}]))
    parts.append(_table(ii["by_theta_e"], ["lo", "hi", "count", "median", "q25", "q75"]))
    parts.append("<h2>Systematics by class</h2>")
    parts.append("<p>flags: " + (html.escape("; ".join(res["systematics"]["flags"])) or "none") + "</p>")
    rows = []
    for grp, d in [("all", res["systematics"]["by_role"])] + list(res["systematics"]["by_split"].items()):
        for role in ("lens", "control"):
            r = d[role]
            rows.append({"group": grp, "role": role, "n": r["n"], "bad_pixel_frac": r["bad_pixel_frac_mean"],
                         "nan": r["nan_count_total"], "inf": r["inf_count_total"],
                         "nodata_flux": r["nodata_flux_count_total"],
                         "invvar_median_q50": {b: v[1] for b, v in r["invvar_median_q05_q50_q95"].items()}})
    parts.append(_table(rows))
    lk = res["leakage"]
    parts.append(f"<h2>Metadata leakage</h2><p>max symmetrised AUC {_num(lk['max_auc_sym'])} ({html.escape(str(lk['worst']))}); "
                 f"flagged: {html.escape(', '.join(lk['flagged']) or 'none')}</p>")
    parts.append(_table(sorted(lk["audited"], key=lambda a: -(a["auc_sym"] or 0))[:15], ["name", "kind", "auc", "auc_sym", "flagged"]))
    parts.append("<h3>signal statistics (carry the arc by design; not gated)</h3>")
    parts.append(_table(lk["signal"]))
    parts.append("<h2>arc_snr vs target</h2>")
    parts.append(_table(res["arc_snr"]["bins"]))
    parts.append("<h2>Arc visibility proxy</h2>")
    parts.append(f"<p>Spearman rho with arc_snr: {_num(res['visibility']['spearman_rho_vs_arc_snr'])}</p>")
    parts.append(_table(res["visibility"]["by_arc_snr"]))
    if res.get("anchors"):
        parts.append("<h2>Brightness vs anchors</h2>")
        parts.append(_table([res["anchors"]]))
    parts.append("<h2>Figures</h2>")
    for title, b64 in figs.items():
        parts.append(f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>"
                     f"<figcaption>{html.escape(title)}</figcaption></figure>")
    parts.append(f"<h2>Run</h2>{_table([dict(elapsed_s=res.get('elapsed_s'), **res.get('memory', {}))])}")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}th{background:#eee}.pass{color:#070}"
             ".fail{color:#b00}figure{display:inline-block;margin:.5em}figcaption{font-size:12px;text-align:center}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>lensarray diagnose</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def write_report(res: dict, extras: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (created); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j = write_json(res, out / "report.json")
    h = out / "report.html"
    h.write_text(render_html(res, figures(res, extras)), encoding="utf-8")
    return {"json": j, "html": h}
