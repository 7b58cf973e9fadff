"""In-context evaluation (sie.eval.context): context pairs, refusals, and ContextSSL end to end
(tiny render -> train 2 steps -> eval at several context lengths -> report table and figure)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from sie.cli import main
from sie.config import resolve_config
from sie.engine import train
from sie.errors import UsageError
from sie.eval.context import check_context_lengths, context_pairs, context_part, parse_context_part

QUICK = ["--preset", "quick", "--set", "eval.probe_epochs=2", "--set", "eval.probe_hidden=32-32"]
LENGTHS = (0, 2, 6, 14)


def test_context_pairs_are_distinct_objects_with_two_views_and_fixed() -> None:
    objects, a, b = context_pairs(9, 5, 7)
    assert len(set(objects.tolist())) == 7 and bool((objects < 9).all())
    assert bool((a != b).all()) and bool(((a >= 0) & (a < 5) & (b >= 0) & (b < 5)).all())
    again = context_pairs(9, 5, 7)
    assert all(torch.equal(x, y) for x, y in zip((objects, a, b), again, strict=True))


def test_a_context_longer_than_the_training_pairs_is_one_line() -> None:
    check_context_lengths((0, 18), 9, 5, "DATA")  # 9 pairs: fits
    with pytest.raises(UsageError) as err:
        check_context_lengths((0, 2, 126), 9, 5, "DATA")
    message = str(err.value)
    assert "126 tokens" in message and "63 training objects" in message and "has 9" in message
    assert "\n" not in message


def test_context_part_round_trip() -> None:
    assert parse_context_part(context_part("rotation", 126)) == ("rotation", 126)
    assert parse_context_part("full") is None and parse_context_part("context:x:y") is None


def test_context_figure_places_lengths_at_even_steps() -> None:
    from sie.eval.figures import context_length_curves

    panels = {
        "rotation R²": {"rotation": [(6, 0.3), (0, 0.1), (126, 0.7)], "colour": [(0, 0.1), (126, 0.05)]}
    }
    fig = context_length_curves(panels, chance={"rotation R²": 0.23})
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["rotation context"].get_xdata()) == [0, 1, 2]
    assert list(lines["rotation context"].get_ydata()) == [0.1, 0.3, 0.7]
    assert list(lines["colour context"].get_xdata()) == [0, 2]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "6", "126"]


@pytest.fixture(scope="module")
def context_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = resolve_config(
        "cpu-small",
        overrides=[
            f"data.root={tiny_dataset}",
            "data.resolution=32",
            "data.num_workers=0",
            "data.transform=rotcolor",
            "model.method=context-ssl",
            "model.context_ssl.block_size=16",
            "model.context_ssl.n_embd=32",
            "model.context_ssl.n_head=2",
            "model.context_ssl.aux_hidden=16",
            "model.context_ssl.random_mask=true",
            "model.context_ssl.mask_prob=0.5",
            "model.context_ssl.pairs_per_sample=2",  # 4 views of each object from the data layer
            f"model.context_ssl.eval_contexts=[{','.join(map(str, LENGTHS))}]",
            "train.batch_size=4",
            "train.precision=fp32",
        ],
    )
    return train(cfg, tmp_path_factory.mktemp("run-context-ssl"), max_steps=2)


def test_context_ssl_end_to_end(context_run: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    assert main(["eval", str(context_run), "--data", str(tiny_dataset), *QUICK]) == 0
    res = json.loads((context_run / "eval" / "results.json").read_text())
    keys = {(r["metric"], r["task"], r["part"], r["split"]) for r in res["records"]}
    for env in ("rotation", "colour"):
        for c in LENGTHS:
            part = context_part(env, c)
            assert {("r2", "rotation", part, "val"), ("r2", "colour", part, "val"),
                    ("MRR", "retrieval", part, "val-val"), ("H@1", "retrieval", part, "val-val")} <= keys  # fmt: skip
    # The backbone representation is still probed as for every method.
    assert ("r2", "rotation", "full", "val") in keys and not res["has_predictor"]
    mrr = [r for r in res["records"] if r["metric"] == "MRR" and r["part"].startswith("context:")]
    assert all(0.0 < r["value"] <= 1.0 and r["chance"] == pytest.approx(sum(1 / k for k in range(1, 6)) / 5)
               for r in mrr)  # fmt: skip
    assert main(["report", str(context_run), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "### Context length" in report and "| rotation | rotation R² |" in report
    assert "| c=0 | c=2 | c=6 | c=14 |" in report
    assert list((tmp_path / "report" / "figures").glob("context_*.png"))


def test_training_refuses_more_pairs_per_sample_than_views(tiny_dataset: Path, tmp_path: Path) -> None:
    # 3 pairs of one object need 6 distinct views; the tiny dataset has 5 per object.
    cfg = resolve_config(
        "cpu-small",
        overrides=[
            f"data.root={tiny_dataset}",
            "data.transform=rotcolor",
            "model.method=context-ssl",
            "model.context_ssl.pairs_per_sample=3",
        ],
    )
    with pytest.raises(UsageError) as err:
        train(cfg, tmp_path / "run", max_steps=1)
    message = str(err.value)
    assert "5 views per object" in message and "model.context_ssl.pairs_per_sample x 2" in message
    assert "\n" not in message


def test_eval_refuses_contexts_longer_than_the_data(
    context_run: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The run's config asks for a context of 126 tokens; the tiny training split has 9 objects.
    long = tmp_path / "long-context"
    shutil.copytree(context_run, long, ignore=shutil.ignore_patterns("eval"))
    cfg = yaml.safe_load((long / "config.yaml").read_text())
    cfg["model"]["context_ssl"]["block_size"] = 128
    cfg["model"]["context_ssl"]["eval_contexts"] = [0, 2, 126]
    (long / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["eval", str(long), "--data", str(tiny_dataset), *QUICK]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if "126 tokens" in line]) == 1


# ---- the plumbing, with a stand-in method whose in-context outputs are known --------------------------


class _QuaternionWorld:
    """Representations are the views' own rotation quaternions; in the rotation environment a query with
    parameters g is rotated by g's quaternion (q_v = q_0 g exactly), otherwise returned as is; every output
    is shifted by 10 x the number of context pairs, to see that the context reaches it."""

    context_lengths = (0, 4)
    context_environments = ("rotation", "colour")

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def evaluate_in_context(self, context, queries, params, environment):  # type: ignore[no-untyped-def]
        from sie.geometry import quaternion_multiply

        self.calls.append((int(context[0].shape[0]), environment))
        out = quaternion_multiply(queries, params[:, :4]) if environment == "rotation" else queries.clone()
        moving = params[:, :4].abs().sum(-1, keepdim=True) > 0
        out = torch.where(moving, out, queries)  # zero parameters: the view itself
        return out + 10.0 * context[0].shape[0]


def _inputs(method: object) -> object:
    from sie.config import EvalConfig
    from sie.eval.features import SplitFeatures
    from sie.eval.protocol import EvalInputs
    from sie.geometry import euler_xyz_to_quaternion

    gen = torch.Generator().manual_seed(0)
    features = {}
    for split, n in (("train", 6), ("val", 4)):
        latents = torch.rand(n, 5, 7, generator=gen, dtype=torch.float64)
        latents[..., :3] = (latents[..., :3] - 0.5) * 3.0
        reps = euler_xyz_to_quaternion(latents[..., :3]).float()
        features[split] = SplitFeatures(None, reps, None, torch.zeros(n, dtype=torch.long), latents)  # type: ignore[arg-type]
    return EvalInputs(method, features, {}, {"full": slice(0, 4)}, EvalConfig(probe_epochs=1, probe_hidden="8"),
                      torch.device("cpu"), 32, "rotcolor", False, 2)  # type: ignore[arg-type]  # fmt: skip


def test_context_tables_pass_the_context_prefix_and_zero_parameters() -> None:
    from sie.eval.context import ContextTables

    method = _QuaternionWorld()
    inputs = _inputs(method)
    tables = ContextTables(inputs)  # type: ignore[arg-type]
    val = inputs.features["val"].representations  # type: ignore[attr-defined]
    torch.testing.assert_close(tables.table("val", "rotation", 4), val + 20.0)  # 2 pairs, views unchanged
    torch.testing.assert_close(tables.table("val", "colour", 0), val)
    h_a, h_b, g = tables.context("rotation", 4)
    train = inputs.features["train"]  # type: ignore[attr-defined]
    obj, a, b = tables.objects[:2], tables.view_a[:2], tables.view_b[:2]
    torch.testing.assert_close(h_a, train.representations[obj, a])
    torch.testing.assert_close(h_b, train.representations[obj, b])
    # The context's parameters take view a to view b: q_a g = q_b (up to the quaternion's sign).
    from sie.geometry import quaternion_multiply

    rotated = quaternion_multiply(h_a.double(), g[:, :4].double())
    assert torch.allclose(rotated.abs(), h_b.double().abs(), atol=1e-5)


def test_a_perfect_in_context_predictor_retrieves_every_view() -> None:
    from sie.eval.context import ContextTables, run_context_evaluation

    method = _QuaternionWorld()
    inputs = _inputs(method)
    records = run_context_evaluation(inputs, 0, ContextTables(inputs), retrieval_scores=True)  # type: ignore[arg-type]
    mrr = {r.part: r.value for r in records if r.metric == "MRR"}
    assert mrr["context:rotation:0"] == pytest.approx(1.0) and mrr["context:rotation:4"] == pytest.approx(1.0)
    # Without the rotation every query is view 0 itself: the true view v ranks anywhere but first for v > 0.
    assert mrr["context:colour:0"] < 0.9
    assert {(r.metric, r.task) for r in records if r.part == "context:colour:4"} >= {
        ("r2", "rotation"),
        ("r2", "colour"),
    }
