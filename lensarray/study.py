"""The remedy study: one set of priors, one seed, the unmasked cube and every core remedy, audited
side by side in one report.

For each remedy the pairs are rendered with :func:`lensarray.pipeline.render_pairs` (the one
renderer; the brightness-free part, :func:`~lensarray.pipeline.render_physical`, is shared by
every remedy with the same priors), reduced block by block to what the audit reads (central
squares for the core LR and the mask-edge probe, baseline features, per-pair S/N) and dropped:
no cube is kept. Each remedy is then audited with the same functions ``diagnose`` uses
(:func:`~lensarray.diagnostics.audit.core_lr_from_squares`) and a baseline finder
(:class:`~lensarray.baseline.BaselineClassifier`) is trained and scored on it.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import ConfigError, RunConfig

__all__ = ["Remedy", "default_remedies", "run_study", "write_study_report", "verdict"]

log = logging.getLogger(__name__)

#: Pairs rendered at once (bounds the pixels held in memory).
BLOCK = 256


@dataclass
class Remedy:
    """One cube variant: dotted configuration overrides and what it does, in words."""

    name: str
    overrides: dict = field(default_factory=dict)
    description: str = ""


def default_remedies(cfg: RunConfig, *, theta_e_min: float = 1.5) -> list[Remedy]:
    """The unmasked cube and the remedies of issue #11.

    Masks "as usually done" calibrate S/N before the mask (``snr_calibrate = unmasked``); the
    ``calibrated after mask`` remedy sets the target on the stored arc instead.
    """
    textbook = {"brightness.snr_calibrate": "unmasked"}
    out = [Remedy("unmasked", {"core_mask.policy": "none"}, "no remedy: the physical arc, core light included")]
    for r in (3.0, 5.0, 7.0):
        out.append(
            Remedy(
                f"hard r={r:g}",
                {"core_mask.policy": "hard", "core_mask.radius": r, **textbook},
                f"arc zeroed at r < {r:g} px, S/N set before the mask",
            )
        )
    out.append(
        Remedy(
            "taper 5/1",
            {"core_mask.policy": "taper", "core_mask.radius": 5.0, "core_mask.width": 1.0, **textbook},
            "arc x 0.5 (1 + tanh((r - 5) / 1)), S/N set before the mask",
        )
    )
    out.append(
        Remedy(
            "core-matched control (taper 5/1)",
            {
                "core_mask.policy": "taper",
                "core_mask.radius": 5.0,
                "core_mask.width": 1.0,
                "core_mask.apply_to": "control",
                "brightness.snr_calibrate": "stored",
            },
            "the lens keeps its whole arc; the control receives the arc's core light x (1 - taper)",
        )
    )
    out.append(
        Remedy(
            "core-matched control (hard r=5)",
            {
                "core_mask.policy": "hard",
                "core_mask.radius": 5.0,
                "core_mask.apply_to": "control",
                "brightness.snr_calibrate": "stored",
            },
            "the lens keeps its whole arc; the control receives the arc's light at r < 5 px",
        )
    )
    out.append(
        Remedy(
            "calibrated after mask (hard r=5)",
            {"core_mask.policy": "hard", "core_mask.radius": 5.0, "brightness.snr_calibrate": "stored"},
            "arc zeroed at r < 5 px, S/N target set on the stored arc",
        )
    )
    lo = max(theta_e_min, cfg.lens.theta_e_min)
    if lo < cfg.lens.theta_e_max:
        out.append(
            Remedy(
                f'theta_E_min = {lo:g}"',
                {"core_mask.policy": "none", "lens.theta_e_min": lo},
                f'no mask; Einstein radii below {lo:g}" (arc inside the core box) not drawn',
            )
        )
    return out


def _physics_key(cfg: RunConfig) -> str:
    """What the brightness-free render depends on (not brightness, core mask, diagnostics)."""
    import json

    d = cfg.to_dict()
    for sec in ("brightness", "core_mask", "diagnostics", "cluster"):
        d.pop(sec, None)
    d["snr_band"] = cfg.brightness.snr_band
    d["mode"] = cfg.brightness.mode
    return json.dumps(d, sort_keys=True)


def _reduce_block(arrays: dict, cfg: RunConfig, side: int) -> dict:
    """What the audit reads from one block of rendered pairs (pixels are dropped after this)."""
    from .baseline import stamp_features
    from .diagnostics.features import central_stamps, squares_by_role
    from .masking import control_arc_weights, control_stamp

    cm = cfg.core_mask
    w_core = control_arc_weights(cfg.run.size, cm.policy, cm.radius, cm.width, cm.apply_to)
    host, arc = arrays["host"], arrays["arc"]
    sq = squares_by_role(central_stamps(host, arc, side, w_core))
    return {
        "lens_sq": sq["lens"],
        "control_sq": sq["control"],
        "lens_feat": stamp_features(host + arc).astype(np.float32),
        "control_feat": stamp_features(control_stamp(host, arc, w_core)).astype(np.float32),
        **{k: arrays[k] for k in ("theta_e", "hard_negative", "arc_flux", "arc_snr", "arc_snr_aperture")},
    }


def _baseline(lens_feat, control_feat, neg, pair_ids, *, seed: int, n_boot: int, fpr: float = 0.01) -> dict:
    """Baseline finder trained on the first 60% of pairs, scored on the rest: AUC, recall at FPR."""
    from .baseline import BaselineClassifier
    from .evaluation import _bootstrap, recall_at_fpr
    from .statistics import roc_auc

    n = len(pair_ids)
    train = np.arange(n) < int(0.6 * n)
    lab = np.concatenate([neg == 0, np.zeros(n, bool)]).astype(int)
    X = np.concatenate([lens_feat, control_feat])
    tr = np.concatenate([train, train])
    groups = np.concatenate([pair_ids, pair_ids])
    if np.unique(lab[tr]).size < 2 or np.unique(lab[~tr]).size < 2:
        return {"auc": None, "auc_ci": [None, None], "recall_at_fpr": None, "recall_ci": [None, None], "fpr": fpr}
    # the baseline's own model on precomputed stamp_features (the study keeps features, not pixels)
    model = BaselineClassifier(seed=seed).model.fit(X[tr], lab[tr])
    score = model.predict_proba(X[~tr])[:, 1]
    y, g = lab[~tr], groups[~tr]
    return {
        "auc": roc_auc(y, score),
        "auc_ci": list(_bootstrap(roc_auc, y, score, g, n_boot, seed)),
        "recall_at_fpr": recall_at_fpr(y, score, fpr),
        "recall_ci": list(_bootstrap(lambda a, b: recall_at_fpr(a, b, fpr), y, score, g, n_boot, seed + 1)),
        "fpr": fpr,
        "n_test_pairs": int((~train).sum()),
    }


def verdict(
    row: dict,
    *,
    lr_auc_max: float,
    edge_frac_max: float,
    floor_frac_max: float = 0.05,
    floor_frac_unmasked: float = 0.0,
) -> str:
    """A plain-words verdict of one remedy from its audit numbers.

    A remedy is usable when the disc AUC is below the gate, no mask edge is left, and it adds at
    most ``floor_frac_max`` lenses below the S/N floor over the unmasked cube (the target S/N
    distribution itself may put lenses there).
    """
    disc, ring = row["regions"]["disc"]["auc"], row["regions"]["ring"]["auc"]
    words = []
    if disc is None:
        return "not measured"
    if disc >= lr_auc_max:
        words.append(f"shortcut remains: the core alone separates lens from control (disc AUC {disc:.2f})")
    else:
        words.append(f"no core shortcut (disc AUC {disc:.2f})")
    if row["edge_probe"]["frac_sharp"] is not None and row["edge_probe"]["frac_sharp"] > edge_frac_max:
        words.append(
            f"but the mask edge is a new feature ({row['edge_probe']['frac_sharp']:.0%} of lenses step at "
            f"r = {row['edge_probe']['radius_px']} px)"
        )
    extra = row["frac_below_floor"] - floor_frac_unmasked
    if extra > floor_frac_max:
        words.append(
            f"{extra:.0%} more lenses than unmasked end below S/N {row['floor']:g} "
            f"({row['frac_below_floor']:.0%}): labels without a visible arc"
        )
    if ring is not None and ring >= lr_auc_max and disc < lr_auc_max:
        words.append(f"arc light just outside the core is visible (ring AUC {ring:.2f}): real signal, not a shortcut")
    ok = disc < lr_auc_max and not (row["edge_probe"]["frac_sharp"] or 0) > edge_frac_max and extra <= floor_frac_max
    return ("USABLE: " if ok else "NOT CLEAN: ") + "; ".join(words)


def run_study(
    cfg: RunConfig,
    *,
    remedies: list[Remedy] | None = None,
    max_lr_pairs: int = 4000,
    n_boot: int = 200,
    seed: int = 0,
    floor: float = 2.0,
    progress: bool = False,
) -> dict:
    """Build (in blocks, in memory), audit and compare every remedy.

    Parameters
    ----------
    cfg
        The priors and seed (``run.n_pairs`` pairs per remedy); its own core mask is ignored.
    remedies
        Default :func:`default_remedies`.
    max_lr_pairs
        Pairs fed to the core LR and the baseline (the first ones).
    n_boot
        Bootstrap resamples of every CI.
    seed
        Seed of the LR folds, bootstraps and baseline.
    floor
        S/N (matched filter) below which a lens is counted as having no visible arc.
    progress
        Log each block.

    Returns
    -------
    dict
        ``config``, ``remedies`` (list of rows: name, description, regions (disc/box/ring AUC,
        CI, per theta_E bin), edge_probe, frac_below_floor (+ by theta_E bin), snr quantiles,
        baseline, verdict).
    """
    from .diagnostics.audit import core_lr_from_squares
    from .geometry import central_side
    from .pipeline import render_pairs, render_physical
    from .statistics import bin_masks, theta_e_edges

    cfg.validate()
    remedies = remedies or default_remedies(cfg)
    cfgs = []
    for rem in remedies:
        try:
            cfgs.append(cfg.replace(**rem.overrides).validate())
        except ConfigError as exc:
            raise ConfigError(f"remedy {rem.name!r}: {str(exc).splitlines()[-1].strip()}") from None
    D = cfg.diagnostics
    side = central_side(cfg.run.size, D.core_radius, D.core_box, max(c.core_mask.radius for c in cfgs))
    n = cfg.run.n_pairs
    acc: list[list[dict]] = [[] for _ in remedies]
    for a in range(0, n, BLOCK):
        ids = np.arange(a, min(a + BLOCK, n), dtype=np.int64)
        cache: dict[str, dict] = {}
        for k, c in enumerate(cfgs):
            key = _physics_key(c)
            if key not in cache:
                cache[key] = render_physical(ids, c)
            acc[k].append(_reduce_block(render_pairs(ids, c, physical=cache[key]), c, side))
        if progress:
            log.info("study: %d / %d pairs rendered for %d remedies", ids[-1] + 1, n, len(remedies))
    edges = theta_e_edges(cfg.lens.theta_e_min, cfg.lens.theta_e_max)
    rows = []
    for rem, c, parts in zip(remedies, cfgs, acc, strict=True):
        t = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        m = min(max_lr_pairs, n)
        ids = np.arange(m)
        lr = core_lr_from_squares(
            {"lens": t["lens_sq"][:m], "control": t["control_sq"][:m]},
            side,
            ids,
            t["hard_negative"][:m],
            t["theta_e"][:m].astype(float),
            t["arc_flux"][:m],
            pixel_scale=c.run.pixel_scale,
            box=D.core_box,
            core_radius=D.core_radius,
            region=D.core_lr_region,
            theta_e_edges=edges,
            n_boot=n_boot,
            seed=seed,
        )
        lens = t["hard_negative"] == 0
        snr = t["arc_snr"].astype(float)
        below = lens & ~(snr >= floor)
        te = t["theta_e"].astype(float)
        by_bin = []
        for lo, hi, in_bin in bin_masks(te, edges):
            sel = lens & in_bin
            by_bin.append(
                {
                    "lo": lo,
                    "hi": hi,
                    "n_lenses": int(sel.sum()),
                    "frac_below_floor": float(below[sel].mean()) if sel.any() else None,
                }
            )
        ratio = t["arc_snr_aperture"][lens] / np.where(snr[lens] > 0, snr[lens], np.nan)
        row = {
            "name": rem.name,
            "description": rem.description,
            "overrides": rem.overrides,
            "regions": lr["regions"],
            "edge_probe": lr["edge_probe"],
            "floor": floor,
            "frac_below_floor": float(below.sum() / max(lens.sum(), 1)),
            "below_floor_by_theta_e": by_bin,
            "n_pairs": int(n),
            "n_lr_pairs": int(m),
            "arc_snr_median": float(np.nanmedian(snr[lens])) if lens.any() else None,
            "aperture_over_matched_median": float(np.nanmedian(ratio)) if lens.any() else None,
            "baseline": _baseline(
                t["lens_feat"][:m], t["control_feat"][:m], t["hard_negative"][:m], ids, seed=seed, n_boot=n_boot
            ),
        }
        rows.append(row)
    base = next((r["frac_below_floor"] for r in rows if r["name"] == "unmasked"), 0.0)
    for row in rows:
        row["verdict"] = verdict(row, lr_auc_max=D.lr_auc_max, edge_frac_max=D.edge_frac_max, floor_frac_unmasked=base)
    return {
        "config": cfg.to_dict(),
        "n_pairs": int(n),
        "seed": cfg.run.seed,
        "floor": floor,
        "theta_e_edges": list(edges),
        "lr_auc_max": D.lr_auc_max,
        "remedies": rows,
    }


def _fmt_auc(part: dict | None) -> str:
    if not part or part.get("auc") is None:
        return "n/a"
    ci = part.get("ci") or [None, None]
    return f"{part['auc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else f"{part['auc']:.3f}"


def summary_rows(study: dict) -> list[dict]:
    """One flat row per remedy (the study table)."""
    out = []
    for r in study["remedies"]:
        b = r["baseline"]
        rec = (
            "n/a"
            if b.get("recall_at_fpr") is None
            else (f"{b['recall_at_fpr']:.3f} [{b['recall_ci'][0]:.3f}, {b['recall_ci'][1]:.3f}]")
        )
        out.append(
            {
                "remedy": r["name"],
                "disc AUC [95% CI]": _fmt_auc(r["regions"]["disc"]),
                "box AUC [95% CI]": _fmt_auc(r["regions"]["box"]),
                "ring AUC [95% CI]": _fmt_auc(r["regions"]["ring"]),
                "edge step (frac of lenses)": f"{r['edge_probe']['frac_sharp']:.3f}",
                f"lenses with S/N < {study['floor']:g}": f"{r['frac_below_floor']:.3f}",
                "baseline AUC [95% CI]": _fmt_auc({"auc": b.get("auc"), "ci": b.get("auc_ci")}),
                "baseline recall @ FPR 1% [95% CI]": rec,
                "verdict": r["verdict"],
            }
        )
    return out


def markdown_table(study: dict) -> str:
    """The study table as Markdown (for notes and the README)."""
    rows = summary_rows(study)
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _auc_figure(study: dict, region: str):
    from .diagnostics.report import new_figure

    fig = new_figure((6.6, 3.8))
    ax = fig.subplots()
    k = len(study["remedies"])
    for j, r in enumerate(study["remedies"]):
        rows = [b for b in r["regions"][region]["by_theta_e"] if b["auc"] is not None]
        if not rows:
            continue
        x = np.array([0.5 * (b["lo"] + b["hi"]) for b in rows]) + 0.012 * (j - k / 2)
        y = np.array([b["auc"] for b in rows])
        lo = np.array([b["ci"][0] if b["ci"][0] is not None else b["auc"] for b in rows])
        hi = np.array([b["ci"][1] if b["ci"][1] is not None else b["auc"] for b in rows])
        ax.errorbar(x, y, yerr=np.clip(np.stack([y - lo, hi - y]), 0, None), fmt="o-", ms=3, capsize=2, label=r["name"])
    ax.axhline(study["lr_auc_max"], color="red", lw=1)
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_ylim(0.4, 1.02)
    ax.set_xlabel("theta_E (arcsec)")
    ax.set_ylabel("AUC (out of fold, 95% CI)")
    ax.set_title(f"Core LR AUC on the {region} per theta_E bin")
    ax.legend(fontsize=6, ncol=2)
    return fig


def write_study_report(study: dict, out_dir: str | Path) -> dict[str, Path]:
    """``study.json``, ``study.md`` (the table) and a self-contained ``study.html``."""
    from .diagnostics.report import details, png_b64, table, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j = write_json(study, out / "study.json")
    md = out / "study.md"
    md.write_text(markdown_table(study) + "\n", encoding="utf-8")
    rows = summary_rows(study)
    cfg = study["config"]
    head = (
        f"<h1>lensarray remedy study</h1><p>{study['n_pairs']} pairs per remedy &middot; seed {study['seed']} "
        f'&middot; theta_E {cfg["lens"]["theta_e_min"]:g}-{cfg["lens"]["theta_e_max"]:g}" &middot; target S/N edges '
        f"{cfg['brightness']['snr_edges']} fractions {cfg['brightness']['snr_fractions']} &middot; core radius "
        f"{cfg['diagnostics']['core_radius']:g} px, box {cfg['diagnostics']['core_box']} px</p>"
    )
    verdicts = (
        "<h2>Verdicts</h2><ul>"
        + "".join(f"<li><b>{html.escape(r['name'])}</b>: {html.escape(r['verdict'])}</li>" for r in study["remedies"])
        + "</ul>"
    )
    words = (
        "<p><b>disc</b>: pixels with r &lt; core radius, the core itself (the shortcut). <b>box</b>: the "
        "published 10x10 box (corners at r = 7.07 px: it also sees arc light). <b>ring</b>: box minus disc "
        "(arc light outside the core: real signal). <b>edge step</b>: fraction of lenses whose lens - control "
        "light jumps from ~0 to significant across one pixel (a hard mask's edge). Baseline: gradient-boosted "
        "trees on radial/azimuthal profile features, trained on 60% of pairs, scored on 40%.</p>"
    )
    figs = "".join(
        f"<figure><img alt='{reg}' src='data:image/png;base64,{png_b64(_auc_figure(study, reg))}'>"
        f"<figcaption>core LR AUC, {reg}</figcaption></figure>"
        for reg in ("disc", "box", "ring")
    )
    per = "".join(
        details(
            f"{r['name']}: lenses below S/N {study['floor']:g} per theta_E bin",
            table(
                r["below_floor_by_theta_e"],
                [
                    ("lo", "θE lo (arcsec)"),
                    ("hi", "θE hi (arcsec)"),
                    ("n_lenses", "lenses"),
                    ("frac_below_floor", "fraction below floor"),
                ],
            ),
        )
        for r in study["remedies"]
    )
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px;vertical-align:top}th{background:#eee}"
        "figure{display:inline-block;margin:.3em}figcaption{font-size:12px;text-align:center}"
        "summary{cursor:pointer;font-weight:bold}"
    )
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>lensarray study</title><style>{style}</style>"
        f"</head><body>{head}{verdicts}<h2>Table</h2>{table(rows)}{words}<h2>Figures</h2>{figs}"
        f"{details('S/N floor per theta_E bin', per)}</body></html>"
    )
    h = out / "study.html"
    h.write_text(page, encoding="utf-8")
    return {"json": j, "md": md, "html": h}
