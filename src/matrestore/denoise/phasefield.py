"""Grain structures from the multi-order-parameter Allen–Cahn model (paper appendix A, eqs. A1–A4).

Each order parameter ``η_i`` (``i = 1 … Q``) is 1 inside the grains it stands for and 0 elsewhere; the
free energy (eq. A3)::

    f = Σ_i (-α/2 η_i² + β/4 η_i⁴) + γ Σ_i Σ_{j≠i} η_i² η_j²

and the gradient term ``κ/2 |∇η_i|²`` give the evolution (eq. A4)::

    ∂η_i/∂t = -L (-α η_i + β η_i³ + 2γ η_i Σ_{j≠i} η_j² - κ ∇²η_i)

solved here with a **semi-implicit Fourier-spectral** scheme on a periodic grid (the gradient term
implicit, the local term explicit), vectorised over all order parameters::

    η̂_i(t + dt) = FFT[η_i - dt L ∂f/∂η_i](k) / (1 + dt L κ |k|²)

(one forward and one inverse FFT of the ``Q`` fields per step). The start is a Voronoi tessellation of
``n_grains`` nearly equal grains (Lloyd-relaxed seeds on the torus) whose grains get order parameters
by graph colouring: neighbours never share one, and — as far as ``Q`` allows — neither do grains with a
common neighbour, so that grains of the same parameter do not meet and merge when the grain between
them shrinks (≈ 16–24 parameters serve hundreds of grains).

Speed: the scheme runs on a simulation grid ``grid`` times coarser than the output (``grid="auto"``
keeps the mean starting grain ≥ 12 simulation pixels across) and the order parameters are brought to
the output size by band-limited (Fourier) interpolation, exact for a periodic field; the grain labels
are the arg-max parameter, split into connected grains. Grain growth is curvature-driven and has no
length scale of its own, so a coarser grid changes only how many steps a given coarsening takes:
``dt`` and ``steps`` are in simulation-grid units (lengths in simulation pixels).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .._validate import InputError
from ..progress import Kind, drive, is_cancelled, record

__all__ = [
    "PhaseField",
    "phase_field",
    "phase_field_iter",
    "voronoi_labels",
    "adjacency",
    "colour_grains",
    "grain_labels",
    "auto_grid",
]


@dataclass
class PhaseField:
    """Result of :func:`phase_field`.

    ``structure``: ``Σ_i η_i²`` at the output size (≈ 1 inside grains, lower on boundaries; Fig. 1a);
    ``labels``: grain labels 1…n (int32, connected grains of the arg-max order parameter);
    ``eta``: the order parameters on the simulation grid (``Q × h × w``, float32);
    ``params``: every parameter (a recipe that reproduces the result).
    Unpacks as ``structure, labels = phase_field(...)``.
    """

    structure: np.ndarray
    labels: np.ndarray
    eta: np.ndarray
    params: dict = field(default_factory=dict)
    n_grains_start: int = 0

    @property
    def n_grains(self) -> int:
        return int(self.labels.max())

    @property
    def mean_area(self) -> float:
        return float(self.labels.size / max(self.n_grains, 1))

    def __iter__(self):
        return iter((self.structure, self.labels))


def _fast_side(target: float, n: int) -> int:
    """A simulation side near ``target`` (at most ``n``) whose FFT is fast: a power of two within
    ×0.7–1.45 of it if there is one, else 2^a·3^b·5^c."""
    from scipy.fft import next_fast_len

    target = max(8.0, min(float(target), float(n)))
    p2 = 2 ** int(round(math.log2(target)))
    if 0.7 * target <= p2 <= 1.45 * target and p2 <= n:
        return int(p2)
    return int(min(n, next_fast_len(int(math.ceil(target)), real=True)))


def auto_grid(shape, n_grains: int, cells: float = 12.0) -> tuple[int, int]:
    """Simulation-grid shape for an output ``shape``: the mean starting grain about ``cells`` grid px
    across (never finer than the output), sides chosen for fast FFTs (powers of two where possible)."""
    H, W = shape
    d0 = math.sqrt(H * W / max(int(n_grains), 1))
    f = min(1.0, cells / d0)
    return _fast_side(H * f, H), _fast_side(W * f, W)


def voronoi_labels(shape, n_grains: int, rng: np.random.Generator, lloyd: int = 4) -> np.ndarray:
    """Periodic Voronoi tessellation of ``shape`` into ``n_grains`` cells (labels 0…n-1), seeds
    relaxed by ``lloyd`` Lloyd iterations so that the cells are of nearly equal size."""
    from scipy.spatial import cKDTree

    h, w = shape
    pts = rng.random((n_grains, 2)) * [h, w]
    yy, xx = np.mgrid[0:h, 0:w]
    grid = np.stack([yy.ravel() + 0.5, xx.ravel() + 0.5], 1)
    box = np.array([h, w], float)
    for it in range(lloyd + 1):
        tree = cKDTree(np.mod(pts, box), boxsize=box)
        _, lab = tree.query(grid, workers=1)
        if it == lloyd:
            break
        # periodic centroid: circular mean per axis
        for ax, n in ((0, h), (1, w)):
            ang = grid[:, ax] / n * 2 * np.pi
            c = np.bincount(lab, np.cos(ang), n_grains)
            s = np.bincount(lab, np.sin(ang), n_grains)
            keep = (c != 0) | (s != 0)
            pts[keep, ax] = np.mod(np.arctan2(s[keep], c[keep]) / (2 * np.pi) * n, n)
    return lab.reshape(h, w).astype(np.int32)


def adjacency(labels: np.ndarray, periodic: bool = True) -> list[set]:
    """Neighbour sets of the labels 0…n-1 (4-connectivity; across the wrap when ``periodic``)."""
    n = int(labels.max()) + 1
    pairs = []
    for ax in (0, 1):
        if periodic:
            other = np.roll(labels, -1, axis=ax)
            a, b = labels, other
        else:
            a = labels[:-1] if ax == 0 else labels[:, :-1]
            b = labels[1:] if ax == 0 else labels[:, 1:]
        m = a != b
        pairs.append(np.stack([a[m], b[m]], 1))
    p = np.unique(np.concatenate(pairs), axis=0) if pairs else np.zeros((0, 2), int)
    nb = [set() for _ in range(n)]
    for i, j in p:
        nb[int(i)].add(int(j))
        nb[int(j)].add(int(i))
    return nb


def colour_grains(neighbours: list[set], n_colours: int, rng: np.random.Generator) -> np.ndarray:
    """An order parameter (colour 0…n_colours-1) per grain: never the same as a neighbour's and, where
    ``n_colours`` allows, not the same as a second neighbour's; among the allowed ones the least used
    (ties broken at random). Greedy, largest neighbourhood first (Welsh–Powell order)."""
    n = len(neighbours)
    second = [set().union(*(neighbours[j] for j in nb)) - {i} - nb if nb else set() for i, nb in enumerate(neighbours)]
    order = sorted(range(n), key=lambda i: (-(len(neighbours[i]) + len(second[i])), rng.random()))
    colour = -np.ones(n, int)
    used = np.zeros(n_colours, int)
    for i in order:
        near = {colour[j] for j in neighbours[i] if colour[j] >= 0}
        far = {colour[j] for j in second[i] if colour[j] >= 0}
        allowed = [c for c in range(n_colours) if c not in near and c not in far]
        if not allowed:
            allowed = [c for c in range(n_colours) if c not in near]
        if not allowed:
            raise InputError(
                f"{n_colours} order parameters are too few: a grain has {len(neighbours[i])} neighbours; "
                "use more order parameters (n_order) or fewer grains."
            )
        best = min(used[c] for c in allowed)
        cands = [c for c in allowed if used[c] == best]
        c = cands[int(rng.integers(len(cands)))]
        colour[i] = c
        used[c] += 1
    return colour


def grain_labels(order_index: np.ndarray, min_area: int = 0) -> np.ndarray:
    """Connected grains (labels 1…n, int32) of a map of order-parameter indices (8-connectivity
    within one parameter). Grains smaller than ``min_area`` px are given to their largest neighbour."""
    from scipy import ndimage as ndi

    out = np.zeros(order_index.shape, np.int32)
    nxt = 0
    structure = np.ones((3, 3), bool)
    for q in np.unique(order_index):
        lab, n = ndi.label(order_index == q, structure=structure)
        m = lab > 0
        out[m] = lab[m] + nxt
        nxt += n
    if min_area > 0:
        sizes = np.bincount(out.ravel())
        small = np.flatnonzero((sizes < min_area) & (np.arange(sizes.size) > 0))
        if small.size:
            mask = np.isin(out, small)
            out[mask] = 0
            _, (iy, ix) = ndi.distance_transform_edt(mask, return_indices=True)
            out = out[iy, ix]
        _, inv = np.unique(out, return_inverse=True)
        out = (inv.reshape(out.shape) + 1).astype(np.int32)
    return out


def _fourier_resize(eta, shape):
    """Band-limited interpolation of periodic fields ``(..., h, w)`` to ``shape`` (exact for h, w = shape)."""
    import torch

    h, w = eta.shape[-2:]
    H, W = shape
    if (h, w) == (H, W):
        return eta
    F = torch.fft.fft2(eta)
    out = torch.zeros(eta.shape[:-2] + (H, W), dtype=F.dtype)
    hy, hx = min(h, H), min(w, W)
    ky = np.r_[0 : (hy + 1) // 2, -(hy // 2) : 0] if hy > 1 else np.array([0])
    kx = np.r_[0 : (hx + 1) // 2, -(hx // 2) : 0] if hx > 1 else np.array([0])
    iy_src, ix_src = np.mod(ky, h), np.mod(kx, w)
    iy_dst, ix_dst = np.mod(ky, H), np.mod(kx, W)
    out[..., iy_dst[:, None], ix_dst[None, :]] = F[..., iy_src[:, None], ix_src[None, :]]
    return torch.fft.ifft2(out).real * (H * W / (h * w))


def _step(eta, denom, a_, b_, c_, alpha):
    """One semi-implicit step. Order parameters far from their grains decay towards 0: values below
    1e-30 are set to 0 (subnormal floats make CPUs dozens of times slower)."""
    import torch

    e2 = eta * eta
    S = e2.sum(0)
    # df/deta_i = eta_i (-alpha + beta eta_i^2 + 2 gamma (S - eta_i^2))
    dfd = eta * (e2 * b_ + (S * c_ - alpha))
    out = torch.fft.irfft2(torch.fft.rfft2(eta - a_ * dfd) / denom, s=eta.shape[-2:])
    return out.masked_fill_(out.abs() < 1e-30, 0.0)


def phase_field_iter(shape=(256, 256), n_grains: int = 60, steps: int = 500, seed: int = 0, *, n_order: int = 20,
                     L: float = 1.0, kappa: float = 0.5, alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0,
                     dt: float = 0.5, grid="auto", min_area: int = 9, cancel=None, report_every: int = 50):
    """:func:`phase_field` as a generator of progress records (``"step"`` every ``report_every`` steps);
    returns the :class:`PhaseField` (``None`` when cancelled, after a ``"stopped"`` record)."""
    import torch

    t0 = time.perf_counter()
    try:
        H, W = (int(shape), int(shape)) if np.isscalar(shape) else (int(shape[0]), int(shape[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise InputError(f"shape must be an int or (rows, cols), got {shape!r}.") from exc
    if min(H, W) < 16:
        raise InputError(f"phase-field shape {(H, W)} is too small (at least 16 px a side).")
    if int(n_grains) < 2:
        raise InputError(f"n_grains must be at least 2, got {n_grains}.")
    if int(steps) < 0:
        raise InputError(f"steps must be >= 0, got {steps}.")
    for name, v in (("L", L), ("kappa", kappa), ("alpha", alpha), ("beta", beta), ("dt", dt)):
        if not (np.isfinite(v) and v > 0):
            raise InputError(f"{name} must be a positive number, got {v}.")
    if not (np.isfinite(gamma) and gamma >= 0):
        raise InputError(f"gamma must be >= 0, got {gamma}.")
    if grid in (None, "auto"):
        h, w = auto_grid((H, W), n_grains)
    else:
        try:
            g = float(grid)
        except (TypeError, ValueError) as exc:
            raise InputError(f"grid must be a positive number or 'auto', got {grid!r}.") from exc
        if not g >= 1:
            raise InputError(f"grid must be >= 1 (output px per simulation px) or 'auto', got {grid!r}.")
        h, w = max(8, int(round(H / g))), max(8, int(round(W / g)))
    g = math.sqrt(H * W / (h * w))
    if n_grains > h * w // 16:
        raise InputError(f"{n_grains} grains are too many for a {H}×{W} image on a {h}×{w} simulation grid "
                         f"(at most {h * w // 16}); use fewer grains or grid=1.")
    params = dict(shape=[H, W], n_grains=int(n_grains), steps=int(steps), seed=int(seed), n_order=int(n_order), L=float(L),
                  kappa=float(kappa), alpha=float(alpha), beta=float(beta), gamma=float(gamma), dt=float(dt), grid=round(g, 4),
                  sim_shape=[h, w], min_area=int(min_area), scheme="semi-implicit Fourier spectral, periodic")
    rng = np.random.default_rng([int(seed), 7001])
    vor = voronoi_labels((h, w), int(n_grains), rng)
    nb = adjacency(vor)
    col = colour_grains(nb, int(n_order), rng)
    params["colours_used"] = int(col.max()) + 1
    yield record(Kind.SETUP, message=f"{n_grains} Voronoi grains on a {h}×{w} grid, {col.max() + 1} order parameters",
                 total=int(steps), step=0)
    Q = int(n_order)
    eta = torch.zeros((Q, h, w), dtype=torch.float32)
    eta[torch.from_numpy(col[vor]), torch.arange(h)[:, None], torch.arange(w)[None, :]] = 1.0
    # lengths in simulation-grid units of spacing g (output px); per-axis spacings differ from g by < 1 %
    ky = torch.fft.fftfreq(h, d=(H / h) / g) * 2 * math.pi
    kx = torch.fft.rfftfreq(w, d=(W / w) / g) * 2 * math.pi
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    denom = 1.0 + dt * L * kappa * k2
    a_, b_, c_ = float(dt * L), float(beta - 2 * gamma), float(2 * gamma)
    for s in range(int(steps)):
        if is_cancelled(cancel):
            yield record(Kind.STOPPED, message="stopped", step=s, total=int(steps))
            return None
        eta = _step(eta, denom, a_, b_, c_, float(alpha))
        if report_every and (s + 1) % report_every == 0:
            yield record(Kind.STEP, step=s + 1, total=int(steps), elapsed_s=time.perf_counter() - t0)
    if not torch.isfinite(eta).all():
        raise InputError(f"the phase-field run diverged (dt={dt} too large for these parameters); use dt <= 1.")
    fine = _fourier_resize(eta.double(), (H, W)).float()
    idx = fine.argmax(0).numpy()
    labels = grain_labels(idx, min_area=int(round(min_area * g * g)) if min_area else 0)
    structure = (fine * fine).sum(0).clamp(0, 1.5).numpy().astype(np.float32)
    res = PhaseField(structure=structure, labels=labels, eta=eta.numpy().astype(np.float32), params=params,
                     n_grains_start=int(n_grains))
    yield record(Kind.DONE, message=f"{res.n_grains} grains", step=int(steps), total=int(steps), elapsed_s=time.perf_counter() - t0)
    return res


def phase_field(shape=(256, 256), n_grains: int = 60, steps: int = 500, seed: int = 0, **options) -> PhaseField:
    """A phase-field grain structure (eqs. A1–A4) and its grain labels; see the module docstring.

    Parameters
    ----------
    shape : int or (rows, cols)
        Output size in pixels.
    n_grains : int
        Voronoi grains at the start (the result has fewer after coarsening).
    steps : int
        Time steps of the semi-implicit scheme (more steps: larger, fewer grains).
    seed : int
        Everything is deterministic from it.
    **options
        ``n_order`` (order parameters, default 20), ``L``, ``kappa``, ``alpha``, ``beta``, ``gamma``,
        ``dt`` (simulation-grid units), ``grid`` (simulation grid spacing, ``"auto"``), ``min_area``.

    Returns
    -------
    PhaseField
        ``structure`` (Σ η², float32), ``labels`` (int32, 1…n), ``eta`` and ``params``; unpacks as
        ``structure, labels``.

    Examples
    --------
    >>> structure, labels = phase_field((128, 128), n_grains=30, steps=100, seed=1)
    >>> labels.max() > 5
    True
    """
    return drive(phase_field_iter(shape, n_grains, steps, seed, **options))
