"""Inlier objects of the synthetic street, each drawn in perspective at a ground position."""
from anomseg_ros.data.synthetic.camera import Camera
from anomseg_ros.data.synthetic.canvas import Canvas, jitter, shade

(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON,
 RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)

VEHICLE_COLORS = [(200, 200, 205), (30, 30, 35), (150, 20, 25), (25, 50, 120), (90, 95, 100),
                  (220, 220, 220), (40, 90, 50), (180, 150, 60), (120, 120, 130)]
CLOTHES = [(30, 30, 40), (60, 60, 130), (140, 30, 30), (200, 200, 190), (90, 70, 50),
           (40, 100, 60), (180, 140, 40), (100, 100, 100)]
SKIN = [(230, 190, 160), (190, 140, 100), (120, 80, 55), (250, 215, 190)]


def _face(cam, x0, x1, y0, y1, z):
    """A rectangle facing the camera at depth z, in pixels."""
    return [cam.point(x0, y0, z), cam.point(x1, y0, z), cam.point(x1, y1, z), cam.point(x0, y1, z)]


def _side(cam, x, y0, y1, z0, z1):
    """A rectangle along the road (constant x) from depth z0 to z1, in pixels."""
    return [cam.point(x, y0, z0), cam.point(x, y0, z1), cam.point(x, y1, z1), cam.point(x, y1, z0)]


def _near_side(x, width):
    """The lateral position of a vehicle's side the camera sees (the one towards the road's
    centre line)."""
    return x - width / 2 if x > 0 else x + width / 2


def box_vehicle(canvas: Canvas, cam: Camera, x, z, *, width, height, length, label, color,
                windows=1, wheel=0.35):
    """A box seen from behind (or the front) with its near side visible, windows and wheels."""
    rng = canvas.rng
    body, dark = jitter(rng, color, 12), shade(color, 0.55)
    side_x = _near_side(x, width)
    canvas.polygon(_side(cam, side_x, 0.15, height, z, z + length), shade(body, 0.8), label)
    for i in range(windows):  # side windows
        z0 = z + length * (0.1 + 0.85 * i / windows)
        z1 = z0 + length * 0.85 / windows * 0.8
        canvas.paint(_side(cam, side_x, height * 0.6, height * 0.88, z0, z1), (40, 50, 60))
    for zw in (z + length * 0.15, z + length * 0.8):  # wheels on the visible side
        u, v = cam.point(side_x, wheel, zw)
        r = wheel * cam.pixels_per_m(zw)
        canvas.ellipse((u, v), (r * 0.45, r), (15, 15, 15), label)
    canvas.polygon(_face(cam, x - width / 2, x + width / 2, 0.15, height, z), body, label)
    canvas.paint(_face(cam, x - width * 0.42, x + width * 0.42, height * 0.6, height * 0.9, z),
                 dark if label == CAR else (40, 50, 60))
    for side in (-1, 1):  # lights and the near wheels
        lx = x + side * width * 0.38
        canvas.paint(_face(cam, lx - 0.12, lx + 0.12, height * 0.45, height * 0.55, z),
                     (200, 20, 20) if rng.random() < 0.6 else (240, 230, 180))
        canvas.polygon(_face(cam, x + side * width * 0.42 - 0.12, x + side * width * 0.42 + 0.12,
                             0.0, 0.3, z), (15, 15, 15), label)


def car(canvas, cam, x, z):
    rng = canvas.rng
    box_vehicle(canvas, cam, x, z, width=rng.uniform(1.6, 2.0), height=rng.uniform(1.3, 1.7),
                length=rng.uniform(3.8, 4.8), label=CAR,
                color=VEHICLE_COLORS[rng.integers(len(VEHICLE_COLORS))], windows=2)


def truck(canvas, cam, x, z):
    rng = canvas.rng
    box_vehicle(canvas, cam, x, z, width=rng.uniform(2.3, 2.55), height=rng.uniform(3.0, 3.8),
                length=rng.uniform(6.0, 10.0), label=TRUCK,
                color=jitter(rng, (210, 210, 200), 40), windows=0, wheel=0.5)


def bus(canvas, cam, x, z):
    rng = canvas.rng
    color = [(230, 190, 30), (200, 40, 40), (40, 90, 170), (235, 235, 235)][rng.integers(4)]
    box_vehicle(canvas, cam, x, z, width=2.5, height=rng.uniform(2.9, 3.3), length=12.0,
                label=BUS, color=color, windows=6, wheel=0.5)


TRAM_HEIGHT = 3.4
WIRE_HEIGHT = 5.6  # the overhead contact wire the pantograph presses against


def train(canvas, cam, x, z):
    """A tram (Cityscapes' ``train``) seen from behind: a long box like a bus, told apart by
    what a tram has and a bus has not: a cream band under the roof, a lit destination sign
    across the top of the rear, and a pantograph up to the contact wire. The rails and the
    wire are drawn by the scene (``scene.tramway``), which knows the lane."""
    rng = canvas.rng
    width, length = 2.6, 30.0
    box_vehicle(canvas, cam, x, z, width=width, height=TRAM_HEIGHT, length=length, label=TRAIN,
                color=jitter(rng, (190, 30, 40), 30), windows=10, wheel=0.4)
    cream = jitter(rng, (235, 225, 190), 10)
    side_x = _near_side(x, width)
    canvas.paint(_side(cam, side_x, TRAM_HEIGHT * 0.9, TRAM_HEIGHT, z, z + length), cream)
    canvas.paint(_face(cam, x - width / 2, x + width / 2, TRAM_HEIGHT * 0.9, TRAM_HEIGHT, z),
                 cream)
    canvas.paint(_face(cam, x - width * 0.3, x + width * 0.3, TRAM_HEIGHT * 0.78,
                       TRAM_HEIGHT * 0.87, z), (20, 20, 20))
    canvas.paint(_face(cam, x - width * 0.26, x + width * 0.26, TRAM_HEIGHT * 0.8,
                       TRAM_HEIGHT * 0.85, z), (250, 170, 40))
    # single-arm pantograph on the roof, a quarter of the way along: lower arm, upper arm,
    # and the contact bar across under the wire
    zp = z + length * 0.25
    thick = max(1.0, 0.08 * cam.pixels_per_m(zp))
    base, knee = cam.point(x - 0.4, TRAM_HEIGHT, zp), cam.point(x + 0.5, TRAM_HEIGHT + 1.0, zp)
    head = cam.point(x, WIRE_HEIGHT - 0.05, zp)
    canvas.line(base, knee, (35, 35, 35), TRAIN, thick)
    canvas.line(knee, head, (35, 35, 35), TRAIN, thick)
    canvas.line(cam.point(x - 0.8, WIRE_HEIGHT - 0.05, zp),
                cam.point(x + 0.8, WIRE_HEIGHT - 0.05, zp), (35, 35, 35), TRAIN, thick)


def person(canvas, cam, x, z, *, base=0.0, label=PERSON, legs=True):
    """A pedestrian (or, with ``base`` above the ground and no legs, a rider's upper body)."""
    rng = canvas.rng
    h = rng.uniform(1.55, 1.95)
    width = h * rng.uniform(0.22, 0.28)
    shirt, pants = CLOTHES[rng.integers(len(CLOTHES))], CLOTHES[rng.integers(len(CLOTHES))]
    leg_top = base + h * 0.47
    if legs:
        stride = rng.uniform(0.0, 0.15)
        for side in (-1, 1):
            lx = x + side * (width * 0.22 + stride * (side > 0))
            canvas.polygon(_face(cam, lx - width * 0.16, lx + width * 0.16, base, leg_top, z),
                           jitter(rng, pants, 8), label)
    canvas.polygon(_face(cam, x - width / 2, x + width / 2, leg_top, base + h * 0.83, z),
                   jitter(rng, shirt, 10), label)
    for side in (-1, 1):  # arms
        ax = x + side * width * 0.58
        canvas.polygon(_face(cam, ax - width * 0.1, ax + width * 0.1, base + h * 0.5,
                             base + h * 0.82, z), shade(shirt, 0.85), label)
    u, v = cam.point(x, base + h * 0.91, z)
    r = h * 0.075 * cam.pixels_per_m(z)
    canvas.ellipse((u, v), (r * 0.85, r), SKIN[rng.integers(len(SKIN))], label)
    if rng.random() < 0.4:  # hair or a hat
        canvas.ellipse((u, v - r * 0.5), (r * 0.9, r * 0.55), (30, 25, 20), label)


def two_wheeler(canvas, cam, x, z, *, motor: bool):
    """A bicycle or motorcycle seen from the side, crossing, with its rider."""
    rng = canvas.rng
    label = MOTORCYCLE if motor else BICYCLE
    px = cam.pixels_per_m(z)
    wheel_r = (0.32 if motor else 0.34) * px
    half = (0.7 if motor else 0.55) * px
    u, v = cam.point(x, 0.0, z)
    centers = [(u - half, v - wheel_r), (u + half, v - wheel_r)]
    color = jitter(rng, VEHICLE_COLORS[rng.integers(len(VEHICLE_COLORS))], 15)
    for c in centers:
        canvas.ellipse(c, (wheel_r, wheel_r), (20, 20, 20), label)
        if not motor:  # spokes show the road through the wheel
            canvas.ellipse(c, (wheel_r * 0.8, wheel_r * 0.8), (90, 90, 95), ROAD)
    if motor:
        canvas.polygon([(u - half * 0.9, v - wheel_r), (u + half * 0.9, v - wheel_r),
                        (u + half * 0.6, v - 2.4 * wheel_r), (u - half * 0.7, v - 2.2 * wheel_r)],
                       color, label)
    else:
        seat = (u - half * 0.2, v - 2.6 * wheel_r)
        bar = (u + half * 0.7, v - 2.9 * wheel_r)
        t = max(1.0, 0.05 * px)
        for a, b in ((centers[0], seat), (seat, (u, v - wheel_r)), ((u, v - wheel_r), centers[1]),
                     (centers[1], bar), (seat, bar)):
            canvas.line(a, b, color, label, t)
    person(canvas, cam, x, z - 0.05, base=(0.55 if motor else 0.75), label=RIDER, legs=False)


def pole(canvas, cam, x, z, *, top=None):
    """A pole, with a traffic light, a sign or a street lamp on top."""
    rng = canvas.rng
    height = rng.uniform(3.0, 8.0)
    w = rng.uniform(0.1, 0.25)
    gray = jitter(rng, (110, 110, 115), 25)
    canvas.polygon(_face(cam, x - w / 2, x + w / 2, 0.0, height, z), gray, POLE)
    top = top or ['light', 'sign', 'lamp', 'none'][rng.integers(4)]
    if top == 'light':
        y0 = height - 1.0
        canvas.polygon(_face(cam, x - 0.2, x + 0.2, y0, height, z), (25, 25, 25), LIGHT)
        px = cam.pixels_per_m(z)
        lit = rng.integers(3)
        for i, color in enumerate(((220, 30, 30), (230, 180, 30), (30, 200, 60))):
            u, v = cam.point(x, height - 0.17 - 0.3 * i, z)
            canvas.ellipse((u, v), (0.1 * px, 0.1 * px), color if i == lit else (60, 60, 60),
                           LIGHT)
    elif top == 'sign':
        size = rng.uniform(0.5, 0.9)
        u, v = cam.point(x, min(height, 2.8) - size / 2, z)
        r = size / 2 * cam.pixels_per_m(z)
        kind = rng.integers(3)
        if kind == 0:
            canvas.ellipse((u, v), (r, r), (200, 20, 20), SIGN)
            canvas.ellipse((u, v), (r * 0.75, r * 0.75), jitter(rng, (240, 240, 240), 5), SIGN)
        elif kind == 1:
            canvas.polygon([(u, v - r), (u + r, v + r * 0.8), (u - r, v + r * 0.8)],
                           (210, 30, 30), SIGN)
        else:
            canvas.polygon([(u - r, v - r), (u + r, v - r), (u + r, v + r), (u - r, v + r)],
                           jitter(rng, (30, 80, 170), 20), SIGN)
    elif top == 'lamp':
        arm = rng.uniform(0.8, 2.0) * (-1 if x > 0 else 1)
        canvas.polygon(_face(cam, min(x, x + arm), max(x, x + arm), height - 0.15, height, z),
                       gray, POLE)


def tree(canvas, cam, x, z):
    rng = canvas.rng
    trunk_h, crown_r = rng.uniform(1.5, 3.5), rng.uniform(1.2, 3.0)
    w = rng.uniform(0.2, 0.4)
    canvas.polygon(_face(cam, x - w / 2, x + w / 2, 0.0, trunk_h + crown_r * 0.5, z),
                   jitter(rng, (80, 60, 40), 15), VEGETATION)
    green = jitter(rng, (70, 110, 40), 20)
    cx, cy = x, trunk_h + crown_r
    px = cam.pixels_per_m(z)
    for _ in range(int(rng.integers(12, 30))):  # a crown of leafy blobs
        dx, dy = rng.normal(0, crown_r * 0.45, 2)
        u, v = cam.point(cx + dx, cy + dy, z)
        r = rng.uniform(0.3, 0.7) * crown_r * px
        canvas.ellipse((u, v), (r, r * rng.uniform(0.7, 1.0)),
                       shade(green, rng.uniform(0.7, 1.25)), VEGETATION)
