"""The supervised baseline: cross-entropy on the class labels through a linear head on the backbone.

It gives the upper-bound rows of the results tables. The reference repository loads such a checkpoint
(``--supervised``) but does not contain its training script, so this is the plain recipe: both views
of every pair are classified (2B rows, labels repeated) by ``Linear(512, model.num_classes)`` and
``L = CE(logits, labels)``. The transformation parameters are not used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sie.config import Config
from sie.data.batch import Batch
from sie.errors import ConfigError, UsageError
from sie.methods.base import Method, MethodOutput
from sie.methods.registry import register_method
from sie.nn.heads import LinearClassifier

__all__ = ["Supervised"]


@register_method(
    "supervised",
    description="Supervised baseline: cross-entropy on class labels, linear head on the backbone",
    terms=("loss/ce",),
    reference="(not in the reference repository)",
    keys=("model.num_classes",),
)
class Supervised(Method):
    """Backbone + linear classifier trained with cross-entropy on both views of each pair."""

    def __init__(self, cfg: Config, transform_dim: int) -> None:
        super().__init__(cfg, transform_dim)
        if cfg.model.num_classes < 2:
            raise ConfigError(
                f"model.num_classes={cfg.model.num_classes} must be >= 2 for method 'supervised'"
            )
        self.classifier = LinearClassifier(self.repr_dim, cfg.model.num_classes)

    def forward(self, batch: Batch) -> MethodOutput:
        """Cross-entropy of both views' logits against the labels."""
        labels = batch.labels
        num_classes = self.cfg.model.num_classes
        # A label beyond the head is a data/config mismatch; say so rather than fail inside the kernel.
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise UsageError(
                f"labels must lie in [0, {num_classes}) (model.num_classes={num_classes}, raise it to cover the dataset's classes); "
                f"got labels in [{int(labels.min())}, {int(labels.max())}]"
            )
        h_x, h_y = self.encode_pair(batch)
        logits = self.classifier(torch.cat([h_x, h_y], dim=0))
        ce = F.cross_entropy(logits.float(), torch.cat([labels, labels], dim=0))
        return self.output(ce, {"loss/ce": ce}, (h_x, h_y))
