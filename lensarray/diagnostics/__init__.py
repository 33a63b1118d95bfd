"""Shortcut and systematics diagnostics of lensarray cubes (read only), gates and the report.

Every diagnostic is a documented function; they are imported lazily so that importing
:mod:`lensarray.diagnostics.ablation` in a training loader does not pull in scikit-learn.

Whole-cube entry point
    :func:`diagnose` (all diagnostics + gates), :func:`write_report` (JSON + HTML).
Per-pair reduction (the one pass over the pixels)
    :func:`pair_measures` (lazy Dataset), :func:`pair_table` (computed), :func:`lr_subsample`;
    by-class flox summaries :func:`class_summary`.
1. core flux fraction: :func:`core_flux_fraction`, :func:`core_flux_summary`
2. inner image: :func:`inner_image_summary`, :func:`sis_inner_image_radius`
3. core LR on the disc / box / ring, mask-edge probe: :func:`core_lr_auc`, :func:`core_lr_on_cube`,
   :func:`mask_edge_probe`
4. null test: :func:`null_identity` (bit-identity through the training path; gate ``null_identity``)
5. systematics: :func:`systematics_by_class`
6. metadata leakage: :func:`metadata_leakage`
7. anchors: :func:`compare_brightness`, :func:`read_anchor_cutouts`, :func:`anchor_brightness`,
   :func:`cube_central_brightness`, :func:`cliffs_delta`
8. visibility: :func:`visibility_proxy`, :func:`visibility_summary`
9. arc_snr: :func:`arc_snr_distribution`
10. experiments: :func:`run_experiment`, :func:`write_experiment`
11. ablation: :func:`centre_mask`
Gates: :func:`evaluate_gates`. Test cubes with known answers: :func:`toy_cube`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "diagnose": "audit",
    "core_lr_on_cube": "audit",
    "write_report": "report",
    "write_json": "report",
    "pair_table": "features",
    "pair_measures": "features",
    "measure_spec": "features",
    "lr_subsample": "features",
    "core_lr_from_table": "audit",
    "class_summary": "systematics",
    "central_brightness": "features",
    "cube_config": "features",
    "core_flux_fraction": "core_flux",
    "core_flux_summary": "core_flux",
    "inner_image_summary": "inner_image",
    "sis_inner_image_radius": "inner_image",
    "core_lr_auc": "core_lr",
    "oof_scores": "core_lr",
    "bootstrap_auc": "core_lr",
    "mask_edge_probe": "core_lr",
    "null_identity": "null_identity",
    "systematics_by_class": "systematics",
    "metadata_leakage": "leakage",
    "feature_auc": "leakage",
    "compare_brightness": "anchors",
    "read_anchor_cutouts": "anchors",
    "anchor_brightness": "anchors",
    "cube_central_brightness": "anchors",
    "cliffs_delta": "anchors",
    "visibility_proxy": "visibility",
    "visibility_summary": "visibility",
    "arc_snr_distribution": "snr",
    "run_experiment": "experiments",
    "write_experiment": "experiments",
    "centre_mask": "ablation",
    "mask_radii": "ablation",
    "evaluate_gates": "gates",
    "Gate": "gates",
    "toy_cube": "toycube",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
