"""Contact sheets: one labelled tile per class, for ``OUT/preview.png`` and the docs figure.

``python -m sie.render.preview docs/figures/procedural_classes.png`` draws the docs figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["contact_sheet", "dataset_contact_sheet", "procedural_class_sheet"]


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


def procedural_class_sheet(
    out: Path, *, size: int = 128, instances: int = 2, seed: int = 0, columns: int = 11
) -> Path:
    """Render every procedural class (``instances`` objects each) at a fixed pose into one contact sheet.

    The pose turns the object a little (rot_z = 0.6) under a spot from the upper left; the floor is grey-blue.
    """
    from sie.render.backends import RenderSettings, create_renderer
    from sie.render.procedural import CLASSES, procedural_mesh
    from sie.render.scene import views_from_latents

    renderer = create_renderer("auto", RenderSettings(size=size, samples_per_pixel=4))
    latent = np.array([[0.25, 0.0, 0.6, 0.6, 0.35, 2.4, 0.12]])
    tiles, labels = [], []
    for instance in range(instances):
        for cls in CLASSES:
            renderer.set_mesh(procedural_mesh(cls.synset, instance, seed))
            tiles.append(renderer.render(views_from_latents(latent)).images[0])
            labels.append(cls.name)
    contact_sheet(tiles, labels, columns=columns, tile=size).save(out)
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Contact sheet of the 55 procedural classes.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--instances", type=int, default=2)
    args = parser.parse_args()
    print(procedural_class_sheet(args.out, size=args.size, instances=args.instances))
