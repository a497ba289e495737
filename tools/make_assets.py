#!/usr/bin/env python
"""Draw the example reference images in assets/ (PIL + numpy only, deterministic).

    python tools/make_assets.py                 # writes assets/*.png
    python tools/make_assets.py --out /tmp/a    # somewhere else
    python tools/make_assets.py --only cat_windowsill

Every picture is painted at SS times its size in float RGB and then downsampled
with LANCZOS, so edges come out smooth. Rounded "3D" parts (the kitten, the
robot) are heightfields built from ellipsoid / superellipsoid blobs: their
normals give soft key light, wrap-around fill, rim light and a small specular
highlight. Soft light (glows, beams, sunlight patches) is a mask blurred with
ImageFilter.GaussianBlur. No randomness except a seeded numpy Generator.
"""

from __future__ import annotations

import argparse
import math
from math import comb
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSET_DIR = REPO_ROOT / "assets"
SS = 3  # supersampling factor
F32 = np.float32


# --------------------------------------------------------------------------- helpers


def col(c) -> np.ndarray:
    return np.asarray(c, F32)


def smoothstep(e0: float, e1: float, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def ramp(t, stops) -> np.ndarray:
    """Multi-stop colour gradient: stops = [(position, (r, g, b)), ...] -> (..., 3)."""
    t = np.asarray(t, F32)
    pos = [s[0] for s in stops]
    return np.stack([np.interp(t, pos, [s[1][i] for s in stops]) for i in range(3)], axis=-1).astype(F32)


def bezier(points, n: int = 64) -> np.ndarray:
    pts = np.asarray(points, np.float64)
    k = len(pts) - 1
    t = np.linspace(0.0, 1.0, n)[:, None]
    return sum(comb(k, i) * t**i * (1 - t) ** (k - i) * pts[i] for i in range(k + 1))


def box_blur(a: np.ndarray, r: int, passes: int = 2) -> np.ndarray:
    """Separable box blur (numpy, float) repeated `passes` times; r in array pixels."""
    if r < 1:
        return a
    out = a.astype(F32)
    for _ in range(passes):
        for axis in (0, 1):
            pad = [(0, 0)] * out.ndim
            pad[axis] = (r + 1, r)
            c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis, dtype=np.float64)
            hi = np.take(c, np.arange(2 * r + 1, c.shape[axis]), axis=axis)
            lo = np.take(c, np.arange(0, c.shape[axis] - 2 * r - 1), axis=axis)
            out = ((hi - lo) / (2 * r + 1)).astype(F32)
    return out


class Light:
    """Key light + ambient + rim + specular, all colours 0..~1.5 multipliers."""

    def __init__(
        self,
        key_dir=(-0.5, -0.6, 0.62),
        key=(1.0, 0.95, 0.85),
        ambient=(0.35, 0.33, 0.38),
        wrap=0.35,
        rim_dir=None,
        rim=(0, 0, 0),
        rim_pow=3.0,
        spec=0.0,
        shine=30.0,
    ):
        d = np.asarray(key_dir, np.float64)
        self.key_dir = d / np.linalg.norm(d)
        self.key, self.ambient, self.wrap = col(key), col(ambient), wrap
        self.rim_dir = None if rim_dir is None else np.asarray(rim_dir, np.float64) / np.linalg.norm(rim_dir)
        self.rim, self.rim_pow = col(rim), rim_pow
        half = self.key_dir + np.array([0.0, 0.0, 1.0])
        self.half = half / np.linalg.norm(half)
        self.spec, self.shine = spec, shine

    def shade(self, albedo: np.ndarray, nx, ny, nz, spec=None) -> np.ndarray:
        kd = self.key_dir
        d = nx * kd[0] + ny * kd[1] + nz * kd[2]
        diff = np.clip((d + self.wrap) / (1.0 + self.wrap), 0.0, 1.0)
        out = albedo * (self.ambient + self.key * diff[..., None])
        if self.rim_dir is not None:
            side = np.clip(nx * self.rim_dir[0] + ny * self.rim_dir[1] + 0.25, 0.0, 1.0)
            out = out + 255.0 * self.rim * ((1.0 - nz) ** self.rim_pow * side)[..., None]
        ks = self.spec if spec is None else spec
        if ks:
            h = self.half
            s = np.clip(nx * h[0] + ny * h[1] + nz * h[2], 0.0, 1.0) ** self.shine
            out = out + 255.0 * ks * s[..., None]
        return out


class Canvas:
    """A float RGB picture at SS x the output size; all coordinates are output pixels."""

    def __init__(self, width: int, height: int, ss: int = SS):
        self.w, self.h, self.ss = width, height, ss
        self.W, self.H = width * ss, height * ss
        self.px = np.zeros((self.H, self.W, 3), F32)
        self.X = ((np.arange(self.W, dtype=F32) + 0.5) / ss)[None, :]
        self.Y = ((np.arange(self.H, dtype=F32) + 0.5) / ss)[:, None]

    # ---- regions
    def region(self, x0, y0, x1, y1):
        s = self.ss
        c0, c1 = max(0, int(math.floor(x0 * s))), min(self.W, int(math.ceil(x1 * s)))
        r0, r1 = max(0, int(math.floor(y0 * s))), min(self.H, int(math.ceil(y1 * s)))
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    # ---- painting (full-size masks are cropped to where they are non-zero: same result, less work)
    def _footprint(self, alpha):
        rows = np.flatnonzero(alpha.any(axis=1))
        cols = np.flatnonzero(alpha.any(axis=0))
        if rows.size == 0:
            return None
        return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)

    def _crop(self, arr, reg):
        arr = np.asarray(arr, F32)
        if arr.ndim < 2:
            return arr
        return arr[reg[0] if arr.shape[0] == self.H else slice(None), reg[1] if arr.shape[1] == self.W else slice(None)]

    def paint(self, color, alpha=None, region=None):
        """Normal blend of `color` through `alpha`. With `region`, alpha/colour images are region-sized."""
        color = np.asarray(color, F32)
        if alpha is None:
            self.px[...] = color
            return
        if region is None:
            region = self._footprint(alpha)
            if region is None:
                return
            alpha, color = alpha[region], self._crop(color, region)
        dst = self.px[region]
        dst += (color - dst) * alpha[..., None]

    def add(self, color, alpha):
        """Additive light: px += color * alpha."""
        reg = self._footprint(alpha)
        if reg is not None:
            self.px[reg] += self._crop(color, reg) * alpha[reg][..., None]

    def multiply(self, color, alpha):
        """Multiply by `color`/255 through alpha (shadows, tints)."""
        reg = self._footprint(alpha)
        if reg is not None:
            self.px[reg] *= 1.0 + (self._crop(color, reg) / 255.0 - 1.0) * alpha[reg][..., None]

    def vgrad(self, y0, y1, stops, alpha=None):
        """Vertical multi-stop gradient from y0 to y1."""
        self.paint(ramp((self.Y - y0) / (y1 - y0), stops), alpha)

    def lin(self, p0, p1):
        """Linear ramp parameter 0 at p0 .. 1 at p1 (unclipped), full size."""
        dx, dy = p1[0] - p0[0], p1[1] - p0[1]
        return ((self.X - p0[0]) * dx + (self.Y - p0[1]) * dy) / (dx * dx + dy * dy)

    def radial(self, cx, cy, rx, ry=None):
        ry = rx if ry is None else ry
        return np.sqrt(((self.X - cx) / rx) ** 2 + ((self.Y - cy) / ry) ** 2)

    # ---- masks (full size, float 0..1)
    def _draw(self, fn, blur=0.0):
        im = Image.new("L", (self.W, self.H), 0)
        fn(ImageDraw.Draw(im), self.ss)
        m = np.asarray(im, F32) / 255.0
        return self.blur(m, blur) if blur else m

    def poly(self, pts, blur=0.0):
        pts = [(float(x) * self.ss, float(y) * self.ss) for x, y in pts]
        return self._draw(lambda d, s: d.polygon(pts, fill=255), blur)

    def polys(self, list_of_pts, blur=0.0):
        def fn(d, s):
            for pts in list_of_pts:
                d.polygon([(float(x) * s, float(y) * s) for x, y in pts], fill=255)

        return self._draw(fn, blur)

    def rect(self, x0, y0, x1, y1, radius=0.0, blur=0.0):
        return self._draw(
            lambda d, s: d.rounded_rectangle((x0 * s, y0 * s, x1 * s - 1, y1 * s - 1), radius=radius * s, fill=255),
            blur,
        )

    def dots(self, centres, radius, blur=0.0):
        def fn(d, s):
            for x, y, *r in centres:
                rr = (r[0] if r else radius) * s
                d.ellipse((x * s - rr, y * s - rr, x * s + rr, y * s + rr), fill=255)

        return self._draw(fn, blur)

    def ellipse(self, cx, cy, rx, ry=None, angle=0.0, blur=0.0, feather=0.0):
        """Anti-aliased ellipse; feather (output px) softens the edge inward/outward."""
        ry = rx if ry is None else ry
        pad = 2 + feather
        reg = self.region(
            cx - max(rx, ry) - pad, cy - max(rx, ry) - pad, cx + max(rx, ry) + pad, cy + max(rx, ry) + pad
        )
        m = np.zeros((self.H, self.W), F32)
        X, Y = self.X[:, reg[1]], self.Y[reg[0], :]
        ca, sa = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        u = ((X - cx) * ca + (Y - cy) * sa) / rx
        v = (-(X - cx) * sa + (Y - cy) * ca) / ry
        dist = (1.0 - np.sqrt(u * u + v * v)) * min(rx, ry)  # ~ signed distance, output px
        width = max(feather, 1.0 / self.ss)
        m[reg] = np.clip(dist / width + 0.5, 0.0, 1.0) if feather == 0 else smoothstep(-feather / 2, feather / 2, dist)
        if blur:
            m = self.blur(m, blur)
        return m

    def stroke(self, pts, w0, w1=None, blur=0.0, caps=True):
        """A tapering stroke along a polyline (e.g. bezier(...)); width w0 -> w1 in output px."""
        pts = np.asarray(pts, np.float64)
        w1 = w0 if w1 is None else w1
        seg = np.gradient(pts, axis=0)
        nrm = np.stack([-seg[:, 1], seg[:, 0]], 1)
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-9)
        half = np.linspace(w0, w1, len(pts))[:, None] / 2
        left, right = pts + nrm * half, pts - nrm * half
        poly = np.concatenate([left, right[::-1]])

        def fn(d, s):
            d.polygon([(x * s, y * s) for x, y in poly], fill=255)
            if caps:
                for (x, y), r in ((pts[0], w0 / 2), (pts[-1], w1 / 2)):
                    d.ellipse((x * s - r * s, y * s - r * s, x * s + r * s, y * s + r * s), fill=255)

        return self._draw(fn, blur)

    def blur(self, m, radius):
        """GaussianBlur of a mask (8-bit), worked out only around where the mask is non-zero."""
        out = np.zeros((self.H, self.W), F32)
        reg = self._footprint(m > 0.5 / 255.0)
        if reg is None:
            return out
        pad = int(math.ceil(4 * radius * self.ss)) + 2
        reg = (
            slice(max(0, reg[0].start - pad), min(self.H, reg[0].stop + pad)),
            slice(max(0, reg[1].start - pad), min(self.W, reg[1].stop + pad)),
        )
        im = Image.fromarray((np.clip(m[reg], 0, 1) * 255.0 + 0.5).astype(np.uint8))
        out[reg] = np.asarray(im.filter(ImageFilter.GaussianBlur(radius * self.ss)), F32) / 255.0
        return out

    def blurred(self, radius) -> np.ndarray:
        """A blurred copy of the picture (depth of field)."""
        im = Image.fromarray(np.clip(self.px + 0.5, 0, 255).astype(np.uint8))
        return np.asarray(im.filter(ImageFilter.GaussianBlur(radius * self.ss)), F32)

    # ---- shaded 3D-ish parts
    def part(self, blobs, albedo, light: Light, overlays=(), smooth=1.0, soft=1.0, spec=None, opacity=1.0):
        """Paint a rounded part made of blobs; returns its coverage mask (full size).

        blob: dict(cx, cy, rx, ry, angle=0, p=2 (outline: 2 ellipse, 4+ rounded box),
                   q=2 (profile: 2 dome, 4+ flat top), depth=min(rx,ry), lift=0, add=False,
                   tufts=(count, amplitude, phase) for fluffy outlines)
        albedo: (3,) colour; overlays: [(full-size mask, colour)] painted onto the albedo.
        """
        s = self.ss
        xs0 = min(b["cx"] - max(b["rx"], b["ry"]) for b in blobs) - 4
        xs1 = max(b["cx"] + max(b["rx"], b["ry"]) for b in blobs) + 4
        ys0 = min(b["cy"] - max(b["rx"], b["ry"]) for b in blobs) - 4
        ys1 = max(b["cy"] + max(b["rx"], b["ry"]) for b in blobs) + 4
        reg = self.region(xs0, ys0, xs1, ys1)
        Hh = np.zeros((reg[0].stop - reg[0].start, reg[1].stop - reg[1].start), F32)
        Fd = np.full(Hh.shape, -1e3, F32)
        for b in blobs:
            rx, ry = b["rx"], b["ry"]
            rr = max(rx, ry) * (1.0 + (b.get("tufts") or (0, 0, 0))[1]) + 2
            sub = self.region(b["cx"] - rr, b["cy"] - rr, b["cx"] + rr, b["cy"] + rr)
            sub = (
                slice(max(sub[0].start, reg[0].start), min(sub[0].stop, reg[0].stop)),
                slice(max(sub[1].start, reg[1].start), min(sub[1].stop, reg[1].stop)),
            )
            loc = (
                slice(sub[0].start - reg[0].start, sub[0].stop - reg[0].start),
                slice(sub[1].start - reg[1].start, sub[1].stop - reg[1].start),
            )
            X, Y = self.X[:, sub[1]] - b["cx"], self.Y[sub[0], :] - b["cy"]
            a = math.radians(b.get("angle", 0.0))
            ca, sa = math.cos(a), math.sin(a)
            u, v = (X * ca + Y * sa) / rx, (-X * sa + Y * ca) / ry
            p, q = b.get("p", 2.0), b.get("q", 2.0)
            r = (np.abs(u) ** p + np.abs(v) ** p) ** (1.0 / p)
            if b.get("tufts"):
                n, amp, ph = b["tufts"]
                theta = np.arctan2(v, u)
                r = r / (1.0 + amp * (0.5 + 0.5 * np.cos(n * theta + ph)) ** 3)
            depth = b.get("depth", min(rx, ry))
            inside = r < 1.0
            h = b.get("lift", 0.0) + depth * np.clip(1.0 - np.minimum(r, 1.0) ** q, 0.0, 1.0) ** (1.0 / q)
            if b.get("add"):
                Hh[loc] = Hh[loc] + np.where(inside, h, 0.0)
            else:
                Hh[loc] = np.where(inside, np.maximum(Hh[loc], h), Hh[loc])
            Fd[loc] = np.maximum(Fd[loc], (1.0 - r) * min(rx, ry))
        if smooth:
            Hh = box_blur(Hh, max(1, int(round(smooth * s))))
        gy, gx = np.gradient(Hh)
        nx, ny, nz = -gx * s, -gy * s, np.ones_like(Hh)
        norm = np.sqrt(nx * nx + ny * ny + 1.0)
        nx, ny, nz = nx / norm, ny / norm, nz / norm
        alpha = np.clip(Fd * s / soft + 0.5, 0.0, 1.0)
        alpha = alpha * (opacity[reg] if isinstance(opacity, np.ndarray) else opacity)
        alb = np.empty(Hh.shape + (3,), F32)
        alb[...] = np.asarray(albedo, F32)
        for mask, c in overlays:
            m = mask[reg]
            alb += (np.asarray(c, F32) - alb) * m[..., None]
        shaded = light.shade(alb, nx, ny, nz, spec)
        self.paint(shaded, alpha, reg)
        full = np.zeros((self.H, self.W), F32)
        full[reg] = alpha
        return full

    # ---- output
    def image(self) -> Image.Image:
        chans = []
        for i in range(3):
            ch = Image.fromarray(np.ascontiguousarray(self.px[..., i], dtype=F32))
            ch = ch.resize((self.w, self.h), Image.Resampling.LANCZOS)
            chans.append(np.asarray(ch, F32))
        out = np.clip(np.stack(chans, -1) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(out)


def tube(points, r0, r1, n=None, **extra):
    """Blobs (spheres) along a path: tails, legs, arms."""
    pts = np.asarray(points, np.float64)
    n = n or len(pts)
    idx = np.linspace(0, len(pts) - 1, n)
    out = []
    for i, k in enumerate(idx):
        lo = int(math.floor(k))
        hi = min(lo + 1, len(pts) - 1)
        x, y = pts[lo] + (pts[hi] - pts[lo]) * (k - lo)
        r = r0 + (r1 - r0) * i / max(1, n - 1)
        out.append(dict(cx=float(x), cy=float(y), rx=r, ry=r, **extra))
    return out


def rounded(cv: Canvas, mask, r):
    """Round the corners of a hard mask (blur + re-threshold)."""
    return smoothstep(0.42, 0.58, cv.blur(mask, r))


# --------------------------------------------------------------------------- cat on a windowsill


def draw_cat_windowsill() -> Image.Image:
    W, H = 832, 480
    cv = Canvas(W, H)
    X, Y = cv.X, cv.Y

    # ---- the room: warm wall, soft bounce light around the window
    cv.vgrad(0, H, [(0.0, (214, 160, 122)), (0.6, (226, 174, 134)), (1.0, (196, 140, 104))])
    cv.add((60, 38, 12), np.clip(1.0 - cv.radial(420, 190, 520, 330), 0, 1) ** 1.5)

    # ---- the view outside, painted on its own canvas then softened (depth of field)
    out = Canvas(W, H)
    out.vgrad(30, 240, [(0.0, (122, 176, 226)), (0.55, (178, 208, 232)), (1.0, (246, 226, 196))])
    out.add((70, 50, 20), np.clip(1.0 - out.radial(690, 30, 330, 240), 0, 1) ** 2)
    cloud = out.dots(
        [(230, 70, 26), (262, 60, 30), (296, 72, 24), (200, 80, 16), (520, 52, 18), (548, 46, 22), (576, 56, 16)],
        0,
        blur=4,
    )
    out.paint((255, 250, 244), cloud * 0.85)
    leaf_light = Light(
        key_dir=(0.6, -0.7, 0.5),
        key=(1.0, 0.95, 0.75),
        ambient=(0.45, 0.5, 0.5),
        wrap=0.4,
        rim_dir=(0.8, -0.6),
        rim=(0.25, 0.22, 0.08),
    )
    # far trees behind the houses
    for x, y, r, g in [
        (150, 150, 46, (92, 140, 70)),
        (214, 138, 40, (104, 150, 74)),
        (455, 140, 44, (86, 134, 72)),
        (505, 156, 34, (100, 146, 78)),
        (700, 130, 56, (88, 136, 70)),
    ]:
        out.part(
            [
                dict(cx=x, cy=y, rx=r, ry=r * 0.9),
                dict(cx=x - r * 0.55, cy=y + r * 0.3, rx=r * 0.6, ry=r * 0.55),
                dict(cx=x + r * 0.5, cy=y + r * 0.35, rx=r * 0.55, ry=r * 0.5),
                dict(cx=x + r * 0.1, cy=y - r * 0.45, rx=r * 0.55, ry=r * 0.5),
            ],
            g,
            leaf_light,
            smooth=3,
        )
    # houses across the street
    houses = [  # x0, x1, wall top, roof peak, wall colour, roof colour
        (168, 318, 150, 104, (238, 214, 178), (178, 92, 74)),
        (326, 470, 164, 122, (196, 212, 222), (110, 112, 140)),
        (530, 690, 146, 98, (244, 196, 160), (150, 86, 84)),
    ]
    base = 232
    for x0, x1, top, peak, wall, roof in houses:
        body = out.rect(x0, top, x1, base)
        shade = np.clip((X - x0) / (x1 - x0), 0, 1)
        out.paint(ramp(shade, [(0, wall), (1, tuple(c * 0.86 for c in wall))]), body)
        out.paint(roof, out.poly([(x0 - 10, top + 2), ((x0 + x1) / 2, peak), (x1 + 10, top + 2)]))
        out.paint(tuple(c * 0.75 for c in roof), out.rect(x0 - 10, top, x1 + 10, top + 5))
        for wx in np.linspace(x0 + 24, x1 - 44, 3 if x1 - x0 > 145 else 2):
            out.paint((250, 246, 236), out.rect(wx - 2, top + 18, wx + 22, top + 46, radius=2))
            out.paint((132, 170, 200), out.rect(wx + 1, top + 21, wx + 19, top + 43))
            out.paint(
                (230, 240, 246),
                out.poly(
                    [
                        (wx + 1, top + 35),
                        (wx + 13, top + 21),
                        (wx + 17, top + 21),
                        (wx + 5, top + 43),
                        (wx + 1, top + 43),
                    ]
                )
                * 0.5,
            )
        dx = (x0 + x1) / 2 + 30
        out.paint((120, 84, 70), out.rect(dx, base - 38, dx + 20, base, radius=3))
    out.paint((200, 190, 176), out.rect(0, base - 4, W, base + 2))  # far curb
    # street and the near sidewalk
    out.vgrad(base + 2, 262, [(0, (118, 114, 120)), (1, (138, 132, 134))], out.rect(0, base + 2, W, 262))
    out.paint((236, 214, 150), out.rect(0, 246, W, 248) * np.clip(np.sin(X / 9.0) * 4, 0, 1))
    out.paint((208, 196, 180), out.rect(0, 262, W, 300))
    out.paint((196, 182, 166), out.rect(0, 262, W, 265))
    joints = []
    for xb in range(40, 840, 88):
        xt = 416 + (xb - 416) * 0.72
        joints.append([(xt - 0.7, 262), (xt + 0.7, 262), (xb + 1, 300), (xb - 1, 300)])
    out.paint((186, 174, 160), out.polys(joints))
    # garden: lawn, bushes, flowers, a picket fence on the right
    out.vgrad(296, 340, [(0, (126, 176, 84)), (1, (96, 150, 64))], out.rect(0, 296, W, 340))
    bush_light = Light(key_dir=(0.6, -0.7, 0.5), key=(1.0, 0.95, 0.75), ambient=(0.42, 0.48, 0.46), wrap=0.4)
    for x, y, r in [
        (150, 318, 34),
        (196, 322, 28),
        (238, 324, 30),
        (560, 314, 30),
        (606, 318, 34),
        (660, 312, 38),
        (710, 320, 30),
    ]:
        out.part(
            [
                dict(cx=x, cy=y, rx=r, ry=r * 0.8),
                dict(cx=x - r * 0.45, cy=y + r * 0.2, rx=r * 0.6, ry=r * 0.5),
                dict(cx=x + r * 0.45, cy=y + r * 0.25, rx=r * 0.6, ry=r * 0.5),
            ],
            (84, 142, 66),
            bush_light,
            smooth=2,
        )
    rng = np.random.default_rng(7)
    for c, n in [((236, 96, 128), 30), ((255, 204, 70), 24), ((250, 246, 250), 14), ((200, 120, 220), 14)]:
        pts = [
            (
                float(rng.uniform(120, 260)) if i % 2 else float(rng.uniform(540, 730)),
                float(rng.uniform(298, 334)),
                float(rng.uniform(2.6, 4.2)),
            )
            for i in range(n)
        ]
        out.paint(c, out.dots(pts, 0))
    outside = out.blurred(1.3)
    outside = outside + (np.asarray((255, 236, 200), F32) - outside) * 0.12

    # ---- window: opening, glass sheen, frame
    ox0, oy0, ox1, oy1 = 140, 34, 700, 330
    opening = cv.rect(ox0, oy0, ox1, oy1)
    cv.paint(outside, opening)
    sheen = cv.polys(
        [
            [(300, 34), (360, 34), (180, 330), (120, 330)],
            [(390, 34), (410, 34), (230, 330), (210, 330)],
            [(640, 34), (700, 34), (700, 90), (560, 330), (520, 330)],
        ],
        blur=6,
    )
    cv.add((255, 250, 240), sheen * opening * 0.10)
    frame = np.clip(cv.rect(118, 12, 722, 336) - cv.rect(ox0, oy0, ox1, oy1), 0, 1)
    bars = cv.rect(ox0, 110, ox1, 122) + cv.rect(320, oy0, 332, 112) + cv.rect(508, oy0, 520, 112)
    frame = np.clip(frame + bars * opening, 0, 1)
    # frame shading: lit from the upper right, the jambs' inner edges a little darker
    cv.paint(ramp(cv.lin((118, 12), (722, 336)), [(0, (226, 212, 192)), (1, (248, 240, 226))]), frame)
    inner = np.clip(cv.rect(ox0 - 6, oy0 - 6, ox1 + 6, oy1 + 6) - opening, 0, 1) * frame
    cv.multiply((206, 186, 162), inner * np.clip(0.9 - cv.lin((ox0, oy0), (ox1, oy1)) * 0.6, 0, 1))
    cv.multiply((150, 120, 100), cv.blur(cv.rect(118, 12, 722, 18), 3) * (1 - opening))
    cv.multiply((120, 96, 90), cv.blur(bars * opening, 2.5) * (1 - bars) * opening * 0.5)
    cv.multiply(
        (170, 130, 100), np.clip(cv.blur(cv.rect(112, 8, 728, 340), 8) - cv.rect(118, 12, 722, 336), 0, 1) * 0.7
    )

    # ---- the sill: top surface in perspective and the front face
    top = cv.poly([(100, 328), (740, 328), (780, 380), (60, 380)])
    cv.paint(ramp(cv.lin((0, 328), (0, 380)), [(0, (226, 206, 180)), (1, (246, 234, 214))]), top)
    face = cv.rect(56, 379, 784, 406, radius=3)
    cv.paint(
        ramp(cv.lin((0, 379), (0, 406)), [(0, (252, 244, 230)), (0.2, (232, 218, 198)), (1, (208, 188, 164))]), face
    )
    cv.multiply((150, 104, 80), np.clip(cv.blur(cv.rect(60, 404, 780, 420), 6) - face, 0, 1) * 0.8)
    cv.multiply((178, 140, 108), cv.blur(cv.rect(100, 326, 740, 333), 2) * top * 0.9)
    # sunlight through the panes falling on the sill
    patch = cv.polys(
        [[(180, 334), (480, 334), (436, 376), (116, 376)], [(520, 334), (720, 334), (686, 376), (466, 376)]], blur=5
    )
    cv.add((46, 30, 8), patch * top)

    # ---- curtain on the left, soft folds
    folds = 0.5 + 0.5 * np.sin(X / 11.0 + np.sin(Y / 40.0) * 0.6)
    curtain = cv.poly([(0, 0), (96, 0), (104, 60), (90, 200), (78, 330), (88, 480), (0, 480)])
    cv.paint(
        ramp(folds, [(0, (150, 64, 54)), (0.6, (196, 96, 76)), (1, (224, 130, 100))])
        * (0.85 + 0.15 * np.clip(1 - Y / 480, 0, 1))[..., None],
        curtain,
    )
    cv.multiply((120, 80, 70), np.clip(cv.blur(curtain, 6) - curtain, 0, 1) * 0.6)

    curtain_r = cv.poly([(832, 0), (758, 0), (752, 60), (762, 200), (770, 330), (762, 480), (832, 480)])
    cv.paint(
        ramp(folds, [(0, (150, 64, 54)), (0.6, (196, 96, 76)), (1, (224, 130, 100))])
        * (0.85 + 0.15 * np.clip(1 - Y / 480, 0, 1))[..., None],
        curtain_r,
    )
    cv.multiply((120, 80, 70), np.clip(cv.blur(curtain_r, 6) - curtain_r, 0, 1) * 0.6)

    # ---- potted plant on the right of the sill
    pot = cv.poly([(612, 308), (680, 308), (672, 360), (620, 360)])
    pot_shade = np.clip((X - 612) / 68.0, 0, 1)
    cv.multiply((150, 110, 90), cv.ellipse(646, 361, 40, 6, blur=3) * 0.8)
    cv.paint(ramp(pot_shade, [(0, (170, 86, 56)), (0.65, (218, 126, 84)), (1, (180, 94, 60))]), pot)
    cv.paint(
        ramp(pot_shade, [(0, (186, 96, 64)), (0.65, (232, 142, 98)), (1, (192, 104, 68))]),
        cv.rect(606, 300, 686, 314, radius=3),
    )
    leaf = Light(
        key_dir=(0.6, -0.6, 0.55),
        key=(1.05, 1.0, 0.8),
        ambient=(0.38, 0.42, 0.4),
        wrap=0.4,
        rim_dir=(0.8, -0.6),
        rim=(0.3, 0.3, 0.1),
        spec=0.08,
        shine=20,
    )
    for ang, length, cx, cy, g in [
        (-60, 34, 628, 262, (70, 140, 70)),
        (-110, 32, 668, 258, (80, 150, 76)),
        (-20, 30, 690, 286, (72, 146, 74)),
        (-160, 30, 600, 286, (66, 136, 68)),
        (-85, 36, 648, 250, (90, 160, 80)),
        (-40, 26, 666, 286, (96, 166, 86)),
        (-135, 26, 624, 288, (88, 158, 82)),
    ]:
        a = math.radians(ang)
        lx, ly = cx - math.cos(a) * length * 0.4, cy - math.sin(a) * length * 0.4
        cv.part([dict(cx=lx, cy=ly, rx=length, ry=length * 0.36, angle=ang, p=2.0, depth=8)], g, leaf, smooth=1)
        vein = cv.stroke(
            [
                (lx - math.cos(a) * length * 0.8, ly - math.sin(a) * length * 0.8),
                (lx + math.cos(a) * length * 0.8, ly + math.sin(a) * length * 0.8),
            ],
            1.2,
            0.4,
        )
        cv.paint((150, 200, 120), vein * 0.5)

    draw_kitten(cv)

    # ---- grade: warm sun glow from the window, vignette
    glow = cv.blur(opening, 30)
    cv.add((40, 26, 6), glow * 0.8)
    vig = np.clip(cv.radial(W / 2, H / 2, W * 0.72, H * 0.78), 0, 1) ** 2.4
    cv.multiply((120, 90, 80), vig * 0.7)
    return cv.image()


def draw_kitten(cv: Canvas):
    Y = cv.Y
    fur, fur_dark, cream = (236, 142, 64), (188, 84, 32), (252, 234, 208)
    light = Light(
        key_dir=(0.55, -0.6, 0.6),
        key=(1.04, 0.94, 0.8),
        ambient=(0.44, 0.38, 0.4),
        wrap=0.55,
        rim_dir=(0.75, -0.65),
        rim=(0.5, 0.38, 0.2),
        rim_pow=3.0,
        spec=0.035,
        shine=12,
    )

    # contact shadow on the sill (sun from the upper right: shadow falls to the left)
    sh = cv.ellipse(318, 362, 96, 12, blur=5) + cv.poly([(240, 352), (330, 352), (230, 372), (150, 372)], blur=8) * 0.6
    cv.multiply((128, 84, 64), np.clip(sh, 0, 1) * 0.85)

    # body, haunches and chest
    stripes_body = cv.polys(
        [
            [(272, 282), (284, 276), (292, 300), (280, 306)],
            [(268, 310), (280, 304), (286, 326), (274, 330)],
            [(388, 282), (376, 276), (368, 300), (380, 306)],
            [(392, 310), (380, 304), (374, 326), (386, 330)],
            [(254, 330), (266, 324), (272, 346), (260, 350)],
            [(406, 330), (394, 324), (388, 346), (400, 350)],
        ],
        blur=2.5,
    )
    chest = cv.ellipse(330, 292, 36, 52, blur=7)
    cv.part(
        [
            dict(cx=330, cy=296, rx=64, ry=68, depth=56),
            dict(cx=282, cy=334, rx=38, ry=30, depth=40),
            dict(cx=378, cy=334, rx=38, ry=30, depth=40),
        ],
        fur,
        light,
        overlays=[(stripes_body, fur_dark), (chest, cream)],
        smooth=2,
    )
    # front legs and paws, the fluffy cream bib over their tops
    for x in (311, 349):
        cv.multiply((170, 110, 80), cv.ellipse(x, 318, 16, 34, blur=5) * 0.3)
        cv.part(
            tube([(x, 296), (x - 1, 350)], 13.5, 12.5, n=12),
            fur,
            light,
            smooth=1.5,
            overlays=[(cv.ellipse(x + (4 if x < 330 else -4), 334, 7, 24, blur=4), (248, 196, 140)), (chest, cream)],
            opacity=np.broadcast_to(smoothstep(298, 322, Y), (cv.H, cv.W)).copy(),
        )
        cv.part([dict(cx=x - 1, cy=355, rx=16.5, ry=10.5, depth=10)], cream, light, smooth=1)
        cv.paint(
            (214, 170, 140),
            cv.stroke([(x - 6, 351), (x - 6, 360)], 1.2, 0.6) + cv.stroke([(x + 4, 351), (x + 4, 360)], 1.2, 0.6),
        )

    # tail wrapped around the front paws
    path = bezier([(396, 344), (446, 378), (360, 376), (282, 372), (246, 356)], 48)
    bands = []
    for i in range(6, 46, 7):
        (x0, y0), (x1, y1) = path[i - 1], path[i + 1]
        dx, dy = x1 - x0, y1 - y0
        nrm = np.array([-dy, dx]) / math.hypot(dx, dy)
        c = path[i]
        bands.append(
            [
                tuple(c + nrm * 16 - (x1 - x0, y1 - y0)),
                tuple(c + nrm * 16 + (x1 - x0, y1 - y0)),
                tuple(c - nrm * 16 + (x1 - x0, y1 - y0)),
                tuple(c - nrm * 16 - (x1 - x0, y1 - y0)),
            ]
        )
    tail_stripes = cv.polys(bands, blur=1.5)
    cv.multiply((140, 96, 74), cv.stroke(path + (-4, 8), 18, 12, blur=4) * 0.5)
    cv.part(tube(path, 12, 8.5, n=48), fur, light, overlays=[(tail_stripes, fur_dark)], smooth=1.5)

    # ears (behind the head)
    for side in (-1, 1):
        cx = 330
        outer = [(cx + side * 74, 168), (cx + side * 14, 130), (cx + side * 64, 90)]
        inner = [(cx + side * 64, 160), (cx + side * 26, 136), (cx + side * 60, 103)]
        om = rounded(cv, cv.poly(outer), 3.5)
        cv.paint(
            ramp(cv.lin((cx + side * 40, 100), (cx + side * 40, 160)), [(0, (246, 160, 84)), (1, (206, 110, 50))]), om
        )
        cv.add((90, 60, 30), om * np.clip(cv.blur(1 - om, 2) * 2, 0, 1) * (0.9 if side > 0 else 0.35))
        im = rounded(cv, cv.poly(inner), 3)
        cv.paint(
            ramp(cv.lin((cx + side * 56, 108), (cx + side * 36, 156)), [(0, (250, 186, 182)), (1, (214, 126, 130))]),
            cv.blur(im, 1),
        )
        tufts = sum(
            cv.stroke(
                bezier(
                    [(cx + side * (40 + k * 3), 152), (cx + side * (46 + k * 5), 138), (cx + side * (50 + k * 6), 124)],
                    12,
                ),
                1.6,
                0.3,
            )
            for k in range(3)
        )
        cv.paint((255, 244, 232), np.clip(tufts, 0, 1) * 0.8)

    # head: skull, cheek fluff, muzzle
    forehead = cv.polys(
        [
            [(322, 126), (338, 126), (333, 160), (327, 160)],
            [(300, 130), (312, 126), (318, 154), (313, 155)],
            [(360, 130), (348, 126), (342, 154), (347, 155)],
        ],
        blur=1.8,
    )
    cheek_stripes = cv.polys(
        [
            [(248, 196), (252, 186), (282, 198), (280, 202)],
            [(250, 214), (254, 206), (282, 210), (281, 214)],
            [(412, 196), (408, 186), (378, 198), (380, 202)],
            [(410, 214), (406, 206), (378, 210), (379, 214)],
            [(276, 146), (286, 138), (296, 160), (291, 162)],
            [(384, 146), (374, 138), (364, 160), (369, 162)],
        ],
        blur=1.8,
    )
    muzzle = cv.ellipse(330, 238, 34, 22, blur=5)
    around_eyes = cv.ellipse(300, 200, 26, 28, blur=6) + cv.ellipse(360, 200, 26, 28, blur=6)
    cv.multiply((150, 96, 70), cv.ellipse(330, 262, 70, 14, blur=7) * 0.6)
    cv.part(
        [
            dict(cx=330, cy=186, rx=82, ry=66, depth=64),
            dict(cx=270, cy=218, rx=34, ry=28, depth=34, tufts=(6, 0.07, 0.6)),
            dict(cx=390, cy=218, rx=34, ry=28, depth=34, tufts=(6, 0.07, 2.54)),
            dict(cx=319, cy=236, rx=16, ry=12, depth=8, add=True),
            dict(cx=341, cy=236, rx=16, ry=12, depth=8, add=True),
            dict(cx=330, cy=250, rx=14, ry=9, depth=4, add=True),
        ],
        fur,
        light,
        overlays=[
            (forehead, fur_dark),
            (cheek_stripes, fur_dark),
            (np.clip(around_eyes, 0, 1) * 0.45, (250, 200, 150)),
            (muzzle, cream),
        ],
        smooth=2.5,
    )

    # eyes: big, glossy, curious
    for ex in (300, 360):
        ey, rx, ry = 198, 20.5, 23.5
        cv.paint((62, 34, 24), cv.ellipse(ex, ey, rx + 2.6, ry + 2.4))
        eye = cv.ellipse(ex, ey, rx, ry)
        t = cv.radial(ex, ey + 2, rx, ry)
        cv.paint(
            ramp(t, [(0, (214, 226, 104)), (0.5, (150, 190, 70)), (0.85, (92, 140, 52)), (1.0, (52, 84, 36))]), eye
        )
        cv.add((70, 60, 10), cv.ellipse(ex, ey + 11, 13, 8, blur=4) * eye)
        cv.paint((22, 16, 22), cv.ellipse(ex + 1, ey - 2, 11.5, 16))
        cv.multiply((90, 70, 70), eye * np.clip(1 - (Y - (ey - ry)) / (ry * 0.9), 0, 1) ** 1.5)
        cv.paint((255, 255, 255), cv.ellipse(ex + 6.5, ey - 9, 6.5, 7.5))
        cv.paint((255, 255, 255), cv.ellipse(ex - 6, ey + 9, 3.0))
        cv.add((40, 40, 40), cv.ellipse(ex + 6.5, ey - 9, 9, blur=3) * eye)

    # nose, mouth, whiskers
    nose = rounded(cv, cv.poly([(320, 222), (340, 222), (330, 233)]), 2.2)
    cv.paint(ramp(cv.lin((0, 222), (0, 233)), [(0, (246, 150, 158)), (1, (206, 104, 118))]), nose)
    cv.paint((255, 236, 238), cv.ellipse(326, 224.5, 3.2, 1.6) * 0.8)
    mouth = (
        cv.stroke([(330, 232), (330, 239)], 1.6)
        + cv.stroke(bezier([(330, 239), (326, 244), (320, 243)], 16), 1.6, 1.0)
        + cv.stroke(bezier([(330, 239), (334, 244), (340, 243)], 16), 1.6, 1.0)
    )
    cv.paint((140, 70, 62), np.clip(mouth, 0, 1))
    cv.paint((230, 120, 130), cv.ellipse(330, 246.5, 4, 2.5) * 0.8)
    for side in (-1, 1):
        for k, (dy, bend) in enumerate([(-8, -6), (0, 0), (8, 7)]):
            x0, y0 = 330 + side * 18, 236 + dy * 0.3
            x1, y1 = 330 + side * 108, 226 + dy * 2.2
            w = cv.stroke(bezier([(x0, y0), ((x0 + x1) / 2, (y0 + y1) / 2 - 8 + bend), (x1, y1)], 32), 1.4, 0.4)
            cv.paint((255, 250, 242), w * 0.9)
    for x, y in [(312, 238), (307, 232), (315, 231), (348, 238), (353, 232), (345, 231)]:
        cv.paint((176, 104, 80), cv.ellipse(x, y, 1.0))


# --------------------------------------------------------------------------- lighthouse on a rocky coast at dusk


def draw_lighthouse_coast() -> Image.Image:
    W, H = 832, 480
    cv = Canvas(W, H)
    X, Y = cv.X, cv.Y
    rng = np.random.default_rng(11)
    horizon = 300.0
    sun_x = 250.0

    # ---- sky, stars, moon, sun glow, clouds
    cv.vgrad(
        0,
        horizon,
        [
            (0.0, (22, 26, 68)),
            (0.3, (56, 48, 112)),
            (0.55, (132, 74, 132)),
            (0.78, (226, 118, 110)),
            (0.92, (252, 168, 112)),
            (1.0, (255, 212, 140)),
        ],
    )
    stars = [(float(rng.uniform(0, W)), float(rng.uniform(0, 150)), float(rng.uniform(0.5, 1.1))) for _ in range(90)]
    cv.add((255, 250, 235), cv.dots(stars, 0) * np.clip(1.1 - Y / 150.0, 0, 1))
    moon = np.clip(cv.ellipse(120, 64, 15) - cv.ellipse(127, 59, 14), 0, 1)
    cv.add((60, 60, 70), cv.ellipse(120, 64, 30, blur=12))
    cv.paint((250, 244, 224), moon)
    sunglow = np.clip(1.0 - cv.radial(sun_x, horizon, 360, 150), 0, 1) ** 2.2
    cv.add((120, 70, 30), sunglow * (Y < horizon))
    cv.paint((255, 236, 180), cv.ellipse(sun_x, horizon + 4, 26, 24) * (Y < horizon))
    clouds = [  # cx, cy, rx, ry, colour
        (170, 120, 150, 7, (150, 86, 140)),
        (420, 96, 190, 6, (140, 80, 136)),
        (330, 150, 120, 6, (200, 108, 132)),
        (80, 200, 110, 8, (236, 132, 120)),
        (470, 210, 170, 7, (244, 146, 118)),
        (300, 236, 140, 5, (252, 176, 130)),
        (600, 170, 120, 6, (214, 116, 128)),
        (740, 232, 100, 5, (250, 160, 124)),
    ]
    for cx, cy, rx, ry, c in clouds:
        m = np.clip(
            cv.ellipse(cx, cy, rx, ry, blur=3)
            + cv.ellipse(cx - rx * 0.35, cy - ry * 0.7, rx * 0.5, ry * 0.9, blur=3)
            + cv.ellipse(cx + rx * 0.3, cy - ry * 0.5, rx * 0.45, ry * 0.8, blur=3),
            0,
            1,
        )
        cv.paint(c, m * 0.85)
        cv.add((60, 40, 20), m * cv.ellipse(cx, cy + ry * 0.6, rx * 0.9, ry * 0.5, blur=2) * 0.8)

    # ---- far headland on the left
    hill = cv.poly([(0, 262), (40, 258), (90, 270), (140, 284), (190, 296), (220, horizon + 1), (0, horizon + 1)])
    cv.paint(ramp(cv.lin((0, 258), (0, horizon)), [(0, (96, 62, 112)), (1, (150, 92, 128))]), hill)

    # ---- sea: sky-coloured near the horizon, deep blue in front, bands of waves
    sea = (Y >= horizon).astype(F32) * np.ones_like(X)
    cv.paint(
        ramp(
            (Y - horizon) / (H - horizon),
            [(0.0, (214, 136, 130)), (0.12, (150, 96, 128)), (0.4, (66, 62, 112)), (1.0, (20, 32, 66))],
        ),
        sea,
    )
    for k in range(1, 22):
        t = k / 21.0
        yk = horizon + (H - horizon) * t**1.7
        amp = 0.4 + 3.2 * t
        freq = 0.09 / (0.25 + t)
        crest = yk + amp * np.sin(X * freq + k * 1.7) + amp * 0.4 * np.sin(X * freq * 2.3 + k)
        thick = 0.6 + 3.0 * t
        band = smoothstep(0, 0.5, Y - crest) * (1 - smoothstep(thick * 0.4, thick, Y - crest))
        trough = smoothstep(0, 1.0, Y - crest - thick) * (1 - smoothstep(thick, thick * 2.6, Y - crest - thick))
        lit = np.clip(1.0 - np.abs(X - sun_x) / (200 + 260 * t), 0, 1) ** 1.5
        seg = smoothstep(
            0.15, 0.75, 0.5 + 0.5 * np.sin(X * freq * 0.31 + k * 2.3) * np.sin(X * freq * 0.13 + k * 0.7 + 1.0)
        )
        cv.add((70, 44, 46), band * sea * seg * (0.3 + 0.7 * lit) * (1.0 - 0.3 * t))
        cv.multiply((60, 64, 110), trough * sea * (0.15 + 0.25 * seg))
    # sun glitter on the water
    glints = []
    for _ in range(160):
        yy = float(horizon + 2 + (H - horizon - 2) * rng.uniform(0, 1) ** 1.6)
        spread = 16 + (yy - horizon) * 0.55
        xx = float(sun_x + rng.normal(0, 0.45) * spread)
        glints.append(
            [
                (xx - 3 - (yy - horizon) * 0.08, yy),
                (xx + 3 + (yy - horizon) * 0.08, yy),
                (xx, yy + 0.8 + (yy - horizon) * 0.01),
            ]
        )
    cv.add((255, 196, 120), cv.polys(glints, blur=0.6) * sea * 0.9)
    cv.add((90, 50, 30), np.clip(1 - cv.radial(sun_x, horizon, 140, 26), 0, 1) ** 2 * sea)

    # surf around the rocks (painted first: the rocks cover its inner half)
    foam = (
        cv.stroke(bezier([(486, 322), (466, 346), (450, 370), (438, 410), (426, 480)], 32), 12, 20, blur=3)
        + cv.stroke(
            bezier([(380, 474), (396, 440), (430, 420), (470, 428), (500, 406), (540, 388), (600, 398)], 48),
            12,
            10,
            blur=3,
        )
        + cv.stroke(bezier([(104, 480), (90, 446), (40, 418), (0, 422)], 24), 12, 8, blur=3)
    )
    cv.add((140, 130, 150), np.clip(foam, 0, 1) * 0.55)
    streaks = (
        cv.stroke(bezier([(330, 444), (370, 436), (404, 442)], 16), 2.0, 0.6, blur=0.8)
        + cv.stroke(bezier([(360, 404), (400, 396), (428, 398)], 16), 1.6, 0.5, blur=0.8)
        + cv.stroke(bezier([(120, 462), (160, 454), (200, 460)], 16), 2.0, 0.6, blur=0.8)
    )
    cv.add((120, 110, 130), np.clip(streaks, 0, 1) * 0.6)
    spray = cv.dots(
        [
            (float(x), float(y), float(r))
            for x, y, r in zip(rng.normal(456, 22, 40), rng.normal(360, 14, 40), rng.uniform(0.6, 1.6, 40))
        ],
        0,
        blur=0.4,
    )
    cv.add((170, 160, 180), spray * 0.55)

    # ---- the cliff and rocks on the right, lit from the sunset on the left
    def rock(pts, lit_pts, base, litc, blur=0.0):
        cv.paint(base, cv.poly(pts, blur=blur))
        if lit_pts:
            cv.paint(litc, cv.poly(lit_pts, blur=blur) * cv.poly(pts))

    cliff = [(470, 340), (500, 300), (540, 280), (560, 262), (700, 254), (832, 248), (832, 480), (430, 480), (440, 380)]
    cv.paint(ramp(cv.lin((470, 250), (832, 480)), [(0, (82, 56, 80)), (1, (36, 26, 46))]), cv.poly(cliff))
    facets = [
        ([(470, 340), (500, 300), (540, 280), (548, 300), (520, 330), (500, 372)], (150, 88, 98)),
        ([(500, 372), (520, 330), (548, 300), (560, 330), (530, 380)], (112, 68, 88)),
        ([(540, 280), (560, 262), (600, 262), (590, 290), (548, 300)], (164, 98, 100)),
        ([(440, 380), (470, 340), (500, 372), (480, 420), (450, 430)], (128, 76, 92)),
        ([(600, 262), (680, 258), (660, 300), (590, 290)], (120, 72, 90)),
        ([(680, 258), (760, 252), (740, 300), (660, 300)], (96, 62, 84)),
        ([(760, 252), (832, 248), (832, 310), (740, 300)], (84, 56, 80)),
        ([(590, 290), (660, 300), (640, 360), (572, 350)], (92, 60, 84)),
        ([(660, 300), (740, 300), (760, 370), (640, 360)], (70, 48, 70)),
        ([(740, 300), (832, 310), (832, 390), (760, 370)], (62, 42, 64)),
        ([(572, 350), (640, 360), (620, 430), (552, 420)], (66, 44, 68)),
        ([(640, 360), (760, 370), (740, 450), (620, 430)], (54, 38, 60)),
    ]
    for pts, c in facets:
        cv.paint(c, cv.poly(pts, blur=0.6) * 0.9)
    cv.multiply(
        (120, 100, 140),
        cv.poly([(560, 330), (600, 300), (700, 290), (832, 300), (832, 480), (520, 480)], blur=10) * 0.6,
    )
    grass = cv.poly(
        [(536, 284), (560, 262), (700, 254), (832, 248), (832, 262), (700, 268), (600, 270), (560, 280)], blur=0.8
    )
    cv.paint(ramp(cv.lin((540, 0), (832, 0)), [(0, (122, 120, 74)), (1, (56, 66, 52))]), grass)

    # ---- the lighthouse and the keeper's cottage
    cx, base_y, top_y = 660.0, 258.0, 100.0
    half_b, half_t = 27.0, 18.0
    halfw = half_t + (half_b - half_t) * np.clip((Y - top_y) / (base_y - top_y), 0, 1)
    tower = ((np.abs(X - cx) <= halfw) & (Y >= top_y) & (Y <= base_y)).astype(F32)
    u = np.clip((X - cx) / halfw, -1, 1)
    nz = np.sqrt(np.clip(1 - u * u, 0, 1))
    lam = np.clip(-u * 0.75 + nz * 0.55, 0, 1)
    stripe = (((Y - top_y) // 32) % 2 == 0).astype(F32)
    alb = ramp(stripe, [(0, (238, 226, 222)), (1, (206, 56, 60))])
    lightc = ramp(lam, [(0, (0.42, 0.40, 0.62)), (0.6, (0.86, 0.66, 0.72)), (1, (1.08, 0.86, 0.72))])
    cv.paint(alb * lightc, tower)
    for wy in (150, 206):
        cv.paint((40, 34, 52), cv.rect(cx - 4, wy, cx + 4, wy + 12, radius=4))
    cv.paint((255, 212, 120), cv.rect(cx - 4, 178, cx + 4, 190, radius=4))
    cv.paint((56, 44, 60), cv.rect(cx - 8, 236, cx + 8, base_y, radius=7))
    # gallery, lantern room, dome
    cv.paint((58, 42, 56), cv.rect(cx - 27, top_y - 6, cx + 27, top_y + 1, radius=2))
    cv.paint((70, 54, 66), cv.rect(cx - 24, top_y - 17, cx + 24, top_y - 15))
    for rx in np.linspace(cx - 23, cx + 23, 9):
        cv.paint((70, 54, 66), cv.rect(rx - 0.7, top_y - 16, rx + 0.7, top_y - 5))
    lantern = cv.rect(cx - 14, top_y - 34, cx + 14, top_y - 6)
    cv.paint((255, 240, 190), lantern)
    cv.add((0, 0, 0), lantern)
    for mx in (cx - 14, cx - 5, cx + 4, cx + 13):
        cv.paint((60, 44, 56), cv.rect(mx, top_y - 34, mx + 1.6, top_y - 6))
    dome = cv.ellipse(cx, top_y - 34, 19, 15) * (Y <= top_y - 34)
    cv.paint(
        ramp(np.clip((X - (cx - 19)) / 38.0, 0, 1), [(0, (220, 96, 84)), (0.5, (160, 44, 52)), (1, (92, 26, 40))]), dome
    )
    cv.paint((52, 36, 48), cv.rect(cx - 20, top_y - 36, cx + 20, top_y - 33, radius=1.5))
    cv.paint((190, 60, 60), cv.ellipse(cx, top_y - 51, 3.2))
    # cottage
    cot = cv.rect(584, 232, 636, 262)
    cv.paint(ramp(np.clip((X - 584) / 52.0, 0, 1), [(0, (236, 206, 200)), (1, (146, 128, 160))]), cot)
    cv.paint((150, 52, 58), cv.poly([(578, 234), (610, 212), (642, 234)]))
    cv.paint((255, 204, 110), cv.rect(594, 242, 606, 252, radius=1))
    cv.add((120, 80, 20), cv.ellipse(600, 247, 12, blur=5) * 0.6)

    # ---- light beams and the lamp's glow
    lx, ly = cx, top_y - 20
    beam = cv.poly([(lx, ly - 4), (0, ly - 110), (0, ly + 40), (lx, ly + 4)], blur=5)
    core = cv.poly([(lx, ly - 2), (0, ly - 62), (0, ly - 8), (lx, ly + 2)], blur=8)
    fade = np.clip(1.0 - np.abs(X - lx) / 760.0, 0, 1) ** 1.2
    cv.add((255, 232, 180), beam * fade * 0.34 + core * fade * 0.22)
    beam2 = cv.poly([(lx, ly - 3), (W, ly - 40), (W, ly + 10), (lx, ly + 3)], blur=4)
    cv.add((255, 236, 190), beam2 * np.clip(1.0 - np.abs(X - lx) / 260.0, 0, 1) * 0.3)
    cv.add((255, 210, 140), cv.ellipse(lx, ly, 56, blur=20) * 0.6)
    cv.add((255, 250, 230), cv.ellipse(lx, ly, 10, blur=4) * 0.8)

    # ---- foreground rocks and surf
    fg = [
        (
            [(380, 480), (396, 440), (430, 422), (470, 430), (500, 456), (512, 480)],
            [(396, 440), (430, 422), (440, 446), (404, 462)],
        ),
        (
            [(470, 480), (500, 410), (540, 392), (590, 400), (610, 440), (620, 480)],
            [(500, 410), (540, 392), (548, 420), (512, 444)],
        ),
        ([(0, 480), (0, 430), (30, 420), (70, 436), (96, 466), (100, 480)], [(0, 430), (30, 420), (40, 446), (0, 456)]),
    ]
    for pts, lit in fg:
        rock(pts, lit, (30, 24, 40), (92, 58, 78))
    # ---- a few gulls
    for gx, gy, sz in [(330, 170, 7), (356, 184, 5), (300, 190, 4.5)]:
        g = cv.stroke(
            bezier([(gx - sz, gy - sz * 0.2), (gx - sz * 0.5, gy - sz * 0.6), (gx, gy)], 12), 1.4, 0.8
        ) + cv.stroke(bezier([(gx, gy), (gx + sz * 0.5, gy - sz * 0.6), (gx + sz, gy - sz * 0.2)], 12), 0.8, 1.4)
        cv.paint((44, 30, 54), np.clip(g, 0, 1))

    vig = np.clip(cv.radial(W / 2, H / 2, W * 0.7, H * 0.8), 0, 1) ** 2.5
    cv.multiply((60, 50, 90), vig * 0.6)
    return cv.image()


# --------------------------------------------------------------------------- robot in a workshop (portrait)


def draw_robot_portrait() -> Image.Image:
    W, H = 480, 832
    cv = Canvas(W, H)
    X, Y = cv.X, cv.Y
    lamp_x, lamp_y = 300.0, 128.0

    # ---- wall and pegboard, warm light pool from the lamp
    cv.vgrad(0, H, [(0, (70, 58, 56)), (0.6, (98, 80, 70)), (1, (60, 48, 46))])
    planks = 0.5 + 0.5 * np.cos(X / 60.0 * math.pi * 2)
    cv.multiply((225, 215, 205), (planks > 0.985).astype(F32) * 0.8)
    board = cv.rect(34, 150, 446, 560, radius=6)
    cv.multiply((40, 30, 30), np.clip(cv.blur(cv.rect(40, 158, 452, 568, radius=6), 6) - board, 0, 1) * 0.6)
    cv.paint(ramp(cv.lin((34, 150), (446, 560)), [(0, (206, 170, 126)), (1, (178, 140, 100))]), board)
    holes = [(x, y) for x in np.arange(52, 440, 20.0) for y in np.arange(168, 552, 20.0)]
    cv.paint((120, 90, 66), cv.dots(holes, 1.8) * board)
    cv.add((90, 66, 36), np.clip(1.0 - cv.radial(lamp_x - 40, 440, 300, 360), 0, 1) ** 1.6)

    # tools on the pegboard (with soft shadows to the lower left, lamp at the upper right)
    def hang(mask, colour, grad=None):
        cv.multiply(
            (90, 64, 50), np.roll(np.roll(cv.blur(mask, 3), 4 * cv.ss, axis=0), -4 * cv.ss, axis=1) * board * 0.7
        )
        cv.paint(colour if grad is None else grad, mask)

    # wrench
    wrench = np.clip(cv.stroke([(70, 190), (96, 320)], 10) + cv.ellipse(68, 186, 15) + cv.ellipse(97, 326, 12), 0, 1)
    wrench = wrench * (1 - cv.poly([(60, 166), (76, 166), (72, 186), (64, 186)])) * (1 - cv.ellipse(97, 326, 5.5))
    hang(
        wrench,
        None,
        ramp(cv.lin((60, 0), (110, 0)), [(0, (150, 156, 170)), (0.5, (214, 220, 230)), (1, (120, 126, 140))]),
    )
    # hammer
    hammer = np.clip(cv.rect(124, 196, 134, 330, radius=4), 0, 1)
    hang(
        hammer, None, ramp(cv.lin((124, 0), (134, 0)), [(0, (150, 90, 50)), (0.5, (196, 128, 76)), (1, (130, 76, 42))])
    )
    head = cv.rect(108, 184, 152, 204, radius=3)
    hang(head, None, ramp(cv.lin((0, 184), (0, 204)), [(0, (200, 206, 216)), (1, (110, 116, 130))]))
    # screwdrivers
    for sx, c in ((376, (220, 70, 60)), (404, (240, 190, 60))):
        hang(
            cv.rect(sx - 2, 240, sx + 2, 320),
            None,
            ramp(cv.lin((sx - 2, 0), (sx + 2, 0)), [(0, (150, 156, 166)), (1, (220, 226, 234))]),
        )
        hang(
            cv.rect(sx - 8, 188, sx + 8, 242, radius=7),
            None,
            ramp(
                cv.lin((sx - 8, 0), (sx + 8, 0)),
                [(0, c), (0.4, tuple(min(255, v + 50) for v in c)), (1, tuple(v * 0.6 for v in c))],
            ),
        )
    # a coil of cable and a ruler
    coil = np.clip(cv.ellipse(330, 250, 28, 34) - cv.ellipse(330, 250, 20, 26), 0, 1)
    hang(coil, (64, 120, 170))
    ruler = cv.rect(46, 372, 130, 386, radius=2)
    hang(ruler, (236, 206, 96))
    cv.paint(
        (120, 96, 40),
        cv.polys(
            [
                [(x, 372), (x + 1, 372), (x + 1, 378 + (4 if i % 2 else 0)), (x, 378 + (4 if i % 2 else 0))]
                for i, x in enumerate(range(50, 128, 8))
            ]
        ),
    )

    # ---- the bench's shadow on the wall
    cv.multiply((40, 30, 30), cv.rect(0, 606, 480, 620, blur=6) * 0.5)

    # ---- hanging lamp and its light cone
    cv.paint((40, 34, 34), cv.rect(lamp_x - 1.2, 0, lamp_x + 1.2, lamp_y - 30))
    shade = cv.poly(
        [(lamp_x - 16, lamp_y - 34), (lamp_x + 16, lamp_y - 34), (lamp_x + 46, lamp_y), (lamp_x - 46, lamp_y)]
    )
    cv.paint(
        ramp(
            cv.lin((lamp_x - 46, 0), (lamp_x + 46, 0)), [(0, (40, 90, 84)), (0.45, (84, 160, 150)), (1, (30, 70, 66))]
        ),
        shade,
    )
    cv.paint((24, 54, 50), cv.rect(lamp_x - 47, lamp_y - 3, lamp_x + 47, lamp_y + 1, radius=1.5))
    cone = cv.poly([(lamp_x - 40, lamp_y), (lamp_x + 40, lamp_y), (lamp_x + 190, 640), (lamp_x - 330, 640)], blur=22)
    cv.add((120, 96, 56), cone * np.clip(1.0 - (Y - lamp_y) / 700.0, 0, 1) * 0.45)
    cv.add((255, 236, 190), cv.ellipse(lamp_x, lamp_y + 2, 26, 7, blur=2))
    cv.add((150, 120, 60), cv.ellipse(lamp_x, lamp_y + 6, 70, 30, blur=16) * 0.8)

    # ---- workbench
    top = cv.poly([(0, 612), (480, 612), (480, 680), (0, 680)])
    cv.paint(ramp(cv.lin((0, 612), (0, 680)), [(0, (150, 100, 64)), (1, (196, 138, 88))]), top)
    grain = 0.5 + 0.5 * np.sin(Y * 1.3 + np.sin(X / 37.0) * 3.0 + np.sin(X / 11.0) * 0.6)
    cv.multiply((200, 170, 140), top * smoothstep(0.7, 1.0, grain) * 0.35)
    cv.add((70, 50, 26), top * np.clip(1.0 - cv.radial(250, 650, 230, 50), 0, 1))
    front = cv.rect(0, 680, 480, 740)
    cv.paint(ramp(cv.lin((0, 680), (0, 740)), [(0, (214, 156, 104)), (0.12, (150, 98, 60)), (1, (110, 70, 44))]), front)
    cv.paint((60, 38, 28), cv.rect(0, 740, 480, 832))
    cv.paint(ramp(cv.lin((0, 740), (0, 832)), [(0, (30, 22, 20)), (1, (60, 44, 38))]), cv.rect(0, 740, 480, 832))
    drawer = cv.rect(150, 752, 330, 812, radius=4)
    cv.paint((96, 64, 44), drawer)
    cv.paint((150, 110, 72), cv.rect(224, 774, 256, 782, radius=3))

    # ---- things on the bench: a gear, nuts, a screwdriver
    cv.multiply((90, 60, 40), cv.ellipse(406, 662, 38, 8, blur=4) * 0.7)
    gear = cv.ellipse(404, 640, 26, 12)
    teeth = []
    for k in range(12):
        a = 2 * math.pi * k / 12
        c, s_ = math.cos(a), math.sin(a)
        teeth.append(
            [
                (404 + c * 24 - s_ * 3, 640 + (s_ * 24 + c * 3) * 0.46),
                (404 + c * 31 - s_ * 2.5, 640 + (s_ * 31 + c * 2.5) * 0.46),
                (404 + c * 31 + s_ * 2.5, 640 + (s_ * 31 - c * 2.5) * 0.46),
                (404 + c * 24 + s_ * 3, 640 + (s_ * 24 - c * 3) * 0.46),
            ]
        )
    gear = np.clip(gear + cv.polys(teeth), 0, 1)
    cv.paint((120, 110, 100), cv.ellipse(404, 644, 28, 12) * (1 - gear) * cv.ellipse(404, 644, 32, 16))
    cv.paint(ramp(cv.lin((380, 628), (430, 652)), [(0, (236, 196, 110)), (1, (176, 130, 60))]), gear)
    cv.paint((110, 80, 40), cv.ellipse(404, 640, 8, 3.8))
    for nx, ny in ((360, 668), (448, 660), (86, 674)):
        hexm = cv.poly([(nx + 7 * math.cos(a), ny + 4 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 7)[:-1]])
        cv.multiply((90, 60, 40), cv.ellipse(nx + 2, ny + 3, 9, 3, blur=2) * 0.6)
        cv.paint((170, 176, 186), hexm)
        cv.paint((70, 70, 80), cv.ellipse(nx, ny, 2.6, 1.5))
    cv.multiply((90, 60, 40), cv.stroke([(40, 664), (150, 652)], 12, blur=3) * 0.6)
    cv.paint(
        ramp(cv.lin((0, 640), (0, 660)), [(0, (120, 200, 190)), (1, (40, 120, 110))]),
        cv.stroke([(36, 656), (86, 650)], 13),
    )
    cv.paint((190, 196, 206), cv.stroke([(86, 650), (146, 644)], 3.2))

    draw_robot(cv)

    vig = np.clip(cv.radial(W / 2, H * 0.45, W * 0.8, H * 0.7), 0, 1) ** 2.2
    cv.multiply((50, 40, 40), vig * 0.7)
    return cv.image()


def draw_robot(cv: Canvas):
    shell, teal, dark = (238, 234, 224), (78, 180, 172), (52, 58, 70)
    orange = (246, 140, 60)
    light = Light(
        key_dir=(0.5, -0.7, 0.55),
        key=(1.05, 0.95, 0.8),
        ambient=(0.36, 0.42, 0.48),
        wrap=0.35,
        rim_dir=(-0.85, -0.3),
        rim=(0.22, 0.32, 0.42),
        rim_pow=2.5,
        spec=0.35,
        shine=40,
    )
    cx = 236.0

    # shadow on the bench
    cv.multiply((80, 50, 36), cv.ellipse(cx - 16, 640, 120, 16, blur=6) * 0.85)

    # legs and feet
    for lx in (cx - 34, cx + 34):
        cv.part([dict(cx=lx, cy=598, rx=16, ry=22, p=3, q=2)], dark, light, smooth=1)
        cv.part([dict(cx=lx, cy=626, rx=30, ry=14, p=3, q=3, depth=12)], teal, light, smooth=1.5)

    # left arm (hanging), behind the body edge
    arm_l = bezier([(cx - 70, 520), (cx - 104, 548), (cx - 102, 590)], 24)
    cv.part(tube(arm_l, 11, 10, n=24), dark, light, smooth=1)
    cv.part([dict(cx=cx - 101, cy=600, rx=17, ry=16, depth=14)], teal, light, smooth=1)

    # body
    cv.part([dict(cx=cx, cy=544, rx=84, ry=68, p=4.5, q=3, depth=44)], teal, light, smooth=2)
    cv.part([dict(cx=cx, cy=552, rx=52, ry=40, p=5, q=4, depth=8)], shell, light, smooth=1.5)
    # dial, buttons, speaker slots
    cv.paint((70, 76, 90), cv.ellipse(cx - 22, 548, 17))
    cv.paint((250, 246, 230), cv.ellipse(cx - 22, 548, 14))
    cv.paint((236, 90, 70), cv.stroke([(cx - 22, 548), (cx - 14, 538)], 2.2, 1.2))
    cv.paint((60, 60, 70), cv.ellipse(cx - 22, 548, 2.4))
    for k, c in enumerate(((236, 84, 74), (250, 196, 70), (110, 200, 110))):
        by = 530 + k * 16
        cv.paint(tuple(v * 0.6 for v in c), cv.ellipse(cx + 24, by + 1.2, 6))
        cv.paint(c, cv.ellipse(cx + 24, by, 5.5))
        cv.add((255, 255, 255), cv.ellipse(cx + 22.5, by - 2, 2, blur=0.6) * 0.7)
    for k in range(3):
        cv.paint((120, 130, 140), cv.rect(cx - 34, 574 + k * 6, cx - 8, 576.5 + k * 6, radius=1.2))
    cv.add((255, 255, 255), cv.ellipse(cx - 44, 505, 20, 5, angle=-20, blur=3) * 0.35)

    # neck
    cv.part([dict(cx=cx, cy=478, rx=26, ry=12, p=3, q=2, depth=10)], dark, light, smooth=1)

    # right arm waving: shoulder -> elbow -> hand raised
    arm_r = bezier([(cx + 72, 522), (cx + 130, 500), (cx + 128, 440)], 28)
    cv.part(tube(arm_r, 11, 10, n=28), dark, light, smooth=1)
    cv.part([dict(cx=cx + 128, cy=428, rx=18, ry=17, depth=15)], teal, light, smooth=1)
    for a in (-40, 0, 40):
        fx, fy = cx + 128 + math.sin(math.radians(a)) * 20, 428 - math.cos(math.radians(a)) * 20
        cv.part([dict(cx=fx, cy=fy, rx=5.5, ry=8, angle=a, depth=6)], teal, light, smooth=0.5)
    for k in range(3):  # little motion marks
        r = 36 + k * 8
        arc = bezier(
            [(cx + 128 + r * math.cos(math.radians(a)), 428 - r * math.sin(math.radians(a))) for a in (20, 35, 50)], 16
        )
        cv.paint((255, 230, 180), cv.stroke(arc, 2.0, 1.0) * 0.55)

    # shoulder joints
    for sx in (cx - 74, cx + 74):
        cv.part([dict(cx=sx, cy=520, rx=15, ry=15, depth=12)], orange, light, smooth=1)

    # head: ears, shell, screen face
    for ex in (cx - 96, cx + 96):
        cv.part([dict(cx=ex, cy=398, rx=14, ry=28, p=3, q=2.5, depth=10)], orange, light, smooth=1)
    cv.paint((80, 84, 94), cv.rect(cx - 2.5, 300, cx + 2.5, 334))
    cv.add((255, 150, 60), cv.ellipse(cx, 292, 30, blur=10) * 0.7)
    cv.part([dict(cx=cx, cy=292, rx=11, ry=11)], (255, 128, 60), light, spec=0.6)
    cv.add((255, 200, 120), cv.ellipse(cx, 292, 8, blur=2) * 0.5)
    cv.part([dict(cx=cx, cy=336, rx=12, ry=5, p=3)], dark, light, smooth=0.5)
    cv.part([dict(cx=cx, cy=402, rx=96, ry=72, p=4.2, q=3, depth=50)], shell, light, smooth=2)
    cv.part([dict(cx=cx, cy=408, rx=74, ry=52, p=4.4, q=5, depth=6)], (26, 34, 52), light, smooth=1.5, spec=0.5)
    screen = cv.rect(cx - 72, 356, cx + 72, 460, radius=40)
    cv.add((30, 70, 90), cv.ellipse(cx, 420, 70, 40, blur=16) * screen * 0.6)
    # glowing eyes and smile
    for ex in (cx - 30, cx + 30):
        cv.add((60, 200, 220), cv.ellipse(ex, 398, 22, 26, blur=6) * screen * 0.7)
        cv.paint((150, 244, 250), cv.ellipse(ex, 398, 13, 17))
        cv.paint((236, 255, 255), cv.ellipse(ex - 3, 392, 5, 6.5) * 0.9)
    smile = cv.stroke(bezier([(cx - 16, 432), (cx, 444), (cx + 16, 432)], 24), 4.2)
    cv.add((60, 200, 220), cv.blur(smile, 3) * 0.6)
    cv.paint((150, 244, 250), smile)
    for bx in (cx - 50, cx + 50):
        cv.add((170, 70, 90), cv.ellipse(bx, 430, 12, 6, blur=3) * 0.8)
    # glass reflection on the screen
    refl = cv.poly([(cx - 60, 360), (cx - 30, 360), (cx - 66, 420), (cx - 74, 410)], blur=2)
    cv.add((255, 255, 255), refl * screen * 0.16)
    # small bolts on the head
    for bx, by in ((cx - 84, 350), (cx + 84, 350), (cx - 84, 454), (cx + 84, 454)):
        cv.part([dict(cx=bx, cy=by, rx=3.2, ry=3.2)], (190, 190, 196), light, spec=0.5)


SCENES = {
    "cat_windowsill": draw_cat_windowsill,
    "lighthouse_coast": draw_lighthouse_coast,
    "robot_portrait": draw_robot_portrait,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSET_DIR, help="output folder (default: assets/)")
    parser.add_argument("--only", action="append", choices=sorted(SCENES), help="draw only this picture")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or SCENES:
        path = args.out / f"{name}.png"
        SCENES[name]().save(path, format="PNG", optimize=True)
        print(f"{path}  {path.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
