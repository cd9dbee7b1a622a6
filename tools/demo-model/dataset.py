#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Procedural "toy world" video dataset for the Kinora demo model pack.

Every clip is 16 frames of 64x64 RGB: one coloured shape (circle, square, triangle) that moves
left / right / up / down, grows, shrinks or bounces, over a plain or gradient background, with an
English caption such as "a red circle moving right on a black background".

Everything is deterministic from a seed (numpy PCG64). Frames are float32 in [-1, 1], layout
[3, T, H, W] (channels first, like Open-Sora's video tensors).
"""
import argparse

import numpy as np

T, H, W = 16, 64, 64

COLOURS = {
    "red": (0.92, 0.12, 0.10),
    "green": (0.10, 0.80, 0.15),
    "blue": (0.12, 0.25, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "white": (0.97, 0.97, 0.97),
    "purple": (0.60, 0.15, 0.85),
    "orange": (1.00, 0.55, 0.05),
    "cyan": (0.10, 0.85, 0.90),
}
SHAPES = ["circle", "square", "triangle"]
MOTIONS = ["right", "left", "up", "down", "growing", "shrinking", "bouncing"]
# background name -> (top colour, bottom colour); equal colours = plain
BACKGROUNDS = {
    "black": ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    "gray": ((0.45, 0.45, 0.45), (0.45, 0.45, 0.45)),
    "white": ((0.98, 0.98, 0.98), (0.98, 0.98, 0.98)),
    "dark blue": ((0.02, 0.04, 0.25), (0.02, 0.04, 0.25)),
    "sunset gradient": ((0.35, 0.05, 0.30), (0.95, 0.45, 0.10)),
    "sky gradient": ((0.15, 0.35, 0.85), (0.75, 0.90, 1.00)),
}
BG_WEIGHTS = {"black": 0.55, "gray": 0.1, "white": 0.08, "dark blue": 0.1,
              "sunset gradient": 0.085, "sky gradient": 0.085}
MOTION_WEIGHTS = {"right": 0.19, "left": 0.19, "up": 0.19, "down": 0.19,
                  "growing": 0.08, "shrinking": 0.08, "bouncing": 0.08}


def caption(colour, shape, motion, bg):
    if motion in ("right", "left", "up", "down"):
        verb = "moving " + motion
    else:
        verb = motion
    art = "an" if colour[0] in "aeiou" else "a"
    return "%s %s %s %s on a %s background" % (art, colour, shape, verb, bg)


def _coverage(shape, cx, cy, r, yy, xx):
    """Anti-aliased coverage [T,H,W] of a shape with centre (cx,cy) and radius r (each [T,1,1])."""
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        sd = np.sqrt(dx * dx + dy * dy) - r
    elif shape == "square":
        s = r * 0.85
        sd = np.maximum(np.abs(dx), np.abs(dy)) - s
    else:  # upward equilateral triangle inscribed in radius 1.15 r
        R = r * 1.2
        # three half-planes: bottom edge y <= cy + R/2 ; two slanted edges
        e0 = dy - R * 0.5
        n = np.array([np.sqrt(3) / 2, -0.5])
        e1 = dx * n[0] + dy * n[1] - R * 0.5
        e2 = -dx * n[0] + dy * n[1] - R * 0.5
        sd = np.maximum(e0, np.maximum(e1, e2))
    return np.clip(0.5 - sd, 0.0, 1.0)


def render(colour, shape, motion, bg, rng, with_coverage=False, spread=1.0):
    """Render one clip; returns float32 [3,T,H,W] in [-1,1] (and the shape's coverage [T,H,W] in
    [0,1] when with_coverage).  spread scales the random variation of size, speed and position
    (1: the full range; small values make a caption determine its clip almost exactly)."""
    t = np.arange(T, dtype=np.float64)[:, None, None]
    yy = np.arange(H, dtype=np.float64)[None, :, None] + 0.5
    xx = np.arange(W, dtype=np.float64)[None, None, :] + 0.5

    def u(lo, hi):  # uniform in [lo, hi], shrunk around its centre by spread
        c, h = (lo + hi) / 2, (hi - lo) / 2 * spread
        return rng.uniform(c - h, c + h)
    r0 = u(7.0, 11.0)
    speed = u(1.6, 2.4)  # pixels per frame
    travel = speed * (T - 1)
    cx = np.full_like(t, 32.0)
    cy = np.full_like(t, 32.0)
    r = np.full_like(t, r0)
    if motion in ("right", "left", "up", "down"):
        # the object crosses the frame through its middle: it starts near one edge and travels
        # 24-36 px along the named axis, within 6 px of the centre line across it, so that a caption
        # determines the clip up to small jitter (what a tiny model can learn in an hour on a CPU)
        start = r0 + u(1, 5)
        pos = start + speed * t
        across = np.full_like(t, 32.0 + u(-6.0, 6.0))
        if motion in ("right", "left"):
            cx, cy = (pos if motion == "right" else W - pos), across
        else:
            cx, cy = across, (pos if motion == "down" else H - pos)
    elif motion in ("growing", "shrinking"):
        a, b = u(4.0, 6.0), u(15.0, 20.0)
        rr = a + (b - a) * t / (T - 1)
        r = rr if motion == "growing" else a + b - rr
        cx = cx * 0 + u(26, 38)
        cy = cy * 0 + u(26, 38)
    else:  # bouncing: up and down with a parabola, twice per clip
        ph = np.abs(np.sin(np.pi * (t / (T - 1)) * 2.0 + u(-0.2, 0.2)))
        cy = (H - r0 - 2) - ph * u(22, 30)
        cx = cx * 0 + u(r0 + 6, W - r0 - 6)
    cov = _coverage(shape, cx, cy, r, yy, xx)[None]  # [1,T,H,W]
    top, bot = (np.array(c, dtype=np.float64)[:, None, None, None] for c in BACKGROUNDS[bg])
    g = (np.arange(H, dtype=np.float64) / (H - 1))[None, None, :, None]
    bgimg = top * (1 - g) + bot * g
    col = np.array(COLOURS[colour], dtype=np.float64)[:, None, None, None]
    col = np.clip(col * u(0.9, 1.05), 0, 1)
    img = bgimg * (1 - cov) + col * cov
    img = (img * 2 - 1).astype(np.float32)
    return (img, cov[0].astype(np.float32)) if with_coverage else img


def sample_spec(rng):
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    motion = rng.choice(list(MOTION_WEIGHTS), p=np.array(list(MOTION_WEIGHTS.values())))
    while True:
        bg = rng.choice(list(BG_WEIGHTS), p=np.array(list(BG_WEIGHTS.values())))
        if not (bg == "white" and colour == "white"):
            break
    return colour, shape, str(motion), str(bg)


def make_clips(n, seed, render=True, with_coverage=False, spread=1.0):
    """Yields (caption, video [3,T,H,W] float32) for n clips, deterministic from seed; with
    with_coverage, (caption, video, coverage [T,H,W])."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        spec = sample_spec(rng)
        if with_coverage:
            yield (caption(*spec),) + globals()["render"](*spec, rng, with_coverage=True, spread=spread)
        else:
            yield caption(*spec), (globals()["render"](*spec, rng) if render else None)


def all_captions():
    out = []
    for c in COLOURS:
        for s in SHAPES:
            for m in MOTIONS:
                for b in BACKGROUNDS:
                    out.append(caption(c, s, m, b))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--png", help="write a strip of the clips to this PNG")
    args = ap.parse_args()
    rows = []
    for cap, v in make_clips(args.n, args.seed):
        print(cap)
        rows.append(np.concatenate(list(v.transpose(1, 2, 3, 0)), axis=1))
    if args.png:
        from PIL import Image
        img = ((np.concatenate(rows, 0) + 1) * 127.5).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(args.png)


if __name__ == "__main__":
    main()
