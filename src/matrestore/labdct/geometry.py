"""LabDCT acquisition geometry: lab frame, detector, beam stop, rotation angles.

Lab frame (as in the paper and the issue): the X-ray source sits at ``(-Lss, 0, 0)`` (mm), the beam runs
along +x through the sample at the origin, the rotation axis is z, and the flat detector is the plane
``x = Lsd``. A detector point ``(x = Lsd, y, z)`` falls on pixel

    col = cy + y / pixel_mm          row = cz - z / pixel_mm

(``cy, cz``: the pixel where the straight-through beam hits, 0-based; z points up, rows go down).
``pixel_mm`` is the *effective* pixel size, i.e. the physical pixel times the binning.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from .._validate import InputError

__all__ = ["Geometry", "read_geometry_m", "IRON_GEOMETRY"]


@dataclass
class Geometry:
    """Distances in mm, detector in (effective) pixels. ``beamstop``: ``(row0, row1, col0, col1)``
    half-open box in pixels, or ``None`` for none."""

    lss: float = 100.0  # source -> sample (mm)
    lsd: float = 100.0  # sample -> detector (mm)
    pixel_mm: float = 0.068334  # effective pixel size (binned), mm
    shape: tuple = (1024, 1024)  # detector rows, cols (binned)
    binning: int = 2  # recorded for the user; pixel_mm already includes it
    centre: tuple | None = None  # (cz, cy) = (row, col) of the direct beam; None: the detector centre
    beamstop: tuple | None = (478, 594, 434, 561)  # rows, cols (half-open); None: no beam stop
    blur_px: float = 0.7  # detector point-spread (Gaussian sigma, pixels)
    e_min_kev: float = 15.0  # accepted photon energies (tube spectrum support)
    e_max_kev: float = 150.0
    tube_kv: float = 160.0  # Kramers bremsstrahlung spectrum of the tube: phi(E) ~ (kV - E)/E

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        if self.centre is not None:
            self.centre = tuple(float(c) for c in self.centre)
        if self.beamstop is not None:
            self.beamstop = tuple(int(b) for b in self.beamstop)
        self.check()

    def check(self) -> None:
        if not (self.lss > 0 and self.lsd > 0):
            raise InputError(f"distances must be positive (Lss={self.lss}, Lsd={self.lsd} mm).")
        if not self.pixel_mm > 0:
            raise InputError(f"pixel size must be positive, got {self.pixel_mm} mm.")
        if len(self.shape) != 2 or min(self.shape) < 8:
            raise InputError(f"detector shape must be two sides of at least 8 px, got {self.shape}.")
        if not 0 < self.e_min_kev < self.e_max_kev:
            raise InputError(f"energy window must satisfy 0 < E_min < E_max (got {self.e_min_kev}, {self.e_max_kev}).")
        if self.beamstop is not None:
            r0, r1, c0, c1 = self.beamstop
            h, w = self.shape
            if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
                raise InputError(f"beam stop {self.beamstop} (row0, row1, col0, col1) lies outside the {h}x{w} detector.")

    @property
    def beam_centre(self) -> tuple:
        """(row, col) of the direct beam."""
        if self.centre is not None:
            return self.centre
        return ((self.shape[0] - 1) / 2.0, (self.shape[1] - 1) / 2.0)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})

    def binned(self, factor: int) -> "Geometry":
        """The same instrument read out with ``factor`` times coarser pixels (``factor`` may be 1/2 as 0.5
        for an unbinned view of a binned geometry)."""
        f = float(factor)
        h, w = self.shape
        shape = (int(round(h / f)), int(round(w / f)))
        cen = None if self.centre is None else ((self.centre[0] + 0.5) / f - 0.5, (self.centre[1] + 0.5) / f - 0.5)
        bs = None if self.beamstop is None else tuple(int(round(b / f)) for b in self.beamstop)
        return replace(self, pixel_mm=self.pixel_mm * f, shape=shape, centre=cen, beamstop=bs,
                       binning=max(1, int(round(self.binning * f))), blur_px=self.blur_px)

    def pixel_of(self, y_mm, z_mm):
        """(row, col) of detector points (y, z) in mm."""
        cz, cy = self.beam_centre
        return cz - np.asarray(z_mm) / self.pixel_mm, cy + np.asarray(y_mm) / self.pixel_mm


#: The geometry of the real pure-iron frames (``input_main.m``: Lss = Lsd = 100 mm, 2048² detector of
#: 34.167 µm pixels binned 2×2, beam centre 1025.97/1025.05 (1-based, unbinned)). The beam-stop box is the
#: shadow measured on the frames (median of the first 11, below half the frame median).
IRON_GEOMETRY = Geometry(
    lss=100.0, lsd=100.0, pixel_mm=2 * 0.034167, shape=(1024, 1024), binning=2,
    centre=((1025.0230 - 1 + 0.5) / 2 - 0.5, (1025.9672 - 1 + 0.5) / 2 - 0.5), beamstop=(478, 594, 434, 561),
)


def _num(text: str, name: str):
    m = re.search(rf"^\s*{name}\s*=\s*([^;%\n]+)", text, re.M)
    if not m:
        return None
    expr = m.group(1).strip()
    vals = re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", expr)
    if not vals:
        return None
    nums = [float(v) for v in vals]
    if "*" in expr and len(nums) == 2 and "[" not in expr:  # e.g. 512.4836*2
        return nums[0] * nums[1]
    if "*" in expr and len(nums) == 3 and "+" in expr:  # e.g. 512.4836*2+1
        return nums[0] * nums[1] + nums[2]
    return nums if len(nums) > 1 or "[" in expr else nums[0]


def read_geometry_m(path) -> tuple[Geometry, dict]:
    """A :class:`Geometry` and the rotation settings from a LabDCT ``input_main.m`` parameter file
    (``Lsam2det``, ``Lsam2sou``, ``binning``, ``pixelysize``, ``detysize``, ``dety0``/``detz0``,
    ``beamstop``, ``rot_start``/``rot_step``/``rot_end``, ``E_min``/``E_max``). Detector values in the file
    are unbinned and 1-based (MATLAB); the geometry is binned and 0-based. Returns ``(geometry, info)``
    where ``info`` has ``rot_start``, ``rot_step``, ``rot_end`` (degrees) when present."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"geometry file not found: {p}")
    text = p.read_text(errors="replace")
    lsd = _num(text, "Lsam2det")
    lss = _num(text, "Lsam2sou")
    if lsd is None or lss is None:
        raise InputError(f"{p.name}: no Lsam2det / Lsam2sou distances found; is this a LabDCT input_main.m?")
    lss = abs(lss[0] if isinstance(lss, list) else lss)
    binning = int(_num(text, "binning") or 1)
    px = float(_num(text, "pixelysize") or 0.0)
    ny = int(_num(text, "detysize") or 0)
    nz = int(_num(text, "detzsize") or ny)
    if px <= 0 or ny <= 0:
        raise InputError(f"{p.name}: no pixel size / detector size (pixelysize, detysize) found.")
    y0, z0 = _num(text, "dety0"), _num(text, "detz0")
    centre = None
    if isinstance(y0, float) and isinstance(z0, float):
        centre = ((z0 - 1 + 0.5) / binning - 0.5, (y0 - 1 + 0.5) / binning - 0.5)
    bs = _num(text, "beamstop")
    beamstop = None
    if isinstance(bs, list) and len(bs) == 4:
        # [y0 y1 z0 z1] in unbinned 1-based pixels -> rows (z), cols (y), binned, half-open
        b = [int(round((v - 1) / binning)) for v in bs]
        beamstop = (b[2], b[3] + 1, b[0], b[1] + 1)
    e_min, e_max = _num(text, "E_min"), _num(text, "E_max")
    geo = Geometry(lss=float(lss), lsd=float(lsd), pixel_mm=px * binning, shape=(nz // binning, ny // binning),
                   binning=binning, centre=centre, beamstop=beamstop,
                   e_min_kev=float(e_min) if isinstance(e_min, float) else 15.0,
                   e_max_kev=float(e_max) if isinstance(e_max, float) else 150.0)
    info = {k: _num(text, k) for k in ("rot_start", "rot_step", "rot_end")}
    return geo, {k: v for k, v in info.items() if isinstance(v, float)}
