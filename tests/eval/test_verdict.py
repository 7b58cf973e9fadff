"""sie.eval.verdict: margins against the chance levels, the verdict's sentences, documented deviations."""

from __future__ import annotations

import json
from pathlib import Path

from tests.eval.results_files import record, write_results

from sie.config import PAPER, config_to_dict
from sie.eval import verdict
from sie.eval.report import write_report
from sie.eval.run_results import load_run


def verdict_for(tmp_path: Path, name: str, top1: float, rot: float, pre: float, **kw: object) -> str:
    run = write_results(tmp_path, name, [
        record("top1", "classification", "inv", "val", top1, chance=0.10),
        record("top1", "classification", "full", "val", 0.99, chance=0.10),
        record("r2", "rotation", "equi", "val", rot, chance=0.211),
        record("PRE", "retrieval", "embedding", "val-all", pre, seed=None, chance=0.564),
    ], **kw)  # type: ignore[arg-type]  # fmt: skip
    return verdict.verdict(load_run(run))


def test_verdict_never_claims_learning_at_chance(tmp_path: Path) -> None:
    # Within the margins (5 points of top-1, 0.05 of R², 0.02 of PRE): at chance.
    text = verdict_for(tmp_path, "at-chance", top1=0.13, rot=0.25, pre=0.55)
    assert text.startswith("sie (at-chance): invariant-part top-1 13.0% vs chance 10.0%: at chance")
    assert "rotation R² 0.250 vs constant-predictor floor 0.211: at the floor, rotation not learned" in text
    assert "PRE 0.550 vs 0.564 for the do-nothing predictor: no better than doing nothing" in text
    assert (
        "classes learned" not in text
        and "rotation learned" not in text
        and "better than doing" not in text[: text.index("no better")]
    )
    # Worse than the trivial levels is said so.
    worse = verdict_for(tmp_path, "worse", top1=0.02, rot=0.10, pre=0.63)
    assert "below chance" in worse and "below the floor" in worse and "worse than doing nothing" in worse


def test_verdict_says_learned_only_beyond_the_margins(tmp_path: Path) -> None:
    text = verdict_for(tmp_path, "learned", top1=0.91, rot=0.65, pre=0.40)
    assert "invariant-part top-1 91.0% vs chance 10.0%: classes learned" in text
    assert "equivariant-part rotation R² 0.650 vs constant-predictor floor 0.211: rotation learned" in text
    assert "predictor PRE 0.400 vs 0.564 for the do-nothing predictor: better than doing nothing" in text
    assert "deviations" not in text
    md, html_path = write_report([tmp_path / "learned"], tmp_path / "out")
    lines = md.read_text().splitlines()
    assert lines[0] == "# sie evaluation report" and lines[2] == text  # the verdict opens the report
    assert "Learned / better than doing nothing means" in lines[4]
    assert html_path.read_text().index("classes learned") < html_path.read_text().index("<table")


def test_verdict_lists_documented_deviations_from_the_paper_preset(tmp_path: Path) -> None:
    paper = config_to_dict(PAPER)
    assert verdict.deviations(paper) == []
    changed = json.loads(json.dumps(paper))
    changed["model"]["hypernetwork_init_gain"] = 1.0
    changed["data"]["canonical_quaternion"] = True
    changed["train"]["epochs"] = 3  # not a documented deviation: not listed
    assert verdict.deviations(changed) == [
        "model.hypernetwork_init_gain = 1.0 (paper preset: 0.0)",
        "data.canonical_quaternion = True (paper preset: False)",
    ]
    text = verdict_for(tmp_path, "dev", top1=0.5, rot=0.5, pre=0.3, run_config=changed)
    assert text.endswith(
        "Documented deviations from the reference in its configuration: model.hypernetwork_init_gain = 1.0 "
        "(paper preset: 0.0), data.canonical_quaternion = True (paper preset: False)."
    )
    assert set(verdict.DEVIATION_KEYS) >= {"model.hypernetwork_init_gain", "data.canonical_quaternion"}
    # The hypernetwork's gain does nothing without a hypernetwork: not listed for VICReg or an MLP predictor.
    assert verdict.deviations(changed, has_predictor=False) == [
        "data.canonical_quaternion = True (paper preset: False)"
    ]
    # ... nor for a method whose predictor is its own (SEN, BYOL-cond, seq-JEPA).
    for method in ("sen", "byol-cond", "seq-jepa"):
        changed["model"]["method"] = method
        assert verdict.deviations(changed) == ["data.canonical_quaternion = True (paper preset: False)"]
    changed["model"]["method"] = "sie"
    changed["model"]["predictor_type"] = "mlp"
    assert verdict.deviations(changed) == ["data.canonical_quaternion = True (paper preset: False)"]


def test_a_value_beats_its_chance_level_only_by_the_metric_margin_in_its_direction() -> None:
    assert verdict.margin_for("top1") == verdict.TOP1_MARGIN and verdict.margin_for("r2") == verdict.R2_MARGIN
    assert verdict.margin_for("PRE") == verdict.margin_for("H@1") == verdict.PRE_MARGIN
    assert verdict.margin_for("rankme") == 0.0
    assert verdict.beats(0.15, 0.10, True, 0.05)  # exactly at the margin counts
    assert not verdict.beats(0.14, 0.10, True, 0.05) and not verdict.beats(0.10, 0.10, True)
    assert verdict.beats(0.50, 0.52, False, 0.02) and not verdict.beats(0.51, 0.52, False, 0.02)
