"""The method contract (DESIGN.md contract 4) and the parts every method shares.

A method is an ``nn.Module`` holding a backbone and its heads; ``forward(batch)`` returns a
:class:`MethodOutput` (the loss, named terms to log, the detached representations), so the training
loop knows nothing method-specific. A batch holds K views of each object (``batch.views`` is
(B, K, C, H, W)) and the parameters of the transformation between consecutive views
(``batch.transforms``, (B, K-1, P)); pair methods (K = 2) read view a = ``batch.x``, view b =
``batch.y`` and ``batch.pair_transform``. How many views a method consumes is declared when it
registers (:func:`sie.methods.register_method`).

Hooks the training loop calls on every method (the defaults do nothing special):

* :meth:`Method.parameter_groups`: the trainable parameters, optionally in named groups with their
  own learning-rate scale and weight decay;
* :meth:`Method.on_step_end`: after every optimiser step, e.g. to move an EMA target
  (:class:`sie.nn.ema.EMATarget`).

Conventions shared by all methods (as the reference):

* the backbone runs on each view separately (BatchNorm statistics per view, as the reference);
* MSE terms use the local batch; variance, covariance and InfoNCE use tensors gathered over all
  ranks with :func:`sie.distributed.gather_with_grad`;
* losses are computed in fp32 even under autocast (see :mod:`sie.losses`);
* ``terms`` hold the *unweighted* terms under fixed names (``loss/inv``, ``loss/equi``, ``loss/std``,
  ``loss/cov``, ``loss/pred_std``, ``loss/nce``, ``loss/nce_equi``, ``loss/augself``, ``loss/ce``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
    "ParamGroup",
    "StepProgress",
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


@dataclass
class ParamGroup:
    """Trainable parameters that share optimiser settings.

    Attributes:
        name: for messages and docs (e.g. ``"backbone"``, ``"predictor"``).
        params: the parameters (each in exactly one group).
        lr_scale: multiplies the scheduled learning rate for this group.
        weight_decay: this group's weight decay; None = ``optim.weight_decay``.
    """

    name: str
    params: list[nn.Parameter] = field(default_factory=list)
    lr_scale: float = 1.0
    weight_decay: float | None = None


@dataclass(frozen=True)
class StepProgress:
    """Where training stands when :meth:`Method.on_step_end` is called.

    Attributes:
        step: index of the optimiser step just taken (0-based).
        total_steps: steps of the whole run.
        epoch: the epoch that step belongs to (0-based).
        epochs: epochs of the whole run.
    """

    step: int
    total_steps: int
    epoch: int
    epochs: int

    def progress(self, unit: str = "step") -> float:
        """Fraction of training done, in [0, 1]: ``step / total_steps`` or ``epoch / epochs``."""
        if unit == "step":
            return min(1.0, self.step / max(1, self.total_steps))
        if unit == "epoch":
            return min(1.0, self.epoch / max(1, self.epochs))
        raise ValueError(f"unit must be 'step' or 'epoch', got {unit!r}")


class Method(nn.Module):
    """Base of every method: builds the backbone, checks batches, packages the output.

    Args:
        cfg: the resolved configuration (kept as ``self.cfg``; the model section drives the build).
        transform_dim: number P of transformation parameters the data provides per pair.

    Attributes:
        backbone: images (N, 3, H, W) -> (N, D) with ``backbone.num_features`` = D.
        has_predictor: True when the method predicts one view's embedding from the other's.
        name: the registry name (set by :func:`sie.methods.build_method`).
        views_per_sample: K, the views per object it trains on (set by :func:`sie.methods.build_method`).
        aggregate_views: M > 0 when the method has a representation of a sequence of M views
            (:meth:`aggregate`); the evaluation then also classifies from it (part ``aggregate``).
        context_lengths: context lengths (tokens, two per pair) at which the method predicts in context
            (:meth:`evaluate_in_context`); non-empty, the evaluation reports R² and MRR/H@k at each of
            them in each of ``context_environments`` (:mod:`sie.eval.context`).
        context_environments: the environments a context can be drawn in (e.g. ``rotation``, ``colour``).
        evaluation_representation_name: what :meth:`evaluation_representation` returns (``backbone``, the
            pooled backbone, by default); part of the feature cache's key.
    """

    has_predictor: bool = False
    evaluation_representation_name: str = "backbone"
    name: str = ""
    views_per_sample: int = 2
    aggregate_views: int = 0
    context_lengths: tuple[int, ...] = ()
    context_environments: tuple[str, ...] = ()

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

    def evaluation_representation(self, images: Tensor) -> Tensor:
        """Images (N, 3, H, W) -> (N, R): what the evaluation protocol caches and probes.

        The pooled backbone by default (R = D). A method whose paper probes other outputs (CapsIE: the
        capsules' activations and poses) returns more columns, names them in :attr:`evaluation_parts`
        and gives the tensor a new :attr:`evaluation_representation_name`.
        """
        out: Tensor = self.backbone(images)
        return out

    @property
    def evaluation_parts(self) -> dict[str, slice]:
        """Named slices of :meth:`evaluation_representation`'s last dim the protocol probes; by default
        :attr:`representation_parts` (those of the backbone, which the online probes also read)."""
        return self.representation_parts

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

    def aggregate(self, z: Tensor, params: Tensor) -> Tensor:
        """(N, M, D) representations of M views of one object, in order, and the (N, M - 1, P) parameters
        between consecutive ones -> (N, E) representation of the sequence; only when ``aggregate_views``."""
        raise UsageError(f"method {self.name or type(self).__name__!r} has no sequence representation")

    def evaluate_in_context(
        self, context: tuple[Tensor, Tensor, Tensor], queries: Tensor, params: Tensor, environment: str
    ) -> Tensor:
        """The method's output for each query after a context of pairs, in one of ``context_environments``.

        Args:
            context: representations (c, D), (c, D) of the two views of c context pairs and the (c, P)
                transformation parameters from the first to the second (c may be 0).
            queries: (Q, D) representations of the query views.
            params: (Q, P) each query's transformation (zeros: the view itself, as a retrieval gallery).
            environment: which parameters the context and the queries carry (one of ``context_environments``).

        Returns:
            (Q, E) outputs, as the method's evaluation probes them; only when ``context_lengths``.
        """
        raise UsageError(f"method {self.name or type(self).__name__!r} does not predict in context")

    def parameter_groups(self) -> list[ParamGroup]:
        """The trainable parameters in groups; the default is one group with all of them.

        Parameters with ``requires_grad=False`` (e.g. an EMA target) must not appear.
        """
        return [ParamGroup("method", [p for p in self.parameters() if p.requires_grad])]

    def on_step_end(self, progress: StepProgress) -> None:
        """Called by the training loop after every optimiser step (e.g. to move an EMA target).

        Whatever it changes must live in the module's state dict, which checkpoints save.
        """

    def check_batch(self, batch: Batch) -> None:
        """Refuse a batch with another number of views or transformation parameters than built for."""
        if batch.num_views != self.views_per_sample:
            raise ValueError(
                f"method {self.name or type(self).__name__!r} trains on {self.views_per_sample} views per "
                f"sample; got a batch with K={batch.num_views} views"
            )
        if batch.transforms.shape[-1] != self.transform_dim:
            raise ValueError(
                f"batch has {batch.transforms.shape[-1]} transformation parameters per pair; this method was "
                f"built for transform_dim={self.transform_dim}"
            )

    def encode_views(self, batch: Batch) -> Tensor:
        """(B, K, D) backbone features of every view; the backbone runs on each view separately."""
        self.check_batch(batch)
        return torch.stack([self.backbone(batch.views[:, k]) for k in range(batch.num_views)], dim=1)

    def encode_pair(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Backbone features of both views of a pair, each (B, D); the backbone runs on each separately."""
        self.check_batch(batch)
        return self.backbone(batch.x), self.backbone(batch.y)

    def output(
        self, loss: Tensor, terms: Mapping[str, Tensor], views: Sequence[Tensor] | Tensor
    ) -> MethodOutput:
        """Package the loss (as fp32), detached terms and the (B, K, D) detached representations.

        ``views`` is the K per-view (B, D) representations, or already stacked (B, K, D).
        """
        stacked = views if isinstance(views, Tensor) else torch.stack(list(views), dim=1)
        return MethodOutput(
            loss=loss.float(),
            terms={name: value.detach().float() for name, value in terms.items()},
            representations=stacked.detach(),
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
