"""SIE: a split invariant / equivariant representation with a hypernetwork predictor (Garrido et al., ICML 2023; docs/methods.md).

Split mode (``sie``, ``sie-novar``, ``sie-rotcolor``): the backbone output h (D = 512) is split into
``h_inv = h[:, :D - e]`` and ``h_eq = h[:, D - e:]`` (e = ``model.equi``). Each part has its own
projector (the ``model.mlp`` widths split in proportion, see :func:`sie.nn.heads.split_widths`), so
no information crosses between the parts after the split. With ``z = [z_inv, z_eq]`` (inv first):

    L = sim * MSE(z_inv^x, z_inv^y)                       invariance (symmetric)
      + equi_factor * sim * MSE(p_g(z_eq^x), z_eq^y)       prediction, x -> y only, no stop-gradient
      + std * (V(z^x) + V(z^y)) / 2                        variance on the concatenated embedding
      + std * V(p_g(z_eq^x)) / 2                           predictor-output variance (not in sie-novar)
      + cov * (C(z^x) + C(z^y))                            covariance on the concatenated embedding

V and C use embeddings gathered over ranks; C divides by the concatenated width (so the cross-covariance
between the invariant and equivariant embeddings is penalised too).

Only-equivariant mode (``sie-onlyequi``): no split, ``z = P_eq(h)`` with the full widths and the
predictor on the whole embedding; ``L = sim * MSE(p_g(z^x), z^y) + std * (V(z^x) + V(z^y)) / 2
+ std * V(p_g(z^x)) / 2 + cov * (C(z^x) + C(z^y))``. As in the reference, equi_factor is not used
there (``model.equi_factor_everywhere`` multiplies the prediction term by it).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from sie.config import Config
from sie.data.batch import Batch
from sie.distributed import gather_with_grad
from sie.errors import ConfigError
from sie.losses import invariance_loss, variance_loss
from sie.methods.base import (
    Method,
    MethodOutput,
    build_predictor,
    covariance_denominator,
    mlp_widths,
    vicreg_regularizers,
)
from sie.methods.registry import register_method
from sie.nn.heads import Projector, split_widths

__all__ = ["SIE"]

_VICREG_KEYS = ("model.mlp", "model.sim_coeff", "model.std_coeff", "model.cov_coeff")
_PREDICTOR_KEYS = ("model.predictor_type", "model.hypernetwork")
_SPLIT_KEYS = ("model.equi", *_VICREG_KEYS, "model.equi_factor", *_PREDICTOR_KEYS)
_SPLIT_TERMS = ("loss/inv", "loss/equi", "loss/std", "loss/cov", "loss/pred_std")


class SIE(Method):
    """The SIE family. See the module docstring for the loss.

    Args:
        cfg: resolved configuration.
        transform_dim: transformation parameters per pair (the predictor's input size).
        predictor_variance: include the predictor-output variance term (False = SIENoVar).
        only_equi: no invariant part (SIEOnlyEqui).
    """

    has_predictor = True

    def __init__(
        self, cfg: Config, transform_dim: int, *, predictor_variance: bool = True, only_equi: bool = False
    ) -> None:
        super().__init__(cfg, transform_dim)
        model = cfg.model
        widths = mlp_widths(model)
        self.predictor_variance = predictor_variance
        self.only_equi = only_equi
        self.cov_denominator = covariance_denominator(cfg)
        if only_equi:
            self.equi_dims = self.repr_dim
            self.projector_equi = Projector(self.repr_dim, widths)
        else:
            if not 0 < model.equi < self.repr_dim:
                raise ConfigError(
                    f"model.equi={model.equi} must be in (0, {self.repr_dim}) for method {model.method!r} "
                    f"(model.arch={model.arch!r} gives {self.repr_dim}-d representations)"
                )
            self.equi_dims = model.equi
            try:
                inv_widths, equi_widths = split_widths(widths, model.equi, self.repr_dim)
            except ValueError as exc:
                raise ConfigError(f"model.mlp={model.mlp!r} with model.equi={model.equi}: {exc}") from None
            self.projector_inv = Projector(self.repr_dim - model.equi, inv_widths)
            self.projector_equi = Projector(model.equi, equi_widths)
        self.embedding_dim = self.projector_equi.out_dim
        self.predictor = build_predictor(model, self.embedding_dim, transform_dim)
        # The reference ignores equi_factor in SIEOnlyEqui (facebookresearch/SIE; docs/methods.md, deviations).
        use_factor = not only_equi or model.equi_factor_everywhere
        self.prediction_weight = model.sim_coeff * (model.equi_factor if use_factor else 1.0)

    @property
    def representation_parts(self) -> dict[str, slice]:
        """``full``; with a split also ``inv`` (first D - e dims) and ``equi`` (last e dims)."""
        parts = {"full": slice(0, self.repr_dim)}
        if not self.only_equi:
            split = self.repr_dim - self.equi_dims
            parts.update(inv=slice(0, split), equi=slice(split, self.repr_dim))
        return parts

    def embed_invariant(self, h: Tensor) -> Tensor:
        """(N, D) representations -> (N, E_inv) invariant embeddings (split mode only)."""
        if self.only_equi:
            raise ValueError("sie-onlyequi has no invariant part")
        out: Tensor = self.projector_inv(h[:, : self.repr_dim - self.equi_dims])
        return out

    def embed_equivariant(self, h: Tensor) -> Tensor:
        """(N, D) representations -> (N, E) equivariant embeddings (P_eq on the last e dims of h)."""
        out: Tensor = self.projector_equi(h[:, self.repr_dim - self.equi_dims :])
        return out

    def predict(self, z: Tensor, params: Tensor) -> Tensor:
        """Equivariant embeddings of view a (N, E) and parameters g (N, P) -> predicted view b (N, E)."""
        out: Tensor = self.predictor(z, params)
        return out

    def forward(self, batch: Batch) -> MethodOutput:
        """Loss of docs/methods.md, SIE (split) or SIE only-equivariant, on a batch of pairs."""
        model = self.cfg.model
        h_x, h_y = self.encode_pair(batch)
        zeq_x, zeq_y = self.embed_equivariant(h_x), self.embed_equivariant(h_y)
        prediction = self.predict(zeq_x, batch.pair_transform)
        terms: dict[str, Tensor] = {"loss/equi": invariance_loss(prediction, zeq_y)}
        loss = self.prediction_weight * terms["loss/equi"]
        if self.only_equi:
            z_x, z_y = zeq_x, zeq_y
        else:
            zinv_x, zinv_y = self.embed_invariant(h_x), self.embed_invariant(h_y)
            terms["loss/inv"] = invariance_loss(zinv_x, zinv_y)
            loss = loss + model.sim_coeff * terms["loss/inv"]
            z_x = torch.cat([zinv_x, zeq_x], dim=1)
            z_y = torch.cat([zinv_y, zeq_y], dim=1)
        terms["loss/std"], terms["loss/cov"] = vicreg_regularizers(z_x, z_y, self.cov_denominator)
        loss = loss + model.std_coeff * terms["loss/std"] + model.cov_coeff * terms["loss/cov"]
        if self.predictor_variance:
            terms["loss/pred_std"] = variance_loss(gather_with_grad(prediction)) / 2
            loss = loss + model.std_coeff * terms["loss/pred_std"]
        return self.output(loss, terms, (h_x, h_y))


register_method(
    "sie",
    description="SIE: split invariant/equivariant representation, hypernetwork predictor, predictor variance",
    terms=_SPLIT_TERMS,
    reference="SIE (SIERotColor with data.transform=rotcolor)",
    keys=_SPLIT_KEYS,
)(SIE)
register_method(
    "sie-novar",
    description="SIE without the predictor-output variance term",
    terms=_SPLIT_TERMS[:-1],
    reference="SIENoVar",
    keys=_SPLIT_KEYS,
)(partial(SIE, predictor_variance=False))
register_method(
    "sie-onlyequi",
    description="SIE with no invariant part: the whole representation is equivariant",
    terms=("loss/equi", "loss/std", "loss/cov", "loss/pred_std"),
    reference="SIEOnlyEqui",
    keys=(*_VICREG_KEYS, *_PREDICTOR_KEYS),
)(partial(SIE, only_equi=True))
register_method(
    "sie-rotcolor",
    description="SIE conditioned on rotation + floor/spot hue deltas (needs data.transform=rotcolor)",
    terms=_SPLIT_TERMS,
    reference="SIERotColor",
    keys=_SPLIT_KEYS,
    requires_transform=("rotcolor", 6),
)(SIE)
