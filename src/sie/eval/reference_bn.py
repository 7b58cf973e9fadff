"""The reference's probe-time BatchNorm behaviour, reproduced on request (``eval.reference_bn``).

The reference probe scripts call ``net.train()`` on the whole network while training a probe, with
the backbone frozen (``requires_grad=False``) but its BatchNorm layers in **train mode**: every probe
batch is normalised with its own batch statistics, and the running statistics drift towards the
probe batches (momentum 0.1). Validation then runs in eval mode with those drifted running
statistics (facebookresearch/SIE; docs/evaluation.md). So the features a probe sees change with every batch and
every epoch, and cannot be cached: in this mode the backbone re-runs on the images of every probe
batch, each probe starts from a fresh copy of the checkpoint's backbone (the reference runs each
probe script in its own process), and the evaluation split is re-extracted after training with
the copy's drifted statistics.

This costs a full backbone pass over one view (classification) or two views (pairs) per object per
probe epoch, times the number of probes: see benchmarks/README.md for the arithmetic. The default
(``reference_bn=False``) is the standard frozen evaluation: eval-mode features extracted once.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from sie.data.transforms import normalize, resize_uint8
from sie.eval.probes import CachedViewFeatures

if TYPE_CHECKING:
    from sie.data.source import ViewSource

__all__ = ["TrainModeBackboneFeatures"]


class TrainModeBackboneFeatures:
    """A :class:`~sie.eval.probes.ViewFeatures` that runs its own copy of the backbone in train mode.

    Every ``gather`` reads the requested views, runs the copy in train mode without gradients (its
    BatchNorm running statistics are updated, as in the reference) and returns the ``part`` dims.
    """

    def __init__(
        self,
        backbone: nn.Module,
        source: ViewSource,
        part: slice,
        *,
        resolution: int,
        device: torch.device,
    ) -> None:
        self.backbone = copy.deepcopy(backbone).to(device)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.source = source
        self.part = part
        self.resolution = resolution
        self.device = device
        num_features: int = self.backbone.num_features  # type: ignore[assignment]
        self._dim = len(range(num_features)[part])

    @property
    def num_objects(self) -> int:
        return self.source.num_objects

    @property
    def views_per_object(self) -> int:
        return self.source.views_per_object

    @property
    def dim(self) -> int:
        return self._dim

    @torch.no_grad()
    def gather(self, objects: Tensor, views: Tensor) -> Tensor:
        images = torch.stack(
            [
                self.source.read_views(int(o), [int(v)])[0]
                for o, v in zip(objects.tolist(), views.tolist(), strict=True)
            ]
        )
        x = normalize(resize_uint8(images, self.resolution).to(self.device))
        self.backbone.train()
        h: Tensor = self.backbone(x).float()
        return h[:, self.part]

    @torch.no_grad()
    def evaluation_features(self, source: ViewSource, *, batch_size: int) -> CachedViewFeatures:
        """Features of every view of ``source`` through the copy in eval mode (its drifted statistics)."""
        from sie.eval.features import extract_features

        reps, _ = extract_features(
            self.backbone, source, resolution=self.resolution, batch_size=batch_size, device=self.device
        )
        return CachedViewFeatures(reps, self.part)
