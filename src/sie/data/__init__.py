"""3DIEBench data layer: layout reader, splits, view sampling, packed store, transforms, Batch.

Entry points: :func:`open_split` (a raw 3DIEBench-layout directory or a packed store),
:func:`make_train_loader` (batches of K views + transformation parameters, deterministic from
(seed, epoch, object index)), :func:`iterate_all_views` (feature extraction), :func:`pack_dataset`
(``sie pack``), :func:`check_dataset` (``sie data check``), and :mod:`sie.data.targets` /
:mod:`sie.data.transforms` for the maths and the normalisation.
"""

from sie.data.batch import Batch
from sie.data.loader import TrainLoader, iterate_all_views, make_train_loader
from sie.data.source import ViewSource, open_split
from sie.data.targets import relative_transforms, transform_dim
from sie.data.transforms import MEAN, STD, normalize

__all__ = [
    "MEAN",
    "STD",
    "Batch",
    "TrainLoader",
    "ViewSource",
    "iterate_all_views",
    "make_train_loader",
    "normalize",
    "open_split",
    "relative_transforms",
    "transform_dim",
]
