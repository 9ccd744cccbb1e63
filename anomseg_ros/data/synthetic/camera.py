"""A pinhole camera over a flat ground plane: metres in the world to pixels in the image."""
import dataclasses

import numpy as np


@dataclasses.dataclass
class Camera:
    """Camera at ``height_m`` above the ground looking along +Z; X to the right, metres."""

    width: int
    height: int
    focal_px: float
    horizon_px: float
    height_m: float

    @classmethod
    def random(cls, rng: np.random.Generator, width: int, height: int) -> 'Camera':
        return cls(width, height, focal_px=width * rng.uniform(0.75, 1.0),
                   horizon_px=height * rng.uniform(0.38, 0.5), height_m=rng.uniform(1.2, 1.9))

    def u(self, x_m, z_m):
        return self.width / 2 + self.focal_px * np.asarray(x_m) / np.asarray(z_m)

    def v(self, y_m, z_m):
        """Row of a point ``y_m`` metres above the ground at depth ``z_m``."""
        return self.horizon_px + self.focal_px * (self.height_m - np.asarray(y_m)) / \
            np.asarray(z_m)

    def point(self, x_m, y_m, z_m):
        return float(self.u(x_m, z_m)), float(self.v(y_m, z_m))

    def pixels_per_m(self, z_m: float) -> float:
        return self.focal_px / z_m

    def depth_of_row(self, row: float) -> float:
        """Depth of the ground seen at image row ``row`` (below the horizon)."""
        return self.focal_px * self.height_m / max(row - self.horizon_px, 1e-3)
