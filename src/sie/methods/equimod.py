"""EquiMod on SimCLR and on VICReg (Devillers & Lefort, ICLR 2023; facebookresearch/SIE; docs/methods.md).

The whole 512-d representation h feeds two projectors with the full ``model.mlp`` widths each:
``z_inv = P_inv(h)`` and ``z_eq = P_eq(h)``; a predictor maps ``z_eq^x`` and g to a prediction of
``z_eq^y``.

* ``equimod`` (SimCLR): ``L = NT-Xent(z_inv^x, z_inv^y) + equi_factor * NT-Xent(p_g(z_eq^x), z_eq^y)``.
  With rotation + colour parameters (``data.transform=rotcolor``) the reference drops equi_factor
  (``SimCLREquiModRotColor``); ``model.equi_factor_everywhere`` keeps it.
* ``equimod-vicreg``: ``L = L_inv + equi_factor * L_eq`` with
  ``L_inv = sim * MSE(z_inv^x, z_inv^y) + std * (V(z_inv^x) + V(z_inv^y)) / 2 + cov * (C(z_inv^x) + C(z_inv^y))``
  and ``L_eq = sim * MSE(p_g(z_eq^x), z_eq^y) + std * (V(z_eq^x) + V(z_eq^y)) / 2 + cov * (C(z_eq^x) + C(z_eq^y))``:
  variance and covariance on the projector outputs (not on the prediction), no cross-covariance
  between the two parts, C divided by the embedding width.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

from torch import Tensor

from sie.config import Config
from sie.data.batch import Batch
from sie.distributed import gather_with_grad
from sie.losses import info_nce_loss, invariance_loss
from sie.methods.base import (
    Method,
    MethodOutput,
    build_predictor,
    covariance_denominator,
    mlp_widths,
    vicreg_regularizers,
)
from sie.methods.registry import register_method
from sie.nn.heads import Projector

__all__ = ["EquiMod"]


class EquiMod(Method):
    """EquiMod with a SimCLR (``base='simclr'``) or VICReg (``base='vicreg'``) objective.

    Args:
        cfg: resolved configuration.
        transform_dim: transformation parameters per pair (the predictor's input size).
        base: which objective the two heads use.
    """

    has_predictor = True

    def __init__(self, cfg: Config, transform_dim: int, *, base: Literal["simclr", "vicreg"]) -> None:
        super().__init__(cfg, transform_dim)
        widths = mlp_widths(cfg.model)
        self.base = base
        self.projector_inv = Projector(self.repr_dim, widths)
        self.projector_equi = Projector(self.repr_dim, widths)
        self.embedding_dim = widths[-1]
        self.predictor = build_predictor(cfg.model, self.embedding_dim, transform_dim)
        self.cov_denominator = covariance_denominator(cfg) if base == "vicreg" else None
        reference_drops_factor = base == "simclr" and cfg.data.transform == "rotcolor"
        if reference_drops_factor and not cfg.model.equi_factor_everywhere:
            self.equi_weight = (
                1.0  # SimCLREquiModRotColor (facebookresearch/SIE; docs/methods.md, deviations)
            )
        else:
            self.equi_weight = cfg.model.equi_factor

    def embed_equivariant(self, h: Tensor) -> Tensor:
        """(N, D) representations -> (N, E) equivariant embeddings (P_eq on the whole h)."""
        out: Tensor = self.projector_equi(h)
        return out

    def predict(self, z: Tensor, params: Tensor) -> Tensor:
        """Equivariant embeddings of view a (N, E) and parameters g (N, P) -> predicted view b (N, E)."""
        out: Tensor = self.predictor(z, params)
        return out

    def forward(self, batch: Batch) -> MethodOutput:
        """The EquiMod loss (see the module docstring) on a batch of pairs."""
        model = self.cfg.model
        h_x, h_y = self.encode_pair(batch)
        zinv_x, zinv_y = self.projector_inv(h_x), self.projector_inv(h_y)
        zeq_x, zeq_y = self.embed_equivariant(h_x), self.embed_equivariant(h_y)
        prediction = self.predict(zeq_x, batch.pair_transform)
        terms: dict[str, Tensor] = {}
        if self.base == "simclr":
            temperature = model.simclr_temp
            terms["loss/nce"] = info_nce_loss(gather_with_grad(zinv_x), gather_with_grad(zinv_y), temperature)
            terms["loss/nce_equi"] = info_nce_loss(
                gather_with_grad(prediction), gather_with_grad(zeq_y), temperature
            )
            loss = terms["loss/nce"] + self.equi_weight * terms["loss/nce_equi"]
            return self.output(loss, terms, (h_x, h_y))
        terms["loss/inv"] = invariance_loss(zinv_x, zinv_y)
        terms["loss/std"], terms["loss/cov"] = vicreg_regularizers(zinv_x, zinv_y, self.cov_denominator)
        terms["loss/equi"] = invariance_loss(prediction, zeq_y)
        terms["loss/std_equi"], terms["loss/cov_equi"] = vicreg_regularizers(
            zeq_x, zeq_y, self.cov_denominator
        )
        invariant_part = (
            model.sim_coeff * terms["loss/inv"]
            + model.std_coeff * terms["loss/std"]
            + model.cov_coeff * terms["loss/cov"]
        )
        equivariant_part = (
            model.sim_coeff * terms["loss/equi"]
            + model.std_coeff * terms["loss/std_equi"]
            + model.cov_coeff * terms["loss/cov_equi"]
        )
        return self.output(invariant_part + self.equi_weight * equivariant_part, terms, (h_x, h_y))


_PREDICTOR_KEYS = ("model.predictor_type", "model.hypernetwork")
register_method(
    "equimod",
    description="EquiMod on SimCLR: invariant NT-Xent + equi_factor x predicted-view NT-Xent",
    terms=("loss/nce", "loss/nce_equi"),
    reference="SimCLREquiMod (SimCLREquiModRotColor with data.transform=rotcolor)",
    keys=("model.mlp", "model.simclr_temp", "model.equi_factor", *_PREDICTOR_KEYS),
)(partial(EquiMod, base="simclr"))
register_method(
    "equimod-vicreg",
    description="EquiMod on VICReg: VICReg on invariant head + equi_factor x VICReg with prediction",
    terms=("loss/inv", "loss/std", "loss/cov", "loss/equi", "loss/std_equi", "loss/cov_equi"),
    reference="VICRegEquiMod",
    keys=(
        "model.mlp",
        "model.sim_coeff",
        "model.std_coeff",
        "model.cov_coeff",
        "model.equi_factor",
        *_PREDICTOR_KEYS,
    ),
)(partial(EquiMod, base="vicreg"))
