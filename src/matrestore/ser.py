"""Scan-enhance-rescan (SEM paper, section 4.4, eq. 10, Fig. 11): where to rescan and what it saves.

Workflow: scan the whole field at low resolution (LR), enhance it, pick regions of interest (ROIs),
rescan only those at high resolution (HR). This module holds the computing parts, without Qt:

- :func:`time_ratio`, :func:`break_even_fraction`, :func:`scan_times`: eq. 10 generalised to scale
  ``s`` and different dwell times: ``t_SER / t_HR = (d_LR / d_HR) / s² + A_interest / A_total``.
- :func:`tta_uncertainty`: where the enhancement is unsure, as the spread of an enhancement function
  over the 8 flips/rotations of its input (test-time augmentation).
- :func:`propose_rois`: rectangles around connected regions of high uncertainty or of dark features
  (voids), with a minimum size and a margin, overlapping boxes merged.
- :func:`area_fraction`: union area of rectangles over the image area (overlaps counted once).
- :func:`rois_to_records`, :func:`write_rois_csv`, :func:`write_rois_json`: pixel and physical
  coordinates for a microscope script.
- :func:`register`: offset of an HR rescan within the enhanced image (phase correlation refined by
  the paper's SSIM search).

Rectangles are ``(row0, col0, row1, col1)`` in pixels of the image they were drawn on, half-open
(``row1``/``col1`` excluded), i.e. the same convention as numpy slicing.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from scipy import ndimage as ndi

from .progress import is_cancelled
from ._validate import InputError, as_2d_image

__all__ = [
    "time_ratio",
    "break_even_fraction",
    "scan_times",
    "tta_uncertainty",
    "tta_uncertainty_iter",
    "propose_rois",
    "area_fraction",
    "rois_to_corners",
    "corners_to_rois",
    "rois_to_records",
    "write_rois_csv",
    "write_rois_json",
    "register",
    "Registration",
]


# --------------------------------------------------------------------------------------- time model
def time_ratio(area_fraction: float, scale: int = 4, dwell_lr: float | None = None, dwell_hr: float | None = None) -> float:
    """t_SER / t_HR of eq. 10: ``(dwell_lr / dwell_hr) / scale² + area_fraction``.

    With equal (or unspecified) dwell times this is ``1 / scale² + area_fraction``: the LR scan has
    ``scale²`` times fewer pixels, and the rescan of the ROIs costs their area at HR.
    """
    if not 0.0 <= area_fraction <= 1.0:
        raise InputError(f"area fraction must lie in [0, 1], got {area_fraction}.")
    if scale <= 0:
        raise InputError(f"scale must be positive, got {scale}.")
    if (dwell_lr is None) != (dwell_hr is None):
        raise InputError("give both dwell times (LR and HR) or neither.")
    dwell = 1.0 if dwell_lr is None else float(dwell_lr) / float(dwell_hr)
    if dwell <= 0:
        raise InputError("dwell times must be positive.")
    return dwell / scale**2 + area_fraction


def break_even_fraction(scale: int = 4, dwell_lr: float | None = None, dwell_hr: float | None = None) -> float:
    """Area fraction of ROIs at which scan-enhance-rescan takes as long as a full HR scan."""
    return 1.0 - time_ratio(0.0, scale, dwell_lr, dwell_hr)


def scan_times(shape_lr, area_fraction: float, scale: int = 4, dwell_lr_us: float = 100.0, dwell_hr_us: float = 100.0,
               line_overhead_us: float = 0.0) -> dict:
    """Scan times in minutes for a field recorded as an LR image of ``shape_lr`` (rows, cols).

    Returns ``{"t_hr_min", "t_lr_min", "t_rescan_min", "t_ser_min", "ratio", "saved_min", "break_even"}``
    (``line_overhead_us``: flyback per scan line, 0 for eq. 10 as in the paper).
    """
    rows, cols = int(shape_lr[0]), int(shape_lr[1])
    us_to_min = 1e-6 / 60.0
    t_hr = (rows * scale * cols * scale * dwell_hr_us + rows * scale * line_overhead_us) * us_to_min
    t_lr = (rows * cols * dwell_lr_us + rows * line_overhead_us) * us_to_min
    t_rescan = area_fraction * t_hr
    t_ser = t_lr + t_rescan
    return {
        "t_hr_min": t_hr,
        "t_lr_min": t_lr,
        "t_rescan_min": t_rescan,
        "t_ser_min": t_ser,
        "ratio": t_ser / t_hr if t_hr else float("nan"),
        "saved_min": t_hr - t_ser,
        "break_even": break_even_fraction(scale, dwell_lr_us, dwell_hr_us),
    }


# --------------------------------------------------------------------------------------- uncertainty
def _dihedral(img: np.ndarray, k: int) -> np.ndarray:
    out = np.rot90(img, k % 4)
    return out[:, ::-1] if k >= 4 else out


def _dihedral_inverse(img: np.ndarray, k: int) -> np.ndarray:
    if k >= 4:
        img = img[:, ::-1]
    return np.rot90(img, -(k % 4))


def tta_uncertainty_iter(lr, enhance: Callable[[np.ndarray], np.ndarray], n_aug: int = 8, cancel=None):
    """Generator form of :func:`tta_uncertainty`: yields a progress record per augmentation and
    returns ``(mean, std)``, or None when cancelled (or when ``enhance`` returns None)."""
    img = as_2d_image(lr, "low-resolution image")
    if not 2 <= n_aug <= 8:
        raise InputError(f"n_aug must be between 2 and 8, got {n_aug}.")
    s1 = s2 = None
    for k in range(n_aug):
        if is_cancelled(cancel):
            return None
        yield {"step": k, "total": n_aug, "message": f"uncertainty: flip/rotation {k + 1} of {n_aug}"}
        res = enhance(np.ascontiguousarray(_dihedral(img, k)))
        if res is None:
            return None
        out = _dihedral_inverse(np.asarray(res, dtype=np.float64), k)
        s1 = out if s1 is None else s1 + out
        s2 = out * out if s2 is None else s2 + out * out
    yield {"step": n_aug, "total": n_aug, "message": "uncertainty done"}
    mean = s1 / n_aug
    std = np.sqrt(np.maximum(s2 / n_aug - mean * mean, 0.0))
    return mean, std


def tta_uncertainty(lr, enhance: Callable[[np.ndarray], np.ndarray], n_aug: int = 8, progress=None, cancel=None):
    """Mean and standard deviation of ``enhance`` over the first ``n_aug`` flips/rotations of ``lr``.

    ``enhance`` maps a 2-D LR array to its enhanced array (any fixed scale). Augmentation ``k`` is
    ``rot90(lr, k % 4)``, mirrored left-right for ``k >= 4``; each output is transformed back before
    the statistics. The spread is large where the result depends on the orientation of the input,
    i.e. where the network guesses. Returns ``(mean, std)`` arrays of the enhanced shape, or None if
    cancelled.
    """
    from .progress import drive

    return drive(tta_uncertainty_iter(lr, enhance, n_aug=n_aug, cancel=cancel), progress)


# --------------------------------------------------------------------------------------- ROIs
def _merge_boxes(boxes: list[list[int]]) -> list[list[int]]:
    """Merge overlapping or touching boxes until none overlap."""
    boxes = [list(b) for b in boxes]
    merged = True
    while merged:
        merged = False
        out: list[list[int]] = []
        for b in boxes:
            for o in out:
                if b[0] <= o[2] and o[0] <= b[2] and b[1] <= o[3] and o[1] <= b[3]:
                    o[:] = [min(o[0], b[0]), min(o[1], b[1]), max(o[2], b[2]), max(o[3], b[3])]
                    merged = True
                    break
            else:
                out.append(b)
        boxes = out
    return boxes


def propose_rois(score, threshold: float | None = None, percentile: float = 95.0, min_size: int = 16,
                 margin: int = 8, smooth: float = 2.0, max_rois: int | None = 50, mode: str = "high") -> list[tuple]:
    """Rectangles around connected regions where ``score`` is high (``mode="high"``, e.g. an
    uncertainty map) or low (``mode="low"``, e.g. an image with dark voids).

    The score is smoothed (Gaussian, ``smooth`` px), thresholded (``threshold`` or the given
    ``percentile``; for ``mode="low"`` the darkest ``100 - percentile`` %), regions with fewer than
    ``min_size²`` pixels dropped, each bounding box grown by ``margin`` px (clipped to the image),
    overlapping boxes merged; the ``max_rois`` boxes with the largest summed score come first.
    Returns ``[(row0, col0, row1, col1), ...]``.
    """
    s = as_2d_image(score, "score map").astype(np.float64)
    if mode not in ("high", "low"):
        raise InputError(f"mode must be 'high' or 'low', got {mode!r}.")
    if threshold is None and not 0 <= percentile <= 100:
        raise InputError(f"percentile must be between 0 and 100, got {percentile}.")
    if int(min_size) != min_size or min_size < 1:
        raise InputError(f"min_size must be a whole number of pixels >= 1, got {min_size}.")
    if int(margin) != margin or margin < 0:
        raise InputError(f"margin must be a whole number of pixels >= 0, got {margin}.")
    if max_rois is not None and (int(max_rois) != max_rois or max_rois < 1):
        raise InputError(f"max_rois must be at least 1 (or None for all), got {max_rois}.")
    if smooth is not None and smooth < 0:
        raise InputError(f"smooth must be >= 0, got {smooth}.")
    if mode == "low":
        s = -s
        if threshold is not None:
            threshold = -threshold
    if smooth:
        s = ndi.gaussian_filter(s, smooth)
    if threshold is None:
        threshold = np.percentile(s, percentile)
    mask = s > threshold
    labels, n = ndi.label(mask)
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    sizes = ndi.sum(mask, labels, idx)
    weights = ndi.sum(s - threshold, labels, idx)
    h, w = s.shape
    boxes, scores = [], []
    for lab, sl in zip(idx, ndi.find_objects(labels)):
        if sl is None or sizes[lab - 1] < min_size * min_size:
            continue
        boxes.append([max(sl[0].start - margin, 0), max(sl[1].start - margin, 0),
                      min(sl[0].stop + margin, h), min(sl[1].stop + margin, w)])
        scores.append(weights[lab - 1])
    order = np.argsort(scores)[::-1]
    boxes = _merge_boxes([boxes[i] for i in order])
    if max_rois is not None:
        boxes = boxes[:max_rois]
    return [tuple(int(v) for v in b) for b in boxes]


def _check_box(box) -> None:
    r0, c0, r1, c1 = box
    if r1 < r0 or c1 < c0:
        raise InputError(f"ROI box (row0={r0}, col0={c0}, row1={r1}, col1={c1}) is inverted: row1/col1 must not be "
                         "smaller than row0/col0.")


def area_fraction(rois: Iterable[Sequence[float]], shape) -> float:
    """Area of the union of rectangles (clipped to the image) divided by the image area.

    Exact for any image size (coordinate compression over the box edges, no pixel mask), so it is
    cheap enough to run on every edit of a Shapes layer.
    """
    h, w = float(shape[0]), float(shape[1])
    if h <= 0 or w <= 0:
        raise InputError(f"image shape {shape} has no area.")
    boxes = []
    for box in rois:
        _check_box(box)
        r0, c0, r1, c1 = box
        r0, r1 = min(max(r0, 0.0), h), min(max(r1, 0.0), h)
        c0, c1 = min(max(c0, 0.0), w), min(max(c1, 0.0), w)
        if r1 > r0 and c1 > c0:
            boxes.append((r0, c0, r1, c1))
    if not boxes:
        return 0.0
    rows = sorted({b[0] for b in boxes} | {b[2] for b in boxes})
    area = 0.0
    for ra, rb in zip(rows, rows[1:]):
        spans = sorted((b[1], b[3]) for b in boxes if b[0] <= ra and b[2] >= rb)
        covered, end = 0.0, -np.inf
        for c0, c1 in spans:
            if c1 > end:
                covered += c1 - max(c0, end)
                end = c1
        area += covered * (rb - ra)
    return float(area / (h * w))


def rois_to_corners(rois) -> list[np.ndarray]:
    """Rectangles as (2, 2) corner arrays in napari data coordinates (pixel centres at integers,
    so the box covering pixels ``r0 .. r1 - 1`` spans ``r0 - 0.5 .. r1 - 0.5``)."""
    return [np.array([[r0 - 0.5, c0 - 0.5], [r1 - 0.5, c1 - 0.5]], dtype=float) for r0, c0, r1, c1 in rois]


def corners_to_rois(shapes, shape=None) -> list[tuple]:
    """Pixel boxes ``(r0, c0, r1, c1)`` from napari shape vertex arrays: the pixels whose centres lie
    in the shape's bounding box (only the last two axes are used), clipped to ``shape`` when given;
    empty boxes are dropped."""
    out = []
    for verts in shapes:
        v = np.asarray(verts, dtype=float)[:, -2:]
        r0, c0 = np.ceil(v.min(axis=0)).astype(int)
        r1, c1 = (np.floor(v.max(axis=0)) + 1).astype(int)
        if shape is not None:
            r0, r1 = np.clip([r0, r1], 0, shape[0])
            c0, c1 = np.clip([c0, c1], 0, shape[1])
        if r1 > r0 and c1 > c0:
            out.append((int(r0), int(c0), int(r1), int(c1)))
    return out


# --------------------------------------------------------------------------------------- export
def rois_to_records(rois, scale=(1.0, 1.0), translate=(0.0, 0.0), unit: str = "px",
                    stage_origin_um=(0.0, 0.0), unit_to_um: float | None = None) -> list[dict]:
    """ROI table rows with pixel and physical coordinates.

    ``scale``/``translate`` are the napari layer's (physical size per pixel, position of pixel
    (0, 0)'s centre), ``unit`` their unit ("nm", "um"/"µm", "mm" or "px"). A pixel box
    ``(r0, c0, r1, c1)`` spans physical ``translate + (r - 0.5) * scale`` (pixel edges); the stage
    coordinates add ``stage_origin_um`` (x, y) of the image's top-left corner.
    """
    factors = {"nm": 1e-3, "um": 1.0, "µm": 1.0, "mm": 1e3, "px": None}
    if unit_to_um is None:
        if unit not in factors:
            raise InputError(f"unknown unit {unit!r}; use nm, µm or mm.")
        unit_to_um = factors[unit]
    sy, sx = (float(v) for v in scale[-2:])
    ty, tx = (float(v) for v in translate[-2:])
    if not (np.isfinite(sy) and np.isfinite(sx) and sy > 0 and sx > 0):
        raise InputError(f"pixel size must be positive, got {sy:g} × {sx:g} {unit}.")
    recs = []
    for box in rois:
        _check_box(box)
    for i, (r0, c0, r1, c1) in enumerate(rois):
        rec = {"id": i + 1, "row0": int(r0), "col0": int(c0), "row1": int(r1), "col1": int(c1),
               "height_px": int(r1 - r0), "width_px": int(c1 - c0)}
        if unit_to_um is not None:
            y0 = (ty + (r0 - 0.5) * sy) * unit_to_um
            x0 = (tx + (c0 - 0.5) * sx) * unit_to_um
            rec.update({
                "y0_um": y0, "x0_um": x0,
                "height_um": (r1 - r0) * sy * unit_to_um, "width_um": (c1 - c0) * sx * unit_to_um,
                "stage_x_um": stage_origin_um[0] + x0 + (c1 - c0) * sx * unit_to_um / 2,
                "stage_y_um": stage_origin_um[1] + y0 + (r1 - r0) * sy * unit_to_um / 2,
            })
        recs.append(rec)
    return recs


def write_rois_csv(path, records: list[dict]) -> Path:
    """The ROI table as CSV (columns ``id,row0,col0,row1,col1,...``), written atomically."""
    import io as _io

    from ._paths import atomic_write_text

    fields = list(records[0]) if records else ["id", "row0", "col0", "row1", "col1"]
    buf = _io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(records)
    return atomic_write_text(path, buf.getvalue())


def read_rois_json(path) -> list[tuple[int, int, int, int]]:
    """The ``(row0, col0, row1, col1)`` boxes of a ROI JSON written by :func:`write_rois_json`."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"ROI file not found: {p}" if not p.exists() else f"{p} is not a file.")
    try:
        doc = json.loads(p.read_text())
        rois = [(int(r["row0"]), int(r["col0"]), int(r["row1"]), int(r["col1"])) for r in doc["rois"]]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p.name} is not a JSON file ({exc}); give the ROI JSON written by 'ser propose'.") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{p.name} is JSON but not a ROI file written by 'ser propose' (no 'rois' list of "
                         "row0/col0/row1/col1 boxes).") from exc
    for r0, c0, r1, c1 in rois:
        if r1 <= r0 or c1 <= c0:
            raise InputError(f"{p.name}: ROI box ({r0}, {c0}, {r1}, {c1}) is empty or inverted.")
    return rois


def write_rois_json(path, records: list[dict], **info) -> Path:
    """``{"rois": records, **info}`` as JSON (marked as matrestore's), written atomically."""
    from ._paths import MARK, WRITTEN_BY, atomic_write_text

    return atomic_write_text(path, json.dumps({"rois": records, **info, WRITTEN_BY: MARK}, indent=2))


# --------------------------------------------------------------------------------------- registration
MIN_REGISTRATION_CORRELATION = 0.5
"""Below this correlation (Pearson, rescan vs the image under it) a registration is not trusted: a rescan
of the field correlates far above it (> 0.8 on the tests' degraded/enhanced pairs), an unrelated or
random image near 0."""


@dataclass
class Registration:
    """Position of a rescan in the enhanced image: top-left ``(row, col)``, the SSIM found there and the
    correlation (Pearson) of the rescan with the image under it, the confidence of the placement."""

    row: int
    col: int
    ssim: float
    correlation: float = float("nan")

    @property
    def confident(self) -> bool:
        """Whether the placement can be trusted (correlation >= :data:`MIN_REGISTRATION_CORRELATION`)."""
        return bool(self.correlation >= MIN_REGISTRATION_CORRELATION)

    def describe(self) -> str:
        text = f"row {self.row}, col {self.col} (SSIM {self.ssim:.3f}, correlation {self.correlation:.2f})"
        if not self.confident:
            text += (f": low confidence (correlation below {MIN_REGISTRATION_CORRELATION}); the rescan may not show "
                     "this field")
        return text


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def register(image, patch, search: int | None = None, guess=(0, 0)) -> Registration:
    """Find where ``patch`` (an HR rescan) sits inside ``image`` (the enhanced field).

    With ``search=None`` the whole image is searched by normalised cross-correlation (FFT);
    otherwise offsets within ``±search`` px of ``guess`` are scored by SSIM (the paper's alignment
    search). Both images must have the same pixel size. The result's ``correlation`` says how far to
    trust it (``confident``: at least :data:`MIN_REGISTRATION_CORRELATION`).
    """
    from skimage.feature import match_template

    from .metrics import ssim

    img = as_2d_image(image, "enhanced image").astype(np.float64)
    p = as_2d_image(patch, "rescan").astype(np.float64)
    if p.shape[0] > img.shape[0] or p.shape[1] > img.shape[1]:
        raise InputError(f"rescan {p.shape} is larger than the image {img.shape} it should lie in.")
    rng = max(img.max() - img.min(), 1e-12)
    if search is None:
        ncc = match_template(img, p)
        r, c = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
        candidates = [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    else:
        gr, gc = guess
        candidates = [(gr + dr, gc + dc) for dr in range(-search, search + 1) for dc in range(-search, search + 1)]
    best = Registration(-1, -1, -np.inf)
    ph, pw = p.shape
    for r, c in candidates:
        if r < 0 or c < 0 or r + ph > img.shape[0] or c + pw > img.shape[1]:
            continue
        win = img[r : r + ph, c : c + pw]
        if min(ph, pw) >= 7:
            v = ssim(win, p, data_range=rng)
        else:
            v = -float(np.mean((win - p) ** 2))
        if v > best.ssim:
            best = Registration(int(r), int(c), float(v))
    if best.row < 0:
        raise InputError("no valid position for the rescan inside the image (check the search window).")
    best.correlation = _correlation(img[best.row : best.row + ph, best.col : best.col + pw], p)
    return best
