"""Templates: bed, bench, bookshelf, cabinet, chair, file cabinet, lamp, piano, pillow, sofa, table.

Each template draws one instance from ``rng`` in the object frame (Z up, front towards +Y).
Furniture that would be rotationally symmetric (a four-legged table, a backless bench, a pillow)
gets a large breaker: a drawer block at one end, a backrest, a folded corner.
"""

from __future__ import annotations

import math

import numpy as np

from sie.render.procedural.parts import (
    DARK,
    METAL,
    WHITE,
    WOOD,
    Builder,
    Part,
    any_colour,
    box,
    cone,
    cylinder,
    ellipsoid,
    rod,
    rot_x,
    rounded_box,
    side_profile,
    superellipsoid,
    tint,
    uniform,
)

__all__ = [
    "bed",
    "bench",
    "bookshelf",
    "cabinet",
    "chair",
    "file_cabinet",
    "lamp",
    "piano",
    "pillow",
    "sofa",
    "table",
]


def chair(rng: np.random.Generator) -> Builder:
    """Seat, four legs, a backrest at the rear, optional armrests."""
    b = Builder()
    w, d, seat_h = uniform(rng, 0.42, 0.55), uniform(rng, 0.42, 0.55), uniform(rng, 0.42, 0.5)
    back_h, thick = uniform(rng, 0.35, 0.6), uniform(rng, 0.04, 0.08)
    frame, cushion = tint(rng, *WOOD, dv=0.2), any_colour(rng)
    b.add(box(w, d, thick), cushion, at=(0, 0, seat_h))
    leg_r = uniform(rng, 0.015, 0.03)
    splay = uniform(rng, 0.0, 0.05)
    for x in (1, -1):
        for y in (1, -1):
            top = (x * (w / 2 - 0.03), y * (d / 2 - 0.03), seat_h)
            b.add(rod(top, (top[0] + x * splay, top[1] + y * splay, 0.0), leg_r), frame)
    tilt = uniform(rng, 0.05, 0.25)
    b.add(box(w, thick * 0.8, back_h), cushion,
          at=(0, -d / 2 - math.sin(tilt) * back_h / 2, seat_h + math.cos(tilt) * back_h / 2), rotation=rot_x(tilt))  # fmt: skip
    if rng.random() < 0.4:
        for x in (1, -1):
            b.add(box(0.05, d * 0.85, 0.04), frame, at=(x * (w / 2 + 0.03), 0, seat_h + 0.22))
            b.add(
                rod(
                    (x * (w / 2 + 0.03), d * 0.35, seat_h),
                    (x * (w / 2 + 0.03), d * 0.35, seat_h + 0.22),
                    0.015,
                ),
                frame,
            )
    return b


def table(rng: np.random.Generator) -> Builder:
    """Top, four legs and a drawer block under one end (a bare four-legged table is C2 symmetric)."""
    b = Builder()
    length, depth, height = uniform(rng, 1.0, 1.8), uniform(rng, 0.6, 0.9), uniform(rng, 0.7, 0.78)
    thick = uniform(rng, 0.03, 0.06)
    wood, legs = tint(rng, *WOOD, dv=0.25), tint(rng, *WOOD, dv=0.25)
    b.add(box(length, depth, thick), wood, at=(0, 0, height))
    leg = uniform(rng, 0.04, 0.07)
    for x in (1, -1):
        for y in (1, -1):
            b.add(box(leg, leg, height), legs, at=(x * (length / 2 - leg), y * (depth / 2 - leg), height / 2))
    block_w = uniform(rng, 0.3, 0.45) * length
    block_h = uniform(rng, 0.25, 0.4) * height
    b.add(
        box(block_w, depth - 2 * leg, block_h),
        wood,
        at=(length / 2 - leg - block_w / 2, 0, height - block_h / 2),
    )
    for k in range(2):
        b.add(box(0.1, 0.02, 0.02), tint(rng, *METAL),
              at=(length / 2 - leg - block_w / 2, depth / 2 - leg + 0.01, height - block_h * (0.3 + 0.45 * k)))  # fmt: skip
    if rng.random() < 0.5:
        b.add(box(length - 2 * leg, depth * 0.7, 0.02), legs, at=(0, 0, height * 0.2))
    return b


def sofa(rng: np.random.Generator) -> Builder:
    """Seat, backrest, two arms and a chaise extension on one side."""
    b = Builder()
    length, depth = uniform(rng, 1.6, 2.4), uniform(rng, 0.8, 1.0)
    seat_h, back_h = uniform(rng, 0.38, 0.48), uniform(rng, 0.35, 0.5)
    fabric = any_colour(rng, s=(0.2, 0.6))
    b.add(rounded_box(length, depth, seat_h, 0.3), fabric, at=(0, 0, seat_h / 2))
    b.add(
        rounded_box(length, 0.2, back_h + seat_h, 0.3),
        fabric,
        at=(0, -depth / 2 + 0.1, (back_h + seat_h) / 2),
    )
    arm_h = seat_h + uniform(rng, 0.1, 0.25)
    for x in (1, -1):
        b.add(rounded_box(0.2, depth, arm_h, 0.35), fabric, at=(x * (length / 2 + 0.05), 0, arm_h / 2))
    chaise = uniform(rng, 0.5, 0.9)
    b.add(rounded_box(length * 0.38, chaise, seat_h * 0.9, 0.3), fabric,
          at=(length * 0.3, depth / 2 + chaise / 2 - 0.05, seat_h * 0.45))  # fmt: skip
    for k in range(3):
        b.add(rounded_box(length * 0.3, 0.15, back_h * 0.8, 0.4), tint(rng, *WHITE, dv=0.3),
              at=(length * (k - 1) * 0.32, -depth / 2 + 0.25, seat_h + back_h * 0.4), rotation=rot_x(0.15))  # fmt: skip
    return b


def bed(rng: np.random.Generator) -> Builder:
    """Frame, mattress, a tall headboard at the rear, a low footboard, pillows near the head."""
    b = Builder()
    length, width = uniform(rng, 1.9, 2.2), uniform(rng, 0.9, 1.8)
    frame_h, mattress_h = uniform(rng, 0.25, 0.4), uniform(rng, 0.15, 0.25)
    wood, sheet = tint(rng, *WOOD, dv=0.25), any_colour(rng, s=(0.05, 0.4), v=(0.6, 0.9))
    b.add(box(width, length, frame_h), wood, at=(0, 0, frame_h / 2 + 0.1))
    b.add(
        rounded_box(width * 0.96, length * 0.97, mattress_h, 0.2),
        sheet,
        at=(0, 0, 0.1 + frame_h + mattress_h / 2),
    )
    head_h = uniform(rng, 0.8, 1.3)
    b.add(box(width + 0.06, 0.08, head_h), wood, at=(0, -length / 2 - 0.04, head_h / 2))
    foot_h = uniform(rng, 0.3, 0.55)
    b.add(box(width + 0.06, 0.06, foot_h), wood, at=(0, length / 2 + 0.03, foot_h / 2))
    n_pillows = 1 if width < 1.3 else 2
    for k in range(n_pillows):
        x = 0.0 if n_pillows == 1 else (k - 0.5) * width * 0.5
        b.add(superellipsoid(width * 0.2, 0.18, 0.07, 0.4, 0.4), tint(rng, *WHITE),
              at=(x, -length / 2 + 0.3, 0.1 + frame_h + mattress_h + 0.05))  # fmt: skip
    b.add(
        box(width * 0.98, length * 0.5, 0.03),
        any_colour(rng),
        at=(0, length * 0.2, 0.1 + frame_h + mattress_h + 0.01),
    )
    return b


def bench(rng: np.random.Generator) -> Builder:
    """Long seat slab, two side supports, a backrest (a backless bench would be C2 symmetric)."""
    b = Builder()
    length, depth, seat_h = uniform(rng, 1.2, 2.0), uniform(rng, 0.35, 0.5), uniform(rng, 0.4, 0.48)
    wood, metal = tint(rng, *WOOD, dv=0.25), tint(rng, *METAL, dv=0.3)
    for k in range(3):
        b.add(box(length, depth / 3 - 0.02, 0.04), wood, at=(0, (k - 1) * depth / 3, seat_h))
    for x in (1, -1):
        side = [(-depth / 2, 0.0), (depth / 2, 0.0), (depth / 2 - 0.05, seat_h), (-depth / 2 - 0.05, seat_h + 0.45),
                (-depth / 2 - 0.1, seat_h + 0.45)]  # fmt: skip
        b.add(side_profile(side, 0.05), metal, at=(x * length * 0.42, 0, 0))
    back_tilt = uniform(rng, 0.1, 0.3)
    for k in range(2):
        z = seat_h + 0.18 + k * 0.17
        b.add(box(length, 0.03, 0.1), wood, at=(0, -depth / 2 - 0.05 - math.tan(back_tilt) * (z - seat_h), z),
              rotation=rot_x(back_tilt))  # fmt: skip
    return b


def bookshelf(rng: np.random.Generator) -> Builder:
    """Open shelving: sides, top, bottom, back panel, shelves with books of varied heights."""
    b = Builder()
    width, depth, height = uniform(rng, 0.7, 1.2), uniform(rng, 0.28, 0.4), uniform(rng, 1.2, 2.0)
    wood, t = tint(rng, *WOOD, dv=0.25), 0.025
    for x in (1, -1):
        b.add(box(t, depth, height), wood, at=(x * (width / 2 - t / 2), 0, height / 2))
    b.add(box(width, t, height), wood, at=(0, -depth / 2 + t / 2, height / 2))
    shelves = int(rng.integers(3, 6))
    gap = height / shelves
    for k in range(shelves + 1):
        b.add(box(width, depth, t), wood, at=(0, 0, min(k * gap, height - t / 2) + t / 2 * (k == 0)))
    # A cupboard with a door closes the bottom section on one side.
    door_w = (width - 2 * t) * uniform(rng, 0.45, 0.6)
    b.add(
        box(door_w, t, gap - t),
        tint(rng, *WOOD, dv=0.25),
        at=(width / 2 - t - door_w / 2, depth / 2 - t / 2, gap / 2 + t / 2),
    )
    b.add(
        box(0.02, 0.03, 0.08),
        tint(rng, *METAL),
        at=(width / 2 - t - door_w + 0.04, depth / 2 + 0.01, gap * 0.6),
    )
    for k in range(shelves):
        x = -width / 2 + t
        fill = uniform(rng, 0.3, 0.95) * (width - 2 * t - (door_w if k == 0 else 0.0))
        while x < -width / 2 + t + fill:
            bw = uniform(rng, 0.02, 0.06)
            bh = uniform(rng, 0.5, 0.85) * gap
            b.add(box(bw, depth * uniform(rng, 0.6, 0.9), bh), any_colour(rng),
                  at=(x + bw / 2, 0.0, k * gap + t + bh / 2))  # fmt: skip
            x += bw + 0.002
    return b


def cabinet(rng: np.random.Generator) -> Builder:
    """A body with a closed door section on one side and an open shelf section on the other."""
    b = Builder()
    width, depth, height = uniform(rng, 0.8, 1.4), uniform(rng, 0.4, 0.6), uniform(rng, 0.7, 1.6)
    body, t = any_colour(rng, s=(0.05, 0.4)), 0.03
    split = uniform(rng, 0.45, 0.6)
    left = width * split
    b.add(box(left, depth, height), body, at=(-width / 2 + left / 2, 0, height / 2))
    b.add(
        box(left - 0.02, 0.02, height - 0.04),
        tint(rng, *WOOD, dv=0.25),
        at=(-width / 2 + left / 2, depth / 2 + 0.01, height / 2),
    )
    b.add(
        box(0.02, 0.03, 0.15),
        tint(rng, *METAL),
        at=(-width / 2 + left - 0.06, depth / 2 + 0.03, height * 0.55),
    )
    right = width - left
    for x in (-width / 2 + left + right - t / 2,):
        b.add(box(t, depth, height), body, at=(x, 0, height / 2))
    b.add(box(right, t, height), body, at=(width / 2 - right / 2, -depth / 2 + t / 2, height / 2))
    for k in range(3):
        b.add(box(right, depth, t), body, at=(width / 2 - right / 2, 0, t / 2 + k * (height - t) / 2))
    b.add(box(width + 0.04, depth + 0.04, 0.03), tint(rng, *WOOD, dv=0.25), at=(0, 0.02, height + 0.015))
    return b


def file_cabinet(rng: np.random.Generator) -> Builder:
    """Tall box with stacked drawers and handles; one drawer pulled part of the way out."""
    b = Builder()
    width, depth, height = uniform(rng, 0.4, 0.55), uniform(rng, 0.5, 0.7), uniform(rng, 0.7, 1.4)
    metal = any_colour(rng, s=(0.0, 0.3), v=(0.35, 0.8))
    b.add(box(width, depth, height), metal, at=(0, 0, height / 2))
    drawers = int(rng.integers(2, 5))
    dh = height / drawers
    opened = int(rng.integers(0, drawers))
    pull = uniform(rng, 0.4, 0.7) * depth
    for k in range(drawers):
        y = depth / 2 + (pull if k == opened else 0.0)
        z = (k + 0.5) * dh
        if k == opened:
            b.add(box(width * 0.9, pull, dh * 0.85), metal, at=(0, depth / 2 + pull / 2 - 0.02, z))
        b.add(box(width * 0.94, 0.02, dh * 0.9), metal, at=(0, y, z))
        b.add(box(width * 0.3, 0.03, 0.03), tint(rng, *METAL), at=(0, y + 0.02, z + dh * 0.2))
    b.add(box(width * 1.04, depth * 0.6, 0.03), metal, at=(0, -depth * 0.2, height + 0.015))
    return b


def lamp(rng: np.random.Generator) -> Builder:
    """Desk lamp: base, two arm segments with a joint, a cone shade aimed forward and down."""
    b = Builder()
    base_r = uniform(rng, 0.08, 0.12)
    metal, shade = tint(rng, *METAL, dv=0.3), any_colour(rng)
    b.add(cylinder(base_r, 0.03, 24), metal, at=(0, -0.05, 0.015))
    elbow = np.array([0.0, uniform(rng, -0.2, -0.1), uniform(rng, 0.3, 0.45)])
    head = elbow + np.array([0.0, uniform(rng, 0.25, 0.4), uniform(rng, 0.0, 0.15)])
    b.add(rod((0, -0.05, 0.03), elbow, 0.012), metal)
    b.add(ellipsoid(0.025, 0.025, 0.025), metal, at=elbow)
    b.add(rod(elbow, head, 0.012), metal)
    tilt = uniform(rng, 0.6, 1.1)
    shade_len = uniform(rng, 0.12, 0.18)
    b.add(cone(uniform(rng, 0.07, 0.1), shade_len, 20), shade,
          at=head + np.array([0.0, math.sin(tilt) * shade_len * 0.3, -math.cos(tilt) * shade_len * 0.3]),
          rotation=rot_x(math.pi - tilt))  # fmt: skip
    return b


def pillow(rng: np.random.Generator) -> Builder:
    """A plump rectangle with one corner folded over and a tag (a plain pillow is D2 symmetric)."""
    b = Builder()
    w, d, h = uniform(rng, 0.5, 0.7), uniform(rng, 0.35, 0.5), uniform(rng, 0.12, 0.2)
    part = superellipsoid(w / 2, d / 2, h / 2, 0.6, 0.3, rings=16, segments=32)
    v = part.vertices.copy()
    # Fold the +x, +y corner upwards and inwards; sag the -x side.
    corner = np.clip((v[:, 0] / (w / 2) + v[:, 1] / (d / 2) - 0.8) / 1.2, 0.0, 1.0)
    fold = uniform(rng, 0.15, 0.3)
    v[:, 2] += corner**2 * fold
    v[:, 0] -= corner**2 * fold * 0.5
    v[:, 2] -= np.clip(-v[:, 0] / (w / 2), 0.0, 1.0) ** 2 * h * 0.3
    fabric = any_colour(rng, s=(0.1, 0.6))
    b.add(Part(v, part.faces), fabric, at=(0, 0, h / 2))
    b.add(box(0.06, 0.01, 0.04), tint(rng, *WHITE), at=(-w / 2 + 0.05, -d / 2 - 0.005, h / 2))
    b.add(box(w * 0.9, 0.005, h * 0.2), any_colour(rng), at=(0, d / 2 + 0.002, h * 0.45))
    return b


def piano(rng: np.random.Generator) -> Builder:
    """Upright piano: tall case, keyboard shelf with keys at the front, legs, pedals, music desk."""
    b = Builder()
    width, depth, height = uniform(rng, 1.3, 1.55), uniform(rng, 0.5, 0.65), uniform(rng, 1.1, 1.35)
    case = tint(rng, *DARK, dv=0.1) if rng.random() < 0.6 else tint(rng, *WOOD, dv=0.25)
    b.add(box(width, depth * 0.55, height), case, at=(0, -depth * 0.2, height / 2))
    shelf_z = uniform(rng, 0.68, 0.75)
    b.add(box(width, depth * 0.45, 0.08), case, at=(0, depth * 0.25, shelf_z))
    b.add(box(width * 0.9, depth * 0.2, 0.02), tint(rng, *WHITE), at=(0, depth * 0.36, shelf_z + 0.05))
    for k in range(36):
        if k % 7 in (2, 6):
            continue
        b.add(
            box(0.014, depth * 0.1, 0.015),
            tint(rng, *DARK),
            at=(-width * 0.43 + k * width * 0.025, depth * 0.32, shelf_z + 0.065),
        )
    for x in (1, -1):
        b.add(box(0.05, 0.05, shelf_z), case, at=(x * width * 0.45, depth * 0.42, shelf_z / 2))
    for x in (-0.06, 0.0, 0.06):
        b.add(box(0.03, 0.1, 0.015), tint(rng, 0.13, 0.7, 0.7), at=(x, depth * 0.1 + 0.05, 0.05))
    b.add(box(width * 0.5, 0.03, 0.25), case, at=(0, 0.05, shelf_z + 0.3), rotation=rot_x(-0.2))
    lid = uniform(rng, 0.4, 0.9)  # the top lid propped open towards the back
    hinge = np.array([0.0, -depth * 0.2 - depth * 0.275, height])
    b.add(
        box(width, depth * 0.55, 0.02),
        case,
        at=hinge + rot_x(lid) @ np.array([0.0, depth * 0.275, 0.01]),
        rotation=rot_x(lid),
    )
    return b
