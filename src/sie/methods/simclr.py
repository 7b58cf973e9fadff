"""SimCLR, SimCLR + AugSelf and SimCLR only-equivariant (Garrido et al., ICML 2023; facebookresearch/SIE; docs/methods.md).

NT-Xent is computed on embeddings gathered over ranks (2N rows, temperature ``model.simclr_temp``):

* ``simclr``:          ``L = NT-Xent(P(h_x), P(h_y))``.
* ``augself``:         ``L = NT-Xent(P(h_x), P(h_y)) + ec_weight * MSE(phi([h_x, h_y]), g)``, phi an MLP
                       (``model.augself_mlp`` hidden widths) on the *backbone representations* of both
                       views regressing the transformation parameters g (4 for rotation, 6 for
                       rotation + colour), on the local batch.
* ``simclr-onlyequi``: ``L = NT-Xent(p_g(z^x), z^y)`` with ``z = P_eq(h)``: the positive of the
                       prediction from view a is view b's embedding.
"""

from __future__ import annotations

from functools import partial

from torch import Tensor

from sie.config import Config, parse_mlp_spec
from sie.data.batch import Batch
from sie.distributed import gather_with_grad
from sie.losses import info_nce_loss, invariance_loss
from sie.methods.base import Method, MethodOutput, build_predictor, mlp_widths
from sie.methods.registry import register_method
from sie.nn.heads import AugSelfHead, Projector

__all__ = ["SimCLR", "SimCLROnlyEqui"]


class SimCLR(Method):
    """SimCLR, optionally with AugSelf's transformation regressor.

    Args:
        cfg: resolved configuration.
        transform_dim: transformation parameters per pair (AugSelf's regression target size).
        augself: add the AugSelf head and its ``ec_weight``-weighted MSE term.
    """

    def __init__(self, cfg: Config, transform_dim: int, *, augself: bool = False) -> None:
        super().__init__(cfg, transform_dim)
        self.projector = Projector(self.repr_dim, mlp_widths(cfg.model))
        self.augself: AugSelfHead | None = None
        if augself:
            hidden = parse_mlp_spec(cfg.model.augself_mlp, "model.augself_mlp")
            self.augself = AugSelfHead(self.repr_dim, transform_dim, hidden)

    def forward(self, batch: Batch) -> MethodOutput:
        """NT-Xent (+ AugSelf MSE) on a batch of pairs."""
        model = self.cfg.model
        h_x, h_y = self.encode_pair(batch)
        z_x, z_y = self.projector(h_x), self.projector(h_y)
        terms: dict[str, Tensor] = {
            "loss/nce": info_nce_loss(gather_with_grad(z_x), gather_with_grad(z_y), model.simclr_temp)
        }
        loss = terms["loss/nce"]
        if self.augself is not None:
            terms["loss/augself"] = invariance_loss(self.augself(h_x, h_y), batch.pair_transform)
            loss = loss + model.ec_weight * terms["loss/augself"]
        return self.output(loss, terms, (h_x, h_y))


class SimCLROnlyEqui(Method):
    """SimCLR whose positives are (prediction from view a, embedding of view b); no invariant part."""

    has_predictor = True

    def __init__(self, cfg: Config, transform_dim: int) -> None:
        super().__init__(cfg, transform_dim)
        self.projector_equi = Projector(self.repr_dim, mlp_widths(cfg.model))
        self.embedding_dim = self.projector_equi.out_dim
        self.predictor = build_predictor(cfg.model, self.embedding_dim, transform_dim)

    def embed_equivariant(self, h: Tensor) -> Tensor:
        """(N, D) representations -> (N, E) embeddings (the whole representation is equivariant)."""
        out: Tensor = self.projector_equi(h)
        return out

    def predict(self, z: Tensor, params: Tensor) -> Tensor:
        """Embeddings of view a (N, E) and parameters g (N, P) -> predicted embeddings of view b (N, E)."""
        out: Tensor = self.predictor(z, params)
        return out

    def forward(self, batch: Batch) -> MethodOutput:
        """NT-Xent between predictions from view a and embeddings of view b."""
        h_x, h_y = self.encode_pair(batch)
        prediction = self.predict(self.embed_equivariant(h_x), batch.pair_transform)
        target = self.embed_equivariant(h_y)
        nce = info_nce_loss(
            gather_with_grad(prediction), gather_with_grad(target), self.cfg.model.simclr_temp
        )
        return self.output(nce, {"loss/nce_equi": nce}, (h_x, h_y))


register_method(
    "simclr",
    description="SimCLR: NT-Xent between the two views' embeddings",
    terms=("loss/nce",),
    reference="SimCLR",
    keys=("model.mlp", "model.simclr_temp"),
)(SimCLR)
register_method(
    "augself",
    description="SimCLR + AugSelf: also regress the transformation from both representations",
    terms=("loss/nce", "loss/augself"),
    reference="SimCLRAugSelf (SimCLRAugSelfRotColor with data.transform=rotcolor)",
    keys=("model.mlp", "model.simclr_temp", "model.ec_weight", "model.augself_mlp"),
)(partial(SimCLR, augself=True))
register_method(
    "simclr-onlyequi",
    description="SimCLR whose positive is the prediction from the other view (equivariant only)",
    terms=("loss/nce_equi",),
    reference="SimCLROnlyEqui (SimCLROnlyEquiRotColor with data.transform=rotcolor)",
    keys=("model.mlp", "model.simclr_temp", "model.predictor_type", "model.hypernetwork"),
)(SimCLROnlyEqui)
