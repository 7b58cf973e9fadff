"""Templates: cap, dishwasher, faucet, guitar, helmet, knife, microwave, pistol, rifle, stove, tower, washer.

Each template draws one instance from ``rng`` in the object frame (Z up, front towards +Y).
Box-shaped appliances differ front to back (doors, panels, a door left ajar); the round tower
gets a door, a balcony on one side and an off-centre mast.
"""

from __future__ import annotations

import math

import numpy as np

from sie.render.procedural.parts import (
    DARK,
    GLASS,
    METAL,
    WHITE,
    WOOD,
    Builder,
    Part,
    any_colour,
    box,
    cylinder,
    ellipsoid,
    lathe,
    prism,
    rod,
    rot_x,
    rot_y,
    rot_z,
    rounded_box,
    side_profile,
    tint,
    torus,
    tube,
    uniform,
)

__all__ = [
    "cap",
    "dishwasher",
    "faucet",
    "guitar",
    "helmet",
    "knife",
    "microwave",
    "pistol",
    "rifle",
    "stove",
    "tower",
    "washer",
]


def _appliance_body(
    rng: np.random.Generator, w: float, d: float, h: float
) -> tuple[Builder, tuple[float, float, float]]:
    """A white or metal box standing on the floor, and its colour."""
    b = Builder()
    colour = tint(rng, *WHITE, dv=0.15) if rng.random() < 0.6 else tint(rng, *METAL, dv=0.2)
    b.add(box(w, d, h), colour, at=(0, 0, h / 2))
    return b, colour


def dishwasher(rng: np.random.Generator) -> Builder:
    """Body, control strip at the top front, a door dropped open on its bottom hinge, a rack inside."""
    w, d, h = uniform(rng, 0.58, 0.62), uniform(rng, 0.55, 0.62), uniform(rng, 0.8, 0.88)
    b, colour = _appliance_body(rng, w, d, h)
    b.add(box(w * 0.98, 0.02, 0.1), tint(rng, *DARK, dv=0.1), at=(0, d / 2 + 0.01, h - 0.05))
    opening = uniform(rng, 0.3, 1.2)
    door = rot_x(-opening)
    hinge = np.array([0.0, d / 2, 0.08])
    door_h = h - 0.2
    b.add(
        box(w * 0.98, 0.04, door_h),
        colour,
        at=hinge + door @ np.array([0.0, 0.02, door_h / 2]),
        rotation=door,
    )
    b.add(
        box(w * 0.6, 0.03, 0.02),
        tint(rng, *METAL),
        at=hinge + door @ np.array([0.0, 0.06, door_h - 0.05]),
        rotation=door,
    )
    b.add(box(w * 0.85, d * 0.8, 0.01), tint(rng, *METAL, dv=0.2), at=(0, 0.02, h * 0.35))
    b.add(box(w, 0.03, 0.08), tint(rng, *DARK), at=(0, d / 2 - 0.05, 0.04))
    return b


def microwave(rng: np.random.Generator) -> Builder:
    """Box, a door swung open on its left hinge with a dark window, a control panel on the right."""
    w, d, h = uniform(rng, 0.45, 0.55), uniform(rng, 0.33, 0.4), uniform(rng, 0.26, 0.32)
    b, colour = _appliance_body(rng, w, d, h)
    panel = w * 0.25
    b.add(box(panel, 0.01, h * 0.9), tint(rng, *DARK, dv=0.15), at=(w / 2 - panel / 2, d / 2 + 0.005, h / 2))
    for k in range(3):
        b.add(cylinder(0.012, 0.012, 12), tint(rng, *METAL), at=(w / 2 - panel / 2, d / 2 + 0.012, h * (0.3 + 0.2 * k)),
              rotation=rot_x(math.pi / 2))  # fmt: skip
    opening = uniform(rng, 0.3, 1.3)
    door_w = w - panel
    hinge = np.array([-w / 2, d / 2, h / 2])
    door = rot_z(opening)
    b.add(
        box(door_w, 0.03, h * 0.92),
        colour,
        at=hinge + door @ np.array([door_w / 2, 0.015, 0.0]),
        rotation=door,
    )
    b.add(box(door_w * 0.7, 0.005, h * 0.6), tint(rng, *GLASS, dv=0.1), at=hinge + door @ np.array([door_w * 0.45, 0.032, 0.0]),
          rotation=door)  # fmt: skip
    b.add(box(door_w * 0.9, d * 0.9, 0.005), tint(rng, *DARK), at=(-panel / 2, 0, 0.03))
    return b


def stove(rng: np.random.Generator) -> Builder:
    """Cooker: body, four burners of different sizes on top, a raised back panel with knobs, an oven door."""
    w, d, h = uniform(rng, 0.5, 0.76), uniform(rng, 0.55, 0.65), uniform(rng, 0.85, 0.92)
    b, colour = _appliance_body(rng, w, d, h)
    dark, metal = tint(rng, *DARK, dv=0.1), tint(rng, *METAL)
    sizes = [
        uniform(rng, 0.05, 0.065),
        uniform(rng, 0.08, 0.1),
        uniform(rng, 0.06, 0.08),
        uniform(rng, 0.09, 0.11),
    ]
    for k, r in enumerate(sizes):
        x, y = (k % 2 - 0.5) * w * 0.5, (k // 2 - 0.5) * d * 0.45
        b.add(cylinder(r, 0.015, 20), dark, at=(x, y, h + 0.008))
        b.add(torus(r * 1.2, 0.005, segments=20, sides=4), metal, at=(x, y, h + 0.02))
    back_h = uniform(rng, 0.2, 0.35)
    b.add(box(w, 0.08, back_h), colour, at=(0, -d / 2 + 0.04, h + back_h / 2))
    for k in range(4):
        b.add(
            cylinder(0.018, 0.02, 12),
            dark,
            at=((k - 1.5) * w * 0.2, -d / 2 + 0.09, h + back_h * 0.5),
            rotation=rot_x(math.pi / 2),
        )
    b.add(box(w * 0.85, 0.01, h * 0.4), tint(rng, *GLASS, dv=0.1), at=(0, d / 2 + 0.005, h * 0.4))
    b.add(rod((-w * 0.35, d / 2 + 0.04, h * 0.68), (w * 0.35, d / 2 + 0.04, h * 0.68), 0.01), metal)
    return b


def washer(rng: np.random.Generator) -> Builder:
    """Washing machine: a porthole door swung open on its left hinge, a raised control panel at the back."""
    w, d, h = uniform(rng, 0.58, 0.62), uniform(rng, 0.55, 0.62), uniform(rng, 0.82, 0.88)
    b, colour = _appliance_body(rng, w, d, h)
    door_r = w * uniform(rng, 0.27, 0.32)
    door_z = h * uniform(rng, 0.4, 0.48)
    b.add(
        cylinder(door_r * 0.85, 0.01, 24),
        tint(rng, *DARK),
        at=(0, d / 2 + 0.003, door_z),
        rotation=rot_x(math.pi / 2),
    )
    opening = uniform(rng, 0.5, 1.4)
    hinge = np.array([-door_r - 0.02, d / 2 + 0.03, door_z])
    door = rot_z(opening)
    centre = hinge + door @ np.array([door_r + 0.02, 0.0, 0.0])
    b.add(
        torus(door_r, 0.03, segments=28, sides=8),
        tint(rng, *METAL),
        at=centre,
        rotation=door @ rot_x(math.pi / 2),
    )
    b.add(
        ellipsoid(door_r * 0.9, 0.05, door_r * 0.9, rings=8, segments=24),
        tint(rng, *GLASS),
        at=centre,
        rotation=door,
    )
    b.add(box(w, 0.12, 0.1), colour, at=(0, -d / 2 + 0.06, h + 0.05), rotation=rot_x(-0.3))
    b.add(
        cylinder(0.03, 0.02, 16),
        tint(rng, *DARK),
        at=(w * 0.25, -d / 2 + 0.1, h + 0.08),
        rotation=rot_x(math.pi / 2 - 0.3),
    )
    b.add(box(w * 0.3, 0.015, 0.08), tint(rng, *DARK, dv=0.2), at=(-w * 0.3, d / 2 + 0.008, h - 0.07))
    return b


def faucet(rng: np.random.Generator) -> Builder:
    """Base, riser, a spout arching forward, a lever on one side."""
    b = Builder()
    metal = tint(rng, *METAL, dv=0.2)
    rise = uniform(rng, 0.15, 0.3)
    reach = uniform(rng, 0.12, 0.22)
    b.add(cylinder(0.03, 0.02, 20), metal, at=(0, 0, 0.01))
    path = [(0.0, 0.0, 0.0), (0.0, 0.0, rise)]
    path += [
        (0.0, reach * (1 - math.cos(a)), rise + reach * 0.6 * math.sin(a))
        for a in np.linspace(0.2, math.pi * 0.9, 8)
    ]
    b.add(tube(path, 0.014, 12), metal)
    lever_side = uniform(rng, 0.25, 0.5)
    b.add(cylinder(0.018, 0.03, 12), metal, at=(0.03, 0, rise * lever_side), rotation=rot_y(math.pi / 2))
    b.add(rod((0.045, 0, rise * lever_side), (0.1, -0.03, rise * lever_side + 0.05), 0.006), metal)
    return b


def cap(rng: np.random.Generator) -> Builder:
    """Baseball cap: domed crown, a brim reaching forward, a button on top."""
    b = Builder()
    r = uniform(rng, 0.09, 0.1)
    fabric = any_colour(rng)
    crown = [(r * math.cos(a), r * 0.85 * math.sin(a)) for a in np.linspace(0.0, math.pi / 2, 8)]
    b.add(lathe([(r * 1.0, 0.0), *crown], 28), fabric)
    brim_len = uniform(rng, 0.07, 0.1)
    brim = [
        (-r * 0.95, 0.0),
        (r * 0.95, 0.0),
        (r * 0.7, brim_len * 0.8),
        (0.0, brim_len + r * 0.2),
        (-r * 0.7, brim_len * 0.8),
    ]
    brim_tilt = uniform(rng, 0.0, 0.2)
    b.add(prism([(x, y + r * 0.6) for x, y in brim], 0.006), tint(rng, *DARK, dv=0.3) if rng.random() < 0.5 else fabric,
          at=(0, 0, 0.005), rotation=rot_x(brim_tilt))  # fmt: skip
    b.add(ellipsoid(0.008, 0.008, 0.005), fabric, at=(0, 0, r * 0.85))
    return b


def helmet(rng: np.random.Generator) -> Builder:
    """Helmet: an egg-shaped shell with a long tail, a wide peak over the face opening, a chin bar."""
    b = Builder()
    rx, ry, rz = uniform(rng, 0.12, 0.14), uniform(rng, 0.13, 0.15), uniform(rng, 0.13, 0.15)
    tail = uniform(rng, 1.6, 1.9)
    paint = any_colour(rng)
    part = ellipsoid(rx, ry, rz, rings=14, segments=28)
    v = part.vertices.copy()
    v[:, 1] = np.where(v[:, 1] < 0, v[:, 1] * tail, v[:, 1])
    b.add(Part(v, part.faces), paint, at=(0, 0, rz))
    b.add(
        ellipsoid(rx * 0.8, 0.05, rz * 0.3, rings=8, segments=20),
        tint(rng, *GLASS, dv=0.1),
        at=(0, ry * 0.85, rz * 1.0),
    )
    peak = [
        (-rx, 0.0),
        (rx, 0.0),
        (rx * 0.7, uniform(rng, 0.08, 0.12)),
        (-rx * 0.7, uniform(rng, 0.08, 0.12)),
    ]
    b.add(prism(peak, 0.01), any_colour(rng), at=(0, ry * 0.75, rz * 1.45), rotation=rot_x(0.25))
    b.add(rounded_box(rx * 1.6, 0.08, 0.08, 0.4), paint, at=(0, ry * 0.9, rz * 0.3))
    b.add(ellipsoid(rx * 0.5, ry * 0.6, rz * 0.25), any_colour(rng), at=(0, -ry * tail * 0.75, rz * 1.5))
    return b


def guitar(rng: np.random.Generator) -> Builder:
    """Standing electric guitar: a body with two horns of unequal length, pickguard, neck, head."""
    b = Builder()
    wood, dark, paint = tint(rng, *WOOD, dv=0.25), tint(rng, *DARK, dv=0.1), any_colour(rng)
    w, h, t = uniform(rng, 0.3, 0.36), uniform(rng, 0.4, 0.46), uniform(rng, 0.04, 0.05)
    long_horn, short_horn = uniform(rng, 0.15, 0.2), uniform(rng, 0.05, 0.09)
    # Outline in the XZ plane (star-shaped about its centroid), extruded along Y.
    outline = [(0.0, 0.0), (w * 0.4, 0.03), (w / 2, h * 0.3), (w * 0.38, h * 0.6), (w * 0.42, h + short_horn),
               (w * 0.25, h + short_horn), (0.06, h * 0.8), (-0.06, h * 0.8), (-w * 0.25, h + long_horn),
               (-w * 0.42, h + long_horn), (-w * 0.38, h * 0.6), (-w / 2, h * 0.3), (-w * 0.4, 0.03)]  # fmt: skip
    body = prism(outline, t)
    to_xz = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # (px, py, pz) -> (px, -pz, py)
    b.add(body, paint, rotation=to_xz)
    guard = [(0.02, h * 0.2), (w * 0.35, h * 0.35), (w * 0.3, h * 0.7), (0.05, h * 0.75)]
    b.add(prism(guard, 0.004), tint(rng, *WHITE), at=(0, t / 2, 0), rotation=to_xz)
    b.add(box(0.09, 0.012, 0.02), dark, at=(0, t / 2 + 0.006, h * 0.25))
    neck_len = uniform(rng, 0.42, 0.5)
    b.add(box(0.045, 0.025, neck_len), wood, at=(0, 0, h * 0.75 + neck_len / 2))
    head_z = h * 0.75 + neck_len
    b.add(box(0.05, 0.02, 0.16), wood, at=(0.012, -0.005, head_z + 0.08))
    for k in range(6):
        b.add(
            cylinder(0.006, 0.025, 8),
            tint(rng, *METAL),
            at=(0.04, -0.005, head_z + 0.02 + k * 0.024),
            rotation=rot_y(math.pi / 2),
        )
    return b


def knife(rng: np.random.Generator) -> Builder:
    """Chef's knife, edge down and tip forward: a tall heel, a curved edge up to the tip, a handle set low."""
    b = Builder()
    blade_len, blade_h = uniform(rng, 0.17, 0.24), uniform(rng, 0.04, 0.06)
    blade = [(0.0, 0.0), (blade_len * 0.6, 0.0), (blade_len * 0.85, blade_h * 0.25), (blade_len, blade_h * 0.9),
             (blade_len * 0.5, blade_h), (0.0, blade_h)]  # fmt: skip
    b.add(side_profile(blade, 0.003), tint(rng, *METAL, dv=0.15))
    handle_len = uniform(rng, 0.1, 0.13)
    grip = tint(rng, *WOOD, dv=0.3) if rng.random() < 0.6 else tint(rng, *DARK)
    b.add(rounded_box(0.02, handle_len, 0.025, 0.4), grip, at=(0, -handle_len / 2 - 0.01, blade_h * 0.78),
          rotation=rot_x(-0.08))  # fmt: skip
    b.add(box(0.022, 0.012, blade_h * 0.45), tint(rng, *METAL), at=(0, -0.005, blade_h * 0.75))
    return b


def pistol(rng: np.random.Generator) -> Builder:
    """Slide and barrel pointing forward, a raked grip, a trigger guard, a magazine base."""
    b = Builder()
    length, h = uniform(rng, 0.17, 0.21), uniform(rng, 0.03, 0.035)
    dark, grip_colour = (
        tint(rng, *DARK, dv=0.1),
        tint(rng, *WOOD, dv=0.3) if rng.random() < 0.4 else tint(rng, *DARK, dv=0.2),
    )
    b.add(box(0.028, length, h), dark, at=(0, 0, 0.11))
    b.add(cylinder(0.008, 0.02, 12), dark, at=(0, length / 2 + 0.01, 0.11), rotation=rot_x(math.pi / 2))
    rake = uniform(rng, 0.2, 0.35)
    grip_len = uniform(rng, 0.09, 0.12)
    b.add(box(0.03, 0.035, grip_len), grip_colour, at=(0, -length * 0.32 - math.sin(rake) * grip_len / 2, 0.09 - grip_len / 2),
          rotation=rot_x(rake))  # fmt: skip
    b.add(torus(0.018, 0.004, arc=math.pi, segments=10, sides=5), dark, at=(0, -length * 0.05, 0.092),
          rotation=rot_y(math.pi / 2) @ rot_z(math.pi / 2))  # fmt: skip
    b.add(box(0.004, 0.006, 0.015), dark, at=(0, -length * 0.06, 0.087))
    return b


def rifle(rng: np.random.Generator) -> Builder:
    """Stock, receiver, long barrel, a scope on top and a magazine below."""
    b = Builder()
    wood, dark = tint(rng, *WOOD, dv=0.3), tint(rng, *DARK, dv=0.1)
    stock = [(-0.45, 0.0), (-0.2, 0.05), (-0.05, 0.06), (-0.05, 0.12), (-0.45, 0.1)]
    b.add(side_profile(stock, 0.04), wood)
    recv_len = uniform(rng, 0.25, 0.35)
    b.add(box(0.045, recv_len, 0.06), dark, at=(0, -0.05 + recv_len / 2, 0.11))
    barrel = uniform(rng, 0.4, 0.6)
    b.add(
        cylinder(0.01, barrel, 12),
        dark,
        at=(0, -0.05 + recv_len + barrel / 2, 0.12),
        rotation=rot_x(math.pi / 2),
    )
    b.add(box(0.035, recv_len * 0.8, 0.03), wood, at=(0, -0.05 + recv_len, 0.085))
    if rng.random() < 0.7:
        b.add(
            cylinder(0.018, recv_len * 0.9, 16),
            dark,
            at=(0, -0.05 + recv_len / 2, 0.175),
            rotation=rot_x(math.pi / 2),
        )
    b.add(
        box(0.03, 0.05, uniform(rng, 0.08, 0.15)),
        dark,
        at=(0, -0.05 + recv_len * 0.55, 0.04),
        rotation=rot_x(0.2),
    )
    return b


def tower(rng: np.random.Generator) -> Builder:
    """Stacked tapering round sections, a door, a wide balcony on one side, a side turret, an offset mast."""
    b = Builder()
    stone = tint(rng, 0.1, 0.15, 0.65, dv=0.2)
    r0 = uniform(rng, 0.25, 0.35)
    r, z = r0, 0.0
    sections = int(rng.integers(3, 5))
    for _ in range(sections):
        h = uniform(rng, 0.5, 0.9)
        top = r * uniform(rng, 0.75, 0.9)
        b.add(cylinder(r, h, 24, radius_top=top), stone, at=(0, 0, z + h / 2))
        z += h
        r = top * uniform(rng, 0.85, 0.95)
    b.add(box(0.15, 0.06, 0.28), tint(rng, *WOOD, dv=0.2), at=(0, r0 + 0.01, 0.14))
    balcony_z = z * uniform(rng, 0.55, 0.75)
    reach = r0 * uniform(rng, 1.6, 2.0)
    b.add(torus(reach, 0.02, arc=math.pi, segments=14, sides=6), tint(rng, *METAL), at=(0, 0, balcony_z + 0.1),
          rotation=rot_z(-math.pi / 4))  # fmt: skip
    b.add(lathe([(0.0, 0.0), (reach, 0.0), (reach, -0.04), (0.0, -0.04)], 14, arc=math.pi), stone, at=(0, 0, balcony_z),
          rotation=rot_z(-math.pi / 4))  # fmt: skip
    turret_h = z * uniform(rng, 0.4, 0.55)
    roof = any_colour(rng)
    b.add(cylinder(r0 * 0.55, turret_h, 16), stone, at=(-r0 * 1.2, -r0 * 0.3, turret_h / 2))
    b.add(
        cylinder(r0 * 0.7, r0 * 1.0, 16, radius_top=0.0), roof, at=(-r0 * 1.2, -r0 * 0.3, turret_h + r0 * 0.5)
    )
    b.add(cylinder(r * 0.8, 0.3, 16, radius_top=0.0), roof, at=(0, 0, z + 0.15))
    b.add(rod((r * 0.4, 0, z), (r * 0.4, 0, z + uniform(rng, 0.4, 0.8)), 0.01), tint(rng, *METAL))
    return b
