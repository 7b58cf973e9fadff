"""Feature caching and the protocol parts on the tiny dataset, with a small stand-in method.

The stand-in has the Method interface the protocol uses (backbone with ``num_features``,
``representation_parts``, ``has_predictor``, ``embed_equivariant``, ``predict``), so these tests do not
depend on any registered method; the end-to-end test (test_eval_cli.py) uses a real trained run.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from sie.config import EvalConfig
from sie.data import normalize, open_split
from sie.data.pack import pack_dataset
from sie.errors import UsageError
from sie.eval import features, metrics, protocol
from sie.eval.tasks import REGRESSION_TASKS

CPU = torch.device("cpu")


class TinyBackbone(nn.Module):
    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2)
        self.bn = nn.BatchNorm2d(16)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))


class StandIn(nn.Module):
    """Split 16-d representation (inv 0:8, equi 8:16), a linear projector and an additive predictor."""

    has_predictor = True
    representation_parts: ClassVar[dict[str, slice]] = {
        "full": slice(0, 16),
        "inv": slice(0, 8),
        "equi": slice(8, 16),
    }

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = TinyBackbone()
        self.projector = nn.Linear(8, 6)
        self.hyper = nn.Linear(4, 6)

    evaluation_representation_name = "backbone"
    evaluation_parts = representation_parts

    def evaluation_representation(self, images: Tensor) -> Tensor:
        return self.backbone(images)

    def embed_equivariant(self, h: Tensor) -> Tensor:
        return self.projector(h[:, 8:16])

    def predict(self, z: Tensor, params: Tensor) -> Tensor:
        return z + self.hyper(params)


def key_for(source: object, checkpoint: str = "aaaa") -> features.FeatureKey:
    return features.FeatureKey(checkpoint, source.manifest_hash, source.split, 32, source.num_objects,
                               source.views_per_object)  # fmt: skip


def test_features_are_extracted_once_and_reused(tiny_dataset: Path, tmp_path: Path) -> None:
    method, source = StandIn().eval(), open_split(tiny_dataset, "val")
    key = key_for(source)
    first = features.load_or_extract_features(
        method, source, key, tmp_path, batch_size=4, device=CPU, with_embeddings=True
    )
    assert first.representations.shape == (source.num_objects, source.views_per_object, 16)
    assert first.embeddings is not None and first.embeddings.shape[-1] == 6
    assert first.path is not None and first.path.name == key.filename()
    # Eval mode: a view's features do not depend on its batch; a batch of one gives the same numbers.
    single = method.backbone(normalize(source.read_views(1, [2])))
    torch.testing.assert_close(first.representations[1, 2], single[0], rtol=1e-5, atol=1e-5)
    mtime = first.path.stat().st_mtime_ns
    again = features.load_or_extract_features(
        method, source, key, tmp_path, batch_size=4, device=CPU, with_embeddings=True
    )
    assert again.seconds == 0.0 and first.path.stat().st_mtime_ns == mtime
    torch.testing.assert_close(again.representations, first.representations)
    assert features.read_feature_key(first.path)["checkpoint_hash"] == "aaaa"


def test_mismatching_cache_is_recomputed_or_refused_never_mixed(tiny_dataset: Path, tmp_path: Path) -> None:
    method, source = StandIn().eval(), open_split(tiny_dataset, "val")
    old = features.load_or_extract_features(
        method, source, key_for(source, "aaaa"), tmp_path, batch_size=8, device=CPU, with_embeddings=False
    )
    new_key = key_for(source, "bbbb")
    assert old.path is not None
    old.path.rename(tmp_path / new_key.filename())  # a file whose name claims the new checkpoint
    with pytest.raises(UsageError, match="checkpoint_hash: file has 'aaaa', expected 'bbbb'"):
        features.load_or_extract_features(
            method, source, new_key, tmp_path, batch_size=8, device=CPU, with_embeddings=False, refuse=True
        )
    fresh = features.load_or_extract_features(
        method, source, new_key, tmp_path, batch_size=8, device=CPU, with_embeddings=False
    )
    assert fresh.seconds > 0 and features.read_feature_key(fresh.path)["checkpoint_hash"] == "bbbb"
    # Features of an overwritten checkpoint (same split and dataset) are removed when new ones are written.
    stale = features.load_or_extract_features(
        method, source, key_for(source, "cccc"), tmp_path, batch_size=8, device=CPU, with_embeddings=False
    )
    assert [p.name for p in tmp_path.glob("*.safetensors")] == [stale.path.name]


def _extract(source: object, cache: Path, *, refuse: bool = False) -> features.SplitFeatures:
    return features.load_or_extract_features(
        StandIn().eval(), source, key_for(source), cache, batch_size=8, device=CPU, with_embeddings=False,
        refuse=refuse,
    )  # fmt: skip


def test_a_store_repacked_at_another_resolution_is_stale_never_reused(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """Issue 14: the identity of a store covered the split files only, so a store re-packed at another
    resolution in the same place reused the features of the old one, even with refuse=True."""
    store, cache = tmp_path / "store", tmp_path / "cache"
    pack_dataset(tiny_dataset, store, 16, workers=0, progress=False)
    first = _extract(open_split(store, "val"), cache)
    assert first.path is not None and first.seconds > 0
    shutil.rmtree(store)
    pack_dataset(tiny_dataset, store, 24, workers=0, progress=False)
    repacked = open_split(store, "val")
    with pytest.raises(
        UsageError, match=r"stale cached features of split 'val' .*manifest_hash: file has .*changed"
    ):
        _extract(repacked, cache, refuse=True)
    assert [p.name for p in cache.glob("*.safetensors")] == [first.path.name]  # refused: nothing written
    fresh = _extract(repacked, cache)
    assert fresh.seconds > 0 and not torch.equal(fresh.representations, first.representations)
    assert [p.name for p in cache.glob("*.safetensors")] == [fresh.path.name]  # the stale file is gone
    assert _extract(repacked, cache, refuse=True).seconds == 0.0  # now a match: read back
    # Features of another dataset elsewhere are not stale: kept side by side, no refusal.
    raw = open_split(tiny_dataset, "val")
    assert _extract(raw, cache, refuse=True).seconds > 0
    assert len(list(cache.glob("*.safetensors"))) == 2


def test_a_dataset_still_held_elsewhere_keeps_its_features(tiny_dataset: Path, tmp_path: Path) -> None:
    """Features are keyed by content: a copy of a store reads them back; when one copy is packed again,
    the features stay for the other (not stale); once no recorded location holds them, they are."""
    one, two, cache = tmp_path / "one", tmp_path / "two", tmp_path / "cache"
    pack_dataset(tiny_dataset, one, 16, workers=0, progress=False)
    shutil.copytree(one, two)
    first = _extract(open_split(one, "val"), cache)
    assert _extract(open_split(two, "val"), cache).seconds == 0.0  # the same content: read back
    assert set(features.read_locations(cache)) == {str(one.resolve()), str(two.resolve())}
    shutil.rmtree(one)
    pack_dataset(tiny_dataset, one, 24, workers=0, progress=False)
    assert _extract(open_split(one, "val"), cache, refuse=True).seconds > 0  # nothing stale: two holds it
    assert first.path is not None and first.path.exists()
    shutil.rmtree(two)
    pack_dataset(tiny_dataset, two, 20, workers=0, progress=False)
    with pytest.raises(UsageError, match=r"the dataset at .*two changed since these features were cached"):
        _extract(open_split(two, "val"), cache, refuse=True)
    _extract(open_split(two, "val"), cache)
    assert not first.path.exists()


def test_a_cache_written_by_an_older_version_is_stale(tiny_dataset: Path, tmp_path: Path) -> None:
    source, cache = open_split(tiny_dataset, "val"), tmp_path / "cache"
    cache.mkdir()
    old_meta = key_for(source).metadata() | {
        "version": "1",
        "manifest_hash": "45d22533bba3e134aa7049d03a935bc3",
    }
    old = cache / "val-32px-aaaa-45d22533bba3e134.safetensors"
    save_file({"representations": torch.zeros(3, 5, 16)}, str(old), metadata=old_meta)
    with pytest.raises(UsageError, match=r"written by an older sie \(features version '1'"):
        _extract(source, cache, refuse=True)
    fresh = _extract(source, cache)
    assert fresh.seconds > 0 and not old.exists()
    assert features.read_feature_key(fresh.path)["version"] == str(features.FEATURES_VERSION)


def inputs_for(tiny_dataset: Path, tmp_path: Path, **cfg_changes: object) -> protocol.EvalInputs:
    method = StandIn().eval()
    sources = {s: open_split(tiny_dataset, s) for s in ("train", "val")}
    feats = {
        s: features.load_or_extract_features(method, src, key_for(src), tmp_path, batch_size=16, device=CPU,
                                             with_embeddings=True)
        for s, src in sources.items()
    }  # fmt: skip
    cfg = dataclasses.replace(EvalConfig(), probe_epochs=3, probe_hidden="32-32", **cfg_changes)
    return protocol.EvalInputs(method, feats, sources, dict(StandIn.representation_parts), cfg, CPU, 32, "quat",
                               False, len(sources["train"].class_names))  # fmt: skip


def test_protocol_parts_produce_records_with_chance_levels(tiny_dataset: Path, tmp_path: Path) -> None:
    inputs = inputs_for(tiny_dataset, tmp_path)
    cls = protocol.run_classification(inputs, "inv", seed=0)
    assert [(r.metric, r.part, r.split) for r in cls] == [("top1", "inv", "val"), ("top5", "inv", "val")]
    assert 0 <= cls[0].value <= 1 and cls[1].value == pytest.approx(1.0)  # 3 classes: top-5 is certain
    assert cls[0].chance == pytest.approx(1 / 3)  # balanced tiny dataset: majority class = a third
    recs, outputs = protocol.run_regression(inputs, REGRESSION_TASKS["rotation"], "equi", seed=1)
    (rot,) = recs
    assert (rot.metric, rot.task, rot.split, rot.seed) == ("r2", "rotation", "val", 1)
    assert rot.probe is not None and rot.probe["hidden"] == [32, 32]
    pred, target = outputs["val"]
    assert pred.shape == target.shape == (3 * 5, 4)
    again, _ = protocol.run_regression(inputs, REGRESSION_TASKS["rotation"], "equi", seed=1)
    assert again[0].value == rot.value  # a probe is a function of its seed
    retrieval_records, scores, _ = protocol.run_retrieval(inputs)
    keys = {(r.metric, r.split) for r in retrieval_records}
    assert {("MRR", "val-val"), ("H@2", "train-train"), ("PRE", "val-all"), ("PRE", "train-train")} <= keys
    # 5 views per object: every true view ranks within 5, so H@5 and H@10 (1 for any method) are not written.
    assert {k for k in keys if k[0].startswith("H@")} == {("H@1", s) for s in ("train-train", "val-val")} | {
        ("H@2", s) for s in ("train-train", "val-val")
    }
    mrr = next(r for r in retrieval_records if (r.metric, r.split) == ("MRR", "val-val"))
    assert mrr.chance == pytest.approx(sum(1 / k for k in range(1, 6)) / 5)
    assert scores["pre:val-all"].nearest.shape == (3 * 5,)
    # PRE's bar is the do-nothing predictor on the query split; the independent level is kept beside it.
    for pre in (r for r in retrieval_records if r.metric == "PRE"):
        query_split = pre.split.split("-")[0]
        assert pre.chance == pytest.approx(metrics.do_nothing_pre(inputs.features[query_split].latents))
        assert pre.chance_note == protocol.DO_NOTHING_PRE_NOTE and not pre.higher_is_better
        assert pre.reference_levels is not None
        independent = pre.reference_levels[protocol.INDEPENDENT_PRE_NOTE]
        assert 0.0 < pre.chance < 1.0 and 0.0 < independent < 1.0


def test_rank_records_the_effective_rank_of_each_part_and_of_the_embeddings(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    inputs = inputs_for(tiny_dataset, tmp_path)
    (inv,) = protocol.run_rank(inputs, "inv")
    val = inputs.features["val"]
    expected = metrics.effective_rank(val.representations[..., 0:8].reshape(-1, 8))
    assert (inv.metric, inv.task, inv.part, inv.split, inv.seed) == ("rankme", "rank", "inv", "val", None)
    assert inv.value == pytest.approx(expected) and 1.0 <= inv.value <= 8.0
    assert inv.chance is None and "at most 8" in inv.chance_note
    (emb,) = protocol.run_rank(inputs, None)
    assert emb.part == "embedding" and 1.0 <= emb.value <= 6.0


def test_reference_bn_mode_reruns_the_backbone_in_train_mode(tiny_dataset: Path, tmp_path: Path) -> None:
    cached = inputs_for(tiny_dataset, tmp_path)
    reference = inputs_for(tiny_dataset, tmp_path, reference_bn=True)
    a = protocol.run_classification(cached, "full", seed=0)
    b = protocol.run_classification(reference, "full", seed=0)
    assert b[0].probe is not None and b[0].probe["reference_bn"] is True
    # Batch statistics give the probe other features, so the trained heads differ in general; the
    # checkpoint's own backbone is left untouched (each probe works on a copy).
    before = {k: v.clone() for k, v in reference.method.backbone.state_dict().items()}
    protocol.run_regression(reference, REGRESSION_TASKS["colour"], "inv", seed=0)
    after = reference.method.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert a[0].chance == b[0].chance
    # The features themselves: batch statistics (train mode) differ from the cached eval-mode ones,
    # and the copy's running statistics drift while the checkpoint's stay put.
    supplier, _ = reference.probe_features(slice(0, 16))
    objects, views = torch.arange(4), torch.tensor([0, 1, 2, 3])
    train_mode = supplier.gather(objects, views)
    cached = reference.features["train"].representations[objects, views]
    assert not torch.allclose(train_mode, cached, atol=1e-4)
    assert not torch.equal(supplier.backbone.bn.running_mean, reference.method.backbone.bn.running_mean)


def test_aggregate_sequences_start_at_each_view_and_never_repeat_one() -> None:
    seqs = protocol.aggregate_sequences(7, 5, 3)
    assert seqs.shape == (7, 5, 3)
    assert torch.equal(seqs[:, :, 0], torch.arange(5).expand(7, 5))  # sequence s starts at view s
    assert all(len(set(row.tolist())) == 3 for row in seqs.reshape(-1, 3))
    assert torch.equal(seqs, protocol.aggregate_sequences(7, 5, 3))  # deterministic
    assert not torch.equal(seqs, protocol.aggregate_sequences(7, 5, 3, seed=2))
    with pytest.raises(UsageError, match="a sequence of 6 views cannot be drawn from 5"):
        protocol.aggregate_sequences(2, 5, 6)


class SequenceStandIn(StandIn):
    """A stand-in with a sequence representation: mean of the views' features + a linear map of the
    summed transformation parameters."""

    aggregate_views = 3

    def __init__(self) -> None:
        super().__init__()
        self.action = nn.Linear(4, 16)

    def aggregate(self, z: Tensor, params: Tensor) -> Tensor:
        return z.mean(dim=1) + self.action(params.sum(dim=1))


def test_aggregate_classification_reads_each_sequence_in_order(tiny_dataset: Path, tmp_path: Path) -> None:
    from sie.data.targets import relative_transforms

    inputs = inputs_for(tiny_dataset, tmp_path)
    inputs.method = SequenceStandIn().eval()
    val = inputs.features["val"]
    seqs = protocol.aggregate_sequences(val.num_objects, val.views_per_object, 3)
    table = protocol.aggregate_table(inputs, "val", seqs)
    assert table.shape == (val.num_objects, val.views_per_object, 16)
    # One entry by hand: object 1, sequence 2.
    views = seqs[1, 2]
    z = val.representations[1, views]
    params = relative_transforms(val.latents[1, views], "quat")  # (2, 4): view 0 -> 1, view 1 -> 2
    expected = z.mean(dim=0) + inputs.method.action(params.sum(dim=0))
    torch.testing.assert_close(table[1, 2], expected.detach(), rtol=1e-5, atol=1e-6)
    tables = {"val": table, "train": protocol.aggregate_table(inputs, "train", protocol.aggregate_sequences(
        inputs.features["train"].num_objects, inputs.features["train"].views_per_object, 3))}  # fmt: skip
    records = protocol.run_aggregate_classification(inputs, 0, tables)
    assert [(r.metric, r.task, r.part) for r in records] == [
        ("top1", "classification", "aggregate"),
        ("top5", "classification", "aggregate"),
    ]
    assert records[0].probe is not None and records[0].probe["sequence_views"] == 3
    assert records[0].chance == pytest.approx(1 / 3) and 0.0 <= records[0].value <= 1.0


def test_feature_key_names_a_non_default_representation_and_keeps_old_caches_valid() -> None:
    key = features.FeatureKey("c" * 64, "m" * 32, "val", 32, 10, 4)
    assert "representation" not in key.metadata()  # caches written before the field still match
    assert key.differences(key.metadata()) == []
    capsules = features.FeatureKey("c" * 64, "m" * 32, "val", 32, 10, 4, representation="capsules")
    assert capsules.metadata()["representation"] == "capsules"
    assert capsules.filename().endswith("-capsules.safetensors") and capsules.filename() != key.filename()
    assert capsules.differences(key.metadata()) == [
        "representation: file has '<missing>', expected 'capsules'"
    ]
