"""SEN-Contrastive, the 3DIEBench baseline of seq-JEPA (docs/methods.md).

SEN: Park et al., "Learning Symmetric Embeddings for Equivariant World Models", ICML 2022. This is the
simplified contrastive version the seq-JEPA authors (Ghaemi et al., NeurIPS 2025) use as a baseline,
public code hafezgh/seq-jepa (``models.py``, class ``SEN_Contrastive``), not the original SEN with its
equivariant transition networks.

With h = backbone(view) (D dims) and g the transformation parameters from view a to view b:

* projector ``y = P(h)``: ``Linear(D, 2048, no bias) - BN - ReLU - Linear(2048, 2048, no bias) - BN - ReLU
  - Linear(2048, 2048, no bias) - BN(2048, affine=False)`` (widths ``model.sen.mlp``);
* action embedding ``A(g) = Linear(P, 128, no bias) - BN(128, affine=False)``, or the raw g with
  ``model.sen.learn_action_embedding=false``;
* predictor (transition model), one linear layer: ``T = Linear(E + 128, E, no bias) - BN(E, affine=False)``
  on ``concat(A(g), P(h_a))`` (action first);
* loss: NT-Xent at temperature 0.5 between the predicted and the actual projections of view b,

      L = NT-Xent(T([A(g), P(h_a)]), P(h_b)),

  2N rows, each row's positive its partner, the 2N - 2 other rows its negatives, no stop-gradient,
  computed on rows gathered over ranks with gradient, in float32 with autocast off (:mod:`sie.losses`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sie.config import Config, param, parse_mlp_spec
from sie.data.batch import Batch
from sie.distributed import gather_with_grad
from sie.errors import ConfigError
from sie.losses import info_nce_loss
from sie.methods.base import Method, MethodOutput
from sie.methods.byol import action_embedding
from sie.methods.registry import register_method

__all__ = ["SEN", "SENConfig"]


@dataclass(frozen=True)
class SENConfig:
    """``model.sen.*``: SEN-Contrastive's heads and loss (defaults: hafezgh/seq-jepa)."""

    mlp: str = param(
        "2048-2048-2048",
        "projector widths; the last is the embedding E the predictor maps to (BN without affine after it)",
    )
    action_dim: int = param(128, "width of the learned action embedding A(g)", "dims")
    learn_action_embedding: bool = param(
        True, "embed g with Linear + BN (seq-JEPA's learn_act_emb=1); false = feed the raw parameters"
    )
    temperature: float = param(0.5, "NT-Xent temperature (seq-JEPA's --temp)")

    def __post_init__(self) -> None:
        if not parse_mlp_spec(self.mlp, "model.sen.mlp"):
            raise ConfigError(f"model.sen.mlp={self.mlp!r} must name at least one width, e.g. 2048-2048-2048")
        if isinstance(self.action_dim, bool) or not isinstance(self.action_dim, int) or self.action_dim < 1:
            raise ConfigError(f"model.sen.action_dim={self.action_dim!r} must be a positive number of dims")
        if not self.temperature > 0:
            raise ConfigError(f"model.sen.temperature={self.temperature!r} must be > 0")


def _projector(in_dim: int, widths: tuple[int, ...]) -> nn.Sequential:
    """``Linear(no bias) - BN - ReLU`` for every width but the last, then ``Linear(no bias) - BN(affine=False)``."""
    layers: list[nn.Module] = []
    dims = [in_dim, *widths]
    for index in range(len(widths) - 1):
        layers += [nn.Linear(dims[index], dims[index + 1], bias=False), nn.BatchNorm1d(dims[index + 1])]
        layers.append(nn.ReLU(inplace=True))
    layers += [nn.Linear(dims[-2], dims[-1], bias=False), nn.BatchNorm1d(dims[-1], affine=False)]
    return nn.Sequential(*layers)


class SEN(Method):
    """SEN-Contrastive (see the module docstring for the loss).

    Args:
        cfg: resolved configuration; the heads and the loss read ``model.sen.*``.
        transform_dim: P, the transformation parameters per pair.

    Attributes:
        projector: D -> E.
        action_embedding: P -> ``action_dim`` (Linear + BN), or the identity on the raw parameters.
        predictor: ``concat(action, embedding)`` -> E.
    """

    has_predictor = True

    def __init__(self, cfg: Config, transform_dim: int) -> None:
        super().__init__(cfg, transform_dim)
        self.opts: SENConfig = cfg.model.section("sen")
        opts = self.opts
        widths = parse_mlp_spec(opts.mlp, "model.sen.mlp")
        self.embedding_dim = widths[-1]
        self.projector = _projector(self.repr_dim, widths)
        self.action_embedding: nn.Module
        if opts.learn_action_embedding:
            self.action_embedding = action_embedding(transform_dim, opts.action_dim)
            action_width = opts.action_dim
        else:
            self.action_embedding = nn.Identity()
            action_width = transform_dim
        self.predictor = nn.Sequential(
            nn.Linear(action_width + self.embedding_dim, self.embedding_dim, bias=False),
            nn.BatchNorm1d(self.embedding_dim, affine=False),
        )

    def embed_equivariant(self, h: Tensor) -> Tensor:
        """(N, D) representations -> (N, E) projections."""
        out: Tensor = self.projector(h)
        return out

    def predict(self, z: Tensor, params: Tensor) -> Tensor:
        """Projections of view a (N, E) and parameters g (N, P) -> predicted projections of view b (N, E)."""
        out: Tensor = self.predictor(torch.cat([self.action_embedding(params), z], dim=1))
        return out

    def forward(self, batch: Batch) -> MethodOutput:
        """NT-Xent between predicted and actual projections of view b on a batch of pairs."""
        h_x, h_y = self.encode_pair(batch)
        prediction = self.predict(self.embed_equivariant(h_x), batch.pair_transform)
        target = self.embed_equivariant(h_y)
        predictions, targets = gather_with_grad(prediction), gather_with_grad(target)
        nce = info_nce_loss(predictions, targets, self.opts.temperature)
        return self.output(nce, {"loss/nce_equi": nce}, (h_x, h_y))


register_method(
    "sen",
    description="SEN-Contrastive: NT-Xent between view b's projection and its prediction from view a + action",
    terms=("loss/nce_equi",),
    reference="hafezgh/seq-jepa models.SEN_Contrastive",
    section=SENConfig,
)(SEN)
