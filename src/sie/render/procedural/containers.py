"""Templates: bag, basket, bathtub, birdhouse, bottle, bowl, can, jar, mailbox, mug, pot, trash bin.

Each template draws one instance from ``rng`` in the object frame (Z up, front towards +Y).
Vessels are surfaces of revolution, symmetric about their axis; each gets a large breaker
visible from most views: a handle, a spout, a lid opened on a hinge, a straw, a plant.
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
    shell,
    side_profile,
    superellipsoid,
    tint,
    torus,
    tube,
    uniform,
)

__all__ = [
    "bag",
    "basket",
    "bathtub",
    "birdhouse",
    "bottle",
    "bowl",
    "can",
    "jar",
    "mailbox",
    "mug",
    "pot",
    "trash_bin",
]


def trash_bin(rng: np.random.Generator) -> Builder:
    """Tapered bin, a lid hinged at the back and swung open, a large pedal at the front."""
    b = Builder()
    r_bottom, r_top, height = uniform(rng, 0.13, 0.18), uniform(rng, 0.16, 0.22), uniform(rng, 0.4, 0.65)
    body = any_colour(rng, s=(0.0, 0.6))
    b.add(shell([(0.0, 0.0), (r_bottom, 0.0), (r_top, height)], 0.01, 28), body)
    opening = uniform(rng, 1.0, 1.7)
    hinge = np.array([0.0, -r_top - 0.02, height + 0.01])
    lid = rot_x(-opening)
    b.add(cylinder(r_top + 0.01, 0.025, 28), tint(rng, *METAL, dv=0.2), at=hinge + lid @ np.array([0.0, r_top + 0.03, 0.0]),
          rotation=lid)  # fmt: skip
    b.add(box(0.12, 0.05, 0.06), body, at=hinge + np.array([0.0, 0.0, -0.02]))
    b.add(box(0.14, 0.12, 0.025), tint(rng, *METAL), at=(0.0, r_bottom + 0.06, 0.03))
    b.add(box(0.04, 0.04, height * 0.3), body, at=(0.0, r_bottom + 0.01, height * 0.15))
    return b


def bag(rng: np.random.Generator) -> Builder:
    """Soft body, two handles, a large front pocket and a shoulder strap on one side."""
    b = Builder()
    w, d, h = uniform(rng, 0.35, 0.5), uniform(rng, 0.12, 0.2), uniform(rng, 0.25, 0.4)
    leather = any_colour(rng, s=(0.3, 0.7), v=(0.2, 0.6))
    b.add(superellipsoid(w / 2, d / 2, h / 2, 0.4, 0.5), leather, at=(0, 0, h / 2))
    for y in (d * 0.3, -d * 0.3):
        b.add(
            torus(w * 0.18, 0.012, arc=math.pi, segments=14, sides=6),
            leather,
            at=(0, y, h * 0.95),
            rotation=rot_x(math.pi / 2),
        )
    b.add(
        rounded_box(w * 0.6, d * 0.35, h * 0.45, 0.3),
        tint(rng, *DARK, dv=0.2),
        at=(-w * 0.1, d / 2 + d * 0.1, h * 0.35),
    )
    strap_x = w / 2
    b.add(tube([(strap_x, 0, h * 0.6), (strap_x + 0.06, 0, h * 1.2), (strap_x - 0.05, 0, h * 1.6),
                (-w * 0.1, 0, h * 1.5)], 0.01, 6), leather)  # fmt: skip
    return b


def basket(rng: np.random.Generator) -> Builder:
    """Open woven-looking bin, a hinged arched handle folded down to one side, a lid flap raised on one half."""
    b = Builder()
    r, h = uniform(rng, 0.15, 0.22), uniform(rng, 0.15, 0.25)
    wicker = tint(rng, *WOOD, dv=0.2)
    b.add(shell([(0.0, 0.0), (r * 0.85, 0.0), (r, h)], 0.012, 28), wicker)
    for z in np.linspace(h * 0.2, h * 0.9, 4):
        b.add(
            torus(r * (0.85 + 0.15 * z / h) + 0.004, 0.006, segments=28, sides=5),
            tint(rng, *WOOD, dv=0.2),
            at=(0, 0, z),
        )
    fold = uniform(rng, 0.5, 1.1)
    b.add(
        torus(r, 0.014, arc=math.pi, segments=16, sides=6),
        wicker,
        at=(0, 0, h),
        rotation=rot_x(math.pi / 2 - fold),
    )
    flap = lathe([(0.0, 0.0), (r, 0.0), (r, 0.01), (0.0, 0.01)], 14, arc=math.pi)
    angle = uniform(rng, 0.8, 1.4)
    b.add(
        flap,
        any_colour(rng, s=(0.2, 0.5)),
        at=(0, 0, h + 0.005),
        rotation=rot_y(-angle) @ rot_z(-math.pi / 2),
    )
    return b


def bathtub(rng: np.random.Generator) -> Builder:
    """Slipper tub: walls whose rim rises towards the back end, a sloped backrest, a tap deck at the front end."""
    b = Builder()
    length, width, height = uniform(rng, 1.5, 1.8), uniform(rng, 0.7, 0.85), uniform(rng, 0.45, 0.55)
    rise = uniform(rng, 0.25, 0.45)
    enamel, t = tint(rng, *WHITE, dv=0.15), 0.06
    b.add(box(length, width, t), enamel, at=(0, 0, t / 2))
    wall = [
        (-length / 2, 0.0),
        (length / 2, 0.0),
        (length / 2, height),
        (0.0, height),
        (-length / 2, height + rise),
    ]
    to_xz = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # polygon (x, z), extruded along y
    for y in (1, -1):
        b.add(prism(wall, t), enamel, at=(0, y * (width / 2 - t / 2), 0), rotation=to_xz)
    b.add(box(t, width, height + rise), enamel, at=(-length / 2 + t / 2, 0, (height + rise) / 2))
    deck = uniform(rng, 0.18, 0.25)
    b.add(box(deck, width, height + 0.02), enamel, at=(length / 2 - deck / 2, 0, height / 2 + 0.01))
    slope = uniform(rng, 0.5, 0.8)
    b.add(box(0.03, width - 2 * t, (height + rise) / math.cos(slope) * 0.8), enamel,
          at=(-length / 2 + t + math.tan(slope) * height * 0.45, 0, height * 0.5), rotation=rot_y(-slope))  # fmt: skip
    metal = tint(rng, *METAL)
    b.add(rod((length / 2 - deck / 2, 0, height), (length / 2 - deck / 2, 0, height + 0.18), 0.018), metal)
    b.add(
        rod((length / 2 - deck / 2, 0, height + 0.18), (length / 2 - deck - 0.06, 0, height + 0.15), 0.014),
        metal,
    )
    for y in (0.12, -0.12):
        b.add(cylinder(0.03, 0.05, 12), metal, at=(length / 2 - deck / 2, y, height + 0.045))
    return b


def birdhouse(rng: np.random.Generator) -> Builder:
    """Box with a gable roof overhanging the front, an entrance hole, a perch, a pole fixed at the back."""
    b = Builder()
    w, d, h = uniform(rng, 0.15, 0.22), uniform(rng, 0.15, 0.22), uniform(rng, 0.18, 0.28)
    wood, roof = tint(rng, *WOOD, dv=0.25), any_colour(rng)
    b.add(box(w, d, h), wood, at=(0, 0, h / 2))
    pitch = uniform(rng, 0.5, 0.8)
    slab = (w / 2 + 0.03) / math.cos(pitch)
    overhang = uniform(rng, 0.05, 0.1)
    for side in (1, -1):
        b.add(box(slab, d + overhang + 0.02, 0.015), roof,
              at=(side * (w / 4 + 0.01), overhang / 2, h + math.tan(pitch) * w / 4), rotation=rot_y(side * pitch))  # fmt: skip
    b.add(
        cylinder(w * 0.18, 0.01, 20),
        tint(rng, *DARK),
        at=(0, d / 2 + 0.003, h * 0.6),
        rotation=rot_x(math.pi / 2),
    )
    b.add(rod((0, d / 2, h * 0.35), (0, d / 2 + 0.06, h * 0.35), 0.006), wood)
    b.add(box(0.04, 0.04, uniform(rng, 0.4, 0.8)), tint(rng, *WOOD, dv=0.3), at=(0, -d / 2 - 0.02, -0.15))
    return b


def bottle(rng: np.random.Generator) -> Builder:
    """Spray bottle: body of revolution with shoulder and neck, a label, a trigger head pointing forward."""
    b = Builder()
    r, h = uniform(rng, 0.035, 0.05), uniform(rng, 0.18, 0.28)
    neck_r, neck_h = r * uniform(rng, 0.35, 0.45), uniform(rng, 0.02, 0.04)
    shoulder = h * uniform(rng, 0.65, 0.8)
    profile = [(0.0, 0.0), (r * 0.9, 0.0), (r, 0.01), (r, shoulder)]
    profile += [
        (neck_r + (r - neck_r) * math.cos(a), shoulder + (h - shoulder) * math.sin(a))
        for a in np.linspace(0.3, math.pi / 2, 5)
    ]
    profile += [(neck_r, h + neck_h), (0.0, h + neck_h)]
    b.add(lathe(profile, 24), tint(rng, uniform(rng, 0.0, 1.0), 0.4, 0.6, dv=0.25))
    b.add(lathe([(r + 0.002, shoulder * 0.2), (r + 0.002, shoulder * 0.85)], 24, arc=uniform(rng, 2.5, 3.5)), any_colour(rng),
          rotation=rot_z(math.pi / 2 - 1.5))  # fmt: skip
    head = any_colour(rng)
    top = h + neck_h
    reach = uniform(rng, 0.05, 0.08)
    b.add(box(0.03, reach + 0.03, 0.035), head, at=(0, reach / 2 - 0.01, top + 0.02))
    b.add(cylinder(0.006, 0.012, 10), head, at=(0, reach + 0.01, top + 0.025), rotation=rot_x(math.pi / 2))
    b.add(box(0.012, 0.014, 0.05), head, at=(0, reach * 0.55, top - 0.025), rotation=rot_x(-0.3))
    b.add(rounded_box(0.028, 0.03, 0.06, 0.4), head, at=(0, -0.01, top + 0.005))
    return b


def bowl(rng: np.random.Generator) -> Builder:
    """Open bowl of revolution with a pouring lip, and a spoon resting in it with its handle sticking out."""
    b = Builder()
    r, h = uniform(rng, 0.1, 0.15), uniform(rng, 0.05, 0.08)
    profile = [(0.0, 0.0), (r * 0.45, 0.0)] + [
        (r * 0.45 + r * 0.55 * math.sin(a), h * (1 - math.cos(a))) for a in np.linspace(0.2, math.pi / 2, 6)
    ]
    colour = any_colour(rng, s=(0.1, 0.6), v=(0.4, 0.9))
    b.add(shell(profile, 0.006, 32), colour)
    spout = side_profile(
        [(r * 0.85, h * 0.6), (r * 1.3, h * 1.1), (r * 1.2, h * 1.18), (r * 0.8, h)], r * 0.35
    )
    b.add(spout, colour, rotation=rot_z(math.pi / 2))
    angle = uniform(rng, -0.5, 0.5)
    direction = np.array([math.cos(angle), math.sin(angle), 0.0])
    bowl_end = np.array([0.0, 0.0, h * 0.35]) - direction * r * 0.3
    handle_end = direction * r * uniform(rng, 1.6, 2.0) + np.array([0.0, 0.0, h * 1.3])
    metal = tint(rng, *METAL)
    b.add(ellipsoid(r * 0.25, r * 0.17, 0.01), metal, at=bowl_end, rotation=rot_z(angle))
    b.add(rod(bowl_end + direction * r * 0.2, handle_end, 0.005, 8), metal)
    return b


def can(rng: np.random.Generator) -> Builder:
    """Drink can with a label band, a pull tab and a straw leaning out of the opening."""
    b = Builder()
    r, h = uniform(rng, 0.03, 0.035), uniform(rng, 0.1, 0.16)
    b.add(
        lathe([(0.0, 0.0), (r * 0.85, 0.0), (r, 0.01), (r, h - 0.01), (r * 0.85, h), (0.0, h)], 24),
        tint(rng, *METAL),
    )
    b.add(
        lathe([(r + 0.001, h * 0.15), (r + 0.001, h * 0.85)], 24, arc=uniform(rng, 3.0, 4.5)), any_colour(rng)
    )
    b.add(box(0.012, 0.02, 0.003), tint(rng, *METAL, dv=0.2), at=(0, r * 0.35, h + 0.002))
    lean = uniform(rng, 0.25, 0.5)
    straw_len = uniform(rng, 0.1, 0.16)
    base = np.array([0.0, r * 0.5, h - 0.04])
    top = base + straw_len * np.array([math.sin(lean) * 0.7, math.sin(lean) * 0.7, math.cos(lean)])
    b.add(rod(base, top, 0.004, 8), any_colour(rng))
    return b


def jar(rng: np.random.Generator) -> Builder:
    """Jar with a clamp lid flipped open on a hinge at the back, a wire clasp at the front, a label."""
    b = Builder()
    r, h = uniform(rng, 0.05, 0.08), uniform(rng, 0.1, 0.18)
    profile = [(0.0, 0.0), (r * 0.9, 0.0), (r, 0.01), (r, h * 0.85), (r * 0.85, h * 0.92), (r * 0.85, h)]
    b.add(shell(profile, 0.004, 28), tint(rng, *GLASS, dv=0.2))
    b.add(lathe([(r + 0.002, h * 0.25), (r + 0.002, h * 0.65)], 28, arc=uniform(rng, 2.5, 3.5)), any_colour(rng),
          rotation=rot_z(math.pi / 4))  # fmt: skip
    opening = uniform(rng, 1.6, 2.4)
    hinge = np.array([0.0, -r * 0.95, h + 0.01])
    lid = rot_x(-opening)
    lid_colour = any_colour(rng)
    b.add(
        cylinder(r * 0.95, 0.02, 28),
        lid_colour,
        at=hinge + lid @ np.array([0.0, r * 0.95, 0.0]),
        rotation=lid,
    )
    b.add(
        cylinder(r * 0.3, 0.02, 14),
        lid_colour,
        at=hinge + lid @ np.array([0.0, r * 0.95, 0.02]),
        rotation=lid,
    )
    b.add(box(r * 0.6, 0.02, 0.03), tint(rng, *METAL), at=hinge + np.array([0.0, -0.005, -0.01]))
    b.add(torus(r * 0.3, 0.003, arc=math.pi, segments=8, sides=4), tint(rng, *METAL), at=(0, r * 0.95, h * 0.9),
          rotation=rot_y(math.pi / 2))  # fmt: skip
    return b


def mailbox(rng: np.random.Generator) -> Builder:
    """Post, a box with a rounded top, a door at the front and a raised flag on one side."""
    b = Builder()
    w, d, h = uniform(rng, 0.18, 0.25), uniform(rng, 0.45, 0.55), uniform(rng, 0.15, 0.22)
    post_h = uniform(rng, 0.9, 1.1)
    paint = any_colour(rng)
    b.add(box(0.08, 0.08, post_h), tint(rng, *WOOD, dv=0.3), at=(0, -d * 0.2, post_h / 2))
    b.add(box(w, d, h * 0.6), paint, at=(0, 0, post_h + h * 0.3))
    b.add(cylinder(w / 2, d, 20), paint, at=(0, 0, post_h + h * 0.6), rotation=rot_x(math.pi / 2))
    b.add(box(w * 0.9, 0.01, h * 0.9), tint(rng, *METAL, dv=0.2), at=(0, d / 2 + 0.005, post_h + h * 0.5))
    flag_raised = uniform(rng, 0.0, 1.4)
    pivot = np.array([w / 2 + 0.01, -d * 0.1, post_h + h * 0.4])
    b.add(box(0.01, 0.03, 0.18), tint(rng, 0.0, 0.9, 0.75), at=pivot + rot_x(-flag_raised) @ np.array([0, 0, 0.09]),
          rotation=rot_x(-flag_raised))  # fmt: skip
    b.add(box(0.012, 0.08, 0.06), tint(rng, 0.0, 0.9, 0.75), at=pivot + rot_x(-flag_raised) @ np.array([0, 0.04, 0.15]),
          rotation=rot_x(-flag_raised))  # fmt: skip
    return b


def mug(rng: np.random.Generator) -> Builder:
    """Cup of revolution with a large, thick loop handle."""
    b = Builder()
    r, h = uniform(rng, 0.04, 0.055), uniform(rng, 0.08, 0.12)
    taper = uniform(rng, 0.8, 1.05)
    colour = any_colour(rng, s=(0.0, 0.7), v=(0.4, 0.9))
    b.add(shell([(0.0, 0.0), (r * taper, 0.0), (r, h)], 0.005, 28), colour)
    handle_r = h * uniform(rng, 0.38, 0.45)
    b.add(torus(handle_r, 0.011, arc=math.pi * 1.2, segments=14, sides=8), colour, at=(r * 0.95, 0, h * 0.5),
          rotation=rot_x(math.pi / 2) @ rot_z(-math.pi * 0.6))  # fmt: skip
    b.add(lathe([(r + 0.001, h * 0.3), (r + 0.001, h * 0.75)], 28, arc=uniform(rng, 1.2, 2.0)), any_colour(rng),
          rotation=rot_z(math.pi / 2))  # fmt: skip
    return b


def pot(rng: np.random.Generator) -> Builder:
    """Flowerpot with a rim and a branching plant whose stems and leaves grow in random directions."""
    b = Builder()
    r_bottom, r_top, h = uniform(rng, 0.06, 0.09), uniform(rng, 0.09, 0.13), uniform(rng, 0.1, 0.16)
    clay = tint(rng, 0.05, 0.6, 0.55, dh=0.04, dv=0.2)
    b.add(
        shell(
            [(0.0, 0.0), (r_bottom, 0.0), (r_top, h), (r_top * 1.08, h), (r_top * 1.08, h * 1.12)], 0.008, 24
        ),
        clay,
    )
    b.add(cylinder(r_top * 0.95, 0.01, 24), tint(rng, 0.07, 0.6, 0.2), at=(0, 0, h * 0.9))
    green = tint(rng, 0.3, 0.6, 0.45, dh=0.05)
    stems = int(rng.integers(3, 6))
    for _ in range(stems):
        direction = np.array([rng.normal(), rng.normal(), abs(rng.normal()) + 1.2])
        direction /= np.linalg.norm(direction)
        length = uniform(rng, 0.12, 0.3)
        start = np.array([rng.normal() * r_top * 0.2, rng.normal() * r_top * 0.2, h * 0.9])
        mid = start + direction * length * 0.5 + np.array([rng.normal() * 0.03, rng.normal() * 0.03, 0.0])
        end = start + direction * length
        b.add(tube([start, mid, end], 0.004, 6), green)
        for point in (mid, end):
            angle = uniform(rng, 0.0, 2 * math.pi)
            b.add(ellipsoid(0.035, 0.015, 0.004, rings=6, segments=10), green,
                  at=point + 0.03 * np.array([math.cos(angle), math.sin(angle), 0.0]), rotation=rot_z(angle) @ rot_y(-0.4))  # fmt: skip
    return b
