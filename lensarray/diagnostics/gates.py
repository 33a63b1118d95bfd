"""Gates: a threshold and a verdict for each number that decides whether a cube is fit to train on."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..config import DiagnosticsSection

__all__ = ["Gate", "evaluate_gates"]


@dataclass
class Gate:
    """One verdict: ``passed`` is ``value`` compared with ``threshold`` by ``rule``."""

    name: str
    value: float | None
    threshold: float | list
    passed: bool
    rule: str
    description: str

    def to_dict(self) -> dict:
        return asdict(self)


def _lt(name, value, thr, desc):
    ok = value is not None and np.isfinite(value) and value < thr
    return Gate(name, value, thr, bool(ok), "value < threshold", desc)


def evaluate_gates(results: dict, thresholds: DiagnosticsSection) -> list[Gate]:
    """Gates from diagnose results.

    - ``core_lr_auc`` < ``lr_auc_max``: the central pixels must not separate lens from control.
    - ``null_lr_auc`` within 0.5 +/- ``null_auc_tol`` (only with a null cube): no processing
      step may leak the label when the arcs are zero.
    - ``metadata_leak_auc`` (max symmetrised AUC over audited variables) < ``leak_auc_max``.
    - ``systematics_role_flags`` == 0: lens and control differ by nothing but the arc.
    """
    gates = [_lt("core_lr_auc", results["core_lr"]["auc"], thresholds.lr_auc_max,
                 "core logistic-regression AUC (central box, all bands, GroupKFold by pair)")]
    if results.get("null_lr") is not None:
        v = results["null_lr"]["auc"]
        tol = thresholds.null_auc_tol
        ok = v is not None and abs(v - 0.5) <= tol
        gates.append(Gate("null_lr_auc", v, [0.5 - tol, 0.5 + tol], bool(ok), "lo <= value <= hi",
                          "core LR AUC on the null-injection cube"))
    leak = results["leakage"]["max_auc_sym"]
    gates.append(_lt("metadata_leak_auc", leak if leak is not None else 0.5, thresholds.leak_auc_max,
                     f"largest max(AUC, 1-AUC) of any audited per-sample variable ({results['leakage']['worst']})"))
    nflags = results["systematics"]["n_flags"]
    gates.append(Gate("systematics_role_flags", float(nflags), 0.0, nflags == 0, "value == threshold",
                      "number of lens/control differences other than the arc"))
    return gates
