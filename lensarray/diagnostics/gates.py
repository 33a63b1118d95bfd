"""Gates: a threshold and a verdict for each number that decides whether a cube is fit to train on.

Every gate has a status: ``pass``, ``fail`` or ``not run`` (its input was not given, e.g. no
null cube): a gate that did not run is never reported as passing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..config import DiagnosticsSection

__all__ = ["Gate", "evaluate_gates", "STATUSES"]

STATUSES = ("pass", "fail", "not run")


@dataclass
class Gate:
    """One verdict: ``passed`` is ``value`` compared with ``threshold`` by ``rule`` (None: not run)."""

    name: str
    value: float | None
    threshold: float | list | str | None  # str: a rule stated in words ("bit-identical")
    passed: bool | None
    rule: str
    description: str
    meaning: str = ""
    ci: list = field(default_factory=list)

    @property
    def status(self) -> str:
        return "not run" if self.passed is None else ("pass" if self.passed else "fail")

    def to_dict(self) -> dict:
        return dict(asdict(self), status=self.status)


def _lt(name, value, thr, desc, meaning="", ci=None):
    ok = value is not None and np.isfinite(value) and value < thr
    return Gate(name, value, thr, bool(ok), "value < threshold", desc, meaning, list(ci or []))


def evaluate_gates(results: dict, thresholds: DiagnosticsSection) -> list[Gate]:
    """Gates from diagnose results.

    - ``core_lr_auc`` < ``lr_auc_max`` on the ``core_lr_region`` pixels (default the disc
      r < core_radius): the core must not separate lens from control.
    - ``mask_edge`` fraction of lenses with a sharp step in lens - control light <
      ``edge_frac_max``: a hard mask's circular edge is itself a feature no real lens has.
    - ``null_identity`` (only with a null cube): null lens and control stamps stay bit-identical
      through the training path (loader, augmentations, centre-mask transform, dtype).
    - ``metadata_leak_auc`` (max symmetrised AUC over audited variables) < ``leak_auc_max``.
    - ``systematics_role_flags`` == 0: lens and control differ by nothing but the arc.
    """
    lr = results["core_lr"]
    region = lr.get("region", thresholds.core_lr_region)
    gates = [
        _lt(
            "core_lr_auc",
            lr["auc"],
            thresholds.lr_auc_max,
            f"core logistic-regression AUC on the {region} pixels (all bands, GroupKFold by pair)",
            "can the core pixels alone tell a lens from its control? 0.5: no; near 1: a bright-core shortcut",
            lr.get("ci"),
        )
    ]
    edge = results.get("edge_probe")
    if edge is not None:
        v = edge.get("frac_sharp")
        gates.append(
            _lt(
                "mask_edge",
                v,
                thresholds.edge_frac_max,
                f"largest fraction of lenses whose lens - control light steps from ~0 to significant "
                f"across one pixel (at r = {edge.get('radius_px')} px)",
                "a sharp circular edge (hard mask) is a feature no real lens has; seeing-blurred light has none",
            )
        )
    ni = results.get("null_identity")
    if ni is None:
        gates.append(
            Gate(
                "null_identity",
                None,
                "bit-identical",
                None,
                "every step identical",
                "null lens and control stamps through loader, augmentations, centre mask, dtype",
                "not run: give a null-injection cube (build --null) to check it",
            )
        )
    else:
        bad = [s["step"] for s in ni["steps"] if not s["identical"]]
        gates.append(
            Gate(
                "null_identity",
                float(len(bad)),
                0.0,
                bool(ni["passed"]),
                "no step differs",
                f"null lens and control stamps through the training path ({ni['n_pairs']} pairs)",
                "identical: no processing step leaks the label"
                if ni["passed"]
                else f"differ after: {', '.join(bad) or 'dtype'}",
            )
        )
    leak = results["leakage"]["max_auc_sym"]
    gates.append(
        _lt(
            "metadata_leak_auc",
            leak if leak is not None else 0.5,
            thresholds.leak_auc_max,
            f"largest max(AUC, 1-AUC) of any audited per-sample variable ({results['leakage']['worst']})",
            "could a variable other than the pixels give the label away?",
        )
    )
    nflags = results["systematics"]["n_flags"]
    gates.append(
        Gate(
            "systematics_role_flags",
            float(nflags),
            0.0,
            nflags == 0,
            "value == threshold",
            "number of lens/control differences other than the arc",
            "NaNs, dead-pixel flux, invvar or mask differences between the roles",
        )
    )
    return gates
