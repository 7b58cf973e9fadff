"""The method contract (DESIGN.md contract 4) and the parts every method shares.

A method is an ``nn.Module`` holding a backbone and its heads; ``forward(batch)`` returns a
:class:`MethodOutput` (the loss, named terms to log, the detached representations), so the training
loop knows nothing method-specific. Methods train on pairs: view a = ``batch.x``, view b = ``batch.y``,
and ``batch.pair_transform`` holds the parameters g of the transformation from a to b.

Conventions shared by all methods (as the reference):

* the backbone runs on each view separately (BatchNorm statistics per view, as the reference);
* MSE terms use the local batch; variance, covariance and InfoNCE use tensors gathered over all
  ranks with :func:`sie.distributed.gather_with_grad`;
* losses are computed in fp32 even under autocast (see :mod:`sie.losses`);
* ``terms`` hold the *unweighted* terms under fixed names (``loss/inv``, ``loss/equi``, ``loss/std``,
  ``loss/cov``, ``loss/pred_std``, ``loss/nce``, ``loss/nce_equi``, ``loss/augself``, ``loss/ce``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sie.config import Config, ModelConfig, parse_mlp_spec
from sie.data.batch import Batch
from sie.distributed import gather_with_grad
from sie.errors import ConfigError, UsageError
from sie.losses import covariance_loss, variance_loss
from sie.nn.backbones import build_backbone
from sie.nn.predictors import HypernetworkPredictor, MLPPredictor

__all__ = [
    "Method",
    "MethodOutput",
    "build_predictor",
    "covariance_denominator",
    "mlp_widths",
    "vicreg_regularizers",
]


@dataclass
class MethodOutput:
    """What ``Method.forward`` returns.

    Attributes:
        loss: scalar float32 loss to back-propagate.
        terms: detached scalar terms to log, by fixed name (``loss/inv``, ``loss/std``, ...).
        representations: (B, K, D) detached backbone outputs of the K views.
    """

    loss: Tensor
    terms: dict[str, Tensor]
    representations: Tensor


class Method(nn.Module):
    """Base of every method: builds the backbone, checks batches, packages the output.

    Args:
        cfg: the resolved configuration (kept as ``self.cfg``; the model section drives the build).
        transform_dim: number P of transformation parameters the data provides per pair.

    Attributes:
        backbone: images (N, 3, H, W) -> (N, D) with ``backbone.num_features`` = D.
        has_predictor: True when the method predicts one view's embedding from the other's.
        name: the registry name (set by :func:`sie.methods.build_method`).
    """

    has_predictor: bool = False
    name: str = ""

    def __init__(self, cfg: Config, transform_dim: int) -> None:
        super().__init__()
        if transform_dim <= 0:
            raise ConfigError(f"transform_dim={transform_dim} must be positive")
        self.cfg = cfg
        self.transform_dim = transform_dim
        self.backbone: nn.Module = build_backbone(
            cfg.model.arch, small_stem=cfg.model.small_stem, width=cfg.model.width
        )
        num_features: int = self.backbone.num_features  # type: ignore[assignment]  # every backbone has it
        self.repr_dim = int(num_features)

    @property
    def representation_parts(self) -> dict[str, slice]:
        """Named slices of the representation's last dim; ``full`` always, ``inv``/``equi`` if split."""
        return {"full": slice(0, self.repr_dim)}

    def backbone_state_dict(self) -> dict[str, Tensor]:
        """The backbone's state dict with clean keys (load it into the backbone class as is)."""
        return dict(self.backbone.state_dict())

    def embed_equivariant(self, h: Tensor) -> Tensor:
        """(N, D) representations -> (N, E) equivariant embeddings; only when ``has_predictor``."""
        raise UsageError(
            f"method {self.name or type(self).__name__!r} has no predictor (has_predictor is False)"
        )

    def predict(self, z: Tensor, params: Tensor) -> Tensor:
        """(N, E) embeddings of view a and (N, P) parameters -> (N, E); only when ``has_predictor``."""
        raise UsageError(
            f"method {self.name or type(self).__name__!r} has no predictor (has_predictor is False)"
        )

    def encode_pair(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Backbone features of both views, each (B, D); the backbone runs on each view separately."""
        if batch.num_views != 2:
            raise ValueError(f"methods train on pairs of views; got a batch with K={batch.num_views} views")
        if batch.transforms.shape[-1] != self.transform_dim:
            raise ValueError(
                f"batch has {batch.transforms.shape[-1]} transformation parameters per pair; this method was "
                f"built for transform_dim={self.transform_dim}"
            )
        return self.backbone(batch.x), self.backbone(batch.y)

    def output(self, loss: Tensor, terms: Mapping[str, Tensor], h_x: Tensor, h_y: Tensor) -> MethodOutput:
        """Package the loss (as fp32), detached terms and the (B, 2, D) detached representations."""
        return MethodOutput(
            loss=loss.float(),
            terms={name: value.detach().float() for name, value in terms.items()},
            representations=torch.stack([h_x, h_y], dim=1).detach(),
        )


def mlp_widths(model: ModelConfig) -> tuple[int, ...]:
    """``model.mlp`` as a tuple of widths, refusing an empty spec."""
    widths = parse_mlp_spec(model.mlp)
    if not widths:
        raise ConfigError("model.mlp='' must name at least one projector width, e.g. 2048-2048-2048")
    return widths


def covariance_denominator(cfg: Config) -> float | None:
    """What the covariance divides by: ``train.batch_size - 1`` (reference) or None (= gathered N - 1)."""
    if cfg.model.cov_denominator == "gathered":
        return None
    if cfg.train.batch_size < 2:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} with model.cov_denominator='batch_size' divides the "
            "covariance by batch_size - 1 = 0; use a batch of at least 2"
        )
    return float(cfg.train.batch_size - 1)


def vicreg_regularizers(z_x: Tensor, z_y: Tensor, cov_denominator: float | None) -> tuple[Tensor, Tensor]:
    """Variance and covariance terms of two views' embeddings, gathered over ranks.

    Returns ``(V(Z_x) / 2 + V(Z_y) / 2, C(Z_x) + C(Z_y))`` with Z = the gathered (N, D) embeddings and
    C divided by D = the embeddings' width, as every reference method does.
    """
    all_x, all_y = gather_with_grad(z_x), gather_with_grad(z_y)
    std = variance_loss(all_x) / 2 + variance_loss(all_y) / 2
    cov = covariance_loss(all_x, cov_denominator) + covariance_loss(all_y, cov_denominator)
    return std, cov


def build_predictor(model: ModelConfig, dim: int, transform_dim: int) -> nn.Module:
    """The predictor that ``model.predictor_type`` names, on d = ``dim`` embeddings and P parameters."""
    if model.predictor_type == "mlp":
        if model.tf_num_layers < 1:
            raise ConfigError(f"model.tf_num_layers={model.tf_num_layers} must be >= 1 for the MLP predictor")
        return MLPPredictor(dim, transform_dim, num_layers=model.tf_num_layers)
    return HypernetworkPredictor(
        dim,
        transform_dim,
        parse_mlp_spec(model.predictor, "model.predictor"),
        hypernetwork=model.hypernetwork,
        bias_pred=model.bias_pred,
        bias_hypernet=model.bias_hypernet,
        relu=model.predictor_relu,
        implementation=model.hypernetwork_impl,
        init_gain=model.hypernetwork_init_gain if model.hypernetwork_init_gain > 0 else None,
    )
