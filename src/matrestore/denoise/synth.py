"""Synthetic noisy/clean micrograph pairs (the paper's Figs. 1–2).

1. a phase-field grain structure (:mod:`.phasefield`) — or any label image;
2. ground truth: one grey level per grain, neighbours at least ``min_contrast`` apart (Fig. 1b);
   optionally dark etched boundaries ``boundary_width`` px wide;
3. artefacts: scratches (deep and faint, straight and curved, dark and bright), stains, etch pits,
   optical blur and speckle (Fig. 1c), each with a mask;
4. Fourier mixing: the phase of that image with the magnitude spectrum of a crop of a REAL optical
   micrograph (Fig. 1d, :func:`fourier_mix`);
5. histogram matching to that crop (Fig. 1e, :func:`match_histogram`).

Everything is deterministic from ``seed``; the recipe (every parameter and the crop's origin) is returned
with the pair. Every real micrograph × every structure gives a pair (:func:`synthesize_set`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._validate import InputError, as_2d_image
from ..params import param as _param
from .phasefield import PhaseField, adjacency, phase_field

__all__ = [
    "SynthPair",
    "ARTEFACTS",
    "synthesize",
    "synthesize_set",
    "grain_greys",
    "boundary_map",
    "add_artefacts",
    "fourier_mix",
    "match_histogram",
    "as_grey",
    "texture_source",
    "real_crop",
    "procedural_texture",
    "SynthOptions",
    "sample_pairs_iter",
]

# default artefact ranges; each drawn uniformly per image from the seed
ARTEFACTS = {
    "scratches": (2, 9),  # count range
    "scratch_width": (0.6, 3.0),  # Gaussian sigma across, px
    "scratch_deep": (0.25, 0.6),  # amplitude of deep scratches (fraction of the grey range)
    "scratch_faint": (0.05, 0.2),
    "scratch_bright": 0.3,  # probability that a scratch is bright
    "scratch_curved": 0.5,  # probability that a scratch is curved
    "stains": (0, 3),
    "stain_depth": (0.05, 0.25),
    "pits_per_mpx": (200, 2500),  # etch pits per million px
    "pit_radius": (0.8, 3.0),
    "blur": (0.0, 1.0),  # optical blur sigma, px
    "speckle": (0.01, 0.06),  # multiplicative noise sigma
    "noise": (0.005, 0.03),  # additive noise sigma
}


@dataclass
class SynthPair:
    """A synthetic training/test pair.

    ``noisy``: the input (float32, the real micrograph's grey scale after histogram matching);
    ``clean``: the ground truth (float32 in [0, 1]); ``labels``: grain labels (int32, 1…n);
    ``masks``: ``"scratch"``, ``"pit"``, ``"stain"`` (where artefacts were drawn) and ``"boundary"``
    (the true grain boundaries, :func:`boundary_map`), all bool; ``recipe``: every parameter.
    """

    noisy: np.ndarray
    clean: np.ndarray
    labels: np.ndarray
    masks: dict
    recipe: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)  # optional intermediate images (Fig. 1 b–e)


# ----------------------------------------------------------------------------------------------- helpers
def as_grey(image, name: str = "image", colour: str = "luminance") -> tuple[np.ndarray, str | None]:
    """``(grey float64 array, note)``: RGB(A) images become grey (``colour="luminance"``: Rec. 601
    weights 0.299 R + 0.587 G + 0.114 B, alpha dropped; channels that are equal give that channel
    exactly); ``colour="error"`` refuses them. ``note`` says what was done (``None`` for grey input).
    Integer and float pixels are accepted; NaN/inf and non-numeric data are refused. Never modifies
    ``image``."""
    arr = np.asarray(image) if image is not None else None
    note = None
    if arr is not None and arr.ndim == 3 and arr.shape[-1] in (3, 4) and min(arr.shape[:2]) > 4:
        if colour == "error":
            raise InputError(f"{name}: RGB(A) image of shape {arr.shape}; convert it to greyscale first.")
        if colour != "luminance":
            raise InputError(f"colour must be 'luminance' or 'error', got {colour!r}.")
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise InputError(f"{name}: unsupported data type {arr.dtype}; expected integer or float pixels.")
        rgb = arr[..., :3].astype(np.float64)
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(rgb)):
            raise InputError(f"{name}: the image contains NaN or infinite values.")
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            grey = rgb[..., 0]
            note = "RGB image with equal channels: used one channel"
        else:
            grey = rgb @ np.array([0.299, 0.587, 0.114])
            note = "RGB image converted to grey (luminance, Rec. 601 weights)"
        if arr.shape[-1] == 4:
            note += "; alpha channel ignored"
        return grey, note
    return as_2d_image(image, name).astype(np.float64), note


def texture_source(real, name: str = "real micrograph") -> tuple[np.ndarray, str]:
    """``(grey float64 image, name)`` of a real micrograph given as an array or a file path."""
    if isinstance(real, (str, Path)):
        from ..io import read_image

        arr, meta = read_image(real)
        grey, _ = as_grey(arr, Path(real).name)
        return grey, Path(real).name
    grey, _ = as_grey(real, name)
    return grey, name


def real_crop(real: np.ndarray, shape, rng: np.random.Generator, augment: bool = True, name: str = "real micrograph"):
    """A ``shape`` crop of ``real`` at a random origin (and, with ``augment``, a random flip/transpose
    when square); ``(crop, origin, flip)``. Refuses a micrograph smaller than ``shape``."""
    H, W = shape
    h, w = real.shape
    if h < H or w < W:
        raise InputError(
            f"{name} of shape {real.shape} is too small to give the magnitude spectrum of a {H}×{W} image; "
            "use a smaller shape or a larger micrograph (the real image must be at least as large)."
        )
    y0 = int(rng.integers(0, h - H + 1))
    x0 = int(rng.integers(0, w - W + 1))
    crop = real[y0 : y0 + H, x0 : x0 + W]
    flip = [False, False, False]
    if augment:
        flip = [bool(rng.random() < 0.5), bool(rng.random() < 0.5), bool(H == W and rng.random() < 0.5)]
        if flip[0]:
            crop = crop[::-1]
        if flip[1]:
            crop = crop[:, ::-1]
        if flip[2]:
            crop = crop.T
    if float(np.ptp(crop)) == 0:
        raise InputError(f"{name}: the {H}×{W} crop at ({y0}, {x0}) is constant; it has no texture to give.")
    return np.ascontiguousarray(crop, dtype=np.float64), (y0, x0), flip


def procedural_texture(shape, rng: np.random.Generator) -> np.ndarray:
    """A made-up optical-micrograph-like image (float64 in [0, 1]) to stand in for a real micrograph as
    magnitude/histogram source (domain randomisation): Voronoi grains with Beta-distributed tints, dark
    etched boundaries (sometimes), blotches, an illumination gradient, pits, fine noise, blur and a
    random gamma — every property drawn from ``rng``. It widens the spectra and grey-level distributions
    a network sees beyond the few real micrographs it may be trained with."""
    from scipy import ndimage as ndi
    from scipy.spatial import cKDTree

    H, W = shape
    n = max(3, int(H * W / float(np.exp(rng.uniform(np.log(12.0), np.log(120.0)))) ** 2))
    pts = rng.random((n, 2)) * [H, W]
    yy, xx = np.mgrid[0:H, 0:W]
    _, lab = cKDTree(pts).query(np.stack([yy.ravel(), xx.ravel()], 1), workers=1)
    lab = lab.reshape(H, W)
    a, b = np.exp(rng.uniform(np.log(0.5), np.log(6.0), 2))
    img = rng.beta(a, b, n)[lab]
    if rng.random() < 0.6:
        bm = boundary_map(lab)
        w = int(rng.integers(0, 3))
        if w:
            bm = ndi.binary_dilation(bm, iterations=w)
        img = np.where(bm, img * rng.uniform(0.0, 0.6), img)
    if rng.random() < 0.7:
        blot = ndi.gaussian_filter(rng.standard_normal((H, W)), rng.uniform(3, 40))
        img = img + rng.uniform(0, 0.5) * blot / max(float(np.abs(blot).max()), 1e-9)
    gy, gx = rng.normal(0, 1, 2)
    img = img + rng.uniform(0, 0.4) * (gy * (yy / H - 0.5) + gx * (xx / W - 0.5))
    n_pits = int(rng.poisson(rng.uniform(0, 3000) * H * W / 1e6))
    if n_pits:
        img[rng.integers(0, H, n_pits), rng.integers(0, W, n_pits)] = rng.uniform(0, 0.2)
        if rng.random() < 0.5:
            img = ndi.grey_erosion(img, size=2)
    img = ndi.gaussian_filter(img, rng.uniform(0, 1.5)) + rng.uniform(0.005, 0.08) * rng.standard_normal((H, W))
    img = (img - img.min()) / max(float(np.ptp(img)), 1e-9)
    return img ** float(np.exp(rng.uniform(np.log(0.4), np.log(2.5))))


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """Grain boundary pixels of a label image: ``p`` where the label of ``p`` differs from that of the
    pixel to its right or below (a thin, one-sided boundary; the same rule for truth and prediction)."""
    lab = np.asarray(labels)
    b = np.zeros(lab.shape, bool)
    b[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    b[:-1, :] |= lab[:-1, :] != lab[1:, :]
    return b


def grain_greys(labels: np.ndarray, rng: np.random.Generator, lo: float = 0.1, hi: float = 0.9,
                min_contrast: float = 0.12, tries: int = 40) -> np.ndarray:
    """A grey level per label (array indexed by label) in ``[lo, hi]`` with neighbours at least
    ``min_contrast`` apart where possible (best of ``tries`` random draws per grain)."""
    n = int(labels.max()) + 1
    nb = adjacency(labels, periodic=False)
    grey = np.full(n, np.nan)
    for i in rng.permutation(np.arange(1, n)):
        cand = lo + (hi - lo) * rng.random(tries)
        known = [grey[j] for j in nb[i] if j > 0 and np.isfinite(grey[j])]
        if known:
            d = np.min(np.abs(cand[:, None] - np.asarray(known)[None, :]), 1)
            ok = np.flatnonzero(d >= min_contrast)
            grey[i] = cand[ok[0]] if ok.size else cand[int(np.argmax(d))]
        else:
            grey[i] = cand[0]
    grey[0] = 0.0
    return grey


def match_histogram(image, reference) -> np.ndarray:
    """``image`` with the grey-level distribution of ``reference`` (quantile mapping; rank order of
    ``image`` kept). When both have the same number of pixels the sorted values are exactly those of
    ``reference``. float64, same shape as ``image``."""
    img = np.asarray(image, dtype=np.float64)
    ref = np.sort(np.asarray(reference, dtype=np.float64).ravel())
    order = np.argsort(img.ravel(), kind="stable")
    if ref.size == img.size:
        vals = ref
    else:
        q = (np.arange(img.size) + 0.5) / img.size
        vals = np.interp(q, (np.arange(ref.size) + 0.5) / ref.size, ref)
    out = np.empty(img.size)
    out[order] = vals
    return out.reshape(img.shape)


def fourier_mix(image, real, mix: float = 1.0) -> np.ndarray:
    """The phase of ``image`` with the magnitude spectrum of ``real`` (same shape): ``IFFT(|F(real)| ·
    exp(i arg F(image)))`` (Fig. 1d). ``mix`` < 1 blends magnitudes geometrically
    (``|F(real)|^mix · |F(image)|^(1-mix)``). Both are real images, so the result is real."""
    a = np.asarray(image, dtype=np.float64)
    r = np.asarray(real, dtype=np.float64)
    if a.shape != r.shape:
        raise InputError(f"fourier_mix: image {a.shape} and real micrograph {r.shape} must have the same shape.")
    A = np.fft.rfft2(a)
    R = np.abs(np.fft.rfft2(r))
    mag = R if mix >= 1 else (R ** mix) * (np.abs(A) ** (1 - mix))
    return np.fft.irfft2(mag * np.exp(1j * np.angle(A)), s=a.shape)


def _uni(rng, rangepair):
    lo, hi = rangepair
    return float(lo + (hi - lo) * rng.random())


def _curve(rng, H, W, curved: bool):
    """Points (y, x) every 0.5 px along a straight or quadratic-Bézier scratch."""
    diag = float(np.hypot(H, W))
    length = diag * (0.3 + 1.0 * rng.random())
    c = np.array([rng.random() * H, rng.random() * W])
    ang = rng.random() * np.pi
    d = np.array([np.sin(ang), np.cos(ang)])
    p0, p2 = c - d * length / 2, c + d * length / 2
    bend = (rng.random() - 0.5) * 0.6 * length if curved else 0.0
    p1 = c + np.array([-d[1], d[0]]) * bend
    n = int(length * 2) + 2
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def add_artefacts(clean: np.ndarray, rng: np.random.Generator, artefacts: dict | None = None):
    """``(image, masks, drawn)``: ``clean`` (values in [0, 1]) with scratches, stains, etch pits, blur,
    speckle and noise (ranges :data:`ARTEFACTS`, overridable); masks as in :class:`SynthPair`;
    ``drawn``: the drawn parameters."""
    from scipy import ndimage as ndi

    p = dict(ARTEFACTS, **(artefacts or {}))
    H, W = clean.shape
    img = np.array(clean, dtype=np.float64)
    masks = {k: np.zeros((H, W), bool) for k in ("scratch", "pit", "stain")}
    drawn: dict = {"scratches": [], "stains": 0, "pits": 0}
    # stains: smooth irregular blobs, darker rim
    for _ in range(int(rng.integers(p["stains"][0], p["stains"][1] + 1))):
        cy, cx = rng.random() * H, rng.random() * W
        ry, rx = (0.08 + 0.25 * rng.random()) * H, (0.08 + 0.25 * rng.random()) * W
        yy, xx = np.ogrid[0:H, 0:W]
        base = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        wob = ndi.gaussian_filter(rng.standard_normal((H, W)), max(3.0, min(ry, rx) / 4))
        wob /= max(float(np.abs(wob).max()), 1e-9)
        inside = base + 0.5 * wob < 1.0
        if not inside.any():
            continue
        soft = ndi.gaussian_filter(inside.astype(float), 2.0)
        rim = soft * (1 - soft) * 4
        depth = _uni(rng, p["stain_depth"])
        img -= depth * (0.6 * soft + 0.4 * rim)
        masks["stain"] |= soft > 0.1
        drawn["stains"] += 1
    # scratches
    for _ in range(int(rng.integers(p["scratches"][0], p["scratches"][1] + 1))):
        curved = bool(rng.random() < p["scratch_curved"])
        pts = _curve(rng, H, W, curved)
        iy, ix = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
        ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
        if not ok.any():
            continue
        line = np.ones((H, W), bool)
        line[iy[ok], ix[ok]] = False
        dist = ndi.distance_transform_edt(line)
        sigma = _uni(rng, p["scratch_width"])
        deep = bool(rng.random() < 0.5)
        amp = _uni(rng, p["scratch_deep"] if deep else p["scratch_faint"])
        bright = bool(rng.random() < p["scratch_bright"])
        prof = np.exp(-(dist**2) / (2 * sigma**2))
        img += (amp if bright else -amp) * prof
        masks["scratch"] |= dist <= max(1.0, 2.0 * sigma)
        drawn["scratches"].append({"curved": curved, "sigma": round(sigma, 3), "amplitude": round(amp, 3), "bright": bright})
    # etch pits: small dark discs
    n_pits = int(rng.poisson(_uni(rng, p["pits_per_mpx"]) * H * W / 1e6))
    if n_pits:
        cy, cx = rng.random(n_pits) * H, rng.random(n_pits) * W
        rad = p["pit_radius"][0] + (p["pit_radius"][1] - p["pit_radius"][0]) * rng.random(n_pits)
        dark = 0.05 + 0.2 * rng.random(n_pits)
        for y, x, r, v in zip(cy, cx, rad, dark):
            y0, y1 = max(0, int(y - r - 2)), min(H, int(y + r + 3))
            x0, x1 = max(0, int(x - r - 2)), min(W, int(x + r + 3))
            yy, xx = np.ogrid[y0:y1, x0:x1]
            wgt = np.clip(r + 0.5 - np.sqrt((yy - y) ** 2 + (xx - x) ** 2), 0, 1)
            img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - wgt) + v * wgt
            masks["pit"][y0:y1, x0:x1] |= wgt > 0.3
        drawn["pits"] = n_pits
    blur = _uni(rng, p["blur"])
    if blur > 0.05:
        img = ndi.gaussian_filter(img, blur)
    sp, no = _uni(rng, p["speckle"]), _uni(rng, p["noise"])
    img = img * (1 + sp * rng.standard_normal((H, W))) + no * rng.standard_normal((H, W))
    drawn.update(blur=round(blur, 3), speckle=round(sp, 4), noise=round(no, 4))
    return img, masks, drawn


# ------------------------------------------------------------------------------------------ the recipe
def synthesize(structure=None, real=None, *, shape=(256, 256), seed: int = 0, n_grains: int = 60, steps: int = 500,
               boundary_width: int = 0, boundary_grey=(0.0, 0.15), min_contrast: float = 0.12, grey_range=(0.1, 0.9),
               artefacts: dict | None = None, mix: float = 1.0, histogram: bool = True, augment: bool = True,
               real_name: str | None = None, real_gamma: float = 1.0, keep_stages: bool = False,
               phase_field_options: dict | None = None) -> SynthPair:
    """A noisy/clean pair (Fig. 1).

    Parameters
    ----------
    structure : PhaseField, label image or None
        The grains; ``None`` runs :func:`~matrestore.denoise.phase_field` (``shape``, ``n_grains``,
        ``steps``, ``seed``, ``phase_field_options``).
    real : array or path
        A real optical micrograph (grey or RGB; at least as large as the structure): its magnitude
        spectrum and grey-level histogram go into the noisy image (a crop at a random origin).
        ``None``: no Fourier mixing or histogram matching (the artefact image in [0, 1] is the input).
    boundary_width : int
        Dark etched boundaries this many px wide in the ground truth (0: none, as in the paper).
    min_contrast : float
        Neighbouring grains differ by at least this (fraction of the range) where possible.
    artefacts : dict
        Overrides of :data:`ARTEFACTS` (e.g. ``{"scratches": (0, 0)}`` for none).
    mix : float
        1: the real magnitude (paper); < 1 blends it with the image's own (geometric).
    histogram : bool
        Match the noisy image's histogram to the real crop (Fig. 1e).
    augment : bool
        Random flips/transposition of the real crop.
    real_gamma : float
        The real crop, scaled to [0, 1], is raised to this power first (1: unchanged; training draws
        it to vary the grey-level distributions a single micrograph gives).
    keep_stages : bool
        Keep the intermediate images (``stages``: grey, artefacts, mixed).
    """
    rng = np.random.default_rng([int(seed), 7002])
    if structure is None:
        structure = phase_field(shape, n_grains, steps, seed, **(phase_field_options or {}))
    if isinstance(structure, PhaseField):
        labels = structure.labels
        pf_params = structure.params
    else:
        labels = as_2d_image(structure, "structure")
        if not np.issubdtype(labels.dtype, np.integer):
            raise InputError("structure: expected a PhaseField or an integer label image.")
        pf_params = None
    labels = np.asarray(labels, np.int32)
    H, W = labels.shape
    greys = grain_greys(labels, rng, grey_range[0], grey_range[1], min_contrast)
    clean = greys[labels]
    bmask = boundary_map(labels)
    bw = int(boundary_width)
    if bw > 0:
        from scipy import ndimage as ndi

        thick = ndi.binary_dilation(bmask, iterations=max(0, (bw - 1) // 2)) if bw > 2 else bmask.copy()
        if bw == 2 or (bw > 2 and bw % 2 == 0):
            thick = thick | np.roll(thick, 1, 0) | np.roll(thick, 1, 1)
        clean = np.where(thick, _uni(rng, boundary_grey), clean)
    img, masks, drawn = add_artefacts(clean, rng, artefacts)
    masks["boundary"] = bmask
    recipe = {
        "seed": int(seed), "shape": [H, W], "n_grains": int(labels.max()), "phase_field": pf_params,
        "boundary_width": bw, "min_contrast": float(min_contrast), "grey_range": list(grey_range),
        "artefacts": drawn, "artefact_ranges": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(ARTEFACTS, **(artefacts or {})).items()},
        "mix": float(mix), "histogram": bool(histogram),
    }
    stages = {"grey": clean.astype(np.float32), "artefacts": img.astype(np.float32)} if keep_stages else {}
    if real is not None:
        src, name = texture_source(real, real_name or "real micrograph")
        crop, origin, flip = real_crop(src, (H, W), rng, augment=augment, name=real_name or name)
        if real_gamma != 1.0:
            crop = ((crop - crop.min()) / np.ptp(crop)) ** float(real_gamma)
        mixed = fourier_mix(img, crop, mix)
        if keep_stages:
            stages["mixed"] = mixed.astype(np.float32)
        img = match_histogram(mixed, crop) if histogram else mixed
        recipe["real"] = {"name": real_name or name, "shape": list(src.shape), "origin": list(origin), "flip": flip,
                          "gamma": float(real_gamma)}
    else:
        recipe["real"] = None
    return SynthPair(noisy=img.astype(np.float32), clean=clean.astype(np.float32), labels=labels, masks=masks,
                     recipe=recipe, stages=stages)


def synthesize_set(structures, reals, seed: int = 0, **options) -> list[SynthPair]:
    """Every structure × every real micrograph (Fig. 2): ``len(structures) * len(reals)`` pairs; the
    pair of structure ``i`` and micrograph ``j`` has seed ``seed + i * len(reals) + j``."""
    reals = list(reals)
    if not reals:
        raise InputError("synthesize_set: give at least one real micrograph.")
    srcs = [texture_source(r, f"real micrograph {j}") for j, r in enumerate(reals)]
    out = []
    for i, s in enumerate(structures):
        for j, (src, name) in enumerate(srcs):
            out.append(synthesize(s, src, seed=seed + i * len(reals) + j, real_name=name, **options))
    return out


# ------------------------------------------------------------------------------ a sample pair to look at
@dataclass
class SynthOptions:
    """The recipe of a sample pair (the Denoise train widget's synthetic-data controls are made from these
    fields): the phase-field structure (size, grains, steps, seed; ``L``, ``kappa``, ``dt``, ``n_order``
    advanced) and the noisy image (etched boundaries, magnitude mix, histogram matching)."""

    size: int = _param(256, label="size", min=32, max=4096, step=32, suffix=" px",
                       tip="Side of the structure and of the pair (px). Every real micrograph must be at least "
                           "this large (its crop gives the magnitude spectrum).")
    n_grains: int = _param(60, label="grains", min=2, max=100000,
                           tip="Voronoi grains at the start (nearly equal size); coarsening leaves fewer, larger ones.")
    steps: int = _param(500, label="phase-field steps", min=0, max=100000, step=50,
                        tip="Time steps of the Allen–Cahn model (semi-implicit Fourier scheme): more steps, fewer "
                            "and larger grains with smoother boundaries (literature: 500–2000).")
    seed: int = _param(0, label="seed", min=0, max=2**31 - 1,
                       tip="Everything (grains, grey levels, artefacts, the real crop) follows from the seed.")
    boundary_width: int = _param(0, label="etched boundaries", min=0, max=12, suffix=" px",
                                 tip="Dark etched grain boundaries this wide in the ground truth (0: none, as in "
                                     "the paper).")
    mix: float = _param(1.0, label="magnitude mix", min=0.0, max=1.0, step=0.05, decimals=2,
                        tip="1: the magnitude spectrum of the real micrograph (the paper, Fig. 1d); below 1: blended "
                            "geometrically with the synthetic image's own.")
    histogram: bool = _param(True, label="match histogram to the real",
                             tip="Give the noisy image the real micrograph's grey-level distribution (Fig. 1e).")
    L: float = _param(1.0, label="mobility L", min=0.001, max=100.0, step=0.1, decimals=3, advanced=True,
                      tip="Kinetic coefficient of the Allen–Cahn equation (eq. A1; literature: 1).")
    kappa: float = _param(0.5, label="gradient energy κ", min=0.001, max=100.0, step=0.1, decimals=3, advanced=True,
                          tip="Gradient energy coefficient: wider, smoother boundaries when larger (literature ≈ 0.5).")
    dt: float = _param(0.5, label="time step dt", min=0.01, max=10.0, step=0.1, decimals=3, advanced=True,
                       tip="Time step (simulation-grid units); the scheme is stable for dt ≤ 1.")
    n_order: int = _param(20, label="order parameters", min=2, max=64, advanced=True,
                          tip="Order parameters shared out by graph colouring (neighbours never share one); "
                              "16–24 serve hundreds of grains.")

    def check(self) -> "SynthOptions":
        """InputError naming an option that cannot make a pair."""
        if int(self.size) < 32:
            raise InputError(f"size must be at least 32 px, got {self.size}.")
        if not 0.0 <= float(self.mix) <= 1.0:
            raise InputError(f"mix must be between 0 and 1, got {self.mix}.")
        if int(self.boundary_width) < 0:
            raise InputError(f"boundary_width must be >= 0, got {self.boundary_width}.")
        return self

    def phase_field_kwargs(self) -> dict:
        return dict(shape=(int(self.size), int(self.size)), n_grains=int(self.n_grains), steps=int(self.steps),
                    seed=int(self.seed), L=float(self.L), kappa=float(self.kappa), dt=float(self.dt),
                    n_order=int(self.n_order))


def sample_pairs_iter(reals, options: SynthOptions | None = None, cancel=None):
    """One phase-field structure and its noisy/clean pair for every real micrograph in ``reals`` (arrays or
    files, ``(array, name)`` tuples too), a generator of progress records (the phase field's steps, then
    ``"step"`` per pair). Every pair uses the same seed, so they share the ground truth, the grain labels
    and the artefacts and differ only in the spectrum and histogram of their real micrograph. Returns
    ``{"structure": PhaseField, "pairs": [SynthPair, ...], "names": [...]}``, ``None`` when cancelled."""
    from ..progress import Kind, record
    from .phasefield import phase_field_iter

    opts = (options or SynthOptions()).check()
    if reals is None or (isinstance(reals, (list, tuple)) and not reals):
        raise InputError("pick at least one real micrograph: its Fourier magnitude and histogram make the noisy image.")
    if isinstance(reals, (str, Path, np.ndarray)):
        reals = [reals]
    srcs = []
    for j, r in enumerate(reals):
        arr, name = (r if isinstance(r, tuple) else (r, None))
        img, name = texture_source(arr, name or f"real micrograph {j}")
        if min(img.shape) < int(opts.size):
            raise InputError(f"{name} of shape {img.shape} is too small for {opts.size}×{opts.size} pairs (its crop "
                             f"gives the magnitude spectrum); lower the size to {min(img.shape)} px or less.")
        srcs.append((img, name))
    pf = yield from phase_field_iter(**opts.phase_field_kwargs(), cancel=cancel)
    if pf is None:
        return None
    pairs = []
    for j, (img, name) in enumerate(srcs):
        pairs.append(synthesize(pf, img, seed=int(opts.seed), boundary_width=int(opts.boundary_width),
                                mix=float(opts.mix), histogram=bool(opts.histogram), real_name=name))
        yield record(Kind.STEP, phase="pairs", step=j + 1, total=len(srcs), message=f"pair {j + 1}/{len(srcs)}: {name}")
    return {"structure": pf, "pairs": pairs, "names": [n for _, n in srcs]}
