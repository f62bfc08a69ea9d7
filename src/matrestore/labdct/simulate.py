"""Forward model of LabDCT projections (re-derived from the diffraction physics; vectorised numpy).

For each rotation ω the sample (Voronoi grains in a cylinder, random orientations, a cubic lattice) is
rotated about z, and for every voxel at lab position ``P`` and every reflection ``G`` of the first four
{hkl} families:

* incoming direction ``k = (P - S) / |P - S|`` from the source ``S = (-Lss, 0, 0)``;
* Bragg (Laue) condition with a polychromatic beam: the plane selects the wavelength
  ``λ = -2 d (k · ĝ)`` (only ``k · ĝ < 0`` diffracts), ``sin θ = -k · ĝ``, ``E = 12.398 / λ`` keV, accepted when
  ``E_min <= E <= E_max`` and below the tube voltage;
* outgoing direction ``k' = k - 2 (k · ĝ) ĝ`` (mirror reflection; ``|k'| = 1``), intersected with the
  detector plane ``x = Lsd``;
* intensity ``∝ V_voxel λ³ |F|² Φ(E) L P`` with the Kramers tube spectrum ``Φ(E) = (kV - E) / E``, the
  white-beam Lorentz factor ``L = 1 / (2 sin² θ)`` and the unpolarised-beam polarisation factor
  ``P = (1 + cos² 2θ) / 2`` (absorption and detector efficiency are left out);
* bilinear splatting of each voxel's intensity on the detector, Gaussian detector blur, and zero inside
  the beam stop (which blocks the diffracted rays as well as the direct beam).

Because every voxel reflects with its own incoming direction, Laue focusing comes out by itself: with
``Lss = Lsd`` the spots are compressed radially and magnified ``(Lss + Lsd) / Lss = 2`` tangentially.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from .._validate import InputError
from ..progress import Kind, drive, is_cancelled, record
from .crystal import random_orientations, reflections
from .geometry import Geometry

__all__ = ["SampleConfig", "Sample", "make_sample", "project", "analytic_spot", "simulate_iter", "simulate",
           "SimResult", "rotation_z", "HC_KEV_A"]

HC_KEV_A = 12.398419843  # h c in keV·Å


@dataclass
class SampleConfig:
    """A cylindrical polycrystal. Lengths in mm. ``voxel_mm=None``: fine enough for the detector."""

    material: str = "Fe"
    diameter_mm: float = 1.0
    height_mm: float = 1.0
    grain_size_mm: float = 0.12  # mean equivalent-sphere diameter of the Voronoi cells (approximately)
    voxel_mm: float | None = None
    families: int = 4
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Sample:
    positions: np.ndarray  # (n, 3) voxel centres in the sample frame (mm)
    grain: np.ndarray  # (n,) grain index of each voxel, voxels sorted by grain
    starts: np.ndarray  # (g,) first voxel of each grain
    counts: np.ndarray  # (g,) voxels per grain
    orientations: np.ndarray  # (g, 3, 3) crystal -> sample
    voxel_volume: float  # mm³
    refl: dict  # see crystal.reflections
    config: SampleConfig = field(default_factory=SampleConfig)

    @property
    def n_grains(self) -> int:
        return int(len(self.counts))

    def grain_sizes_mm(self) -> np.ndarray:
        """Equivalent-sphere diameters."""
        return (6.0 * self.counts * self.voxel_volume / np.pi) ** (1.0 / 3.0)

    def summary(self) -> dict:
        gs = self.grain_sizes_mm()
        return {"material": self.config.material, "grains": self.n_grains, "voxels": int(len(self.grain)),
                "grain_size_um_mean": float(gs.mean() * 1e3), "grain_size_um_sd": float(gs.std() * 1e3),
                "diameter_mm": self.config.diameter_mm, "height_mm": self.config.height_mm}


def rotation_z(omega_deg) -> np.ndarray:
    w = np.deg2rad(float(omega_deg))
    c, s = np.cos(w), np.sin(w)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _auto_voxel(cfg: SampleConfig, geometry: Geometry) -> float:
    # the detector sees the sample magnified (Lss+Lsd)/Lss tangentially: sample a pixel with >= 1.5 voxels
    at_sample = geometry.pixel_mm * geometry.lss / (geometry.lss + geometry.lsd)
    return float(min(at_sample / 1.5, cfg.grain_size_mm / 4.0))


def make_sample(cfg: SampleConfig, geometry: Geometry | None = None, max_voxels: int = 3_000_000,
                orientations: np.ndarray | None = None, seeds: np.ndarray | None = None) -> Sample:
    """Voronoi grains in a cylinder (axis z) with random orientations (or the given ``orientations``
    and grain ``seeds``)."""
    geometry = geometry or Geometry()
    if cfg.diameter_mm <= 0 or cfg.height_mm <= 0 or cfg.grain_size_mm <= 0:
        raise InputError("sample diameter, height and grain size must be positive.")
    rng = np.random.default_rng(cfg.seed)
    v = float(cfg.voxel_mm or _auto_voxel(cfg, geometry))
    r = cfg.diameter_mm / 2.0
    nxy, nz = int(np.ceil(cfg.diameter_mm / v)), max(1, int(np.ceil(cfg.height_mm / v)))
    est = nxy * nxy * nz * np.pi / 4
    if est > max_voxels:
        raise InputError(f"the sample would need about {est:.3g} voxels (more than {max_voxels:.3g}); "
                         "use a coarser voxel_mm or a smaller sample.")
    ax = (np.arange(nxy) - (nxy - 1) / 2.0) * v
    az = (np.arange(nz) - (nz - 1) / 2.0) * v
    X, Y, Z = np.meshgrid(ax, ax, az, indexing="ij")
    inside = X**2 + Y**2 <= r * r
    pos = np.stack([X[inside], Y[inside], Z[inside]], 1)
    pos += rng.uniform(-v / 2, v / 2, size=pos.shape)  # jitter: no aliasing of a regular grid
    vol_cyl = np.pi * r * r * cfg.height_mm
    if seeds is None:
        n_grains = max(1, int(round(vol_cyl / (np.pi / 6.0 * cfg.grain_size_mm**3))))
        rr = r * np.sqrt(rng.uniform(size=n_grains))
        ph = rng.uniform(0, 2 * np.pi, size=n_grains)
        seeds = np.stack([rr * np.cos(ph), rr * np.sin(ph), rng.uniform(-cfg.height_mm / 2, cfg.height_mm / 2, n_grains)], 1)
    seeds = np.atleast_2d(np.asarray(seeds, float))
    _, gid = cKDTree(seeds).query(pos)
    order = np.argsort(gid, kind="stable")
    pos, gid = pos[order], gid[order]
    counts = np.bincount(gid, minlength=len(seeds))
    keep = counts > 0
    remap = np.cumsum(keep) - 1
    gid = remap[gid]
    counts = counts[keep]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if orientations is None:
        orientations = random_orientations(len(seeds), rng)
    orientations = np.asarray(orientations, float).reshape(-1, 3, 3)[keep]
    return Sample(positions=pos, grain=gid, starts=starts, counts=counts, orientations=orientations,
                  voxel_volume=v**3, refl=reflections(cfg.material, cfg.families), config=cfg)


def _diffraction(P, gh, d, geometry: Geometry):
    """Per (voxel, reflection) element: detector (row, col), energy, weight factors. ``P`` (n,3) lab
    positions, ``gh`` (n,3) unit plane normals in the lab, ``d`` (n,) d-spacings (Å)."""
    S = np.array([-geometry.lss, 0.0, 0.0])
    k = P - S
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    c = np.einsum("ij,ij->i", k, gh)
    sin_t = -c
    lam = 2.0 * d * sin_t
    with np.errstate(divide="ignore", invalid="ignore"):
        E = np.where(lam > 0, HC_KEV_A / lam, np.inf)
    kout = k - 2.0 * c[:, None] * gh
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (geometry.lsd - P[:, 0]) / kout[:, 0]
    y = P[:, 1] + t * kout[:, 1]
    z = P[:, 2] + t * kout[:, 2]
    row, col = geometry.pixel_of(y, z)
    ok = (sin_t > 0) & (kout[:, 0] > 0) & (E >= geometry.e_min_kev) & (E <= min(geometry.e_max_kev, geometry.tube_kv))
    return row, col, E, lam, sin_t, ok


def _weights(E, lam, sin_t, F2, geometry: Geometry):
    phi = np.clip(geometry.tube_kv - E, 0.0, None) / E
    lorentz = 1.0 / (2.0 * sin_t**2)
    cos2t = 1.0 - 2.0 * sin_t**2
    pol = (1.0 + cos2t**2) / 2.0
    return lam**3 * F2 * phi * lorentz * pol


def analytic_spot(orientation: np.ndarray, omega_deg: float, hkl, material: str, geometry: Geometry):
    """Where a point grain at the origin with ``orientation`` puts reflection ``hkl`` at ``omega``:
    ``(row, col, energy_keV)`` or ``None`` (no diffraction / off the detector / energy outside)."""
    a = reflections(material)["a"]
    g = rotation_z(omega_deg) @ np.asarray(orientation) @ np.asarray(hkl, float)
    d = a / np.linalg.norm(np.asarray(hkl, float))
    gh = g / np.linalg.norm(g)
    row, col, E, _, _, ok = _diffraction(np.zeros((1, 3)), gh[None], np.array([d]), geometry)
    h, w = geometry.shape
    if not ok[0] or not (0 <= row[0] < h and 0 <= col[0] < w):
        return None
    return float(row[0]), float(col[0]), float(E[0])


def _splat(shape, row, col, w):
    h, wd = shape
    r0 = np.floor(row).astype(np.int64)
    c0 = np.floor(col).astype(np.int64)
    fr, fc = row - r0, col - c0
    out = np.zeros(h * wd, np.float64)
    for dr, dc, ww in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr, cc = r0 + dr, c0 + dc
        m = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < wd)
        out += np.bincount(rr[m] * wd + cc[m], weights=(w * ww)[m], minlength=h * wd)
    return out.reshape(h, wd)


def project(sample: Sample, geometry: Geometry, omega_deg: float, chunk: int = 1_500_000,
            with_beamstop: bool = True) -> np.ndarray:
    """The noise-free diffraction image (float32, arbitrary intensity units, zero background) at ω."""
    R = rotation_z(omega_deg)
    refl = sample.refl
    hkl = refl["hkl"].astype(float)
    G_unit = hkl / np.linalg.norm(hkl, axis=1, keepdims=True)
    # plane normals in the lab for every (grain, reflection): R U g
    gl = np.einsum("ij,gjk,mk->gmi", R, sample.orientations, G_unit)  # (g, m, 3)
    ng, nm = gl.shape[:2]
    # cull (grain, reflection) pairs with the grain centroid, with margins for the grain's extent
    cent = np.add.reduceat(sample.positions, sample.starts, axis=0) / sample.counts[:, None]
    cl = cent @ R.T
    Pc = np.repeat(cl, nm, axis=0)
    ghc = gl.reshape(-1, 3)
    dc = np.tile(refl["d"], ng)
    row, col, E, _, _, _ = _diffraction(Pc, ghc, dc, geometry)
    ext = (sample.grain_sizes_mm() * 2.5 / geometry.pixel_mm + 8.0)
    ext = np.repeat(ext, nm)
    h, w = geometry.shape
    keep = (np.isfinite(row) & (row > -ext) & (row < h + ext) & (col > -ext) & (col < w + ext)
            & (E > geometry.e_min_kev * 0.8) & (E < min(geometry.e_max_kev, geometry.tube_kv) * 1.25))
    pairs = np.nonzero(keep)[0]
    img = np.zeros(geometry.shape, np.float64)
    if len(pairs):
        gi, mi = pairs // nm, pairs % nm
        cnt = sample.counts[gi]
        # split the pairs into chunks of at most ``chunk`` voxel evaluations
        csum = np.cumsum(cnt)
        bounds = np.searchsorted(csum, np.arange(chunk, csum[-1] + chunk, chunk), side="left")
        lo = 0
        for hi in list(bounds + 1) + [len(pairs)]:
            hi = min(hi, len(pairs))
            if hi <= lo:
                continue
            g_, m_, c_ = gi[lo:hi], mi[lo:hi], cnt[lo:hi]
            tot = int(c_.sum())
            offs = np.repeat(np.cumsum(c_) - c_, c_)
            vidx = np.arange(tot) - offs + np.repeat(sample.starts[g_], c_)
            P = sample.positions[vidx] @ R.T
            gh = np.repeat(gl[g_, m_], c_, axis=0)
            d = np.repeat(refl["d"][m_], c_)
            F2 = np.repeat(refl["F2"][m_], c_)
            r_, cc_, E_, lam, sin_t, ok = _diffraction(P, gh, d, geometry)
            if ok.any():
                wgt = _weights(E_[ok], lam[ok], sin_t[ok], F2[ok], geometry) * sample.voxel_volume
                img += _splat(geometry.shape, r_[ok], cc_[ok], wgt)
            lo = hi
    if geometry.blur_px and geometry.blur_px > 0:
        img = ndi.gaussian_filter(img, geometry.blur_px, mode="constant")
    if with_beamstop and geometry.beamstop is not None:
        r0, r1, c0, c1 = geometry.beamstop
        img[r0:r1, c0:c1] = 0.0
    return img.astype(np.float32)


@dataclass
class SimResult:
    """Noise-free spot frames (``spots``: (N, H, W) float32, zero background) and what made them."""

    spots: np.ndarray
    omegas: np.ndarray
    geometry: Geometry
    sample: dict

    def __len__(self):
        return len(self.spots)


def _omegas(n_frames, omegas, step_deg, start_deg):
    if omegas is not None:
        om = np.asarray(omegas, float).ravel()
        if om.size == 0:
            raise InputError("no rotation angles given.")
        return om
    n = int(n_frames)
    if n < 1:
        raise InputError(f"number of frames must be >= 1, got {n}.")
    return start_deg + step_deg * np.arange(n)


def simulate_iter(n_frames: int = 181, *, omegas=None, step_deg: float = 2.0, start_deg: float = 0.0,
                  geometry: Geometry | None = None, sample: SampleConfig | Sample | None = None, cancel=None):
    """Generator: yields progress records, returns a :class:`SimResult` (or ``None`` when cancelled)."""
    geometry = geometry or Geometry()
    om = _omegas(n_frames, omegas, step_deg, start_deg)
    t0 = time.perf_counter()
    smp = sample if isinstance(sample, Sample) else make_sample(sample or SampleConfig(), geometry)
    yield record(Kind.SETUP, message=f"{smp.n_grains} grains, {len(smp.grain)} voxels; {len(om)} projections",
                 total=len(om), elapsed_s=time.perf_counter() - t0)
    out = np.zeros((len(om),) + geometry.shape, np.float32)
    for i, w in enumerate(om):
        if is_cancelled(cancel):
            yield record(Kind.STOPPED, message="stopped", step=i, total=len(om))
            return None
        out[i] = project(smp, geometry, w)
        yield record(Kind.STEP, step=i + 1, total=len(om), elapsed_s=time.perf_counter() - t0,
                     message=f"projection {i + 1}/{len(om)} (ω = {w:g}°)")
    yield record(Kind.DONE, message="simulated", elapsed_s=time.perf_counter() - t0)
    return SimResult(spots=out, omegas=om, geometry=geometry, sample=smp.summary())


def simulate(n_frames: int = 181, *, omegas=None, step_deg: float = 2.0, start_deg: float = 0.0,
             geometry: Geometry | None = None, sample: SampleConfig | Sample | None = None, progress=None,
             cancel=None) -> SimResult:
    """Simulate ``n_frames`` noise-free LabDCT projections (see the module docstring)."""
    return drive(simulate_iter(n_frames, omegas=omegas, step_deg=step_deg, start_deg=start_deg,
                               geometry=geometry, sample=sample, cancel=cancel), progress)
