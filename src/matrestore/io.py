"""Reading and writing micrographs: arrays plus metadata, with physical pixel sizes.

``read_image(path) -> (array, metadata)`` opens SEM TIFFs (Thermo Fisher/FEI, Zeiss, TESCAN,
JEOL-style sidecar files), plain optical micrographs (PNG/JPEG/TIFF, 8/16 bit, grey or RGB) and our
own calibrated TIFFs. ``read_stack`` opens projection stacks (multi-page TIFF or a folder of numbered
TIFFs). ``write_tiff`` writes a calibrated TIFF that this module and Fiji read back.

Metadata keys (always present):

``pixel_size``       pixel size in nm (float), None when the file has none
``pixel_size_unit``  "nm"
``unit``             the unit a viewer should show ("nm", or "µm" for pixels of 1 µm and more)
``vendor``           "fei" (Thermo Fisher/FEI), "zeiss", "tescan", "jeol" or None (for our own TIFFs: the
                     vendor of the file they were made from)
``databar_rows``     rows of the instrument data bar removed at the bottom (0 if none)
``shape_original``   shape as stored in the file
``source``           the path read
``raw``              instrument metadata as a JSON-serialisable dict
plus, when known, ``dwell_time_us``, ``bit_depth``, ``n_pages``, ``colormap_applied``, ``rgb_to_grey``,
``calibration`` ("imagej" or "tiff resolution" when the pixel size came from those tags) and, for TIFFs
written by :func:`write_tiff`, ``written_by`` ("matrestore") and ``provenance`` (the metadata of the
image that was written, e.g. its ``source``).

The data bar is *detected from the pixels* (:func:`detect_databar`), not looked up per vendor.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._validate import InputError

__all__ = [
    "read_image",
    "read_single_image",
    "read_stack",
    "write_tiff",
    "detect_databar",
    "to_float",
    "sample_path",
    "display_unit",
    "IMAGE_SUFFIXES",
]

VENDORS = ("zeiss", "fei", "tescan", "jeol")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
MATRESTORE_TAG = 65000  # private TIFF tag holding our JSON metadata
_UNIT_TO_NM = {"pm": 1e-3, "nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "micron": 1e3, "mm": 1e6, "m": 1e9,
               "cm": 1e7, "inch": 2.54e7, "in": 2.54e7}
_DATA_DIR = Path(__file__).parent / "data"
SAMPLES = {"sem": "aquami__Sample.tif", "optical": "nistgsat__grain_structures_steel.tif"}


# ------------------------------------------------------------------------------------------ helpers
def sample_path(name: str = "sem") -> Path:
    """Path of a bundled sample image: ``"sem"`` (nanoporous gold, MIT) or ``"optical"`` (steel, NIST)."""
    if name not in SAMPLES:
        raise InputError(f"unknown sample {name!r}; choose from {', '.join(SAMPLES)}.")
    return _DATA_DIR / SAMPLES[name]


def display_unit(pixel_size_nm: float | None) -> tuple[str, float]:
    """Unit for showing a pixel size and the factor from nm to it: ("nm", 1) or ("µm", 1e-3)."""
    if pixel_size_nm is not None and pixel_size_nm >= 1000:
        return "µm", 1e-3
    return "nm", 1.0


def to_float(image, data_range=None) -> np.ndarray:
    """float32 copy of ``image`` scaled to [0, 1] by ``data_range`` (default: its effective range)."""
    from .metrics import effective_data_range

    arr = np.asarray(image)
    if data_range is None:
        data_range = effective_data_range(arr)
    out = arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating) and data_range == 1.0:
        return out
    lo = 0.0 if not np.issubdtype(arr.dtype, np.floating) or arr.min() >= 0 else float(arr.min())
    return (out - lo) / np.float32(data_range)


def _jsonable(obj, depth: int = 0):
    if depth > 8:
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 64 else f"<array {obj.shape} {obj.dtype}>"
    if isinstance(obj, bytes):
        return obj.decode("latin-1", "replace")
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def _to_nm(value, unit: str) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    f = _UNIT_TO_NM.get(str(unit).strip().replace("\\u00B5", "µ"))
    if f is None or not np.isfinite(v) or v <= 0:
        return None
    return v * f


# ------------------------------------------------------------------------------------------ data bar
def _row_modes(rows: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the most common value (counting values within ``tol`` of it) and its pixel fraction."""
    modes = np.empty(rows.shape[0])
    frac = np.empty(rows.shape[0])
    for i, row in enumerate(rows):
        vals, counts = np.unique(row, return_counts=True)
        if tol > 0:
            cs = np.concatenate([[0], np.cumsum(counts)])
            win = cs[np.searchsorted(vals, vals + tol, "right")] - cs[np.searchsorted(vals, vals - tol, "left")]
        else:
            win = counts
        j = int(win.argmax())
        modes[i], frac[i] = vals[j], win[j] / row.size
    return modes, frac


def _dominant_value(block: np.ndarray, tol: float) -> float:
    vals, counts = np.unique(block, return_counts=True)
    if tol > 0:
        cs = np.concatenate([[0], np.cumsum(counts)])
        counts = cs[np.searchsorted(vals, vals + tol, "right")] - cs[np.searchsorted(vals, vals - tol, "left")]
    return float(vals[int(counts.argmax())])


def detect_databar(image: np.ndarray, max_fraction: float = 0.3, min_rows: int = 8, lossy: bool = False) -> int:
    """Number of rows of an instrument data bar at the bottom of ``image`` (0 if none).

    Only the bottom ``max_fraction`` of the rows is searched. A bar is drawn by the instrument
    software, so its background is one exact value (within 4 % of the range for lossy files such as
    JPEG, ``lossy=True``), which noisy image rows never are. Two kinds are recognised:

    * **solid bars** (FEI/TFS black or grey, Zeiss white, JPEG exports): ``B`` is the most common
      value of the bottom rows; going up from the last row, every row must have ≥ 40 % of its pixels
      at ``B`` (text and scale bars take the rest) or be a uniform line of another value (≥ 70 %,
      e.g. a separator). The run must stop at a sharp boundary (the 3 image rows above it have
      ≤ 30 % of their pixels at ``B``), hold ≥ 50 % ``B`` pixels overall, contain high-contrast
      marks (text: ≥ 0.2 % of the pixels differ from ``B`` by > 25 % of the range) and stop below
      the top of the searched zone (a uniform region taller than that is not a bar). One or two
      image rows under a framed bar are skipped.
    * **framed overlays** (Zeiss "data zone" drawn over the image): a full-width line (≥ 95 % of the
      row one value) with a second line of the same value below it and vertical lines of that value
      at the left and right edges between them: the bar starts at the top line.

    The larger of the two is returned when it has at least ``min_rows`` rows. Images with fewer
    than 16 grey levels (binary masks, drawings) are never cropped.
    """
    img = np.asarray(image)
    if img.ndim == 3:
        img = np.rint(img[..., :3].astype(np.float64).mean(axis=-1))
    if img.ndim != 2:
        return 0
    img = img.astype(np.float64, copy=False)
    h, w = img.shape
    n = int(h * max_fraction)
    if n < min_rows + 4 or w < 16:
        return 0
    zone = img[h - n :]
    lo, hi = float(zone.min()), float(img.max())
    lo = min(lo, float(img.min()))
    rng = hi - lo
    if rng <= 0 or len(np.unique(img[:: max(1, h // 64)])) < 16:
        return 0
    tol = 0.04 * rng if lossy else 0.0
    modes, frac = _row_modes(zone, tol)

    # solid bar
    solid = 0
    B = _dominant_value(zone[-max(3, int(round(0.04 * h))) :], tol)
    near_b = np.mean(np.abs(zone - B) <= tol, axis=1)
    ok = (near_b >= 0.4) | (frac >= 0.7)
    i, skip = n, 0
    while skip < 2 and i > 0 and not ok[i - 1]:
        i, skip = i - 1, skip + 1
    while i > 0 and ok[i - 1]:
        i -= 1
    if i > 0 and n - i - skip >= min_rows:
        block = zone[i:]
        frac_b = float(np.mean(np.abs(block - B) <= tol))
        text = float(np.mean(np.abs(block - B) > 0.25 * rng))
        above = float(near_b[max(0, i - 3) : i].mean())
        if frac_b >= 0.5 and text >= 0.002 and above <= 0.3:
            solid = n - i

    # framed overlay
    framed = 0
    lines = np.flatnonzero(frac >= 0.95)
    edge = max(2, int(round(0.03 * w)))
    for r in lines:
        if r == 0 or frac[r - 1] >= 0.95:
            continue
        below = [r2 for r2 in lines if r2 >= r + min_rows and abs(modes[r2] - modes[r]) <= tol]
        if not below:
            continue
        sides = (np.abs(zone[r : below[-1] + 1] - modes[r]) <= tol).mean(axis=0)
        if sides[:edge].max() >= 0.9 and sides[-edge:].max() >= 0.9:
            framed = n - r
            break

    rows = max(solid, framed)
    return int(rows) if rows >= min_rows else 0


# ------------------------------------------------------------------------------------------ metadata
def _zeiss_pixel_size(sem: dict) -> float | None:
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        v = sem.get(key)
        if isinstance(v, (tuple, list)) and len(v) >= 3:
            nm = _to_nm(v[1], v[2])
            if nm:
                return nm
    return None


def _parse_ini(text: str) -> dict:
    out: dict = {}
    section = out
    for line in text.splitlines():
        line = line.strip().strip("\x00")
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
        elif "=" in line:
            k, _, v = line.partition("=")
            section[k.strip()] = v.strip()
    return out


def _jeol_sidecar(path: Path) -> dict | None:
    """JEOL writes ``name.txt`` beside the image: ``$CM_FULL_SIZE 1280 960``, ``$$SM_MICRON_BAR 160``
    (scale-bar length in px), ``$$SM_MICRON_MARKER 1um`` (its physical length)."""
    side = path.with_suffix(".txt")
    if not side.is_file():
        return None
    try:
        text = side.read_text(errors="replace")
    except OSError:
        return None
    if "$CM_" not in text and "$$SM_" not in text:
        return None
    raw = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if parts and parts[0].startswith("$"):
            raw[parts[0].lstrip("$")] = parts[1] if len(parts) > 1 else ""
    return raw


def _jeol_pixel_size(raw: dict) -> float | None:
    bar = raw.get("SM_MICRON_BAR") or raw.get("CM_MICRON_BAR")
    marker = raw.get("SM_MICRON_MARKER") or raw.get("CM_MICRON_MARKER")
    if not bar or not marker:
        return None
    m = re.match(r"\s*([0-9.eE+-]+)\s*([a-zA-Zµμ]+)", marker)
    if not m:
        return None
    length = _to_nm(m.group(1), m.group(2))
    try:
        px = float(bar)
    except ValueError:
        return None
    return length / px if length and px > 0 else None


def _tiff_metadata(tf, page, path: Path) -> dict:
    """Vendor, pixel size (nm), dwell time and raw metadata from a TIFF's tags."""
    meta: dict = {"vendor": None, "pixel_size": None, "raw": {}}
    own = page.tags.get(MATRESTORE_TAG)
    if own is not None:
        try:
            doc = json.loads(own.value)
            if isinstance(doc, dict) and doc.get("writer") == "matrestore":
                prev = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
                vendor = prev.get("vendor")
                raw = prev.get("raw")
                meta.update(vendor=vendor if vendor in VENDORS else None, pixel_size=doc.get("pixel_size_nm"),
                            raw=raw if isinstance(raw, dict) else {})
                # what the file was made from (source, shape_original, databar_rows, ...), without raw
                meta["provenance"] = {k: v for k, v in prev.items() if k != "raw"}
                meta["written_by"] = "matrestore"
                meta["matrestore"] = doc
                return meta
        except (ValueError, TypeError):
            pass
    fei = tf.fei_metadata
    if fei:
        meta["vendor"] = "fei"
        meta["raw"] = _jsonable(fei)
        scan = fei.get("Scan", {}) or fei.get("EScan", {})
        meta["pixel_size"] = _to_nm(scan.get("PixelWidth"), "m")
        if scan.get("Dwelltime"):
            meta["dwell_time_us"] = float(scan["Dwelltime"]) * 1e6
        image = fei.get("Image", {})
        if image.get("ResolutionY"):
            meta["image_rows_hint"] = int(image["ResolutionY"])
        return meta
    sem = tf.sem_metadata
    if sem:
        meta["vendor"] = "zeiss"
        meta["raw"] = _jsonable(sem)
        meta["pixel_size"] = _zeiss_pixel_size(sem)
        dwell = sem.get("dp_dwell_time")
        if isinstance(dwell, (tuple, list)) and len(dwell) >= 3:
            ns = _to_nm(dwell[1], {"ns": "nm", "µs": "µm", "us": "um", "ms": "mm", "s": "m"}.get(dwell[2], "?"))
            if ns:
                meta["dwell_time_us"] = ns / 1e3
        return meta
    tescan = page.tags.get(50431)
    if tescan is not None:
        value = tescan.value
        text = value.decode("latin-1", "replace") if isinstance(value, bytes) else str(value)
        ini = _parse_ini(text[text.find("[") :] if "[" in text else text)
        main = ini.get("MAIN", ini)
        meta["vendor"] = "tescan"
        meta["raw"] = _jsonable(ini)
        meta["pixel_size"] = _to_nm(main.get("PixelSizeX"), "m")
        if main.get("DwellTime"):
            try:
                meta["dwell_time_us"] = float(main["DwellTime"]) * 1e6
            except ValueError:
                pass
        return meta
    jeol = _jeol_sidecar(path)
    if jeol is not None:
        meta.update(vendor="jeol", raw=jeol, pixel_size=_jeol_pixel_size(jeol))
        return meta
    ij = tf.imagej_metadata
    res = page.tags.get("XResolution")
    if ij or res is not None:
        unit = (ij or {}).get("unit")
        if res is not None:
            num, den = res.value
            per_unit = num / den if den else 0
            if per_unit > 0 and unit:
                meta["pixel_size"] = _to_nm(1.0 / per_unit, str(unit).replace("\\u00B5", "µ"))
                meta["calibration"] = "imagej"
            elif per_unit > 0:
                ru = page.tags.get("ResolutionUnit")
                ru = int(ru.value) if ru is not None else 2
                # ResolutionUnit 3 = cm; 2 = inch is the default of every writer and rarely physical
                if ru == 3 and per_unit > 1000:
                    meta["pixel_size"] = _to_nm(1.0 / per_unit, "cm")
                    meta["calibration"] = "tiff resolution"
        if ij:
            meta["raw"] = _jsonable(ij)
    return meta


# ------------------------------------------------------------------------------------------ pixels
def _palette_to_grey(page, arr, meta):
    """Apply a TIFF colour map. Grey when the entries used by ≥ 99 % of the pixels are grey (the
    few coloured pixels, e.g. a green annotation, become their luminance; their count is recorded)."""
    cmap = np.asarray(page.colormap)  # (3, 2**bits), uint16
    cmap8 = (cmap // 257).astype(np.uint8) if cmap.max() > 255 else cmap.astype(np.uint8)
    grey_entry = (cmap8[0] == cmap8[1]) & (cmap8[0] == cmap8[2])
    coloured = ~grey_entry[arr]
    n_col = int(coloured.sum())
    if n_col <= 0.01 * arr.size:
        lum = np.rint(0.299 * cmap8[0] + 0.587 * cmap8[1] + 0.114 * cmap8[2]).astype(np.uint8)
        lut = np.where(grey_entry, cmap8[0], lum)
        if n_col:
            meta["colour_annotation_pixels"] = n_col
        return lut[arr], True
    return np.moveaxis(cmap8[:, arr], 0, -1), False


def _maybe_grey(arr: np.ndarray, meta: dict) -> np.ndarray:
    """RGB(A) whose colour channels are equal (up to 1 % of the range on 99.9 % of pixels) -> grey."""
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        return arr
    rgb = arr[..., :3].astype(np.int64)
    rng = 255 if arr.dtype == np.uint8 else max(int(rgb.max()), 1)
    diff = np.maximum(np.abs(rgb[..., 0] - rgb[..., 1]), np.abs(rgb[..., 0] - rgb[..., 2]))
    if np.mean(diff <= 0.01 * rng) >= 0.999:
        meta["rgb_to_grey"] = True
        grey = np.rint(rgb.mean(axis=-1))
        return grey.astype(arr.dtype)
    meta["rgb"] = True
    return arr


def _open_error(path, exc) -> InputError:
    return InputError(f"cannot read {path}: {exc.__class__.__name__}: {exc}".rstrip(": "))


def read_image(path, crop_databar: bool = True) -> tuple[np.ndarray, dict]:
    """Read one micrograph; see the module docstring for the metadata.

    Multi-page TIFFs give their first page (``metadata["n_pages"]`` tells how many there are; use
    :func:`read_stack` for all). The instrument data bar is removed unless ``crop_databar=False``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder; use read_stack for a folder of frames.")
    suffix = path.suffix.lower()
    meta: dict = {"source": str(path), "vendor": None, "pixel_size": None, "raw": {}}
    if suffix in TIFF_SUFFIXES:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tf:
                if not tf.pages:
                    raise InputError(f"{path} holds no image.")
                page = tf.pages[0]
                arr = page.asarray()
                meta.update(_tiff_metadata(tf, page, path))
                meta["n_pages"] = len(tf.pages)
                # full-size images (not thumbnails / reduced-resolution subfiles) in the file
                meta["n_images"] = sum(1 for pg in tf.pages if getattr(pg, "shape", None) == page.shape
                                       and not int(getattr(pg, "subfiletype", 0) or 0) & 1)
                if page.photometric == 3 and page.colormap is not None:  # PALETTE
                    arr, grey = _palette_to_grey(page, arr, meta)
                    meta["colormap_applied"] = True
                    if not grey:
                        meta["rgb"] = True
                meta["bit_depth"] = int(page.bitspersample)
                lossy = int(page.compression) in (6, 7, 33007, 34892, 50001)  # JPEG, JPEG-XR, WebP ...
        except InputError:
            raise
        except Exception as exc:  # tifffile raises many kinds for corrupt files
            raise _open_error(path, exc) from exc
    elif suffix in IMAGE_SUFFIXES:
        import imageio.v3 as iio

        try:
            arr = np.asarray(iio.imread(path))
        except Exception as exc:
            raise _open_error(path, exc) from exc
        meta["n_pages"] = meta["n_images"] = 1
        meta["bit_depth"] = int(arr.dtype.itemsize * 8)
        lossy = suffix in (".jpg", ".jpeg", ".webp")
        jeol = _jeol_sidecar(path)
        if jeol is not None:
            meta.update(vendor="jeol", raw=jeol, pixel_size=_jeol_pixel_size(jeol))
    else:
        raise InputError(f"{path.name}: unsupported file type {suffix!r}; expected one of {', '.join(IMAGE_SUFFIXES)}.")
    if arr.size == 0:
        raise InputError(f"{path} holds an empty image.")
    meta["shape_original"] = list(arr.shape)
    arr = _maybe_grey(arr, meta)
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4):
        arr = arr[0]  # a multi-sample page: keep the first plane
    own = meta.get("matrestore") or {}
    bar = 0
    if crop_databar and not own and arr.shape[0] >= 64:
        bar = detect_databar(arr, lossy=lossy)
        hint = meta.pop("image_rows_hint", None)
        if bar == 0 and hint and 0 < arr.shape[0] - hint <= 0.3 * arr.shape[0]:
            bar = arr.shape[0] - hint  # FEI: the instrument's image height, when the pixels were inconclusive
    meta.pop("image_rows_hint", None)
    if bar:
        arr = arr[: arr.shape[0] - bar]
    # our own files: the bar was removed before writing; its row count travels in the metadata
    ours = own.get("metadata", {}) if own else {}
    meta["databar_rows"] = int(ours.get("databar_rows", 0)) if own else int(bar)
    for k in ("dwell_time_us", "pixel_size_source"):
        if k in ours:
            meta[k] = ours[k]
    meta["pixel_size_unit"] = "nm"
    meta["unit"] = display_unit(meta["pixel_size"])[0]
    meta.pop("matrestore", None)
    return arr, meta


# ------------------------------------------------------------------------------------------ stacks
def read_single_image(path):
    """:func:`read_image` for commands that take one 2-D image per file: a TIFF holding several full-size
    images (``metadata["n_images"]``; thumbnails do not count) is refused with a message rather than
    silently reduced to its first page."""
    img, meta = read_image(path)
    if meta.get("n_images", 1) > 1:
        raise InputError(f"{Path(path).name} holds {meta['n_images']} images (pages); this command reads one 2-D "
                         "image per file. Split the pages into files (e.g. with Fiji or tifffile) and pass each one.")
    return img, meta


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _frame_number(p: Path) -> int | None:
    nums = re.findall(r"\d+", p.stem)
    return int(nums[-1]) if nums else None


def read_stack(path, max_bytes: int = 16 * 2**30) -> tuple[np.ndarray, dict]:
    """Read a projection stack: a multi-page TIFF or a folder of numbered TIFFs, as (N, H, W).

    Folder frames are sorted by the number in their names (natural order: 2 before 10); the numbers
    are kept in ``metadata["frame_indices"]`` and the files in ``metadata["files"]``. All frames must
    have the same shape and dtype; the stack is allocated once and filled frame by frame (40 frames
    of 1024×1024 uint16 take 80 MiB), and a folder that would need more than ``max_bytes`` is an
    error rather than an out-of-memory crash. Data bars are not removed (detector frames have none).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"not found: {path}")
    import tifffile

    if path.is_dir():
        files = sorted((f for f in path.iterdir() if f.suffix.lower() in TIFF_SUFFIXES and f.is_file()), key=_natural_key)
        if not files:
            raise InputError(f"{path} contains no TIFF frames.")
        stack = None
        meta: dict = {}
        for k, f in enumerate(files):
            arr, m = read_image(f, crop_databar=False)
            if stack is None:
                meta = m
                nbytes = len(files) * arr.nbytes
                if nbytes > max_bytes:
                    raise InputError(f"{path}: {len(files)} frames of {arr.shape} {arr.dtype} need "
                                     f"{nbytes / 2**30:.1f} GiB (more than max_bytes = {max_bytes / 2**30:.1f} GiB).")
                stack = np.empty((len(files),) + arr.shape, dtype=arr.dtype)  # filled in place: no 2x peak
            elif arr.shape != stack.shape[1:] or arr.dtype != stack.dtype:
                raise InputError(f"frame {f.name} has shape {arr.shape} ({arr.dtype}), unlike the frames "
                                 f"before it {stack.shape[1:]} ({stack.dtype}).")
            stack[k] = arr
        meta = dict(meta)
        meta.update(source=str(path), files=[f.name for f in files],
                    frame_indices=[_frame_number(f) for f in files], n_frames=len(files), databar_rows=0)
        return stack, meta
    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            stack = tf.asarray()  # the first series: all pages of a stack
            rgb = page.photometric == 2 and stack.shape[-1] in (3, 4)  # RGB pages: (..., H, W, 3)
            nspatial = 3 if rgb else 2
            if stack.ndim > nspatial + 1:
                stack = stack.reshape((-1,) + stack.shape[-nspatial:])
            if page.photometric == 3 and page.colormap is not None:  # palette pages -> grey levels
                stack, _ = _palette_to_grey(page, stack, {})
    except InputError:
        raise
    except Exception as exc:
        raise _open_error(path, exc) from exc
    _, meta = read_image(path, crop_databar=False)
    if stack.ndim == (3 if meta.get("rgb") else 2):
        stack = stack[None]
    meta.update(frame_indices=list(range(stack.shape[0])), n_frames=int(stack.shape[0]), databar_rows=0)
    return stack, meta


# ------------------------------------------------------------------------------------------ writing
def _same_file(a: Path, b) -> bool:
    try:
        return Path(b).resolve() == a.resolve()
    except (OSError, TypeError, ValueError):
        return False


def _source_paths(metadata: dict | None) -> list:
    """The files an image was read from, as recorded in its metadata."""
    if not isinstance(metadata, dict):
        return []
    out = [metadata.get("source")]
    prov = metadata.get("provenance")
    if isinstance(prov, dict):
        out.append(prov.get("source"))
    files = metadata.get("files")
    if isinstance(files, (list, tuple)) and metadata.get("source"):
        out += [Path(metadata["source"]) / f for f in files]
    return [p for p in out if p]


def _storable(arr: np.ndarray) -> tuple[np.ndarray, bool]:
    """The array in a dtype an ImageJ TIFF holds (uint8, uint16, int16, float32), converted without
    loss where possible; ``(arr, False)`` when only a plain TIFF keeps the values exactly."""
    dt = arr.dtype
    if dt in (np.uint8, np.uint16, np.int16, np.float32):
        return arr, True
    if dt == bool:
        return arr.astype(np.uint8), True
    if dt == np.int8:
        return arr.astype(np.int16), True
    if dt == np.float16:
        return arr.astype(np.float32), True
    if dt == np.float64:
        return arr.astype(np.float32), True  # ImageJ has no float64; float32 keeps ~7 digits
    if np.issubdtype(dt, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo >= 0 and hi <= 65535:
            return arr.astype(np.uint16), True
        if lo >= -32768 and hi <= 32767:
            return arr.astype(np.int16), True
        if max(abs(lo), abs(hi)) <= 2**24:
            return arr.astype(np.float32), True  # exact: float32 holds every integer up to 2**24
    return arr, False


def write_tiff(path, array, pixel_size_nm: float | None = None, metadata: dict | None = None,
               overwrite: bool | None = None) -> Path:
    """Write ``array`` as a TIFF that keeps the pixel size, for matrestore and for Fiji.

    The file is an ImageJ TIFF (``unit`` "nm", or "micron" for pixels of 1 µm and more;
    XResolution/YResolution in pixels per unit: what Fiji reads) with matrestore's JSON (exact pixel
    size in nm, ``metadata`` such as ``databar_rows``, ``vendor``, ``source``) in a private tag
    (65000). 2-D grey, RGB (H, W, 3) and stacks (N, H, W) are written.

    Data: uint8, uint16, int16 and float32 are written unchanged; bool, int8 and float16 are widened
    and other integers narrowed to uint16/int16/float32 when that is lossless; float64 becomes
    float32 (ImageJ has no 64-bit floats). Integers that fit none of those are written as a plain
    TIFF in their own dtype (calibration in ResolutionUnit = cm, which Fiji also reads). NaN and
    infinite float values are written as they are (TIFF allows them); check with ``np.isfinite``
    before writing if that matters downstream.

    Overwriting: ``overwrite=None`` (default) replaces an existing file, except the file the image
    was read from (``metadata["source"]``): the original instrument file (with its data bar and
    metadata) is never replaced silently; pass ``overwrite=True`` to allow that. ``overwrite=False``
    refuses every existing file. The file is written under a temporary name and moved into place,
    so an interrupted write never leaves a half-written file under ``path``.
    """
    import tifffile

    path = Path(path)
    arr = np.asarray(array)
    if arr.size == 0:
        raise InputError("refusing to write an empty image.")
    if path.exists():
        if overwrite is False:
            raise InputError(f"{path} exists; choose another name or allow overwriting.")
        if overwrite is None and any(_same_file(path, s) for s in _source_paths(metadata)):
            raise InputError(f"{path} is the file this image was read from; write to another name "
                             "(or pass overwrite=True to replace the original).")
    if pixel_size_nm is not None:
        pixel_size_nm = float(pixel_size_nm)
        if not (np.isfinite(pixel_size_nm) and pixel_size_nm > 0):
            raise InputError(f"pixel_size_nm must be a positive number, got {pixel_size_nm}.")
    original_dtype = str(arr.dtype)
    arr, imagej = _storable(arr)
    rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype != np.uint8:
        imagej = False  # ImageJ RGB is 8-bit only
    meta_doc = _jsonable(metadata or {})
    if original_dtype != str(arr.dtype):
        meta_doc["dtype_original"] = original_dtype
    doc = {"pixel_size_nm": pixel_size_nm, "metadata": meta_doc, "writer": "matrestore"}
    kwargs: dict = {}
    if imagej:
        kwargs = {"imagej": True, "metadata": {}}
        if rgb:
            kwargs["photometric"] = "rgb"
        if pixel_size_nm:
            unit, factor = display_unit(pixel_size_nm)
            size = pixel_size_nm * factor
            kwargs["resolution"] = (1.0 / size, 1.0 / size)
            kwargs["metadata"]["unit"] = "micron" if unit == "µm" else unit
    else:
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            kwargs["photometric"] = "rgb"
        elif arr.ndim >= 2:
            kwargs["photometric"] = "minisblack"
        if pixel_size_nm:
            per_cm = 1e7 / pixel_size_nm
            kwargs.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    tmp = path.with_name(f".{path.name}.part")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tifffile.imwrite(tmp, arr, extratags=[(MATRESTORE_TAG, "s", 0, json.dumps(doc), True)], **kwargs)
        tmp.replace(path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc}") from exc
    return path


# ------------------------------------------------------------------------------------------ lazy images
LAZY_READ_BYTES = 256 * 2**20  # files up to this size are read whole (read_image: data bar, palettes) and wrapped


@dataclass
class LazyImage:
    """A 2-D image as a lazy dask array with what is known about it (pixel size in nm, origin in nm)."""

    data: Any
    pixel_size_nm: float | None = None
    translate_nm: tuple | None = None
    name: str = "image"
    path: Path | None = None
    meta: dict = field(default_factory=dict)


def open_lazy(source, *, chunk: int = 2048) -> LazyImage:
    """Any image the block engine takes, as a :class:`LazyImage` (nothing larger than one chunk is read):

    - a numpy array (wrapped), a dask array (as is), a zarr array, a list of arrays (a napari multiscale
      layer's data: level 0), a :class:`LazyImage`;
    - a Zarr / OME-Zarr store folder (level 0; pixel size and origin from the NGFF metadata);
    - a TIFF: read tile by tile through tifffile's Zarr store when larger than :data:`LAZY_READ_BYTES`
      (no data-bar detection: mosaics have none), else read whole with :func:`read_image` (data bar
      removed, palettes applied), so small files give exactly the in-memory pipeline's pixels;
    - PNG / JPEG: read whole (these formats cannot be read by parts).
    """
    import dask.array as da

    if isinstance(source, LazyImage):
        return source
    if isinstance(source, (list, tuple)) and source and hasattr(source[0], "shape"):
        source = source[0]  # multiscale: level 0
    if isinstance(source, da.Array):
        return LazyImage(source)
    if isinstance(source, np.ndarray):
        return LazyImage(da.from_array(source, chunks=(chunk, chunk)))
    if hasattr(source, "shape") and hasattr(source, "dtype") and not isinstance(source, (str, Path)):
        return LazyImage(da.from_array(source, chunks=(chunk, chunk)))
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"file not found: {path}")
    from . import ngff

    if path.is_dir():
        if not ngff.is_store(path):
            raise InputError(f"{path} is a folder but not a Zarr store.")
        doc = ngff.read_store(path)
        arr = doc["levels"][0]
        if arr.ndim != 2:
            raise InputError(f"{path.name}: level 0 has shape {tuple(arr.shape)}; a 2-D image is needed.")
        return LazyImage(arr, doc["pixel_size_nm"], doc["translate_nm"], path.stem, path, {"source": str(path)})
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES and path.stat().st_size > LAZY_READ_BYTES:
        import tifffile
        import zarr

        try:
            with tifffile.TiffFile(path) as tf:
                page = tf.pages[0]
                meta = _tiff_metadata(tf, page, path)
                if page.photometric == 3:
                    raise InputError(f"{path.name}: a large palette TIFF; convert it to greyscale first.")
            store = tifffile.imread(path, aszarr=True)
            node = zarr.open(store, mode="r")
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _open_error(path, exc) from exc
        if isinstance(node, zarr.Group):  # pyramidal TIFF: level 0
            node = node[sorted(node.array_keys(), key=lambda k: int(k) if k.isdigit() else 0)[0]]
        arr = da.from_zarr(node)
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            raise InputError(f"{path.name}: RGB image of shape {tuple(arr.shape)}; convert it to greyscale first.")
        if arr.ndim != 2:
            raise InputError(f"{path.name}: image of shape {tuple(arr.shape)}; a 2-D image is needed.")
        return LazyImage(arr, meta.get("pixel_size"), None, path.stem, path, {"source": str(path), "lazy_tiff": True})
    img, meta = read_single_image(path)
    if img.ndim != 2:
        raise InputError(f"{path.name}: image of shape {img.shape}; a 2-D grey image is needed.")
    return LazyImage(da.from_array(img, chunks=(chunk, chunk)), meta.get("pixel_size"), None, path.stem, path, meta)


LAZY_STACK_BYTES = 1 * 2**30  # projection stacks above this (on disk) are opened lazily, frame by frame


def stack_bytes(path) -> int:
    """Bytes on disk of a projection stack (a folder of TIFF frames or a multi-page TIFF)."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.iterdir() if f.suffix.lower() in TIFF_SUFFIXES and f.is_file())
    return p.stat().st_size


def open_stack_lazy(path) -> tuple:
    """A projection stack (folder of numbered TIFFs, or a multi-page TIFF) as a lazy dask array (N, H, W)
    read frame by frame (one chunk per frame, the files' own dtype), with the metadata
    :func:`read_stack` gives, from the first frame only."""
    import dask
    import dask.array as da
    import tifffile

    path = Path(path)
    if path.is_dir():
        files = sorted((f for f in path.iterdir() if f.suffix.lower() in TIFF_SUFFIXES and f.is_file()), key=_natural_key)
        if not files:
            raise InputError(f"{path} contains no TIFF frames.")
        first, meta = read_image(files[0], crop_databar=False)

        def frame(f):
            a = np.squeeze(tifffile.imread(str(f)))
            if a.shape != first.shape:
                raise InputError(f"frame {f.name} has shape {a.shape}, unlike the first frame {first.shape}.")
            return a.astype(first.dtype, copy=False)

        data = da.stack([da.from_delayed(dask.delayed(frame)(f), first.shape, first.dtype) for f in files])
        meta = dict(meta)
        meta.update(source=str(path), files=[f.name for f in files], frame_indices=[_frame_number(f) for f in files],
                    n_frames=len(files), databar_rows=0, lazy=True)
        return data, meta
    import zarr

    try:
        with tifffile.TiffFile(path) as tf:
            meta = _tiff_metadata(tf, tf.pages[0], path)
        node = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    except Exception as exc:  # noqa: BLE001
        raise _open_error(path, exc) from exc
    if isinstance(node, zarr.Group):
        node = node[sorted(node.array_keys())[0]]
    data = da.from_zarr(node)
    data = data.reshape((-1,) + tuple(data.shape[-2:]))
    meta = dict(meta)
    meta.update(source=str(path), n_frames=int(data.shape[0]), databar_rows=0, lazy=True)
    return data, meta
