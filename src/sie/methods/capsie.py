"""CapsIE: a capsule projector inside SIE's framework (Everett et al., arXiv 2405.14386, TMLR; AberdeenML/CapsIE).

The backbone keeps its last map, which feeds the capsule projector of :mod:`sie.nn.capsules` (K = 16
capsules with 16-value poses in the published ``train.sh``). Capsule activations A (rows sum to 1) are the
invariant output; the flattened poses z (width K P) the equivariant one, which SIE's hypernetwork predictor
``p_g`` (:func:`sie.methods.base.build_predictor`, the shared ``model.predictor_type`` / ``model.hypernetwork``
keys) maps from view a to view b:

    S_T(A)  = A^(1/T) / sum_k A_k^(1/T)                     sharpening (T < 1 sharpens)
    L = sim * [H(sg S_Tt(A_y), S_Ta(A_x)) + H(sg S_Tt(A_x), S_Ta(A_y))] / 2       loss/inv   (entropy minimisation)
      + memax * [MEMAX(S_Ta(A_x)) + MEMAX(S_Ta(A_y))]                           loss/memax (gathered)
      + equi_factor * sim * MSE(p_g(z_x), z_y)                                  loss/equi
      + std * (V([A_x, z_x]) + V([A_y, z_y])) / 2                               loss/std   (gathered)
      + std * V(p_g(z_x)) / 2                                                   loss/pred_std
      + cov * (C([A_x, z_x]) + C([A_y, z_y]))                                   loss/cov   (gathered)

The anchor temperature Ta and the target temperature Tt move linearly from their start to their end
value over ``stretch`` times the run's steps (the reference: ``--temp_init 0.1 0.025 --temp_end 0.1 0.1``
over 1.25 x the steps, so training ends before the end value). The schedule's position is a buffer,
so checkpoints carry it and a resumed run continues it.

What could not be read (docs/methods.md, ``capsie``): the CapsIE repository's ``src/`` (its model and loss
code) is not public in a readable form; the invariance objective above is the MSN-style reading of
"entropy minimisation" with the published anchor/target temperatures, not a transcription.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sie.config import Config, param
from sie.data.batch import Batch
from sie.distributed import gather_with_grad
from sie.errors import ConfigError
from sie.losses import (
    distribution_cross_entropy,
    invariance_loss,
    mean_entropy_maximisation,
    sharpen,
    variance_loss,
)
from sie.methods.base import (
    Method,
    MethodOutput,
    StepProgress,
    build_predictor,
    covariance_denominator,
    vicreg_regularizers,
)
from sie.methods.equicaps import capsule_backbone_projector
from sie.methods.registry import register_method

__all__ = ["CapsIE", "CapsIEConfig", "capsie_invariance", "scheduled_temperature"]

_TERMS = ("loss/inv", "loss/memax", "loss/equi", "loss/std", "loss/cov", "loss/pred_std")


@dataclass(frozen=True)
class CapsIEConfig:
    """``model.capsie.*``; defaults = AberdeenML/CapsIE ``train.sh``."""

    capsules: int = param(16, "capsule types K (the last number of the reference's --mlp 1111-16-16)")
    width: int = param(
        256, "pose-embedding width K x P (the predictor's d); 256 = 16 capsules x 4x4 poses", "dims"
    )
    sim_coeff: float = param(10.0, "weight of the invariance term (--sim-coeff)")
    equi_factor: float = param(0.45, "the prediction term weighs equi_factor x sim_coeff (--equi-factor)")
    std_coeff: float = param(10.0, "weight of the variance terms (--std-coeff)")
    cov_coeff: float = param(1.0, "weight of the covariance term (--cov-coeff)")
    memax_coeff: float = param(
        10.0, "weight of the mean-entropy-maximisation term: sim_coeff's, as MSN's 1:1 ratio (not confirmed)"
    )
    predictor_variance: bool = param(True, "include the predictor-output variance term, as SIE")
    anchor_temperature_start: float = param(0.1, "sharpening temperature of the anchor view at the start")
    anchor_temperature_end: float = param(0.1, "... at the end of the schedule")
    target_temperature_start: float = param(0.025, "sharpening temperature of the target view at the start")
    target_temperature_end: float = param(0.1, "... at the end of the schedule")
    temperature_stretch: float = param(
        1.25, "the schedule spans this many times the run's steps (reference 1.25)"
    )


def scheduled_temperature(start: float, end: float, fraction: float, stretch: float) -> float:
    """Linear schedule: ``start + (end - start) * fraction / stretch``, ``fraction`` = share of training done."""
    return start + (end - start) * fraction / stretch


def capsie_invariance(
    activations_x: Tensor, activations_y: Tensor, anchor_temperature: float, target_temperature: float
) -> tuple[Tensor, Tensor]:
    """The invariance and MEMAX terms (module docstring) of (N, K) activations: ``(loss/inv, loss/memax)``.

    Targets are sharpened with ``target_temperature`` and detached; anchors with ``anchor_temperature``.
    MEMAX reads the anchors gathered over ranks.
    """
    anchor_x, anchor_y = (
        sharpen(activations_x, anchor_temperature),
        sharpen(activations_y, anchor_temperature),
    )
    target_x = sharpen(activations_x.detach(), target_temperature)
    target_y = sharpen(activations_y.detach(), target_temperature)
    inv = (
        distribution_cross_entropy(target_y, anchor_x) + distribution_cross_entropy(target_x, anchor_y)
    ) / 2
    memax = mean_entropy_maximisation(gather_with_grad(anchor_x)) + mean_entropy_maximisation(
        gather_with_grad(anchor_y)
    )
    return inv, memax


@register_method(
    "capsie",
    description="CapsIE: capsule projector in SIE's framework, entropy-minimisation invariance, hypernetwork on poses",
    terms=_TERMS,
    reference="AberdeenML/CapsIE SIECaps (train.sh)",
    section=CapsIEConfig,
    keys=("model.predictor_type", "model.hypernetwork"),
)
class CapsIE(Method):
    """CapsIE (module docstring).

    Attributes:
        schedule_fraction: buffer, the share of training done when the next step runs (0 at the start).
    """

    def __init__(self, cfg: Config, transform_dim: int) -> None:
        super().__init__(cfg, transform_dim)
        opts: CapsIEConfig = cfg.model.section("capsie")
        self.opts = opts
        dataset = cfg.data.root or "(no dataset given)"
        if opts.capsules < 1 or opts.width < 1 or opts.width % opts.capsules:
            raise ConfigError(
                f"model.capsie.capsules={opts.capsules} does not divide model.capsie.width={opts.width} "
                f"(each capsule's pose is width / capsules values) for dataset {dataset}"
            )
        for key in ("anchor_temperature_start", "anchor_temperature_end", "target_temperature_start"):
            if getattr(opts, key) <= 0:
                raise ConfigError(f"model.capsie.{key}={getattr(opts, key)} must be positive")
        if opts.target_temperature_end <= 0 or opts.temperature_stretch < 1:
            raise ConfigError(
                f"model.capsie.target_temperature_end={opts.target_temperature_end} must be positive and "
                f"model.capsie.temperature_stretch={opts.temperature_stretch} at least 1"
            )
        self.projector = capsule_backbone_projector(
            self, cfg, opts.capsules, opts.width // opts.capsules, "capsie"
        )
        self.predictor = build_predictor(cfg.model, opts.width, transform_dim)
        self.cov_denominator = covariance_denominator(cfg)
        self.schedule_fraction: Tensor
        self.register_buffer("schedule_fraction", torch.zeros((), dtype=torch.float64))
        self._fraction: float | None = None  # schedule_fraction on the host, so no step reads the device

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._fraction = None  # schedule_fraction may have changed: read it again

    def temperatures(self) -> tuple[float, float]:
        """(anchor, target) sharpening temperatures of the next step."""
        if self._fraction is None:  # read the buffer once after building or loading, not every step
            self._fraction = float(self.schedule_fraction)
        o, fraction = self.opts, self._fraction
        return (
            scheduled_temperature(
                o.anchor_temperature_start, o.anchor_temperature_end, fraction, o.temperature_stretch
            ),
            scheduled_temperature(
                o.target_temperature_start, o.target_temperature_end, fraction, o.temperature_stretch
            ),
        )

    # ---- evaluation: the capsules, as CapsIE's released evaluation scripts probe them ----------------

    evaluation_representation_name = "capsules"
    has_predictor = True

    def evaluation_representation(self, images: Tensor) -> Tensor:
        """Images -> (N, D + K + width): [pooled backbone | activations | flat poses] (see evaluation_parts)."""
        pooled, activations, poses = self.encode(images)
        return torch.cat([pooled, activations, poses], dim=1)

    @property
    def evaluation_parts(self) -> dict[str, slice]:
        """``full`` the pooled backbone, ``inv`` the K activations, ``equi`` the flat poses.

        CapsIE's ``run_eval_classification_inv_caps.sh`` classifies from the activations (``--inv-part``)
        and ``run_eval_angle_prediction_caps.sh`` regresses rotation from the poses (``--deep-end``).
        """
        d, k = self.repr_dim, self.opts.capsules
        return {"full": slice(0, d), "inv": slice(d, d + k), "equi": slice(d + k, d + k + self.opts.width)}

    def embed_equivariant(self, h: Tensor) -> Tensor:
        """(N, D + K + width) evaluation representations -> (N, width) flat poses, the predictor's input."""
        return h[:, self.evaluation_parts["equi"]]

    def predict(self, z: Tensor, params: Tensor) -> Tensor:
        """(N, width) poses of view a and (N, P) parameters -> (N, width) predicted poses of view b."""
        out: Tensor = self.predictor(z, params)
        return out

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Images (N, 3, H, W) -> pooled representation (N, D), activations (N, K), flat poses (N, width)."""
        feature_map = self.backbone.feature_map(images)  # type: ignore[operator]
        activations, poses = self.projector(feature_map)
        return feature_map.mean(dim=(2, 3)), activations, poses.reshape(len(poses), -1)

    def forward(self, batch: Batch) -> MethodOutput:
        """CapsIE loss on a batch of pairs (module docstring)."""
        self.check_batch(batch)
        o = self.opts
        h_x, a_x, z_x = self.encode(batch.x)
        h_y, a_y, z_y = self.encode(batch.y)
        anchor_t, target_t = self.temperatures()
        terms: dict[str, Tensor] = {}
        terms["loss/inv"], terms["loss/memax"] = capsie_invariance(a_x, a_y, anchor_t, target_t)
        prediction = self.predictor(z_x, batch.pair_transform)
        terms["loss/equi"] = invariance_loss(prediction, z_y)
        emb_x, emb_y = torch.cat([a_x, z_x], dim=1), torch.cat([a_y, z_y], dim=1)
        terms["loss/std"], terms["loss/cov"] = vicreg_regularizers(emb_x, emb_y, self.cov_denominator)
        loss = (
            o.sim_coeff * terms["loss/inv"]
            + o.memax_coeff * terms["loss/memax"]
            + o.equi_factor * o.sim_coeff * terms["loss/equi"]
            + o.std_coeff * terms["loss/std"]
            + o.cov_coeff * terms["loss/cov"]
        )
        if o.predictor_variance:
            terms["loss/pred_std"] = variance_loss(gather_with_grad(prediction)) / 2
            loss = loss + o.std_coeff * terms["loss/pred_std"]
        else:
            terms["loss/pred_std"] = torch.zeros((), device=loss.device)
        return self.output(loss, terms, (h_x, h_y))

    def on_step_end(self, progress: StepProgress) -> None:
        """Advance the temperature schedule to the next step."""
        self._fraction = (progress.step + 1) / max(1, progress.total_steps)
        self.schedule_fraction.fill_(self._fraction)
