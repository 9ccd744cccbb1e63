"""Procedural street scenes in perspective with Cityscapes trainId labels.

A scene is a straight or gently curving road with lane markings between curbs and sidewalks,
then terrain, and along both sides a row of buildings, walls, fences and hedges; on and beside
the road stand cars, trucks, buses, a tram, pedestrians, riders on bicycles and motorcycles,
poles with traffic lights, signs and lamps, and trees. Everything is drawn far to near, so
occlusions are right. Colours, camera height and pitch, lighting, shadows, noise, blur and
object counts vary with the seed; any resolution.
"""
import dataclasses
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np

from anomseg_ros.data.synthetic import objects
from anomseg_ros.data.synthetic.camera import Camera
from anomseg_ros.data.synthetic.canvas import Canvas, jitter, shade
from anomseg_ros.data.synthetic.objects import (BUILDING, FENCE, ROAD, SIDEWALK, SKY, TERRAIN,
                                                VEGETATION, WALL)
from anomseg_ros.labels import VOID_LABEL

Z_FAR = 400.0
ANOMALY_LABEL = 254  # drawn by anomaly objects, mapped to the tracks' 0/1/255 afterwards
VOID = VOID_LABEL

# (depth, draw function) for things standing in the scene; drawn from the largest depth down
Drawable = Tuple[float, Callable[[Canvas, Camera], None]]


@dataclasses.dataclass
class Street:
    """Lateral layout in metres; the road's centre bends by ``curve * z**2``."""

    road_left: float
    road_right: float
    sidewalk_left: float
    sidewalk_right: float
    terrain_left: float
    terrain_right: float
    curve: float
    lanes: int

    @classmethod
    def random(cls, rng: np.random.Generator) -> 'Street':
        lanes = int(rng.integers(1, 5))
        width = lanes * rng.uniform(2.8, 3.6)
        offset = rng.uniform(-0.6, 0.6) * width / 2 - (width / 4 if lanes > 1 else 0)
        return cls(road_left=offset - width / 2, road_right=offset + width / 2,
                   sidewalk_left=rng.uniform(1.5, 4.5), sidewalk_right=rng.uniform(1.5, 4.5),
                   terrain_left=rng.uniform(0, 4) * (rng.random() < 0.5),
                   terrain_right=rng.uniform(0, 4) * (rng.random() < 0.5),
                   curve=rng.uniform(-1, 1) * 4e-4 * (rng.random() < 0.6), lanes=lanes)

    def bend(self, z):
        return self.curve * np.asarray(z) ** 2

    @property
    def outer_left(self) -> float:
        return self.road_left - self.sidewalk_left - self.terrain_left

    @property
    def outer_right(self) -> float:
        return self.road_right + self.sidewalk_right + self.terrain_right


def _depths(z_near: float, count: int = 48) -> np.ndarray:
    return np.geomspace(z_near, Z_FAR, count)


def ground_strip(cam: Camera, street: Street, x0: float, x1: float, z_near: float,
                 z_far: float = Z_FAR) -> List[Tuple[float, float]]:
    """Polygon of the ground between lateral offsets x0 < x1 (metres), z_near to z_far."""
    zs = _depths(z_near)
    zs = zs[zs <= z_far] if z_far < Z_FAR else zs
    left = [cam.point(x0 + street.bend(z), 0.0, z) for z in zs]
    right = [cam.point(x1 + street.bend(z), 0.0, z) for z in zs[::-1]]
    return left + right


def _sky(canvas: Canvas, cam: Camera) -> None:
    rng = canvas.rng
    top, bottom = jitter(rng, (60, 120, 200), 25), jitter(rng, (185, 205, 230), 20)
    if rng.random() < 0.3:  # overcast
        top, bottom = jitter(rng, (150, 155, 165), 15), jitter(rng, (200, 200, 205), 10)
    ramp = np.linspace(0, 1, canvas.height)[:, None, None]
    canvas.image[:] = (np.array(top) * (1 - ramp) + np.array(bottom) * ramp).astype(np.uint8)
    canvas.label[:] = SKY
    for _ in range(int(rng.integers(0, 6))):  # clouds
        u, v = rng.uniform(0, canvas.width), rng.uniform(0, cam.horizon_px * 0.7)
        r = rng.uniform(0.03, 0.12) * canvas.width
        canvas.paint(cv2.ellipse2Poly((int(u), int(v)), (int(r), int(r * 0.3)), 0, 0, 360, 10),
                     jitter(rng, (235, 235, 240), 8))


def _skyline(canvas: Canvas, cam: Camera) -> None:
    """Distant buildings and trees standing on the horizon."""
    rng = canvas.rng
    x = -10.0
    while x < canvas.width:
        w = rng.uniform(0.03, 0.15) * canvas.width
        h = rng.uniform(0.02, 0.12) * canvas.height
        label = BUILDING if rng.random() < 0.6 else VEGETATION
        color = jitter(rng, (120, 120, 130) if label == BUILDING else (80, 105, 60), 20)
        y = cam.horizon_px + 2
        canvas.polygon([(x, y), (x + w, y), (x + w, y - h), (x, y - h)], color, label)
        x += w * rng.uniform(0.6, 1.0)


def _ground(canvas: Canvas, cam: Camera, street: Street, z_near: float) -> None:
    rng = canvas.rng
    canvas.rect(0, cam.horizon_px, canvas.width, canvas.height,
                jitter(rng, (110, 120, 70), 20), TERRAIN)
    if street.terrain_left + street.terrain_right > 0:
        grass = jitter(rng, (95, 130, 55), 20)
        canvas.polygon(ground_strip(cam, street, street.outer_left, street.road_left, z_near),
                       grass, TERRAIN)
        canvas.polygon(ground_strip(cam, street, street.road_right, street.outer_right, z_near),
                       grass, TERRAIN)
    pave = jitter(rng, (150, 145, 140), 25)
    for x0, x1 in ((street.road_left - street.sidewalk_left, street.road_left),
                   (street.road_right, street.road_right + street.sidewalk_right)):
        canvas.polygon(ground_strip(cam, street, x0, x1, z_near), pave, SIDEWALK)
    curb = shade(pave, 1.15)
    for x0 in (street.road_left - 0.2, street.road_right):
        canvas.polygon(ground_strip(cam, street, x0, x0 + 0.2, z_near), curb, SIDEWALK)
    asphalt = jitter(rng, (85, 85, 90), 18)
    canvas.polygon(ground_strip(cam, street, street.road_left, street.road_right, z_near),
                   asphalt, ROAD)
    _markings(canvas, cam, street, z_near)


def _markings(canvas: Canvas, cam: Camera, street: Street, z_near: float) -> None:
    rng = canvas.rng
    white = jitter(rng, (225, 225, 220), 10)
    width = street.road_right - street.road_left
    if rng.random() < 0.8:  # solid edge lines
        for x0 in (street.road_left + 0.2, street.road_right - 0.35):
            canvas.paint(ground_strip(cam, street, x0, x0 + 0.15, z_near), white)
    dash, gap = rng.uniform(2, 4), rng.uniform(4, 9)
    for lane in range(1, street.lanes):
        x0 = street.road_left + width * lane / street.lanes - 0.07
        z = z_near + rng.uniform(0, gap)
        while z < 120:
            canvas.paint(ground_strip(cam, street, x0, x0 + 0.14, z, z + dash), white)
            z += dash + gap
    if rng.random() < 0.15:  # a zebra crossing
        z0 = rng.uniform(8, 25)
        for i in range(int(width / 1.0)):
            x0 = street.road_left + 0.5 + i * 1.0
            canvas.paint(ground_strip(cam, street, x0, x0 + 0.5, z0, z0 + 3), white)


def _side_structures(canvas: Canvas, cam: Camera, street: Street, side: int,
                     z_near: float) -> List[Drawable]:
    """Buildings, walls, fences and hedges along one side, as drawables at their depths."""
    rng = canvas.rng
    x_edge = street.outer_left if side < 0 else street.outer_right
    drawables = []
    z = z_near * rng.uniform(0.5, 1.5)
    while z < 150:
        kind = rng.choice(['building', 'building', 'wall', 'fence', 'hedge', 'gap'])
        length = rng.uniform(8, 45) if kind == 'building' else rng.uniform(5, 25)
        drawables.append((z + length, _facade(kind, side, x_edge, z, z + length, street, rng)))
        z += length
    return drawables


def _facade(kind, side, x_edge, z0, z1, street, rng):
    setback = rng.uniform(0, 3) if kind == 'building' else 0.0
    x = x_edge + side * setback
    height = {'building': rng.uniform(6, 30), 'wall': rng.uniform(0.8, 2.5),
              'fence': rng.uniform(1.0, 2.2), 'hedge': rng.uniform(1.0, 3.0), 'gap': 0}[kind]
    base = {'building': (140, 125, 110), 'wall': (160, 155, 145), 'fence': (120, 110, 90),
            'hedge': (60, 100, 45)}.get(kind, (0, 0, 0))
    label = {'building': BUILDING, 'wall': WALL, 'fence': FENCE, 'hedge': VEGETATION}.get(kind)
    color = jitter(rng, base, 35)
    window = jitter(rng, (60, 70, 85), 20)
    floors = int(height // 3)
    columns = int(rng.integers(2, 6))

    def draw(canvas: Canvas, cam: Camera) -> None:
        if label is None:
            return

        def side_quad(y0, y1, za, zb):
            return [cam.point(x + street.bend(za), y0, za), cam.point(x + street.bend(zb), y0, zb),
                    cam.point(x + street.bend(zb), y1, zb), cam.point(x + street.bend(za), y1, za)]
        if kind == 'building':  # the end wall facing the camera, then the facade
            bz = x + street.bend(z0)
            canvas.polygon([cam.point(bz, 0, z0), cam.point(bz + side * 15, 0, z0),
                            cam.point(bz + side * 15, height, z0), cam.point(bz, height, z0)],
                           shade(color, 0.8), BUILDING)
        canvas.polygon(side_quad(0, height, z0, z1), color, label)
        if kind == 'building':
            per_m = max(1, int((z1 - z0) / 4 * columns / 3))
            for floor in range(1, floors):
                for i in range(per_m):
                    za = z0 + (z1 - z0) * (i + 0.25) / per_m
                    zb = za + (z1 - z0) * 0.5 / per_m
                    y0 = floor * 3.0 + 0.8
                    lit = shade(window, rng.uniform(0.7, 1.3))
                    canvas.paint(side_quad(y0, y0 + 1.4, za, zb), lit)
        elif kind == 'fence':
            step = 0.25
            for i in range(int((z1 - z0) / step)):
                za = z0 + i * step
                canvas.paint(side_quad(0, height, za, za + step * 0.3), shade(color, 0.6))
    return draw


def _objects(canvas: Canvas, cam: Camera, street: Street, z_near: float) -> List[Drawable]:
    """Vehicles, people, poles and trees with their depths."""
    rng = canvas.rng
    width = street.road_right - street.road_left
    lanes = [street.road_left + width * (i + 0.5) / street.lanes for i in range(street.lanes)]
    items = []

    def at(z, x, fn, **kw):
        items.append((z, lambda c, k, z=z, x=x: fn(c, k, x + street.bend(z), z, **kw)))

    def depth(low=None, high=80.0):
        return float(np.exp(rng.uniform(np.log(low or z_near * 1.3), np.log(high))))

    for _ in range(int(rng.integers(0, 7))):
        kind = rng.choice([objects.car] * 8 + [objects.truck, objects.bus])
        at(depth(), lanes[rng.integers(len(lanes))] + rng.normal(0, 0.2), kind)
    for _ in range(int(rng.integers(0, 6))):  # parked along the curb
        side = rng.choice([-1, 1])
        x = (street.road_left + 1.0) if side < 0 else (street.road_right - 1.0)
        at(depth(high=60), x, objects.car)
    if rng.random() < 0.05:
        z_tram, lane = depth(low=15, high=60), float(np.mean(lanes))
        at(z_tram, lane, objects.train)
        # its rails and wire, drawn just before it (nearer things still cover them)
        items.append((z_tram + 0.01, lambda c, k, z=z_tram, x=lane:
                      tramway(c, k, street, x, z_near, z)))
    for _ in range(int(rng.integers(0, 9))):  # pedestrians, mostly on the sidewalks
        side = rng.choice([-1, 1])
        if rng.random() < 0.8:
            x = (street.road_left - rng.uniform(0.4, street.sidewalk_left - 0.3) if side < 0
                 else street.road_right + rng.uniform(0.4, street.sidewalk_right - 0.3))
        else:
            x = rng.uniform(street.road_left, street.road_right)
        at(depth(high=50), x, objects.person)
    for _ in range(int(rng.integers(0, 3))):
        at(depth(high=40), rng.uniform(street.road_left + 0.5, street.road_right - 0.5),
           objects.two_wheeler, motor=bool(rng.random() < 0.4))
    for side, edge, walk in ((-1, street.road_left, street.sidewalk_left),
                             (1, street.road_right, street.sidewalk_right)):
        z = z_near * rng.uniform(1.2, 3)
        while z < 90:
            at(z, edge + side * rng.uniform(0.3, 0.6), objects.pole)
            z += rng.uniform(8, 35)
        for _ in range(int(rng.integers(0, 6))):
            at(depth(high=90), edge + side * rng.uniform(0.5, max(0.6, walk - 0.5)),
               objects.tree)
    return items


def tramway(canvas: Canvas, cam: Camera, street: Street, x: float, z_near: float,
            z_end: float) -> None:
    """Grooved rails in the lane centred on ``x`` from ``z_near`` to the tram at ``z_end``,
    and the contact wire above them, all the way to the horizon. Image only: the rails stay
    road (as in Cityscapes) and the wire is thinner than a label could show."""
    half_gauge = 0.72
    for rail in (x - half_gauge, x + half_gauge):
        canvas.paint(ground_strip(cam, street, rail - 0.05, rail + 0.05, z_near, z_end),
                     (150, 150, 155))
        canvas.paint(ground_strip(cam, street, rail - 0.015, rail + 0.015, z_near, z_end),
                     (40, 40, 42))
    zs = _depths(max(z_near, 2.0))
    canvas.stroke([cam.point(x + street.bend(z), objects.WIRE_HEIGHT, z) for z in zs],
                  (30, 30, 30), max(1.0, canvas.width / 1024))


def _lighting(canvas: Canvas, cam: Camera) -> None:
    """Global light and colour cast, a cast shadow, vignetting, sensor noise and blur."""
    rng = canvas.rng
    image = canvas.image.astype(np.float32)
    h, w = canvas.height, canvas.width
    if rng.random() < 0.5:  # a long shadow across the ground (buildings, trees)
        y0 = rng.uniform(cam.horizon_px, h)
        pts = np.array([(rng.uniform(-0.2, 0.5) * w, y0), (rng.uniform(0.5, 1.2) * w, y0),
                        (rng.uniform(0.5, 1.2) * w, h), (rng.uniform(-0.2, 0.5) * w, h)])
        mask = np.zeros((h, w), np.float32)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1.0)
        mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, w / 200))
        image *= 1.0 - rng.uniform(0.25, 0.5) * mask[..., None]
    gain = rng.uniform(0.65, 1.3) * rng.uniform(0.9, 1.1, 3)
    image = image * gain + rng.uniform(-15, 15)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    image *= (1.0 - rng.uniform(0.0, 0.25) * r2 / 2)[..., None]
    image += rng.normal(0, rng.uniform(1, 6), image.shape).astype(np.float32)
    sigma = rng.uniform(0, 1.2) * w / 1024
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    canvas.image = np.clip(image, 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, width: int = 1024, height: int = 512, *,
                 extra: Optional[Callable[[Canvas, Camera, Street, float],
                                          List[Drawable]]] = None):
    """One street scene: ``(image RGB uint8 (H,W,3), label trainIds uint8 (H,W))``.

    ``extra`` may add drawables (anomalies) that take part in the far-to-near ordering; they
    paint the label ``ANOMALY_LABEL``.
    """
    canvas = Canvas(width, height, rng)
    cam = Camera.random(rng, width, height)
    street = Street.random(rng)
    z_near = cam.depth_of_row(height) * 0.9
    _sky(canvas, cam)
    _skyline(canvas, cam)
    _ground(canvas, cam, street, z_near)
    drawables = _side_structures(canvas, cam, street, -1, z_near)
    drawables += _side_structures(canvas, cam, street, 1, z_near)
    drawables += _objects(canvas, cam, street, z_near)
    if extra is not None:
        drawables += extra(canvas, cam, street, z_near)
    for _, draw in sorted(drawables, key=lambda item: -item[0]):
        draw(canvas, cam)
    if rng.random() < 0.3:  # the ego vehicle's bonnet, void as in Cityscapes
        top = height * rng.uniform(0.88, 0.95)
        canvas.polygon([(0, height), (width, height), (width * 0.85, top), (width * 0.15, top)],
                       jitter(rng, (40, 40, 45), 10), VOID)
    _lighting(canvas, cam)
    return canvas.image, canvas.label, cam, street
