"""VICReg and VICReg with partial invariance (facebookresearch/SIE; docs/methods.md).

``z = P(h)`` with one projector on the whole 512-d representation (widths ``model.mlp``, D = last width):

    L = sim * MSE(z^x, z^y) + std * (V(z^x) + V(z^y)) / 2 + cov * (C(z^x) + C(z^y))

with V and C on embeddings gathered over ranks and C divided by D (the reference's ``emb_size``).
``vicreg-partinv`` applies the invariance term to the first D - e embedding dims only (e =
``model.equi``, read at the *embedding* level as the reference does); variance and covariance still
cover all D dims.
"""

from __future__ import annotations

from functools import partial

from torch import Tensor

from sie.config import Config
from sie.data.batch import Batch
from sie.errors import ConfigError
from sie.losses import invariance_loss
from sie.methods.base import Method, MethodOutput, covariance_denominator, mlp_widths, vicreg_regularizers
from sie.methods.registry import register_method
from sie.nn.heads import Projector

__all__ = ["VICReg"]

_VICREG_KEYS = ("model.mlp", "model.sim_coeff", "model.std_coeff", "model.cov_coeff")
_TERMS = ("loss/inv", "loss/std", "loss/cov")


class VICReg(Method):
    """VICReg (``partial_invariance=False``) or VICRegPartInv (True).

    Args:
        cfg: resolved configuration.
        transform_dim: transformation parameters per pair (unused by the loss; checked on batches).
        partial_invariance: invariance on the first D - ``model.equi`` embedding dims only.
    """

    def __init__(self, cfg: Config, transform_dim: int, *, partial_invariance: bool = False) -> None:
        super().__init__(cfg, transform_dim)
        widths = mlp_widths(cfg.model)
        self.projector = Projector(self.repr_dim, widths)
        self.embedding_dim = widths[-1]
        self.cov_denominator = covariance_denominator(cfg)
        self.invariant_dims = self.embedding_dim
        if partial_invariance:
            equi = cfg.model.equi
            if not 0 < equi < self.embedding_dim:
                raise ConfigError(
                    f"model.equi={equi} must be in (0, {self.embedding_dim}) for method 'vicreg-partinv': it "
                    f"counts embedding dims, and model.mlp={cfg.model.mlp!r} gives {self.embedding_dim}"
                )
            self.invariant_dims = self.embedding_dim - equi

    def forward(self, batch: Batch) -> MethodOutput:
        """VICReg loss (facebookresearch/SIE; docs/methods.md) on a batch of pairs."""
        model = self.cfg.model
        h_x, h_y = self.encode_pair(batch)
        z_x, z_y = self.projector(h_x), self.projector(h_y)
        keep = self.invariant_dims
        terms: dict[str, Tensor] = {"loss/inv": invariance_loss(z_x[:, :keep], z_y[:, :keep])}
        terms["loss/std"], terms["loss/cov"] = vicreg_regularizers(z_x, z_y, self.cov_denominator)
        loss = (
            model.sim_coeff * terms["loss/inv"]
            + model.std_coeff * terms["loss/std"]
            + model.cov_coeff * terms["loss/cov"]
        )
        return self.output(loss, terms, (h_x, h_y))


register_method(
    "vicreg",
    description="VICReg: invariance + variance + covariance on one projector",
    terms=_TERMS,
    reference="VICReg",
    keys=_VICREG_KEYS,
)(VICReg)
register_method(
    "vicreg-partinv",
    description="VICReg with invariance on the first D - equi embedding dims only",
    terms=_TERMS,
    reference="VICRegPartInv",
    keys=("model.equi", *_VICREG_KEYS),
)(partial(VICReg, partial_invariance=True))
