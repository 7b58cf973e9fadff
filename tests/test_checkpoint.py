"""Checkpoint files: atomic writes, weights_only loading, hashes, clean backbone export."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

import sie.checkpoint as ckpt
from sie.config import Config, ModelConfig, resolve_config
from sie.engine.state import capture_rng_state
from sie.errors import UsageError, WorkFailed


class _TinyBackbone(nn.Module):
    num_features = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).mean(dim=(2, 3))


class _TinyMethod(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = _TinyBackbone()
        self.head = nn.Linear(4, 2)


class _Wrapper(nn.Module):
    """What DDP looks like from the outside: ``.module`` holds the method."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.module = method


def _realistic_state() -> dict[str, object]:
    model = _TinyMethod()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.head(model.backbone(torch.randn(2, 3, 5, 5))).sum().backward()
    opt.step()
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(),
        "step": 7,
        "epoch": 1,
        "batches_in_epoch": 3,
        "config": {"model": {"method": "sie"}, "eval": {"probe_seeds": [0, 1]}},
        "rng": capture_rng_state(torch.device("cpu")),
    }


def test_round_trip_loads_with_weights_only(tmp_path: Path) -> None:
    state = _realistic_state()
    path = ckpt.save_checkpoint(tmp_path / "checkpoint.pt", state)
    # The plain torch call a user would make must work: nothing but tensors and primitive types.
    raw = torch.load(path, weights_only=True)
    loaded = ckpt.load_checkpoint(path)
    for got in (raw, loaded):
        assert got["step"] == 7 and got["batches_in_epoch"] == 3
        assert got["config"] == state["config"]
        for key, value in state["model"].items():  # type: ignore[attr-defined]
            assert torch.equal(got["model"][key], value)
        assert torch.equal(got["rng"]["torch"], state["rng"]["torch"])  # type: ignore[index]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary file left


def test_full_disk_leaves_previous_checkpoint_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    before = path.read_bytes()

    def full_disk(obj: object, handle: object) -> None:
        handle.write(b"partial bytes")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    with pytest.raises(WorkFailed, match=r"No space left on device.*previous checkpoint"):
        ckpt.save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["step"] == 1


def test_load_refuses_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no checkpoint at"):
        ckpt.load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip archive at all")
    with pytest.raises(
        UsageError, match=r"not a readable sie checkpoint: it is not a file written by torch\.save"
    ):
        ckpt.load_checkpoint(bad)
    good = tmp_path / "good.pt"
    ckpt.save_checkpoint(good, {"step": 1, "w": torch.zeros(1000)})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(UsageError, match=r"the archive is incomplete \(truncated") as err:
        ckpt.load_checkpoint(truncated)
    assert "weights_only" not in str(err.value)  # torch's advice to load unsafely is not passed on
    pickled = tmp_path / "pickled.pt"
    torch.save({"step": 1, "obj": _NotATensor()}, pickled)
    with pytest.raises(UsageError, match="holds Python objects other than tensors"):
        ckpt.load_checkpoint(pickled)


class _NotATensor:
    """An object a weights-only load refuses."""


def test_checkpoint_hash_is_the_file_sha256_prefix(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 1000)
    assert ckpt.checkpoint_hash(path) == hashlib.sha256(b"abc" * 1000).hexdigest()[:16]
    path.write_bytes(b"abd" * 1000)
    assert ckpt.checkpoint_hash(path) == hashlib.sha256(b"abd" * 1000).hexdigest()[:16]


def test_clean_keys_strip_wrapper_segments_not_characters() -> None:
    t = torch.zeros(1)
    state = {
        "module.backbone._orig_mod.conv1.weight": t,
        "backbone.bn1.bias": t,
        "backbone.backbone_extra.weight": t,  # 'backbone' inside a name must survive
    }
    cleaned = ckpt.clean_state_dict_keys(state, strip_prefix="backbone.")
    assert sorted(cleaned) == ["backbone_extra.weight", "bn1.bias", "conv1.weight"]
    with pytest.raises(ValueError, match="collide"):
        ckpt.clean_state_dict_keys({"module.a": t, "a": t})


def test_export_backbone_clean_keys_metadata_and_strict_reload(tmp_path: Path) -> None:
    method = _TinyMethod()
    cfg = Config(model=ModelConfig(method="vicreg", small_stem=True))
    path = ckpt.export_backbone(
        _Wrapper(method), tmp_path / "backbone.safetensors", cfg, metadata={"step": 12}
    )
    tensors = load_file(str(path))
    assert sorted(tensors) == sorted(method.backbone.state_dict())
    assert not any(k.startswith(("module.", "backbone.", "_orig_mod.")) for k in tensors)
    fresh = _TinyBackbone()
    fresh.load_state_dict(tensors, strict=True)
    for key, value in method.backbone.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["arch"] == "resnet18" and meta["method"] == "vicreg" and meta["step"] == "12"
    assert json.loads(meta["small_stem"]) is True and meta["num_features"] == "4"
    assert "sim_coeff" in meta["config"]
    assert ckpt.read_backbone_metadata(path) == meta


def test_load_backbone_rebuilds_a_narrow_backbone_and_names_both_archs_on_mismatch(tmp_path: Path) -> None:
    from sie.methods import build_method

    cfg = resolve_config("cpu", overrides=["model.mlp=32-32", "model.equi=64", "model.method=vicreg"])
    method = build_method(cfg, transform_dim=4)
    path = ckpt.export_backbone(method, tmp_path / "backbone.safetensors", cfg)
    meta = ckpt.read_backbone_metadata(path)
    assert meta["arch"] == "convnet" and meta["width"] == "0" and meta["num_features"] == "256"
    loaded = ckpt.load_backbone(path)
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image), method.backbone.eval()(image))
    # A file whose metadata names another architecture than its weights: one line naming both.
    from safetensors.torch import save_file

    save_file(
        load_file(str(path)), str(tmp_path / "lying.safetensors"), metadata={**meta, "arch": "resnet18"}
    )
    with pytest.raises(UsageError, match=r"arch resnet18.*does not match"):
        ckpt.load_backbone(tmp_path / "lying.safetensors")


def _flip_a_bit_of(path: Path, tensor: torch.Tensor) -> None:
    """Flip one exponent bit of ``tensor``'s first element where its bytes lie in the file."""
    data = bytearray(path.read_bytes())
    at = data.find(tensor.reshape(-1)[:4].numpy().tobytes())
    assert at > 0
    data[at + 3] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_the_weights_is_caught_on_load(tmp_path: Path) -> None:
    # Issue 14 item 7: torch.load checks nothing; before, the weight loaded as ~1e37 without a word.
    state = _realistic_state()
    path = ckpt.save_checkpoint(tmp_path / "checkpoint.pt", state)
    raw = torch.load(path, weights_only=True)
    assert raw[ckpt.CHECKSUM_KEY] == ckpt.state_checksum(state) and raw[ckpt.CHECKSUM_KEY].startswith(
        "sha256:"
    )
    assert ckpt.CHECKSUM_KEY not in ckpt.load_checkpoint(path)  # verified, then dropped
    _flip_a_bit_of(path, state["model"]["head.weight"])  # type: ignore[index]
    flipped = torch.load(path, weights_only=True)["model"]["head.weight"]
    assert not torch.equal(flipped, state["model"]["head.weight"])  # type: ignore[index]
    with pytest.raises(UsageError) as err:
        ckpt.load_checkpoint(path)
    assert str(err.value).startswith(
        f"{path} is corrupt: its tensors do not match the checksum written with them (stored sha256:"
    )
    assert err.value.exit_code == 2


def test_a_checkpoint_without_a_checksum_still_loads_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    state = _realistic_state()
    torch.save(state, tmp_path / "old.pt")  # as written before checkpoints carried a checksum
    loaded = ckpt.load_checkpoint(tmp_path / "old.pt")
    assert loaded["step"] == 7 and ckpt.CHECKSUM_KEY not in loaded
    assert not caplog.records and not recwarn.list
