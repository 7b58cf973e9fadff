"""The 55 procedural classes: ShapeNetCore v2 synset ids and names, templates, 3DIEBench object counts.

Synset ids are the real ShapeNetCore ones (the 55 synsets of 3DIEBench, facebookresearch/SIE), so labels (index of the synset in
sorted order) line up with 3DIEBench's. ``train`` and ``val`` are 3DIEBench's per-class object
counts, used when a dataset copies its class sizes (``render.class_sizes=3diebench``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sie.render.procedural import appliances, containers, electronics, furniture, vehicles
from sie.render.procedural.parts import Builder

__all__ = ["CLASSES", "ProceduralClass", "class_by_synset"]


@dataclass(frozen=True)
class ProceduralClass:
    """One class: synset id, ShapeNet name, template, and 3DIEBench's train/val object counts."""

    synset: str
    name: str
    template: Callable[[np.random.Generator], Builder]
    train: int
    val: int

    @property
    def count(self) -> int:
        return self.train + self.val


CLASSES: tuple[ProceduralClass, ...] = (
    ProceduralClass("02691156", "airplane", vehicles.airplane, 3241, 804),
    ProceduralClass("02747177", "trash bin", containers.trash_bin, 272, 71),
    ProceduralClass("02773838", "bag", containers.bag, 65, 18),
    ProceduralClass("02801938", "basket", containers.basket, 88, 25),
    ProceduralClass("02808440", "bathtub", containers.bathtub, 667, 189),
    ProceduralClass("02818832", "bed", furniture.bed, 197, 36),
    ProceduralClass("02828884", "bench", furniture.bench, 1452, 361),
    ProceduralClass("02843684", "birdhouse", containers.birdhouse, 51, 22),
    ProceduralClass("02871439", "bookshelf", furniture.bookshelf, 354, 98),
    ProceduralClass("02876657", "bottle", containers.bottle, 413, 85),
    ProceduralClass("02880940", "bowl", containers.bowl, 145, 41),
    ProceduralClass("02924116", "bus", vehicles.bus, 731, 208),
    ProceduralClass("02933112", "cabinet", furniture.cabinet, 1254, 317),
    ProceduralClass("02942699", "camera", electronics.camera, 95, 18),
    ProceduralClass("02946921", "can", containers.can, 83, 25),
    ProceduralClass("02954340", "cap", appliances.cap, 44, 12),
    ProceduralClass("02958343", "car", vehicles.car, 2788, 726),
    ProceduralClass("02992529", "cellphone", electronics.cellphone, 676, 155),
    ProceduralClass("03001627", "chair", furniture.chair, 5398, 1380),
    ProceduralClass("03046257", "clock", electronics.clock, 512, 139),
    ProceduralClass("03085013", "keyboard", electronics.keyboard, 49, 16),
    ProceduralClass("03207941", "dishwasher", appliances.dishwasher, 79, 14),
    ProceduralClass("03211117", "display", electronics.display, 889, 204),
    ProceduralClass("03261776", "earphone", electronics.earphone, 58, 15),
    ProceduralClass("03325088", "faucet", appliances.faucet, 581, 163),
    ProceduralClass("03337140", "file cabinet", furniture.file_cabinet, 235, 63),
    ProceduralClass("03467517", "guitar", appliances.guitar, 632, 165),
    ProceduralClass("03513137", "helmet", appliances.helmet, 121, 41),
    ProceduralClass("03593526", "jar", containers.jar, 479, 117),
    ProceduralClass("03624134", "knife", appliances.knife, 333, 91),
    ProceduralClass("03636649", "lamp", furniture.lamp, 1887, 431),
    ProceduralClass("03642806", "laptop", electronics.laptop, 363, 97),
    ProceduralClass("03691459", "loudspeaker", electronics.loudspeaker, 1274, 323),
    ProceduralClass("03710193", "mailbox", containers.mailbox, 75, 19),
    ProceduralClass("03759954", "microphone", electronics.microphone, 55, 12),
    ProceduralClass("03761084", "microwave", appliances.microwave, 119, 33),
    ProceduralClass("03790512", "motorbike", vehicles.motorbike, 270, 67),
    ProceduralClass("03797390", "mug", containers.mug, 171, 43),
    ProceduralClass("03928116", "piano", furniture.piano, 188, 51),
    ProceduralClass("03938244", "pillow", furniture.pillow, 80, 16),
    ProceduralClass("03948459", "pistol", appliances.pistol, 239, 68),
    ProceduralClass("03991062", "pot", containers.pot, 489, 113),
    ProceduralClass("04004475", "printer", electronics.printer, 126, 40),
    ProceduralClass("04074963", "remote", electronics.remote, 54, 12),
    ProceduralClass("04090263", "rifle", appliances.rifle, 1919, 454),
    ProceduralClass("04099429", "rocket", vehicles.rocket, 67, 18),
    ProceduralClass("04225987", "skateboard", vehicles.skateboard, 128, 24),
    ProceduralClass("04256520", "sofa", furniture.sofa, 2538, 635),
    ProceduralClass("04330267", "stove", appliances.stove, 186, 32),
    ProceduralClass("04379243", "table", furniture.table, 6748, 1688),
    ProceduralClass("04401088", "telephone", electronics.telephone, 861, 228),
    ProceduralClass("04460130", "tower", appliances.tower, 114, 19),
    ProceduralClass("04468005", "train", vehicles.train, 316, 73),
    ProceduralClass("04530566", "watercraft", vehicles.watercraft, 1540, 399),
    ProceduralClass("04554684", "washer", appliances.washer, 131, 38),
)
"""All 55 classes in sorted synset order (label k = CLASSES[k] when all are used)."""


def class_by_synset(synset: str) -> ProceduralClass:
    """The class with this synset id; KeyError if there is none."""
    for cls in CLASSES:
        if cls.synset == synset:
            return cls
    raise KeyError(synset)
