"""Render the bundled demo photos (living room, kitchen, house exterior) with Pillow only.

    python simulator/sample_images/render_samples.py [--out simulator/sample_images]

Scenes are drawn through a tiny pinhole camera (metres in, pixels out) so walls, floors and
furniture have real perspective; then textured, lit and finally graded to look like a typical
unedited listing photo: a little dark, flat and cool, with sensor noise. That leaves the
simulator's "enhancement" something visible to do. Deterministic: same bytes every run.
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter

W, H = 1800, 1200
Point3 = tuple[float, float, float]
Color = tuple[int, int, int]


class Camera:
    """Pinhole camera at the origin looking down +z; y grows downwards (floor has y > 0)."""

    def __init__(self, focal: float = 950.0, cx: float = W / 2, cy: float = H * 0.47, yaw_deg: float = 0.0) -> None:
        self.focal, self.cx, self.cy = focal, cx, cy
        self.cos, self.sin = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))

    def project(self, p: Point3) -> tuple[float, float]:
        x, y, z = p
        x, z = x * self.cos - z * self.sin, x * self.sin + z * self.cos
        z = max(z, 0.05)
        return self.cx + self.focal * x / z, self.cy + self.focal * y / z

    def poly(self, pts: Sequence[Point3]) -> list[tuple[float, float]]:
        return [self.project(p) for p in pts]


def noise(size: tuple[int, int], rng: random.Random, sigma: float) -> Image.Image:
    """Deterministic grey noise centred on 128 with roughly `sigma` spread (uniform, seeded)."""
    raw = Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))
    return raw.point(lambda v: round(128 + (v - 128) * sigma / 74))


def shade(color: Color, factor: float) -> Color:
    return tuple(max(0, min(255, round(c * factor))) for c in color)  # type: ignore[return-value]


def jitter(rng: random.Random, color: Color, amount: int) -> Color:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in color)  # type: ignore[return-value]


def vertical_gradient(size: tuple[int, int], top: Color, bottom: Color) -> Image.Image:
    mask = Image.linear_gradient("L").resize(size)
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)


def paste_poly(img: Image.Image, pts: list[tuple[float, float]], fill: Image.Image, blur: float = 0.0) -> None:
    """Paint `fill` (an image the size of `img`) inside a polygon."""
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).polygon(pts, fill=255)
    if blur:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    img.paste(fill, (0, 0), mask)


def gradient_poly(img: Image.Image, pts: list[tuple[float, float]], top: Color, bottom: Color) -> None:
    """Fill a polygon with a vertical gradient spanning exactly its own height."""
    ys = [p[1] for p in pts]
    y0, y1 = int(min(ys)), int(max(ys)) + 1
    fill = Image.new("RGB", img.size, bottom)
    fill.paste(vertical_gradient((img.size[0], max(1, y1 - y0)), top, bottom), (0, y0))
    paste_poly(img, pts, fill)


def glow(img: Image.Image, pts: list[tuple[float, float]], color: Color, alpha: int, blur: float) -> None:
    """Add soft light (or shadow with a dark colour) over a polygon."""
    layer = Image.new("RGB", img.size, color)
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).polygon(pts, fill=alpha)
    img.paste(layer, (0, 0), mask.filter(ImageFilter.GaussianBlur(blur)))


def box(
    draw: ImageDraw.ImageDraw,
    cam: Camera,
    x0: float,
    x1: float,
    y0: float,
    y1: float,
    z0: float,
    z1: float,
    color: Color,
    outline: Color | None = None,
) -> None:
    """A lit box: top brightest, front face, the side facing the camera darker."""
    top = [(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)]
    front = [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)]
    faces: list[tuple[list[Point3], float]] = []
    if x0 > 0:
        faces.append(([(x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0)], 0.72))
    if x1 < 0:
        faces.append(([(x1, y0, z0), (x1, y0, z1), (x1, y1, z1), (x1, y1, z0)], 0.72))
    if y0 > 0:
        faces.append((top, 1.12))
    faces.append((front, 0.9))
    for pts, factor in faces:
        draw.polygon(cam.poly(pts), fill=shade(color, factor), outline=outline)


def wood_floor(
    draw: ImageDraw.ImageDraw,
    cam: Camera,
    rng: random.Random,
    x_range: tuple[float, float],
    z_range: tuple[float, float],
    y: float,
    base: Color,
) -> None:
    """Planks running away from the camera, each a slightly different tone."""
    width = 0.2
    x = x_range[0]
    while x < x_range[1]:
        z = z_range[0] - rng.uniform(0, 1.2)
        while z < z_range[1]:
            length = rng.uniform(0.9, 1.8)
            tone = jitter(rng, shade(base, rng.uniform(0.84, 1.14)), 3)
            pts = [
                (x, y, max(z, z_range[0])),
                (x + width, y, max(z, z_range[0])),
                (x + width, y, min(z + length, z_range[1])),
                (x, y, min(z + length, z_range[1])),
            ]
            draw.polygon(cam.poly(pts), fill=tone, outline=shade(tone, 0.78))
            z += length
        x += width


def tile_floor(
    draw: ImageDraw.ImageDraw,
    cam: Camera,
    rng: random.Random,
    size: float,
    x_range: tuple[float, float],
    z_range: tuple[float, float],
    y: float,
    light: Color,
    dark: Color,
) -> None:
    i = 0
    x = x_range[0]
    while x < x_range[1]:
        z, j = z_range[0], 0
        while z < z_range[1]:
            color = jitter(rng, light if (i + j) % 2 == 0 else dark, 5)
            pts = [(x, y, z), (x + size, y, z), (x + size, y, z + size), (x, y, z + size)]
            draw.polygon(cam.poly(pts), fill=color, outline=shade(color, 0.8))
            z, j = z + size, j + 1
        x, i = x + size, i + 1


def blobs(
    img: Image.Image,
    rng: random.Random,
    centre: tuple[float, float],
    radius: float,
    count: int,
    color: Color,
    spread: float = 1.0,
) -> None:
    """Foliage: many soft overlapping ellipses around a centre."""
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    cx, cy = centre
    for _ in range(count * 3):
        r = radius * rng.uniform(0.1, 0.3)
        x = cx + rng.gauss(0, radius * 0.45 * spread)
        y = cy + rng.gauss(0, radius * 0.35)
        tone = jitter(rng, shade(color, rng.uniform(0.7, 1.3)), 6)
        draw.ellipse((x - r, y - r * 0.85, x + r, y + r * 0.85), fill=(*tone, 235))
    layer = layer.filter(ImageFilter.GaussianBlur(1.2))
    img.paste(layer, (0, 0), layer)


def window_view(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """What a window shows: bright sky over a line of trees (it will be the brightest area)."""
    view = vertical_gradient(size, (190, 215, 240), (235, 240, 245))
    horizon = int(size[1] * 0.62)
    for x in range(0, size[0] + 200, 160):
        blobs(view, rng, (x, horizon - rng.uniform(0, 120)), rng.uniform(160, 260), 14, (70, 110, 70), spread=1.4)
    ImageDraw.Draw(view).rectangle((0, horizon + 60, size[0], size[1]), fill=(120, 160, 95))
    return view


def room_shell(img: Image.Image, cam: Camera, wall: Color, ceiling: Color, depth: float = 7.0) -> None:
    """Back wall, side walls and ceiling of a 6 m wide, 2.7 m high room (camera 1.5 m high)."""
    draw = ImageDraw.Draw(img)
    x0, x1, y_ceiling, y_floor = -3.0, 3.0, -1.2, 1.5
    draw.polygon(
        cam.poly([(x0, y_ceiling, 0.3), (x1, y_ceiling, 0.3), (x1, y_ceiling, depth), (x0, y_ceiling, depth)]),
        fill=ceiling,
    )
    draw.polygon(
        cam.poly([(x0, y_ceiling, 0.3), (x0, y_ceiling, depth), (x0, y_floor, depth), (x0, y_floor, 0.3)]),
        fill=shade(wall, 0.86),
    )
    draw.polygon(
        cam.poly([(x1, y_ceiling, 0.3), (x1, y_ceiling, depth), (x1, y_floor, depth), (x1, y_floor, 0.3)]),
        fill=shade(wall, 0.8),
    )
    draw.polygon(
        cam.poly([(x0, y_ceiling, depth), (x1, y_ceiling, depth), (x1, y_floor, depth), (x0, y_floor, depth)]),
        fill=wall,
    )
    # skirting boards and a crown line catch the eye as real rooms do
    for x_side in (x0, x1):
        draw.polygon(
            cam.poly([(x_side, 1.38, 0.3), (x_side, 1.38, depth), (x_side, y_floor, depth), (x_side, y_floor, 0.3)]),
            fill=shade(wall, 1.05),
        )
    draw.polygon(
        cam.poly([(x0, 1.38, depth), (x1, 1.38, depth), (x1, y_floor, depth), (x0, y_floor, depth)]),
        fill=shade(wall, 1.08),
    )


def living_room(rng: random.Random) -> Image.Image:
    cam = Camera(cy=H * 0.4)
    img = Image.new("RGB", (W, H), (200, 195, 185))
    draw = ImageDraw.Draw(img)
    wood_floor(draw, cam, rng, (-3.0, 3.0), (0.5, 7.0), 1.5, (150, 110, 75))
    room_shell(img, cam, wall=(214, 208, 196), ceiling=(232, 230, 224))
    draw = ImageDraw.Draw(img)
    # a big window on the left wall, with the light it throws on the floor
    window = [(-3.0, -0.55, 2.6), (-3.0, -0.55, 5.0), (-3.0, 0.95, 5.0), (-3.0, 0.95, 2.6)]
    paste_poly(img, cam.poly(window), window_view((W, H), rng))
    for z in (3.4, 4.2):
        draw.line(cam.poly([(-3.0, -0.55, z), (-3.0, 0.95, z)]), fill=(245, 245, 240), width=9)
    draw.line(cam.poly([(-3.0, 0.2, 2.6), (-3.0, 0.2, 5.0)]), fill=(245, 245, 240), width=7)
    draw.polygon(cam.poly(window), outline=(250, 250, 246), width=12)
    glow(
        img,
        cam.poly([(-3.0, 1.5, 2.6), (-3.0, 1.5, 5.0), (-0.4, 1.5, 5.8), (-0.8, 1.5, 2.9)]),
        (255, 244, 215),
        120,
        35,
    )
    draw = ImageDraw.Draw(img)
    # rug, sofa against the back wall, coffee table, art, lamp, plant
    draw.polygon(
        cam.poly([(-1.9, 1.499, 3.7), (1.9, 1.499, 3.7), (1.9, 1.499, 6.2), (-1.9, 1.499, 6.2)]), fill=(168, 160, 150)
    )
    draw.polygon(
        cam.poly([(-1.7, 1.498, 3.85), (1.7, 1.498, 3.85), (1.7, 1.498, 6.05), (-1.7, 1.498, 6.05)]),
        outline=(130, 120, 112),
        width=4,
    )
    fabric = (92, 104, 118)
    box(draw, cam, -1.8, 1.8, 0.5, 1.5, 6.55, 6.95, fabric)
    box(draw, cam, -1.8, 1.8, 1.0, 1.5, 5.9, 6.95, fabric)
    for x0 in (-1.75, -0.58, 0.59):
        box(draw, cam, x0, x0 + 1.15, 0.9, 1.0, 5.95, 6.55, shade(fabric, 1.08), outline=shade(fabric, 0.7))
    box(draw, cam, -2.05, -1.8, 0.75, 1.5, 5.9, 6.95, shade(fabric, 0.95))
    box(draw, cam, 1.8, 2.05, 0.75, 1.5, 5.9, 6.95, shade(fabric, 0.95))
    for x0, tone in ((-1.5, (196, 160, 88)), (1.0, (168, 82, 70))):
        box(draw, cam, x0, x0 + 0.45, 0.55, 0.92, 6.3, 6.5, tone)
    box(draw, cam, -0.8, 0.8, 1.08, 1.16, 4.3, 5.0, (120, 84, 54))
    box(draw, cam, -0.72, 0.72, 1.16, 1.5, 4.38, 4.92, (88, 60, 40))
    box(draw, cam, -0.3, 0.05, 0.98, 1.08, 4.5, 4.75, (220, 215, 205))
    art = [(-0.9, -0.55, 6.99), (0.9, -0.55, 6.99), (0.9, 0.25, 6.99), (-0.9, 0.25, 6.99)]
    draw.polygon(cam.poly(art), fill=(60, 55, 50))
    inner = [(-0.82, -0.47, 6.98), (0.82, -0.47, 6.98), (0.82, 0.17, 6.98), (-0.82, 0.17, 6.98)]
    gradient_poly(img, cam.poly(inner), (70, 120, 160), (200, 170, 120))
    draw = ImageDraw.Draw(img)
    draw.line(cam.poly([(2.45, -0.2, 6.3), (2.45, 1.5, 6.3)]), fill=(50, 50, 50), width=6)
    draw.polygon(
        cam.poly([(2.25, -0.5, 6.3), (2.65, -0.5, 6.3), (2.75, -0.15, 6.3), (2.15, -0.15, 6.3)]), fill=(236, 226, 200)
    )
    glow(img, cam.poly([(2.0, -0.9, 6.9), (2.9, -0.9, 6.9), (3.0, 0.3, 6.9), (1.9, 0.3, 6.9)]), (255, 230, 170), 60, 40)
    draw = ImageDraw.Draw(img)
    px, py = cam.project((-2.4, 0.95, 6.4))
    blobs(img, rng, (px, py), 70, 40, (60, 95, 55))
    draw = ImageDraw.Draw(img)
    box(draw, cam, -2.6, -2.2, 1.12, 1.5, 6.2, 6.6, (170, 120, 90))
    return img


def kitchen(rng: random.Random) -> Image.Image:
    cam = Camera(cy=H * 0.4)
    img = Image.new("RGB", (W, H), (200, 200, 200))
    draw = ImageDraw.Draw(img)
    tile_floor(draw, cam, rng, 0.6, (-3.0, 3.0), (0.4, 7.0), 1.5, (206, 200, 190), (180, 172, 162))
    room_shell(img, cam, wall=(222, 222, 216), ceiling=(236, 236, 232))
    draw = ImageDraw.Draw(img)
    # backsplash tiles and the window above the sink
    draw.polygon(
        cam.poly([(-3.0, -0.15, 6.99), (3.0, -0.15, 6.99), (3.0, 0.58, 6.99), (-3.0, 0.58, 6.99)]), fill=(205, 215, 218)
    )
    for i in range(61):
        x = -3.0 + i * 0.1
        draw.line(cam.poly([(x, -0.15, 6.985), (x, 0.58, 6.985)]), fill=(170, 180, 184), width=1)
    for j in range(16):
        y = -0.15 + j * 0.05
        draw.line(cam.poly([(-3.0, y, 6.985), (3.0, y, 6.985)]), fill=(170, 180, 184), width=1)
    window = [(-0.85, -0.75, 6.98), (0.85, -0.75, 6.98), (0.85, 0.4, 6.98), (-0.85, 0.4, 6.98)]
    paste_poly(img, cam.poly(window), window_view((W, H), rng))
    draw = ImageDraw.Draw(img)
    draw.polygon(cam.poly(window), outline=(250, 250, 250), width=10)
    draw.line(cam.poly([(0.0, -0.75, 6.98), (0.0, 0.4, 6.98)]), fill=(250, 250, 250), width=8)
    # cabinets: lower run, counter, uppers either side of the window, fridge on the right
    cabinet = (86, 110, 104)
    box(draw, cam, -3.0, 2.1, 0.62, 1.5, 6.4, 7.0, cabinet)
    for i in range(9):
        x = -2.95 + i * 0.56
        draw.polygon(
            cam.poly([(x, 0.7, 6.399), (x + 0.5, 0.7, 6.399), (x + 0.5, 1.4, 6.399), (x, 1.4, 6.399)]),
            outline=shade(cabinet, 0.7),
            width=3,
        )
        draw.line(cam.poly([(x + 0.42, 0.76, 6.398), (x + 0.42, 0.9, 6.398)]), fill=(200, 200, 195), width=4)
    box(draw, cam, -3.0, 2.15, 0.56, 0.62, 6.35, 7.0, (226, 222, 214))
    for x0, x1 in ((-3.0, -1.05), (1.05, 2.1)):
        box(draw, cam, x0, x1, -0.95, -0.2, 6.65, 7.0, cabinet)
    box(draw, cam, 2.15, 3.0, -0.6, 1.5, 6.1, 7.0, (175, 178, 180))
    draw.line(cam.poly([(2.25, -0.3, 6.099), (2.25, 0.3, 6.099)]), fill=(90, 90, 90), width=5)
    box(draw, cam, -0.45, 0.45, 0.52, 0.56, 6.5, 6.9, (150, 152, 155))
    # island with stools and pendant lights
    box(draw, cam, -1.3, 1.3, 0.62, 1.5, 3.9, 4.9, (238, 236, 230))
    box(draw, cam, -1.4, 1.4, 0.56, 0.62, 3.8, 5.0, (60, 60, 64))
    for x in (-0.8, 0.0, 0.8):
        box(draw, cam, x - 0.2, x + 0.2, 0.85, 0.92, 3.35, 3.7, (120, 86, 60))
        draw.line(cam.poly([(x, 0.92, 3.5), (x, 1.5, 3.5)]), fill=(40, 40, 40), width=5)
        top, bottom = cam.project((x, -1.2, 4.4)), cam.project((x, -0.45, 4.4))
        draw.line([top, bottom], fill=(30, 30, 30), width=3)
        bx, by = bottom
        draw.polygon([(bx - 28, by), (bx + 28, by), (bx + 50, by + 45), (bx - 50, by + 45)], fill=(40, 40, 42))
        glow(
            img,
            [(bx - 80, by + 40), (bx + 80, by + 40), (bx + 150, by + 260), (bx - 150, by + 260)],
            (255, 238, 200),
            70,
            30,
        )
        draw = ImageDraw.Draw(img)
    px, py = cam.project((1.6, 0.35, 6.6))
    blobs(img, rng, (px, py), 55, 25, (70, 110, 60))
    return img


def exterior(rng: random.Random) -> Image.Image:
    horizon = int(H * 0.5)
    img = vertical_gradient((W, H), (128, 165, 212), (206, 220, 232))
    clouds = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    cdraw = ImageDraw.Draw(clouds)
    for _ in range(18):
        cx, cy = rng.uniform(-100, W + 100), rng.uniform(40, horizon * 0.5)
        rx, ry = rng.uniform(80, 200), rng.uniform(18, 45)
        cdraw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=(250, 250, 252, 120))
    clouds = clouds.filter(ImageFilter.GaussianBlur(18))
    img.paste(clouds, (0, 0), clouds)
    for x in range(-100, W + 200, 110):
        blobs(img, rng, (x, horizon - 22), rng.uniform(60, 100), 12, (62, 88, 62), spread=1.6)
    # lawn with faint mowing stripes converging to the horizon
    lawn = vertical_gradient((W, H - horizon), (96, 128, 70), (70, 110, 52))
    img.paste(lawn, (0, horizon))
    draw = ImageDraw.Draw(img)
    vx = W * 0.45
    for i in range(-14, 16):
        x_bottom = vx + i * 190
        tone = (100, 132, 74) if i % 2 else (92, 124, 68)
        draw.polygon(
            [(vx + i * 8, horizon), (vx + (i + 1) * 8, horizon), (x_bottom + 190, H), (x_bottom, H)], fill=tone
        )
    grass = noise((W, H - horizon), rng, 28).convert("RGB")
    img.paste(ImageChops.overlay(img.crop((0, horizon, W, H)), grass), (0, horizon))
    # the house sits right of the camera, which turns towards it: front and gable end both show
    cam = Camera(focal=1000, cy=horizon, yaw_deg=24)
    draw = ImageDraw.Draw(img)
    wall, side, trim, roof = (214, 206, 190), (172, 165, 150), (245, 244, 240), (78, 74, 76)
    x0, x1, z0, z1, ground, eave, ridge = 1.0, 12.0, 11.0, 18.0, 1.6, -3.6, -6.4
    zmid = (z0 + z1) / 2
    draw.polygon(cam.poly([(x0, eave, z0), (x0, eave, z1), (x0, ground, z1), (x0, ground, z0)]), fill=side)
    draw.polygon(cam.poly([(x0, eave, z0), (x0, ridge, zmid), (x0, eave, z1)]), fill=shade(side, 0.95))
    draw.polygon(cam.poly([(x0, eave, z0), (x1, eave, z0), (x1, ground, z0), (x0, ground, z0)]), fill=wall)
    for k in range(1, 26):
        y = eave + k * (ground - eave) / 26
        draw.line(cam.poly([(x0, y, z0 - 0.01), (x1, y, z0 - 0.01)]), fill=shade(wall, 0.9), width=1)
        draw.line(cam.poly([(x0 - 0.01, y, z0), (x0 - 0.01, y, z1)]), fill=shade(side, 0.9), width=1)
    draw.polygon(
        cam.poly(
            [
                (x0 - 0.4, eave - 0.05, z0 - 0.5),
                (x1 + 0.4, eave - 0.05, z0 - 0.5),
                (x1 + 0.4, ridge, zmid),
                (x0 - 0.4, ridge, zmid),
            ]
        ),
        fill=roof,
    )
    draw.polygon(
        cam.poly([(x0 - 0.4, eave - 0.05, z0 - 0.5), (x0 - 0.4, ridge, zmid), (x0 - 0.4, eave - 0.05, z1 + 0.5)]),
        outline=trim,
        width=4,
    )
    for k in range(1, 12):
        t = k / 12
        y, z = eave + (ridge - eave) * t, (z0 - 0.5) + (zmid - (z0 - 0.5)) * t
        draw.line(cam.poly([(x0 - 0.4, y, z), (x1 + 0.4, y, z)]), fill=shade(roof, 0.8), width=2)
    dim = ImageEnhance.Brightness(window_view((W, H), rng)).enhance(0.5)
    panes = [(x0 + dx, -3.0, -1.6) for dx in (0.8, 3.1, 5.6, 8.1)] + [(x0 + dx, -0.6, 0.9) for dx in (0.8, 4.3)]
    for wx, top, bottom in panes:
        pane = [
            (wx, top, z0 - 0.02),
            (wx + 1.2, top, z0 - 0.02),
            (wx + 1.2, bottom, z0 - 0.02),
            (wx, bottom, z0 - 0.02),
        ]
        paste_poly(img, cam.poly(pane), dim)
        draw = ImageDraw.Draw(img)
        draw.polygon(cam.poly(pane), outline=trim, width=5)
        draw.line(cam.poly([(wx + 0.6, top, z0 - 0.03), (wx + 0.6, bottom, z0 - 0.03)]), fill=trim, width=4)
    side_pane = [(x0 - 0.02, -3.0, 13.4), (x0 - 0.02, -3.0, 14.6), (x0 - 0.02, -1.6, 14.6), (x0 - 0.02, -1.6, 13.4)]
    paste_poly(img, cam.poly(side_pane), dim)
    draw = ImageDraw.Draw(img)
    draw.polygon(cam.poly(side_pane), outline=trim, width=4)
    dx0, dx1 = x0 + 2.6, x0 + 3.6
    door = [(dx0, -0.7, z0 - 0.02), (dx1, -0.7, z0 - 0.02), (dx1, ground, z0 - 0.02), (dx0, ground, z0 - 0.02)]
    draw.polygon(cam.poly(door), fill=(96, 52, 44), outline=trim, width=5)
    gx0, gx1 = x0 + 6.6, x0 + 9.8
    garage = [(gx0, -0.5, z0 - 0.02), (gx1, -0.5, z0 - 0.02), (gx1, ground, z0 - 0.02), (gx0, ground, z0 - 0.02)]
    draw.polygon(cam.poly(garage), fill=(232, 230, 226), outline=trim, width=5)
    for k in range(1, 5):
        y = -0.5 + k * (ground + 0.5) / 5
        draw.line(cam.poly([(gx0, y, z0 - 0.03), (gx1, y, z0 - 0.03)]), fill=(190, 188, 184), width=3)
    draw.polygon(
        cam.poly([(gx0, ground, z0), (gx1, ground, z0), (gx1 + 0.5, ground, 2.0), (gx0 - 1.0, ground, 2.0)]),
        fill=(150, 148, 144),
    )
    draw.polygon(
        cam.poly([(dx0 + 0.1, ground, z0), (dx1 - 0.1, ground, z0), (dx1, ground, 2.0), (dx0 - 0.6, ground, 2.0)]),
        fill=(172, 162, 146),
    )
    for bx in (x0 + 0.5, x0 + 1.6, x0 + 4.6, x0 + 5.6):
        px, py = cam.project((bx, ground - 0.35, z0 - 0.6))
        blobs(img, rng, (px, py), 55, 14, (58, 96, 50))
    tx, ty = 300, horizon - 150
    ImageDraw.Draw(img).rectangle((tx - 12, ty, tx + 12, horizon + 150), fill=(74, 58, 44))
    blobs(img, rng, (tx, ty - 40), 170, 60, (52, 84, 48), spread=1.2)
    return img


def dull_grade(img: Image.Image, rng: random.Random, *, exposure: float, coolness: float) -> Image.Image:
    """Make it look like an unedited phone/DSLR shot: soft, flat, under-exposed, cool, noisy."""
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    vignette = Image.radial_gradient("L").resize((W, H), Image.Resampling.BICUBIC)
    img = Image.composite(ImageEnhance.Brightness(img).enhance(0.72), img, vignette.point(lambda v: min(255, v * 1.2)))
    img = ImageEnhance.Contrast(img).enhance(0.78)
    img = ImageEnhance.Brightness(img).enhance(exposure)
    img = ImageEnhance.Color(img).enhance(0.82)
    r, g, b = img.split()
    r = r.point(lambda v: v * (1 - coolness))
    b = b.point(lambda v: min(255, v * (1 + coolness) + 4))
    img = Image.merge("RGB", (r, g, b))
    grain = noise((W, H), rng, 10).convert("RGB")
    img = Image.blend(img, ImageChops.overlay(img, grain), 0.35)
    return img


SCENES = {
    "living-room.jpg": (living_room, 0.82, 0.06),
    "kitchen.jpg": (kitchen, 0.8, 0.07),
    "exterior.jpg": (exterior, 0.86, 0.05),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    for index, (name, (scene, exposure, coolness)) in enumerate(SCENES.items()):
        rng = random.Random(1000 + index)
        img = dull_grade(scene(rng), rng, exposure=exposure, coolness=coolness)
        path = args.out / name
        img.save(path, "JPEG", quality=82, optimize=True, progressive=True)
        print(f"{path} {img.size[0]}x{img.size[1]} {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
