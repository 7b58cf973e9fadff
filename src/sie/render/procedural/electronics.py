"""Templates: camera, cellphone, clock, display, earphone, keyboard, laptop, loudspeaker, microphone,
printer, remote, telephone.

Each template draws one instance from ``rng`` in the object frame (Z up, front towards +Y).
Thin slabs (phones, remotes) are nearly symmetric under a half turn, so they get shapes that are
not: a flip phone opened at an angle, a tapered wedge, a handset lying off-centre.
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
    rod,
    rot_x,
    rot_y,
    rot_z,
    rounded_box,
    side_profile,
    tint,
    top_profile,
    torus,
    tube,
    uniform,
)

__all__ = [
    "camera",
    "cellphone",
    "clock",
    "display",
    "earphone",
    "keyboard",
    "laptop",
    "loudspeaker",
    "microphone",
    "printer",
    "remote",
    "telephone",
]


def camera(rng: np.random.Generator) -> Builder:
    """Body, a lens barrel off-centre at the front, a hand grip on one side, a viewfinder hump."""
    b = Builder()
    w, d, h = uniform(rng, 0.12, 0.15), uniform(rng, 0.06, 0.08), uniform(rng, 0.08, 0.1)
    body = tint(rng, *DARK, dv=0.15) if rng.random() < 0.7 else tint(rng, *METAL)
    b.add(rounded_box(w, d, h, 0.2), body, at=(0, 0, h / 2))
    lens_r, lens_len = uniform(rng, 0.025, 0.035), uniform(rng, 0.04, 0.09)
    lens_x = uniform(rng, -0.015, 0.005)
    b.add(cylinder(lens_r, lens_len, 24), tint(rng, *DARK, dv=0.1), at=(lens_x, d / 2 + lens_len / 2, h * 0.45),
          rotation=rot_x(math.pi / 2))  # fmt: skip
    b.add(
        cylinder(lens_r * 0.7, 0.004, 24),
        tint(rng, *GLASS),
        at=(lens_x, d / 2 + lens_len, h * 0.45),
        rotation=rot_x(math.pi / 2),
    )
    b.add(rounded_box(0.03, d * 1.3, h * 0.95, 0.3), body, at=(-w / 2 + 0.012, d * 0.15, h * 0.48))
    b.add(box(0.04, d * 0.7, 0.025), body, at=(lens_x, -d * 0.1, h + 0.012))
    b.add(cylinder(0.007, 0.008, 12), tint(rng, *METAL), at=(-w / 2 + 0.015, d * 0.2, h + 0.004))
    return b


def cellphone(rng: np.random.Generator) -> Builder:
    """A flip phone opened at an angle: keypad half, screen half, hinge, antenna stub."""
    b = Builder()
    w, length, t = uniform(rng, 0.045, 0.055), uniform(rng, 0.085, 0.1), uniform(rng, 0.01, 0.014)
    shell_colour = any_colour(rng, s=(0.0, 0.6), v=(0.2, 0.7))
    b.add(rounded_box(w, length, t, 0.3), shell_colour, at=(0, length / 2, t / 2))
    for row in range(4):
        for col in range(3):
            b.add(
                box(0.009, 0.007, 0.002),
                tint(rng, *WHITE),
                at=((col - 1) * 0.013, length * 0.25 + row * 0.012, t + 0.001),
            )
    opening = uniform(rng, 2.0, 2.6)
    hinge = np.array([0.0, 0.0, t])
    b.add(cylinder(t * 0.6, w * 0.9, 14), shell_colour, at=hinge, rotation=rot_y(math.pi / 2))
    upper = rot_x(opening)
    b.add(
        rounded_box(w, length, t * 0.8, 0.3),
        shell_colour,
        at=hinge + upper @ np.array([0.0, length / 2, t * 0.4]),
        rotation=upper,
    )
    b.add(
        box(w * 0.8, length * 0.6, 0.002),
        tint(rng, *GLASS),
        at=hinge + upper @ np.array([0.0, length * 0.55, -0.001]),
        rotation=upper,
    )
    b.add(rod(hinge + upper @ np.array([w * 0.35, length, t * 0.4]), hinge + upper @ np.array([w * 0.35, length + 0.02, t * 0.4]), 0.003),
          tint(rng, *DARK))  # fmt: skip
    return b


def clock(rng: np.random.Generator) -> Builder:
    """Mantel clock: arched case, a domed dial bezel at the front, hands, feet, a front step."""
    b = Builder()
    w, d, h = uniform(rng, 0.2, 0.3), uniform(rng, 0.08, 0.12), uniform(rng, 0.2, 0.3)
    case = tint(rng, 0.07, 0.6, 0.35, dv=0.2) if rng.random() < 0.6 else any_colour(rng)
    arch = [(w / 2 * math.cos(a), h * 0.6 + h * 0.4 * math.sin(a)) for a in np.linspace(0, math.pi, 10)]
    outline = [(-w / 2, 0.0), (w / 2, 0.0), *arch]
    outline = [outline[0], outline[1], *outline[2:]]
    front = top_profile(outline, -d / 2, d / 2)
    b.add(front, case, rotation=rot_x(math.pi / 2), at=(0, 0, 0))
    dial_r = min(w, h) * uniform(rng, 0.3, 0.38)
    dial_z = h * 0.6
    b.add(
        torus(dial_r, 0.008, segments=28, sides=6),
        tint(rng, *METAL),
        at=(0, d / 2 + 0.004, dial_z),
        rotation=rot_x(math.pi / 2),
    )
    b.add(
        ellipsoid(dial_r, dial_r * 0.25, dial_r, rings=8, segments=24),
        tint(rng, *WHITE),
        at=(0, d / 2, dial_z),
    )
    hour, minute = uniform(rng, 0, 2 * math.pi), uniform(rng, 0, 2 * math.pi)
    for angle, length in ((hour, 0.5), (minute, 0.8)):
        tip = (
            dial_r * length * math.sin(angle),
            d / 2 + dial_r * 0.26,
            dial_z + dial_r * length * math.cos(angle),
        )
        b.add(rod((0, d / 2 + dial_r * 0.26, dial_z), tip, 0.003, 6), tint(rng, *DARK))
    b.add(box(w * 1.15, d * 1.6, 0.02), case, at=(0, d * 0.25, 0.01))
    return b


def display(rng: np.random.Generator) -> Builder:
    """Monitor: thin screen, a bulging back, a neck and a base reaching forward."""
    b = Builder()
    w, h = uniform(rng, 0.45, 0.7), uniform(rng, 0.3, 0.42)
    plastic = tint(rng, *DARK, dv=0.15) if rng.random() < 0.7 else tint(rng, *WHITE)
    lift = uniform(rng, 0.08, 0.15)
    b.add(box(w, 0.025, h), plastic, at=(0, 0, lift + h / 2))
    b.add(box(w * 0.95, 0.004, h * 0.92), tint(rng, *GLASS, dv=0.1), at=(0, 0.013, lift + h / 2))
    b.add(rounded_box(w * 0.6, 0.07, h * 0.6, 0.4), plastic, at=(0, -0.045, lift + h * 0.5))
    b.add(box(0.05, 0.03, lift + h * 0.3), plastic, at=(0, -0.09, (lift + h * 0.3) / 2))
    b.add(
        rounded_box(uniform(rng, 0.2, 0.3), uniform(rng, 0.18, 0.24), 0.02, 0.3), plastic, at=(0, -0.02, 0.01)
    )
    return b


def earphone(rng: np.random.Generator) -> Builder:
    """Headphones: headband arc, two ear cups, a microphone boom and a cable on the left cup."""
    b = Builder()
    span, cup_r = uniform(rng, 0.15, 0.19), uniform(rng, 0.04, 0.055)
    plastic, pad = any_colour(rng, s=(0.0, 0.6), v=(0.15, 0.7)), tint(rng, *DARK, dv=0.1)
    b.add(
        torus(span / 2, 0.012, arc=math.pi, segments=20, sides=6),
        plastic,
        at=(0, 0, 0.1),
        rotation=rot_x(math.pi / 2),
    )
    for x in (1, -1):
        b.add(cylinder(cup_r, 0.035, 20), plastic, at=(x * span / 2, 0, 0.08), rotation=rot_y(math.pi / 2))
        b.add(
            cylinder(cup_r * 0.9, 0.015, 20),
            pad,
            at=(x * (span / 2 - 0.024), 0, 0.08),
            rotation=rot_y(math.pi / 2),
        )
    mic = [(-span / 2 - 0.02, 0.0, 0.06), (-span / 2 - 0.03, 0.05, 0.04), (-span / 2 - 0.01, 0.1, 0.02)]
    b.add(tube(mic, 0.004, 6), plastic)
    b.add(ellipsoid(0.008, 0.012, 0.008), pad, at=mic[-1])
    b.add(
        tube(
            [(-span / 2, -0.01, 0.05), (-span / 2, -0.02, -0.05), (-span / 2 + 0.05, -0.04, -0.12)], 0.003, 6
        ),
        pad,
    )
    return b


def keyboard(rng: np.random.Generator) -> Builder:
    """Wedge-shaped slab, a main key grid, a separate numeric pad on the right, a cable at the back left."""
    b = Builder()
    w, d = uniform(rng, 0.42, 0.46), uniform(rng, 0.14, 0.17)
    case = tint(rng, *DARK, dv=0.15) if rng.random() < 0.6 else tint(rng, *WHITE)
    keys = tint(rng, *WHITE, dv=0.5)
    back_h = uniform(rng, 0.025, 0.04)
    b.add(side_profile([(-d / 2, 0.0), (d / 2, 0.0), (d / 2, 0.012), (-d / 2, back_h)], w), case)
    pitch, numpad = 0.019, int(rng.random() < 0.8)
    cols = 15
    for row in range(5):
        y = d / 2 - 0.02 - row * pitch
        z = 0.012 + (back_h - 0.012) * (d / 2 - y) / d + 0.004
        for col in range(cols):
            b.add(box(0.016, 0.016, 0.006), keys, at=(-w / 2 + 0.02 + col * pitch, y, z))
        if numpad:
            for col in range(4):
                b.add(box(0.016, 0.016, 0.006), keys, at=(w / 2 - 0.085 + col * pitch, y, z))
    b.add(tube([(-w * 0.3, -d / 2, back_h * 0.6), (-w * 0.3, -d / 2 - 0.05, 0.01), (-w * 0.15, -d / 2 - 0.12, 0.005)],
               0.003, 6), case)  # fmt: skip
    return b


def laptop(rng: np.random.Generator) -> Builder:
    """Wedge-shaped base with raised keys and a touchpad, a thin lid open on a rear hinge, a screen."""
    b = Builder()
    w, d = uniform(rng, 0.3, 0.38), uniform(rng, 0.21, 0.26)
    front_t, back_t = uniform(rng, 0.008, 0.012), uniform(rng, 0.02, 0.03)
    shell_colour = any_colour(rng, s=(0.0, 0.3), v=(0.2, 0.8))
    b.add(side_profile([(-d / 2, 0.0), (d / 2, 0.0), (d / 2, front_t), (-d / 2, back_t)], w), shell_colour)
    keys = tint(rng, *DARK, dv=0.15)
    for row in range(5):
        y = -d * 0.35 + row * d * 0.09
        z = back_t + (front_t - back_t) * (y + d / 2) / d + 0.002
        for col in range(12):
            b.add(box(w * 0.06, d * 0.07, 0.004), keys, at=(-w * 0.4 + col * w * 0.073, y, z))
    b.add(
        box(w * 0.28, d * 0.22, 0.002), tint(rng, *METAL), at=(0, d * 0.3, front_t + (back_t - front_t) * 0.2)
    )
    opening = uniform(rng, 1.7, 2.1)
    hinge = np.array([0.0, -d / 2, back_t])
    lid = rot_x(math.pi - opening)
    lid_d = d * uniform(rng, 0.8, 0.88)  # the screen half is shorter than the base with its palm rest
    b.add(
        box(w, lid_d, 0.006), shell_colour, at=hinge + lid @ np.array([0.0, lid_d / 2, 0.003]), rotation=lid
    )
    b.add(
        box(w * 0.9, lid_d * 0.85, 0.002),
        tint(rng, *GLASS),
        at=hinge + lid @ np.array([0.0, lid_d / 2, -0.001]),
        rotation=lid,
    )
    b.add(
        cylinder(back_t * 0.6, w * 0.8, 16),
        shell_colour,
        at=hinge + np.array([0.0, -0.004, -back_t * 0.3]),
        rotation=rot_y(math.pi / 2),
    )
    return b


def loudspeaker(rng: np.random.Generator) -> Builder:
    """Cabinet with a woofer and a tweeter cone at different heights, a bass port, a rear terminal plate."""
    b = Builder()
    w, d, h = uniform(rng, 0.18, 0.28), uniform(rng, 0.2, 0.3), uniform(rng, 0.3, 0.5)
    wood = tint(rng, 0.07, 0.5, 0.3, dv=0.2) if rng.random() < 0.6 else tint(rng, *DARK)
    b.add(box(w, d, h), wood, at=(0, 0, h / 2))
    woofer_r = w * uniform(rng, 0.33, 0.42)
    b.add(
        cone(woofer_r, 0.03, 24),
        tint(rng, *DARK, dv=0.1),
        at=(0, d / 2 + 0.012, h * 0.35),
        rotation=rot_x(math.pi / 2),
    )
    b.add(
        torus(woofer_r, 0.008, segments=24, sides=6),
        tint(rng, *METAL),
        at=(0, d / 2 + 0.004, h * 0.35),
        rotation=rot_x(math.pi / 2),
    )
    b.add(ellipsoid(w * 0.1, 0.02, w * 0.1), tint(rng, *METAL), at=(w * 0.15, d / 2, h * 0.78))
    b.add(
        cylinder(w * 0.06, 0.01, 16),
        tint(rng, *DARK),
        at=(-w * 0.25, d / 2 + 0.004, h * 0.78),
        rotation=rot_x(math.pi / 2),
    )
    b.add(box(w * 1.1, d * 1.15, 0.03), tint(rng, *DARK), at=(0, d * 0.05, 0.015))
    b.add(box(w * 0.4, 0.01, h * 0.15), tint(rng, *METAL), at=(0, -d / 2 - 0.005, h * 0.2))
    return b


def microphone(rng: np.random.Generator) -> Builder:
    """Desk microphone: weighted base, an angled arm, the microphone with a ball grille, a cable."""
    b = Builder()
    metal, body = tint(rng, *METAL, dv=0.25), tint(rng, *DARK, dv=0.2)
    base_r = uniform(rng, 0.06, 0.09)
    b.add(cylinder(base_r, 0.02, 24), body, at=(0, 0, 0.01))
    arm_top = np.array([0.0, uniform(rng, -0.02, 0.03), uniform(rng, 0.15, 0.25)])
    b.add(rod((0, 0, 0.02), arm_top, 0.006), metal)
    tilt = uniform(rng, 0.5, 1.0)
    axis = rot_x(-tilt) @ np.array([0.0, 0.0, 1.0])
    handle_len = uniform(rng, 0.12, 0.17)
    b.add(
        cylinder(0.016, handle_len, 18, radius_top=0.022),
        body,
        at=arm_top + axis * handle_len * 0.3,
        rotation=rot_x(-tilt),
    )
    head_r = uniform(rng, 0.026, 0.034)
    b.add(
        ellipsoid(head_r, head_r, head_r, rings=10, segments=18),
        metal,
        at=arm_top + axis * (handle_len * 0.8 + head_r * 0.6),
    )
    b.add(
        box(0.008, 0.004, 0.015),
        tint(rng, 0.0, 0.8, 0.7),
        at=arm_top + axis * handle_len * 0.3 + np.array([0.0, 0.02, 0.0]),
    )
    b.add(
        tube([(0, -base_r, 0.01), (0.02, -base_r - 0.05, 0.005), (0.07, -base_r - 0.08, 0.003)], 0.003, 6),
        body,
    )
    return b


def printer(rng: np.random.Generator) -> Builder:
    """Box, paper tray raised at the back, output tray at the front, control panel on one corner."""
    b = Builder()
    w, d, h = uniform(rng, 0.4, 0.5), uniform(rng, 0.3, 0.4), uniform(rng, 0.15, 0.25)
    plastic = tint(rng, *WHITE, dv=0.2) if rng.random() < 0.5 else tint(rng, *DARK, dv=0.15)
    b.add(rounded_box(w, d, h, 0.15), plastic, at=(0, 0, h / 2))
    tray_tilt = uniform(rng, 0.3, 0.6)
    b.add(
        box(w * 0.7, 0.01, uniform(rng, 0.12, 0.2)),
        plastic,
        at=(0, -d / 2 + 0.02, h + 0.06),
        rotation=rot_x(tray_tilt),
    )
    b.add(box(w * 0.6, 0.15, 0.01), plastic, at=(0, d / 2 + 0.07, h * 0.3))
    b.add(
        box(w * 0.25, d * 0.2, 0.02),
        tint(rng, *DARK, dv=0.1),
        at=(w * 0.3, d * 0.3, h + 0.005),
        rotation=rot_x(-0.3),
    )
    b.add(box(w * 0.62, 0.01, 0.02), tint(rng, *DARK), at=(0, d / 2 + 0.003, h * 0.45))
    return b


def remote(rng: np.random.Generator) -> Builder:
    """Tapered, wedge-profiled slab with a round pad near the top and rows of buttons below."""
    b = Builder()
    length, top_w, bottom_w = uniform(rng, 0.16, 0.22), uniform(rng, 0.045, 0.055), uniform(rng, 0.03, 0.04)
    case = tint(rng, *DARK, dv=0.15) if rng.random() < 0.7 else any_colour(rng)
    outline = [
        (-bottom_w / 2, -length / 2),
        (bottom_w / 2, -length / 2),
        (top_w / 2, length / 2),
        (-top_w / 2, length / 2),
    ]
    b.add(top_profile(outline, 0.0, 0.015), case)
    b.add(side_profile([(-length / 2, 0.0), (-length / 2 + 0.06, 0.0), (-length / 2 + 0.06, 0.02), (-length / 2, 0.028)], bottom_w * 0.9),
          case)  # fmt: skip
    b.add(cylinder(top_w * 0.3, 0.006, 20), tint(rng, *METAL), at=(0, length * 0.28, 0.017))
    b.add(cylinder(0.006, 0.004, 12), tint(rng, 0.0, 0.9, 0.7), at=(top_w * 0.3, length * 0.43, 0.016))
    for row in range(4):
        for col in range(3):
            b.add(
                box(0.008, 0.006, 0.004),
                tint(rng, *WHITE, dv=0.3),
                at=((col - 1) * 0.012, -length * 0.05 - row * 0.012, 0.017),
            )
    return b


def telephone(rng: np.random.Generator) -> Builder:
    """Desk phone: sloped base with a keypad, a handset lying on one side of it, a coiled cord."""
    b = Builder()
    w, d = uniform(rng, 0.18, 0.23), uniform(rng, 0.18, 0.22)
    plastic = any_colour(rng, s=(0.0, 0.5), v=(0.15, 0.8))
    b.add(side_profile([(-d / 2, 0.0), (d / 2, 0.0), (d / 2, 0.02), (-d / 2, 0.06)], w), plastic)
    for row in range(4):
        for col in range(3):
            b.add(
                box(0.014, 0.012, 0.006),
                tint(rng, *WHITE),
                at=(w * 0.15 + (col - 1) * 0.02, d * 0.25 - row * 0.022, 0.04 - row * 0.004),
            )
    handset_x = -w * 0.25
    b.add(rounded_box(0.045, d * 1.05, 0.03, 0.4), plastic, at=(handset_x, 0, 0.075))
    for y in (d * 0.45, -d * 0.45):
        b.add(ellipsoid(0.028, 0.03, 0.018), plastic, at=(handset_x, y, 0.07))
    cord = [(handset_x - 0.03, -d * 0.5 + 0.01 * k, 0.03 + 0.015 * math.sin(k * 1.3)) for k in range(8)]
    b.add(tube(cord, 0.004, 6), plastic)
    b.add(box(0.03, 0.01, 0.01), tint(rng, *METAL), at=(w * 0.35, d * 0.35, 0.03), rotation=rot_z(0.3))
    return b
