"""Judging a run's values against their chance levels: stated margins, the verdict, documented deviations.

A value counts as beating its chance level only beyond a stated margin (:data:`TOP1_MARGIN`,
:data:`R2_MARGIN`, :data:`PRE_MARGIN`; :func:`margin_for` picks one by metric, :func:`beats` applies
it). :func:`verdict` says in plain sentences whether a run's classes, rotations and predictor beat
their trivial levels, and lists the documented deviations from the reference that its configuration
turns on (:func:`deviations`, :data:`DEVIATION_KEYS`). :func:`online_rotation_floor` gives the
constant-predictor floor of the online rotation R² logged during training.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sie.config import PAPER, config_to_dict
from sie.eval import metrics
from sie.eval.run_results import RunResults

__all__ = [
    "DEVIATION_KEYS",
    "PRE_MARGIN",
    "R2_MARGIN",
    "THRESHOLDS",
    "TOP1_MARGIN",
    "beats",
    "deviations",
    "margin_for",
    "online_rotation_floor",
    "verdict",
]

TOP1_MARGIN = 0.05
"""Top-1 must be at least 5 points above its chance level to count as learned."""
R2_MARGIN = 0.05
"""Rotation R² must be at least 0.05 above the constant-predictor floor to count as learned."""
PRE_MARGIN = 0.02
"""PRE must be at least 0.02 below the do-nothing predictor's to count as better than doing nothing."""

DEVIATION_KEYS: tuple[str, ...] = (
    "model.hypernetwork_init_gain",
    "data.canonical_quaternion",
    "model.cov_denominator",
    "model.equi_factor_everywhere",
)
"""Settings whose help text describes a deviation from the reference's behaviour; the verdict lists
those whose value differs from the ``paper`` preset (which is the reference for each of them)."""


def beats(value: float, chance: float, higher_is_better: bool, margin: float = 0.0) -> bool:
    """Whether ``value`` is better than ``chance`` by at least ``margin`` in the metric's direction."""
    tolerance = 1e-9  # a value exactly at the margin counts, whatever the float rounding
    if higher_is_better:
        return value > chance and value >= chance + margin - tolerance
    return value < chance and value <= chance - margin + tolerance


def margin_for(metric: str) -> float:
    """How far beyond its chance level a value must be to count as beating it (table bold and verdict)."""
    if metric.startswith("top"):
        return TOP1_MARGIN
    if metric == "r2":
        return R2_MARGIN
    if metric in ("PRE", "MRR") or metric.startswith("H@"):
        return PRE_MARGIN
    return 0.0


# ---- verdict --------------------------------------------------------------------------------------------


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def deviations(run_config: dict[str, Any] | None, *, has_predictor: bool = True) -> list[str]:
    """``key = value (paper preset: value)`` for each of :data:`DEVIATION_KEYS` set away from the paper preset.

    ``model.hypernetwork_init_gain`` is left out where it does nothing: a method without a predictor, a
    method whose predictor is not built from the shared ``model.predictor_type`` keys (BYOL, SEN,
    seq-JEPA have their own), or an MLP predictor.
    """
    if not run_config:
        return []
    from sie.methods import METHODS

    paper = config_to_dict(PAPER)
    model = run_config.get("model", {})
    spec = METHODS.get(str(model.get("method", "sie")))
    shared_predictor = spec is None or "model.predictor_type" in spec.keys
    hypernetwork = (
        has_predictor and shared_predictor and model.get("predictor_type", "hypernetwork") == "hypernetwork"
    )
    out = []
    for key in DEVIATION_KEYS:
        if key == "model.hypernetwork_init_gain" and not hypernetwork:
            continue
        try:
            value = _lookup(run_config, key)
        except KeyError:
            continue
        reference = _lookup(paper, key)
        if value != reference:
            out.append(f"{key} = {value} (paper preset: {reference})")
    return out


def _status(value: float, chance: float, higher_is_better: bool, margin: float) -> str:
    if beats(value, chance, higher_is_better, margin):
        return "above"
    if beats(chance, value, higher_is_better, margin):
        return "below"
    return "at"


def _first_entry(
    run: RunResults, metric: str, task: str, parts: Sequence[str], split: str
) -> tuple[str, dict[str, Any]] | None:
    for part in parts:
        s = run.entry(metric, task, part, split)
        if s is not None and s.get("chance") is not None:
            return part, s
    return None


_PART_NAMES = {
    "inv": "invariant-part",
    "equi": "equivariant-part",
    "full": "full-representation",
    "aggregate": "sequence-aggregate",
}


def verdict(run: RunResults) -> str:
    """Two to four plain sentences on one run, computed from its summary with stated margins.

    Classes: top-1 of the invariant part (else the full representation) against the majority-class
    level; "learned" only at least :data:`TOP1_MARGIN` above it. Rotation: rotation R² of the
    equivariant part (else full) against the constant-predictor floor, :data:`R2_MARGIN`. Predictor:
    PRE (val, all) against the do-nothing predictor, :data:`PRE_MARGIN` below it. Anything within the
    margin is "at chance"; values on the wrong side are said to be worse. Deviations from the
    reference that the run's configuration turns on (:func:`deviations`) end the paragraph.
    """
    sentences: list[str] = []
    cls = _first_entry(run, "top1", "classification", ("inv", "full", "equi"), "val")
    if cls is not None:
        part, s = cls
        status = _status(s["mean"], s["chance"], True, TOP1_MARGIN)
        outcome = {"above": "classes learned", "at": "at chance, classes not learned",
                   "below": "below chance"}[status]  # fmt: skip
        sentences.append(
            f"{_PART_NAMES.get(part, part)} top-1 {100 * s['mean']:.1f}% vs chance {100 * s['chance']:.1f}%: {outcome}"
        )
    rot = _first_entry(run, "r2", "rotation", ("equi", "full", "inv"), "val")
    if rot is not None:
        part, s = rot
        status = _status(s["mean"], s["chance"], True, R2_MARGIN)
        outcome = {"above": "rotation learned", "at": "at the floor, rotation not learned",
                   "below": "below the floor"}[status]  # fmt: skip
        sentences.append(
            f"{_PART_NAMES.get(part, part)} rotation R² {s['mean']:.3f} vs constant-predictor floor "
            f"{s['chance']:.3f}: {outcome}"
        )
    pre = run.entry("PRE", "retrieval", "embedding", "val-all")
    if pre is not None and pre.get("chance") is not None:
        status = _status(pre["mean"], pre["chance"], False, PRE_MARGIN)
        outcome = {"above": "better than doing nothing", "at": "no better than doing nothing",
                   "below": "worse than doing nothing"}[status]  # fmt: skip
        sentences.append(
            f"predictor PRE {pre['mean']:.3f} vs {pre['chance']:.3f} for the do-nothing predictor: {outcome}"
        )
    elif not run.results.get("has_predictor", True):
        sentences.append("no predictor, so no PRE")
    text = (
        f"{run.label}: "
        + ("; ".join(sentences) if sentences else "no top-1, rotation R² or PRE results")
        + "."
    )
    devs = deviations(
        run.results.get("run_config"), has_predictor=bool(run.results.get("has_predictor", True))
    )
    if devs:
        text += " Documented deviations from the reference in its configuration: " + ", ".join(devs) + "."
    return text


THRESHOLDS = (
    f"Learned / better than doing nothing means: top-1 at least {100 * TOP1_MARGIN:.0f} points above the "
    f"majority-class level, rotation R² at least {R2_MARGIN} above the constant-predictor floor, PRE at least "
    f"{PRE_MARGIN} below the do-nothing predictor's (val, all); within those margins a value is at chance."
)
"""The margins in one sentence; the report prints it after the verdicts."""


# ---- online-probe floor -----------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _simulated_floor(canonical: bool) -> float:
    return metrics.simulate_rotation_r2_floor(canonical=canonical)


def online_rotation_floor(run: RunResults) -> tuple[str, float] | None:
    """The constant-predictor floor of the online rotation R² (``probe/rot_r2_*`` in metrics.jsonl).

    The online probe regresses the training transformation's quaternion, the target of the offline
    rotation probe unless the run used ``data.canonical_quaternion`` (or Euler targets: no floor
    given). So: the rotation R² chance level of results.json where it applies, else the floor
    simulated under the 3DIEBench law (``metrics.simulate_rotation_r2_floor``).
    """
    data = run.results.get("run_config", {}).get("data", {})
    if data.get("transform") == "euler":
        return None
    canonical = bool(data.get("canonical_quaternion", False))
    if not canonical:
        rot = _first_entry(run, "r2", "rotation", ("equi", "full", "inv"), "val")
        if rot is not None:
            return "constant predictor (eval chance level)", float(rot[1]["chance"])
    law = "3DIEBench law, canonical quaternions" if canonical else "3DIEBench law"
    return f"constant predictor ({law})", _simulated_floor(canonical)
