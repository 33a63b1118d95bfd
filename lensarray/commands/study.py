"""Remedy study: for one set of priors and one seed, build the unmasked cube and every core remedy
(hard r = 3/5/7, taper, core-matched control, calibrated after mask, theta_E_min raised), audit
each (core LR on disc/box/ring per theta_E bin, mask-edge probe, lenses below the S/N floor,
baseline finder AUC and recall at FPR 1%) and write one report: study.html, study.json, study.md.

Cubes are rendered in blocks and reduced on the fly; none is kept.

examples:
  lensarray study --pairs 4000 --out study/
  lensarray study --config published.toml --pairs 4000 --out study-published/
  lensarray study --config published.toml --snr-scale 10 --only unmasked --out shortcut/
"""

from __future__ import annotations

import argparse

NAME = "study"
HELP = "build the unmasked cube and every core remedy, audit each, write one comparison report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="TOML", help="run configuration (priors, seed); default: the embedded one")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory for study.html/.json/.md")
    p.add_argument("--pairs", type=int, default=2000, metavar="N", help="pairs per remedy (default 2000)")
    p.add_argument("--seed", type=int, default=None, help="root seed (default: the configuration's)")
    p.add_argument(
        "--snr-scale",
        type=float,
        default=1.0,
        metavar="K",
        help="multiply brightness.snr_edges by K (e.g. to reach the published S/N scale)",
    )
    p.add_argument(
        "--floor",
        type=float,
        default=2.0,
        metavar="SNR",
        help="matched-filter S/N below which a lens counts as having no visible arc (default 2)",
    )
    p.add_argument(
        "--theta-e-min",
        type=float,
        default=1.5,
        metavar="ARCSEC",
        help="theta_E_min of the 'theta_E_min raised' remedy (default 1.5)",
    )
    p.add_argument("--only", metavar="NAMES", help="comma list of remedy names to run (default all)")
    p.add_argument("--bootstrap", type=int, default=200, metavar="B", help="bootstrap resamples per CI (default 200)")
    p.add_argument("--max-lr-pairs", type=int, default=20000, metavar="N", help="pairs fed to the LR and baseline")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..errors import BadInputError

    if not (20 <= args.pairs <= 1_000_000):
        raise BadInputError(f"--pairs = {args.pairs}: allowed range [20, 1000000]")
    if not (0 < args.snr_scale <= 1e4):
        raise BadInputError(f"--snr-scale = {args.snr_scale}: allowed range (0, 10000]")
    if not (0 <= args.floor <= 1e6):
        raise BadInputError(f"--floor = {args.floor}: allowed range [0, 1000000]")
    if not (10 <= args.bootstrap <= 100_000):
        raise BadInputError(f"--bootstrap = {args.bootstrap}: allowed range [10, 100000]")
    # a ConfigError (here or from run_study) is printed by cli.main, exit 2
    cfg = load_config(args.config, **{"run.n_pairs": args.pairs, "run.seed": args.seed})
    if args.snr_scale != 1.0:
        cfg = cfg.replace(**{"brightness.snr_edges": [e * args.snr_scale for e in cfg.brightness.snr_edges]})
        cfg.validate()
    from ..study import default_remedies, run_study, write_study_report

    remedies = default_remedies(cfg, theta_e_min=args.theta_e_min)
    if args.only:
        want = [w.strip() for w in args.only.split(",") if w.strip()]
        names = [r.name for r in remedies]
        bad = [w for w in want if w not in names]
        if bad:
            raise BadInputError(f"--only {bad[0]!r}: allowed names {', '.join(names)}")
        remedies = [r for r in remedies if r.name in want]
    study = run_study(
        cfg, remedies=remedies, max_lr_pairs=args.max_lr_pairs, n_boot=args.bootstrap, floor=args.floor, progress=True
    )
    paths = write_study_report(study, args.out)
    from ..study import markdown_table

    print(markdown_table(study))
    print(f"report: {paths['html']}  ({paths['json']}, {paths['md']})")
    return 0
