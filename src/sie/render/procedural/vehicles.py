"""Templates: airplane, bus, car, motorbike, rocket, skateboard, train, watercraft.

Each template draws one instance from ``rng`` in the object frame (Z up, front towards +Y).
Vehicles point their nose to +Y; their bilateral (mirror) symmetry is harmless, and a distinct
front and back end breaks every rotational symmetry.
"""

from __future__ import annotations

import math

import numpy as np

from sie.render.procedural.parts import (
    DARK,
    GLASS,
    METAL,
    WHITE,
    Builder,
    any_colour,
    box,
    cone,
    cylinder,
    ellipsoid,
    lathe,
    rod,
    rot_x,
    rot_y,
    rot_z,
    rounded_box,
    side_profile,
    tint,
    top_profile,
    torus,
    uniform,
    wheel,
)

__all__ = ["airplane", "bus", "car", "motorbike", "rocket", "skateboard", "train", "watercraft"]


def airplane(rng: np.random.Generator) -> Builder:
    """Fuselage, swept wings, tailplane, fin and optional engines."""
    b = Builder()
    length, radius = uniform(rng, 3.0, 4.2), uniform(rng, 0.18, 0.3)
    body, accent = tint(rng, *WHITE), any_colour(rng)
    b.add(ellipsoid(radius, length / 2, radius * 1.1), body)
    span, chord, sweep = uniform(rng, 2.8, 4.2), uniform(rng, 0.5, 0.8), uniform(rng, 0.2, 0.7)
    wing_y = uniform(rng, -0.2, 0.15) * length
    half = [(0.0, chord / 2), (span / 2, chord / 2 - sweep), (span / 2, chord / 2 - sweep - chord * 0.35),
            (0.0, -chord / 2)]  # fmt: skip
    for side in (1, -1):
        poly = [(side * x, y) for x, y in half]
        b.add(top_profile(poly if side > 0 else poly[::-1], -0.03, 0.03), body, at=(0, wing_y, -radius * 0.3))
    tail_y = -length / 2 + 0.3
    tail = [(0.0, 0.25), (0.7, -0.05), (0.7, -0.25), (0.0, -0.25)]
    for side in (1, -1):
        poly = [(side * x, y) for x, y in tail]
        b.add(top_profile(poly if side > 0 else poly[::-1], -0.02, 0.02), body, at=(0, tail_y, radius * 0.3))
    fin_h = uniform(rng, 0.5, 0.9)
    fin = [(0.35, 0.0), (-0.05, fin_h), (-0.35, fin_h), (-0.4, 0.0)]
    b.add(side_profile(fin, 0.05), accent, at=(0, tail_y, radius * 0.6))
    if rng.random() < 0.7:
        for side in (1, -1):
            b.add(cylinder(0.11, 0.55, 16), tint(rng, *METAL), at=(side * span * 0.22, wing_y + 0.25, -radius - 0.08),
                  rotation=rot_x(math.pi / 2))  # fmt: skip
    b.add(
        box(radius * 1.2, 0.25, 0.08),
        tint(rng, *GLASS),
        at=(0, length * 0.42, radius * 0.55),
        rotation=rot_x(-0.4),
    )
    return b


def car(rng: np.random.Generator) -> Builder:
    """Side profile with a long low bonnet, raked windscreen and a shorter boot; four wheels, lights."""
    b = Builder()
    length, width = uniform(rng, 3.8, 4.8), uniform(rng, 1.6, 1.9)
    sill, body_h, cabin_h = 0.3, uniform(rng, 0.45, 0.65), uniform(rng, 0.4, 0.55)
    bonnet, boot = uniform(rng, 0.3, 0.38) * length, uniform(rng, 0.12, 0.22) * length
    front, rear, top = length / 2, -length / 2, sill + body_h
    profile = [(rear, sill), (front, sill), (front, sill + body_h * 0.7), (front - bonnet, top),
               (front - bonnet - uniform(rng, 0.5, 0.8), top + cabin_h), (rear + boot + 0.3, top + cabin_h),
               (rear + boot, top), (rear, top - 0.05)]  # fmt: skip
    b.add(side_profile(profile, width), any_colour(rng, v=(0.35, 0.85)))
    glass = [(front - bonnet - 0.05, top + 0.02), (front - bonnet - uniform(rng, 0.5, 0.8) + 0.05, top + cabin_h - 0.06),
             (rear + boot + 0.35, top + cabin_h - 0.06), (rear + boot + 0.1, top + 0.02)]  # fmt: skip
    b.add(side_profile(glass, width * 1.01), tint(rng, *GLASS))
    r = uniform(rng, 0.3, 0.36)
    for x in (1, -1):
        for y in (front - bonnet * 0.55, rear + boot * 1.1):
            b.add(wheel(r, 0.24), tint(rng, *DARK), at=(x * width * 0.46, y, r))
    for x in (1, -1):
        b.add(box(0.3, 0.05, 0.1), tint(rng, *WHITE), at=(x * width * 0.32, front, sill + body_h * 0.55))
        b.add(
            box(0.08, 0.15, 0.08), tint(rng, *DARK), at=(x * width * 0.52, front - bonnet - 0.1, top + 0.05)
        )
    return b


def bus(rng: np.random.Generator) -> Builder:
    """School-bus style: a long body, an engine bonnet in front of the windscreen, a window band, a door."""
    b = Builder()
    length, width, height = uniform(rng, 8.0, 11.0), uniform(rng, 2.4, 2.6), uniform(rng, 2.9, 3.3)
    paint = any_colour(rng, v=(0.4, 0.85))
    bonnet = uniform(rng, 1.4, 2.0)
    front, rear = length / 2 - bonnet, -length / 2
    profile = [(rear, 0.35), (front, 0.35), (front, height), (rear + 0.2, height), (rear, height - 0.4)]
    b.add(side_profile(profile, width), paint)
    b.add(side_profile([(front - 0.1, 0.45), (front + bonnet, 0.45), (front + bonnet, 1.3), (front + bonnet * 0.2, 1.6),
                        (front - 0.1, 1.6)], width * 0.8), paint)  # fmt: skip
    b.add(
        box(width * 1.01, length * 0.62, height * 0.28),
        tint(rng, *GLASS),
        at=(0, rear + length * 0.35, height * 0.72),
    )
    b.add(box(width * 0.9, 0.05, height * 0.35), tint(rng, *GLASS), at=(0, front + 0.02, height * 0.75))
    b.add(box(0.12, 1.0, height * 0.7), tint(rng, *DARK), at=(width / 2, front - 0.7, 0.35 + height * 0.35))
    b.add(box(width * 0.85, 0.1, 0.3), tint(rng, *METAL), at=(0, front + bonnet + 0.05, 0.5))
    for x in (1, -1):
        b.add(rod((x * width / 2, front - 0.1, height * 0.6), (x * (width / 2 + 0.35), front + 0.3, height * 0.6), 0.05),
              tint(rng, *DARK))  # fmt: skip
    r = uniform(rng, 0.45, 0.55)
    for x in (1, -1):
        for y in (front + bonnet * 0.3, rear + 2.5):
            b.add(wheel(r, 0.3), tint(rng, *DARK), at=(x * width * 0.45, y, r))
    return b


def train(rng: np.random.Generator) -> Builder:
    """A locomotive: long hood, cab towards the rear, a sloped nose at the front, bogies, roof gear."""
    b = Builder()
    width, height = uniform(rng, 2.6, 3.0), uniform(rng, 3.2, 3.8)
    length = uniform(rng, 12.0, 16.0)
    paint, trim = any_colour(rng), any_colour(rng)
    nose = uniform(rng, 2.0, 3.5)
    front, rear = length / 2, -length / 2
    hood_h = height * uniform(rng, 0.7, 0.8)
    profile = [(rear, 0.9), (front, 0.9), (front, 1.5), (front - nose, hood_h), (rear + length * 0.3, hood_h),
               (rear + length * 0.3, height), (rear, height)]  # fmt: skip
    b.add(side_profile(profile, width), paint)
    b.add(side_profile(profile, width * 0.6), paint)
    b.add(
        box(width * 1.01, length * 0.22, 0.6), tint(rng, *GLASS), at=(0, rear + length * 0.15, height - 0.6)
    )
    b.add(box(width * 1.02, length, 0.3), trim, at=(0, 0, 1.1))
    for wy in (front - 2.5, rear + 2.5):
        b.add(box(width * 0.8, 3.0, 0.8), tint(rng, *DARK), at=(0, wy, 0.45))
    b.add(box(0.8, 2.0, 0.5), tint(rng, *METAL), at=(0, uniform(rng, -1.0, 2.0), hood_h + 0.25))
    b.add(rod((0, rear + 1.5, height), (0.3, rear + 2.5, height + 0.9), 0.05), tint(rng, *METAL))
    return b


def watercraft(rng: np.random.Generator) -> Builder:
    """Hull with a pointed bow, a cabin aft, a mast."""
    b = Builder()
    length, beam = uniform(rng, 6.0, 10.0), uniform(rng, 1.8, 3.0)
    depth = uniform(rng, 0.8, 1.3)
    bow = uniform(rng, 0.25, 0.4) * length
    hull_top = [(-beam / 2, -length / 2), (beam / 2, -length / 2), (beam / 2, length / 2 - bow), (0.0, length / 2),
                (-beam / 2, length / 2 - bow)]  # fmt: skip
    hull_colour = any_colour(rng)
    b.add(top_profile(hull_top, 0.0, depth), hull_colour)
    keel = [(-beam * 0.35, -length * 0.45), (beam * 0.35, -length * 0.45), (0.0, length * 0.45)]
    b.add(top_profile(keel, -0.4, 0.05), hull_colour)
    cabin_len = uniform(rng, 0.2, 0.35) * length
    cabin_y = -length / 2 + cabin_len / 2 + uniform(rng, 0.3, 1.0)
    b.add(box(beam * 0.7, cabin_len, uniform(rng, 0.8, 1.4)), tint(rng, *WHITE), at=(0, cabin_y, depth + 0.5))
    b.add(box(beam * 0.72, cabin_len * 0.8, 0.3), tint(rng, *GLASS), at=(0, cabin_y, depth + 0.8))
    mast_h = uniform(rng, 2.0, 5.0)
    b.add(rod((0, cabin_y + cabin_len / 2 + 0.8, depth), (0, cabin_y + cabin_len / 2 + 0.8, depth + mast_h), 0.06),
          tint(rng, *METAL))  # fmt: skip
    return b


def motorbike(rng: np.random.Generator) -> Builder:
    """Two wheels, a raked front fork, tank, seat towards the rear, handlebar."""
    b = Builder()
    wheelbase, r = uniform(rng, 1.3, 1.6), uniform(rng, 0.3, 0.36)
    rubber, frame, paint = tint(rng, *DARK), tint(rng, *METAL), any_colour(rng)
    front, rear = wheelbase / 2, -wheelbase / 2
    for y in (front, rear):
        b.add(torus(r - 0.05, 0.06, segments=24, sides=8), rubber, at=(0, y, r), rotation=rot_y(math.pi / 2))
        b.add(cylinder(0.08, 0.12, 12), frame, at=(0, y, r), rotation=rot_y(math.pi / 2))
    rake = uniform(rng, 0.35, 0.5)
    top = (0, front - math.tan(rake) * 0.75, r + 0.75)
    b.add(rod((0, front, r), top, 0.035), frame)
    b.add(rod((-0.35, top[1] - 0.05, top[2] + 0.05), (0.35, top[1] - 0.05, top[2] + 0.05), 0.025), frame)
    b.add(rod((0, rear, r), (0, 0.0, r + 0.25), 0.04), frame)
    b.add(rod((0, 0.0, r + 0.25), top, 0.045), frame)
    b.add(ellipsoid(0.16, 0.3, 0.13), paint, at=(0, top[1] - 0.35, r + 0.62))
    b.add(rounded_box(0.26, 0.55, 0.08, 0.4), tint(rng, *DARK), at=(0, rear + 0.45, r + 0.55))
    b.add(box(0.3, 0.4, 0.3), frame, at=(0, 0.0, r + 0.15))
    b.add(
        cylinder(0.07, 0.06, 14),
        tint(rng, *WHITE),
        at=(0, top[1] + 0.06, top[2] - 0.1),
        rotation=rot_x(math.pi / 2),
    )
    return b


def rocket(rng: np.random.Generator) -> Builder:
    """Body of revolution with a pointed nose, three unequal fins and a side booster."""
    b = Builder()
    radius, height = uniform(rng, 0.25, 0.4), uniform(rng, 3.0, 4.5)
    nose = uniform(rng, 0.6, 1.0)
    profile = [(0.0, 0.0), (radius * 0.8, 0.0), (radius, 0.3)]
    profile += [(radius, height - nose)]
    profile += [
        (radius * math.cos(a), height - nose + nose * math.sin(a)) for a in np.linspace(0.2, math.pi / 2, 6)
    ]
    body, accent = tint(rng, *WHITE), any_colour(rng)
    b.add(lathe(profile, 24), body)
    sizes = [1.0, uniform(rng, 0.5, 0.7), uniform(rng, 0.75, 0.9)]
    for k, size in enumerate(sizes):
        fin = [(0.0, 0.0), (0.9 * size, 0.0), (0.2 * size, 1.2 * size), (0.0, 1.3 * size)]
        part = side_profile(fin, 0.04)
        angle = k * 2 * math.pi / 3
        b.add(part, accent, at=(radius * math.cos(angle), radius * math.sin(angle), 0.05),
              rotation=rot_z(angle - math.pi / 2))  # fmt: skip
    booster_angle = math.pi / 3
    br = radius * uniform(rng, 0.35, 0.5)
    b.add(
        cylinder(br, height * 0.45, 16),
        accent,
        at=((radius + br) * math.cos(booster_angle), (radius + br) * math.sin(booster_angle), height * 0.25),
    )
    b.add(
        cone(br, 0.4, 16),
        accent,
        at=(
            (radius + br) * math.cos(booster_angle),
            (radius + br) * math.sin(booster_angle),
            height * 0.475 + 0.2,
        ),
    )
    b.add(
        cylinder(radius * 0.25, 0.05, 16),
        tint(rng, *GLASS),
        at=(0, radius, height * 0.6),
        rotation=rot_x(math.pi / 2),
    )
    return b


def skateboard(rng: np.random.Generator) -> Builder:
    """Deck with a steep nose kick and a shallow tail, trucks, four wheels, a graphic near the nose."""
    b = Builder()
    length, width = uniform(rng, 0.75, 0.85), uniform(rng, 0.19, 0.23)
    deck = any_colour(rng)
    flat = length * 0.6
    b.add(rounded_box(width, flat, 0.015, 0.3), deck, at=(0, 0, 0.1))
    nose_len, tail_len = length * 0.22, length * 0.18
    nose_angle, tail_angle = uniform(rng, 0.45, 0.6), uniform(rng, 0.12, 0.22)
    b.add(rounded_box(width, nose_len, 0.015, 0.3), deck,
          at=(0, flat / 2 + nose_len / 2 * math.cos(nose_angle), 0.1 + nose_len / 2 * math.sin(nose_angle)),
          rotation=rot_x(nose_angle))  # fmt: skip
    b.add(rounded_box(width, tail_len, 0.015, 0.3), deck,
          at=(0, -flat / 2 - tail_len / 2 * math.cos(tail_angle), 0.1 + tail_len / 2 * math.sin(tail_angle)),
          rotation=rot_x(-tail_angle))  # fmt: skip
    b.add(box(width * 0.8, flat * 0.3, 0.004), any_colour(rng), at=(0, flat * 0.3, 0.109))
    for y in (flat * 0.38, -flat * 0.38):
        b.add(box(width * 0.7, 0.05, 0.04), tint(rng, *METAL), at=(0, y, 0.07))
        for x in (1, -1):
            b.add(wheel(0.028, 0.03, 14), tint(rng, *WHITE), at=(x * width * 0.4, y, 0.03))
    return b
