"""Heads: projector structure, proportional width split (numpy rounding), AugSelf head, classifier."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sie.nn.heads import AugSelfHead, LinearClassifier, Projector, split_widths


def test_projector_structure_matches_the_reference() -> None:
    projector = Projector(256, (1024, 1024, 1024))
    kinds = [type(m) for m in projector]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert projector[-1].bias is None and projector[0].bias is not None
    # the SIE paper and facebookresearch/SIE: 256 -> 1024 -> 1024 -> 1024 has 2.37M parameters.
    expected = (256 * 1024 + 1024) + 2 * 1024 + (1024 * 1024 + 1024) + 2 * 1024 + 1024 * 1024
    assert sum(p.numel() for p in projector.parameters()) == expected == 2_365_440
    assert projector.out_dim == 1024
    assert Projector(8, (4,))(torch.randn(3, 8)).shape == (3, 4)


@pytest.mark.parametrize(
    ("equi", "inv_width", "equi_width"),
    [(256, 1024, 1024), (128, 1536, 512), (384, 512, 1536), (64, 1792, 256)],
)
def test_split_widths_reference_values(equi: int, inv_width: int, equi_width: int) -> None:
    inv, eq = split_widths((2048, 2048, 2048), equi, 512)
    assert inv == (inv_width,) * 3 and eq == (equi_width,) * 3


def test_split_widths_rounds_half_to_even_like_numpy() -> None:
    # 5 * 256 / 512 = 2.5 -> 2 (numpy) where round-half-up would give 3; 3 * 256 / 512 = 1.5 -> 2.
    assert split_widths((5, 3), 256, 512) == ((2, 2), (2, 2))
    # 7 * 128 / 512 = 1.75 -> 2; 7 * 384 / 512 = 5.25 -> 5 (the parts need not sum to the width).
    assert split_widths((7,), 128, 512) == ((5,), (2,))


def test_split_widths_refuses_zero_widths_and_bad_equi() -> None:
    with pytest.raises(ValueError, match="zero width"):
        split_widths((32, 32), 8, 512)  # 32 * 8 / 512 = 0.5 -> 0
    with pytest.raises(ValueError, match=r"equi=512 must be in \(0, 512\)"):
        split_widths((2048,), 512, 512)


def test_augself_head_on_pairs_of_representations() -> None:
    head = AugSelfHead(512, 4)
    linears = [m for m in head.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 1024), (1024, 1024), (1024, 4)]
    h_a, h_b = torch.randn(1, 512), torch.randn(1, 512)
    assert head(h_a, h_b).shape == (1, 4)  # batch of one
    # concat order is (h_a, h_b): swapping the inputs changes the output.
    assert not torch.allclose(head(h_a, h_b), head(h_b, h_a))
    assert AugSelfHead(16, 6, hidden=(8,))(torch.randn(3, 16), torch.randn(3, 16)).shape == (3, 6)


def test_linear_classifier() -> None:
    classifier = LinearClassifier(512, 55)
    assert classifier(torch.randn(1, 512)).shape == (1, 55)
    with pytest.raises(ValueError, match="num_classes=1"):
        LinearClassifier(512, 1)
