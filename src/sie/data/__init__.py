"""3DIEBench data layer: layout reader, splits, view sampling, packed store, transforms, Batch."""

from sie.data.batch import Batch

__all__ = ["Batch"]
