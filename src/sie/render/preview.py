"""Contact sheets: one labelled tile per class, for ``OUT/preview.png`` and the docs figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["contact_sheet", "dataset_contact_sheet"]


def contact_sheet(
    tiles: Sequence[np.ndarray], labels: Sequence[str], *, columns: int = 11, tile: int = 128
) -> Image.Image:
    """A grid of (H, W, 3) uint8 images, each resized to ``tile`` px with its label underneath."""
    columns = max(1, min(columns, len(tiles)))
    rows = (len(tiles) + columns - 1) // columns
    caption = 14
    sheet = Image.new("RGB", (columns * tile, rows * (tile + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (pixels, label) in enumerate(zip(tiles, labels, strict=True)):
        x, y = (k % columns) * tile, (k // columns) * (tile + caption)
        image = Image.fromarray(np.asarray(pixels, dtype=np.uint8), "RGB").resize((tile, tile), Image.LANCZOS)
        sheet.paste(image, (x, y))
        draw.text((x + 3, y + tile + 1), label[: max(4, tile // 7)], fill=(0, 0, 0))
    return sheet


def dataset_contact_sheet(
    root: Path,
    entries: Sequence[tuple[str, str]],
    out: Path,
    *,
    columns: int = 11,
    tile: int = 128,
    view: int = 0,
) -> Path:
    """Write a sheet of view ``view`` of each ``(object key 'SYNSET/OBJ', label)`` of a rendered dataset."""
    tiles, labels = [], []
    for key, label in entries:
        with Image.open(root / key / f"image_{view}.jpg") as img:
            tiles.append(np.asarray(img.convert("RGB")))
        labels.append(label)
    contact_sheet(tiles, labels, columns=columns, tile=tile).save(out)
    return out
