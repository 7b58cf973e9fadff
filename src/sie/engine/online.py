"""The online evaluator of the reference: small probes trained jointly, on detached representations.

For each part of a method's representation (``method.representation_parts``, e.g. SIE's ``full``,
``inv`` and ``equi``):

* a linear classifier ``Linear(width, num_classes)`` on every view's representation (B x K rows,
  labels repeated), cross-entropy;
* a rotation regressor, the MLP ``2w -> 2w -> 2w -> R`` with ReLU (facebookresearch/SIE; docs/training.md) on
  ``concat(view_k, view_k+1)`` of consecutive views, MSE to the rotation part of the transformation
  parameters (R = 4 quaternion components, 3 for Euler targets).

The representations arrive detached, so no gradient reaches the backbone; the heads are trained by
the main optimiser (as in the reference, whose Adam also holds them) and their loss is added to the
method's. Metrics (top-1 accuracy, pooled-mean R² as in the reference) are computed on this rank's
batch. The reference runs its probes on a subset of the parts (classification on full/inv,
rotation on full/equi) and on the embeddings too; here every representation part gets both heads
and the embeddings get none, because the offline protocol evaluates representations.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sie.eval.metrics import pooled_r2_tensor, top_k_accuracy_tensor
from sie.eval.probes import build_mlp_head

__all__ = ["OnlineEvaluator", "rotation_target_dim"]


def rotation_target_dim(transform: str) -> int:
    """How many leading transformation parameters describe the rotation: 3 for Euler, else 4."""
    return 3 if transform == "euler" else 4


class OnlineEvaluator(nn.Module):
    """Linear classifiers and rotation regressors on each representation part."""

    def __init__(
        self, parts: Mapping[str, slice], repr_dim: int, num_classes: int, rotation_dim: int
    ) -> None:
        """
        Args:
            parts: name -> slice of the representation (B, K, D) along D, e.g. {'full': slice(0, 512)}.
            repr_dim: D, used to resolve open-ended slices.
            num_classes: classifier outputs.
            rotation_dim: regression outputs (4 for quaternions).
        """
        super().__init__()
        self.parts = dict(parts)
        self.rotation_dim = rotation_dim
        widths = {name: len(range(repr_dim)[part]) for name, part in self.parts.items()}
        self.classifiers = nn.ModuleDict(
            {name: build_mlp_head(width, (), num_classes) for name, width in widths.items()}
        )
        self.regressors = nn.ModuleDict(
            {
                name: build_mlp_head(2 * width, (2 * width, 2 * width), rotation_dim)
                for name, width in widths.items()
            }
        )

    def forward(
        self, representations: Tensor, labels: Tensor, transforms: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss of all heads and their detached metrics.

        Args:
            representations: (B, K, D) detached backbone outputs of the K views.
            labels: (B,) int64 class indices.
            transforms: (B, K-1, P) parameters between consecutive views; the first ``rotation_dim``
                are the rotation.

        Returns:
            (loss: scalar fp32 tensor, metrics: {'probe/top1_PART', 'probe/rot_r2_PART', 'loss/probe'}).
        """
        b, k, _ = representations.shape
        rep = representations.detach().float()
        view_labels = labels.repeat_interleave(k)
        targets = transforms[:, :, : self.rotation_dim].reshape(b * (k - 1), self.rotation_dim).float()
        loss = rep.new_zeros(())
        metrics: dict[str, Tensor] = {}
        for name, part in self.parts.items():
            x = rep[:, :, part]
            logits = self.classifiers[name](x.reshape(b * k, -1)).float()
            loss = loss + F.cross_entropy(logits, view_labels)
            pairs = torch.cat([x[:, :-1], x[:, 1:]], dim=2).reshape(b * (k - 1), -1)
            predicted = self.regressors[name](pairs).float()
            loss = loss + F.mse_loss(predicted, targets)
            # Device tensors: reading them here would make every probed step wait for the device.
            metrics[f"probe/top1_{name}"] = top_k_accuracy_tensor(logits, view_labels)
            if b * (k - 1) > 1:  # NaN when this batch's rotations are all equal: left out of the mean
                metrics[f"probe/rot_r2_{name}"] = pooled_r2_tensor(predicted, targets)
        metrics["loss/probe"] = loss.detach()
        return loss, metrics
