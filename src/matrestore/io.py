"""Reading and writing micrographs: arrays plus metadata, with physical pixel sizes.

``read_image(path) -> (array, metadata)`` opens SEM TIFFs (Thermo Fisher/FEI, Zeiss, TESCAN,
JEOL-style sidecar files), plain optical micrographs (PNG/JPEG/TIFF, 8/16 bit, grey or RGB) and our
own calibrated TIFFs. ``read_stack`` opens projection stacks (multi-page TIFF or a folder of numbered
TIFFs). ``write_tiff`` writes a calibrated TIFF that this module and Fiji read back.

Metadata keys (always present):

``pixel_size``       pixel size in nm (float), None when the file has none
``pixel_size_unit``  "nm"
``unit``             the unit a viewer should show ("nm", or "µm" for pixels of 1 µm and more)
``vendor``           "fei" (Thermo Fisher/FEI), "zeiss", "tescan", "jeol", "matrestore", "imagej" or None
``databar_rows``     rows of the instrument data bar removed at the bottom (0 if none)
``shape_original``   shape as stored in the file
``source``           the path read
``raw``              instrument metadata as a JSON-serialisable dict
plus, when known, ``dwell_time_us``, ``bit_depth``, ``n_pages``, ``colormap_applied``, ``rgb_to_grey``.

The data bar is *detected from the pixels* (:func:`detect_databar`), not looked up per vendor.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ._validate import InputError

__all__ = [
    "read_image",
    "read_stack",
    "write_tiff",
    "detect_databar",
    "to_float",
    "sample_path",
    "display_unit",
    "IMAGE_SUFFIXES",
]

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
def _row_uniformity(rows: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row: fraction of pixels within ``tol`` of the most common value (u1) and of one of the
    two most common values (u2)."""
    u1 = np.empty(rows.shape[0])
    u2 = np.empty(rows.shape[0])
    q = max(tol / 2, 1e-12)
    for i, row in enumerate(rows):
        r = row.astype(np.float64)
        vals, counts = np.unique(np.round(r / q), return_counts=True)
        order = np.argsort(counts)[::-1]
        m1 = vals[order[0]] * q
        near1 = np.abs(r - m1) <= tol
        u1[i] = near1.mean()
        if len(order) > 1:
            rest = r[~near1]
            if rest.size:
                v2, c2 = np.unique(np.round(rest / q), return_counts=True)
                m2 = v2[c2.argmax()] * q
                u2[i] = (near1 | (np.abs(r - m2) <= tol)).mean()
            else:
                u2[i] = 1.0
        else:
            u2[i] = 1.0
    return u1, u2


def detect_databar(image: np.ndarray, max_fraction: float = 0.3, min_rows: int = 8) -> int:
    """Number of rows of an instrument data bar at the bottom of ``image`` (0 if none).

    Looks at the bottom ``max_fraction`` of the rows. A row belongs to a data bar when nearly all its
    pixels (≥ 85 %) take one or two values (background and text/lines), which real image rows
    rarely do. Two kinds of bars are found:

    * solid bars (FEI/TFS, Zeiss, JPEG exports): the run of such rows that ends at the last row
      (gaps of up to 2 rows, e.g. a partial grid line, are bridged), whose pixels are at least half
      one exact value (a drawn background; flat but noisy image regions are not);
    * outlined overlays (Zeiss "data zone" frames drawn over the image): the top-most full-width
      line (≥ 95 % of the row one value, black or white) that has a second such line below it.

    The larger of the two is returned when it has at least ``min_rows`` rows.
    """
    img = np.asarray(image)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1)
    h = img.shape[0]
    n = int(h * max_fraction)
    if n < min_rows or img.shape[1] < 16:
        return 0
    bottom = img[h - n :].astype(np.float64)
    lo, hi = np.percentile(img, [0.5, 99.5])
    tol = max((hi - lo) * 0.03, 1e-9)
    u1, u2 = _row_uniformity(bottom, tol)
    barlike = u2 >= 0.85
    line = u1 >= 0.95
    # solid bar: run of bar-like rows from the bottom, bridging gaps of <= 2 rows
    top_solid, gap = n, 0
    for i in range(n - 1, -1, -1):
        if barlike[i]:
            top_solid, gap = i, 0
        else:
            gap += 1
            if gap > 2:
                break
    solid = n - top_solid
    if solid:
        # a drawn bar has a background of one exact value (natural flat regions have noise)
        _, counts = np.unique(bottom[top_solid:], return_counts=True)
        if counts.max() < 0.5 * bottom[top_solid:].size:
            solid = 0
    # outlined overlay: top-most full-width line, drawn in black or white, with another line below it
    medians = np.median(bottom, axis=1)
    extreme = (medians <= lo + tol) | (medians >= hi - tol)
    lines = np.flatnonzero(line & extreme)
    outlined = 0
    if len(lines) >= 2 and lines[-1] - lines[0] >= min_rows and lines[-1] >= n - 4:
        outlined = n - lines[0]
    rows = max(solid, outlined)
    if rows < min_rows or rows >= n:
        return 0
    return int(rows)


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
            meta.update(vendor="matrestore", pixel_size=doc.get("pixel_size_nm"), raw=doc.get("metadata", {}))
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
                meta["vendor"] = "imagej"
            elif per_unit > 0:
                ru = page.tags.get("ResolutionUnit")
                ru = int(ru.value) if ru is not None else 2
                # ResolutionUnit 3 = cm; 2 = inch is the default of every writer and rarely physical
                if ru == 3 and per_unit > 1000:
                    meta["pixel_size"] = _to_nm(1.0 / per_unit, "cm")
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
                if page.photometric == 3 and page.colormap is not None:  # PALETTE
                    arr, grey = _palette_to_grey(page, arr, meta)
                    meta["colormap_applied"] = True
                    if not grey:
                        meta["rgb"] = True
                meta["bit_depth"] = int(page.bitspersample)
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
        meta["n_pages"] = 1
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
    if crop_databar and not own and meta["vendor"] not in ("matrestore", "imagej") and arr.shape[0] >= 64:
        bar = detect_databar(arr)
        hint = meta.pop("image_rows_hint", None)
        if bar == 0 and hint and 0 < arr.shape[0] - hint <= 0.3 * arr.shape[0]:
            bar = arr.shape[0] - hint
    meta.pop("image_rows_hint", None)
    if bar:
        arr = arr[: arr.shape[0] - bar]
    # our own files: the bar was removed before writing; its row count travels in the metadata
    ours = own.get("metadata", {}) if own else {}
    meta["databar_rows"] = int(ours.get("databar_rows", 0)) if own else int(bar)
    for k in ("dwell_time_us", "vendor_original"):
        if k in ours:
            meta[k] = ours[k]
    meta["pixel_size_unit"] = "nm"
    meta["unit"] = display_unit(meta["pixel_size"])[0]
    meta.pop("matrestore", None)
    return arr, meta


# ------------------------------------------------------------------------------------------ stacks
def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _frame_number(p: Path) -> int | None:
    nums = re.findall(r"\d+", p.stem)
    return int(nums[-1]) if nums else None


def read_stack(path) -> tuple[np.ndarray, dict]:
    """Read a projection stack: a multi-page TIFF or a folder of numbered TIFFs, as (N, H, W).

    Folder frames are sorted by the number in their names (natural order: 2 before 10); the numbers
    are kept in ``metadata["frame_indices"]`` and the files in ``metadata["files"]``. All frames must
    have the same shape. Data bars are not removed (detector frames have none).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"not found: {path}")
    import tifffile

    if path.is_dir():
        files = sorted((f for f in path.iterdir() if f.suffix.lower() in TIFF_SUFFIXES and f.is_file()), key=_natural_key)
        if not files:
            raise InputError(f"{path} contains no TIFF frames.")
        frames, shapes = [], set()
        first_meta = None
        for f in files:
            arr, meta = read_image(f, crop_databar=False)
            if first_meta is None:
                first_meta = meta
            shapes.add(arr.shape)
            if len(shapes) > 1:
                raise InputError(f"frame {f.name} has shape {arr.shape}, unlike the frames before it {sorted(shapes)[0]}.")
            frames.append(arr)
        stack = np.stack(frames)
        meta = dict(first_meta)
        meta.update(source=str(path), files=[f.name for f in files],
                    frame_indices=[_frame_number(f) for f in files], n_frames=len(files), databar_rows=0)
        return stack, meta
    try:
        with tifffile.TiffFile(path) as tf:
            stack = tf.asarray()  # the first series: all pages of a stack
            if stack.ndim > 3:
                stack = stack.reshape((-1,) + stack.shape[-2:])
    except Exception as exc:
        raise _open_error(path, exc) from exc
    _, meta = read_image(path, crop_databar=False)
    if stack.ndim == 2:
        stack = stack[None]
    meta.update(frame_indices=list(range(stack.shape[0])), n_frames=int(stack.shape[0]), databar_rows=0)
    return stack, meta


# ------------------------------------------------------------------------------------------ writing
def write_tiff(path, array, pixel_size_nm: float | None = None, metadata: dict | None = None,
               overwrite: bool = True) -> Path:
    """Write ``array`` as a TIFF that keeps the pixel size, for matrestore and for Fiji.

    The file is an ImageJ TIFF (``unit`` "nm" or "micron", XResolution/YResolution in pixels per
    unit: what Fiji reads) with matrestore's JSON (pixel size in nm, ``metadata``) in a private tag.
    The data are written as they are (dtype kept; float NaN allowed). With ``overwrite=False`` an
    existing file is an error. The file is written to a temporary name and moved into place, so an
    interrupted write never leaves a half-written file under ``path``.
    """
    import tifffile

    path = Path(path)
    arr = np.asarray(array)
    if arr.size == 0:
        raise InputError("refusing to write an empty image.")
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; choose another name or allow overwriting.")
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)  # ImageJ TIFFs hold float32
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype == np.int64 or arr.dtype == np.uint32:
        arr = arr.astype(np.float32)
    doc = {"pixel_size_nm": None if pixel_size_nm is None else float(pixel_size_nm),
           "metadata": _jsonable(metadata or {}), "writer": "matrestore"}
    kwargs: dict = {"imagej": True, "metadata": {}}
    rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    if rgb and arr.dtype != np.uint8:
        kwargs = {"photometric": "rgb", "metadata": None}
    elif rgb:
        kwargs["photometric"] = "rgb"
    if pixel_size_nm:
        unit, factor = display_unit(pixel_size_nm)
        size = pixel_size_nm * factor
        kwargs["resolution"] = (1.0 / size, 1.0 / size)
        if kwargs.get("metadata") is not None:
            kwargs["metadata"]["unit"] = "micron" if unit == "µm" else unit
        else:
            kwargs["resolutionunit"] = "NONE"
    tmp = path.with_name(f".{path.name}.part")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tifffile.imwrite(tmp, arr, extratags=[(MATRESTORE_TAG, "s", 0, json.dumps(doc), True)], **kwargs)
        tmp.replace(path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc}") from exc
    return path
