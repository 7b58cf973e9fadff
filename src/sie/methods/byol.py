"""BYOL and Conditional BYOL, the 3DIEBench baselines of seq-JEPA (docs/methods.md).

BYOL: Grill et al., "Bootstrap your own latent", NeurIPS 2020. Conditional BYOL and the dimensions
below: the baselines of seq-JEPA (Ghaemi et al., NeurIPS 2025), public code hafezgh/seq-jepa
(``models.py``: classes ``BYOL`` and ``BYOL_Conditional``; ``engine.py``: the EMA schedule).

With h = backbone(view) (D dims), an online projector ``y = P(h)``, a predictor q, and a target
network (backbone + projector) that is an exponential moving average (EMA) of the online one:

* projector P: ``Linear(D, 2048, no bias) - BN - ReLU - Linear(2048, 128, no bias) - BN(affine=False)``;
* ``byol``: predictor ``q = Linear(128, 2048, no bias) - BN - ReLU - Linear(2048, 128)``, symmetric loss

      L = (2 - 2 mean_i cos(q(P(h_x))_i, sg(yt_y)_i)) + (2 - 2 mean_i cos(q(P(h_y))_i, sg(yt_x)_i)),

  yt = the target network's projection, sg = stop-gradient; L in [0, 8]; the actions are unused;
* ``byol-cond``: an action embedding ``A = Linear(P, 128, no bias) - BN(128, affine=False)`` of the
  transformation parameters g (view a -> view b); the predictor reads ``concat(A(g), P(h_x))``
  (action first, 128 + 128 = 256 inputs) and the loss has one direction only,

      L = 2 - 2 mean_i cos(q([A(g), P(h_x)])_i, sg(yt_y)_i).

After every optimiser step the target moves, ``theta_t <- tau theta_t + (1 - tau) theta_online``, with
tau on a cosine ramp from ``model.byol.ema`` (0.996) to 1 (:func:`sie.nn.ema.ema_momentum`), evaluated
per epoch as the seq-JEPA code does (``model.byol.ema_unit=step``: per step, as the BYOL paper).
The target's BatchNorm layers keep their own running statistics and use batch statistics in training,
as the reference. Losses are computed in float32 with autocast off (:mod:`sie.losses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from sie.config import Config, param
from sie.data.batch import Batch
from sie.errors import ConfigError
from sie.losses import cosine_distance_loss
from sie.methods.base import Method, MethodOutput, StepProgress
from sie.methods.registry import register_method
from sie.nn.ema import EMATarget, ema_momentum

__all__ = [
    "BYOL",
    "BYOLCondConfig",
    "BYOLConfig",
    "ConditionalBYOL",
    "action_embedding",
    "byol_loss",
]

_BYOL_REFERENCE = "hafezgh/seq-jepa models.BYOL (EMA schedule: engine.py)"
_COND_REFERENCE = "hafezgh/seq-jepa models.BYOL_Conditional (EMA schedule: engine.py)"


@dataclass(frozen=True)
class BYOLConfig:
    """``model.byol.*``: BYOL's heads and target network (defaults: hafezgh/seq-jepa)."""

    SECTION: ClassVar[str] = "byol"

    proj_hidden: int = param(2048, "hidden width of the projector", "dims")
    proj_dim: int = param(128, "projector output width (the embedding the loss compares)", "dims")
    pred_hidden: int = param(2048, "hidden width of the predictor", "dims")
    ema: float = param(0.996, "base momentum tau of the EMA target network, in [0, 1]")
    ema_schedule: Literal["cosine", "constant"] = param(
        "cosine", "momentum schedule: cosine ramp from `ema` to 1, or constant `ema`"
    )
    ema_unit: Literal["epoch", "step"] = param(
        "epoch",
        "progress the cosine ramp follows: epoch / epochs (seq-JEPA's code) or step / total steps (BYOL paper)",
    )

    def __post_init__(self) -> None:
        key = f"model.{self.SECTION}"
        for name in ("proj_hidden", "proj_dim", "pred_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}.{name}={value!r} must be a positive number of dims")
        if not 0.0 <= self.ema <= 1.0:
            raise ConfigError(f"{key}.ema={self.ema!r} must be in [0, 1]")
        if self.ema_schedule not in ("cosine", "constant"):
            raise ConfigError(f"{key}.ema_schedule={self.ema_schedule!r} must be 'cosine' or 'constant'")
        if self.ema_unit not in ("epoch", "step"):
            raise ConfigError(f"{key}.ema_unit={self.ema_unit!r} must be 'epoch' or 'step'")


@dataclass(frozen=True)
class BYOLCondConfig(BYOLConfig):
    """``model.byol_cond.*``: Conditional BYOL's heads, action embedding and target network."""

    SECTION: ClassVar[str] = "byol_cond"

    action_dim: int = param(128, "width of the learned action embedding A(g)", "dims")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.action_dim, bool) or not isinstance(self.action_dim, int) or self.action_dim < 1:
            raise ConfigError(
                f"model.{self.SECTION}.action_dim={self.action_dim!r} must be a positive number of dims"
            )


def byol_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """``2 - 2 mean_i cos(prediction_i, target_i)`` over the N rows of (N, E) tensors, in float32.

    Twice :func:`sie.losses.cosine_distance_loss`, with the target detached (the stop-gradient); in [0, 4].
    """
    return 2.0 * cosine_distance_loss(prediction, target.detach())


def action_embedding(transform_dim: int, dim: int) -> nn.Sequential:
    """The seq-JEPA action embedding: ``Linear(P, dim, no bias) - BatchNorm1d(dim, affine=False)``."""
    return nn.Sequential(nn.Linear(transform_dim, dim, bias=False), nn.BatchNorm1d(dim, affine=False))


def _projector(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """``Linear(in, hidden, no bias) - BN - ReLU - Linear(hidden, out, no bias) - BN(out, affine=False)``."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim, bias=False),
        nn.BatchNorm1d(out_dim, affine=False),
    )


def _predictor(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """``Linear(in, hidden, no bias) - BN - ReLU - Linear(hidden, out)`` (the last layer has a bias)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim),
    )


class BYOL(Method):
    """BYOL with an EMA target of the backbone and projector (see the module docstring for the loss).

    Args:
        cfg: resolved configuration; the heads and EMA read ``model.byol.*``.
        transform_dim: transformation parameters per pair (unused by the loss; checked on batches).

    Attributes:
        projector: online projector, D -> ``proj_dim``.
        predictor: online predictor.
        target_backbone, target_projector: the EMA copies (no gradients; in the state dict).
    """

    section_name: ClassVar[str] = BYOLConfig.SECTION

    def __init__(self, cfg: Config, transform_dim: int) -> None:
        super().__init__(cfg, transform_dim)
        self.opts: BYOLConfig = cfg.model.section(self.section_name)
        opts = self.opts
        self.embedding_dim = opts.proj_dim
        self.projector = _projector(self.repr_dim, opts.proj_hidden, opts.proj_dim)
        self.predictor = _predictor(self._predictor_in_dim(), opts.pred_hidden, opts.proj_dim)
        self.target_backbone = EMATarget(self.backbone)
        self.target_projector = EMATarget(self.projector)

    def _predictor_in_dim(self) -> int:
        return self.opts.proj_dim

    def target_embedding(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, proj_dim) target projections, without gradients."""
        out: Tensor = self.target_projector(self.target_backbone(images))
        return out

    def forward(self, batch: Batch) -> MethodOutput:
        """The symmetric BYOL loss on a batch of pairs."""
        h_x, h_y = self.encode_pair(batch)
        p_x, p_y = self.predictor(self.projector(h_x)), self.predictor(self.projector(h_y))
        t_x, t_y = self.target_embedding(batch.x), self.target_embedding(batch.y)
        loss = byol_loss(p_x, t_y) + byol_loss(p_y, t_x)
        return self.output(loss, {"loss/byol": loss}, (h_x, h_y))

    def momentum(self, progress: StepProgress) -> float:
        """The EMA momentum tau used after the step that ``progress`` describes."""
        opts = self.opts
        return ema_momentum(opts.ema, progress.progress(opts.ema_unit), opts.ema_schedule)

    def on_step_end(self, progress: StepProgress) -> None:
        """Move the target backbone and projector towards the online ones."""
        tau = self.momentum(progress)
        self.target_backbone.update(self.backbone, tau)
        self.target_projector.update(self.projector, tau)


class ConditionalBYOL(BYOL):
    """Conditional BYOL: predict the target projection of view b from view a and the action a -> b.

    Args:
        cfg: resolved configuration; the heads and EMA read ``model.byol_cond.*``.
        transform_dim: P, the transformation parameters per pair (the action embedding's input).

    The predictor maps (embedding, action) to an embedding, so the retrieval metrics use it:
    :meth:`embed_equivariant` is the online projector and :meth:`predict` the conditioned predictor.
    """

    has_predictor = True
    section_name: ClassVar[str] = BYOLCondConfig.SECTION

    def __init__(self, cfg: Config, transform_dim: int) -> None:
        super().__init__(cfg, transform_dim)
        opts: BYOLCondConfig = self.opts  # type: ignore[assignment]  # read from model.byol_cond
        self.action_embedding = action_embedding(transform_dim, opts.action_dim)

    def _predictor_in_dim(self) -> int:
        opts: BYOLCondConfig = self.opts  # type: ignore[assignment]
        return opts.action_dim + opts.proj_dim

    def embed_equivariant(self, h: Tensor) -> Tensor:
        """(N, D) representations -> (N, proj_dim) online projections."""
        out: Tensor = self.projector(h)
        return out

    def predict(self, z: Tensor, params: Tensor) -> Tensor:
        """Projections of view a (N, E) and parameters g (N, P) -> predicted projections of view b."""
        out: Tensor = self.predictor(torch.cat([self.action_embedding(params), z], dim=1))
        return out

    def forward(self, batch: Batch) -> MethodOutput:
        """``2 - 2 mean cos(q([A(g), P(h_x)]), sg(target projection of view b)))`` on a batch of pairs."""
        self.check_batch(batch)
        h_x = self.backbone(batch.x)
        # View b goes through the target network only; its target representation also fills view b's
        # slot of the (detached) representations for the online probes, as the reference returns it.
        h_y_target: Tensor = self.target_backbone(batch.y)
        target: Tensor = self.target_projector(h_y_target)
        prediction = self.predict(self.embed_equivariant(h_x), batch.pair_transform)
        loss = byol_loss(prediction, target)
        return self.output(loss, {"loss/byol": loss}, (h_x, h_y_target.to(h_x.dtype)))


register_method(
    "byol",
    description="BYOL: symmetric cosine between online predictions and EMA-target projections",
    terms=("loss/byol",),
    reference=_BYOL_REFERENCE,
    section=BYOLConfig,
    section_name=BYOLConfig.SECTION,
)(BYOL)
register_method(
    "byol-cond",
    description="Conditional BYOL: predict view b's EMA-target projection from view a and the action",
    terms=("loss/byol",),
    reference=_COND_REFERENCE,
    section=BYOLCondConfig,
    section_name=BYOLCondConfig.SECTION,
)(ConditionalBYOL)
