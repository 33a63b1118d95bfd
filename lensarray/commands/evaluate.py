"""Evaluate lens-finder scores on a cube, or train and evaluate the built-in baseline.

Scores file: .npz with arrays pair, role, score or .csv with header pair,role,score; role 1 is
the lens stamp (host + arc), 0 the control stamp (host). Evaluation uses the test split by
default. Writes evaluation.json and completeness.png to --out.

examples:
  lensarray evaluate cube.zarr --scores my_model_scores.npz --out eval/
  lensarray evaluate cube.zarr --baseline --out eval/                  # with and without centre mask
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._common import (
    BadInputError,
    add_cluster_arguments,
    open_cube_from_args,
    progress_enabled,
    storage_options_from_args,
)

NAME = "evaluate"
HELP = "ROC AUC, recall at FPR, completeness (selection function) of model scores or the baseline"


def add_arguments(p) -> None:
    p.add_argument("store", help="cube location")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--scores", help="per-stamp scores (.npz or .csv with pair, role, score)")
    src.add_argument(
        "--baseline",
        action="store_true",
        help="train the built-in scikit-learn baseline on train, score test; with and without centre mask",
    )
    p.add_argument(
        "--anchors",
        metavar="HOSTCUBE",
        help="known real lenses as a host cube (lensarray ingest): recall of the baseline on them",
    )
    p.add_argument(
        "--split", default="test", choices=("train", "val", "test", "all"), help="split to evaluate (default test)"
    )
    p.add_argument("--fpr", type=float, default=0.01, help="false positive rate for recall (default 0.01)")
    p.add_argument(
        "--centre-mask", default="uniform", help="baseline ablation mask: fixed:R | uniform | psf (default uniform)"
    )
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for CIs (default 200)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    add_cluster_arguments(p)


def _mask_spec(text: str) -> dict:
    if text == "uniform":
        return {"mode": "uniform", "r_mask": (3.0, 7.0)}
    if text == "psf":
        return {"mode": "psf"}
    if text.startswith("fixed:"):
        try:
            r = float(text.split(":", 1)[1])
        except ValueError:
            r = -1
        if 0 < r <= 32:
            return {"mode": "fixed", "r_mask": r}
    raise BadInputError(f"--centre-mask {text!r}: allowed fixed:R (0 < R <= 32 px), uniform or psf")


def plot_completeness(res: dict, path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, key, label in zip(
        axes,
        ("by_theta_e", "by_psf", "by_arc_snr"),
        ("theta_E [arcsec]", "PSF FWHM r [arcsec]", "arc S/N"),
        strict=True,
    ):
        rows = res[key]
        x = [0.5 * (r["lo"] + r["hi"]) for r in rows]
        ax.plot(x, [r["completeness"] for r in rows], "o-", label="completeness")
        ax.plot(x, [r["auc"] for r in rows], "s--", label="AUC")
        ax.set_xlabel(label)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[0].set_ylabel(f"at FPR = {res['fpr']:g}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def run(args) -> int:
    import numpy as np

    from ..cluster import cluster_section
    from ..evaluation import ScoreTable, baseline_scores, evaluate_scores, load_scores

    if not 0 < args.fpr < 0.5:
        raise BadInputError(f"--fpr {args.fpr}: allowed range (0, 0.5)")
    if args.bootstrap < 0:
        raise BadInputError(f"--bootstrap {args.bootstrap}: allowed >= 0")
    if args.anchors and not args.baseline:
        raise BadInputError("--anchors: allowed with --baseline (for your own model, score the anchors yourself)")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise BadInputError(f"--out = {args.out!r}: exists and is not a directory")
    cluster_section(args)
    ds = open_cube_from_args(args.store, args)
    mask = _mask_spec(args.centre_mask) if args.baseline else None
    table = load_scores(args.scores) if args.scores else None
    anchor_images = None
    if args.anchors:
        from ..hosts.cutouts import HostCube

        hc = HostCube(args.anchors, storage_options_from_args(args), field="--anchors")
        anchor_images = hc.take(np.arange(hc.n_hosts))["host"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split = None if args.split == "all" else args.split
    results = {}
    if table is not None:
        results["scores"] = evaluate_scores(ds, table, split=split, fpr=args.fpr, n_boot=args.bootstrap).to_dict()
    else:
        for name, cm in (("baseline", None), ("baseline_centre_masked", mask)):
            scores, facts = baseline_scores(
                ds, centre_mask=cm, anchor_images=anchor_images, progress=progress_enabled(args)
            )
            anchor_scores = facts.pop("anchor_scores", None)
            anchors = (
                None
                if anchor_scores is None
                else ScoreTable(np.arange(anchor_scores.size), np.ones(anchor_scores.size, np.int8), anchor_scores)
            )
            res = evaluate_scores(
                ds, scores, split=split, fpr=args.fpr, n_boot=args.bootstrap, anchors=anchors
            ).to_dict()
            res["training"] = facts
            res["centre_mask"] = cm
            results[name] = res
    for name, res in results.items():
        plot_completeness(res, out / f"completeness_{name}.png", f"{name}: AUC {res['auc']:.3f}")
        lo, hi = res["recall_ci95"]
        print(
            f"{name:<24} AUC {res['auc']:.3f} [{res['auc_ci95'][0]:.3f}, {res['auc_ci95'][1]:.3f}]   "
            f"recall@FPR={args.fpr:g} {res['recall_at_fpr']:.3f} [{lo:.3f}, {hi:.3f}]   n={res['n_stamps']}"
            + (
                f"   anchors recall {res['anchors']['recall_at_threshold']:.2f} of {res['anchors']['n']}"
                if res.get("anchors")
                else ""
            )
        )
    (out / "evaluation.json").write_text(
        json.dumps(results, indent=1, default=lambda o: None if o is None else float(o))
    )
    print(f"wrote {out / 'evaluation.json'}", file=sys.stderr)
    return 0
