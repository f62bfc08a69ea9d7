"""Projection stacks read lazily, frame by frame, with a rotation angle ω per frame.

:class:`FrameStack` wraps a numpy array ``(N, H, W)``, a list of 2-D arrays, a folder of numbered TIFFs
or a multi-page TIFF; ``stack[k]`` reads (and checks) one frame as float32, so peak memory is a few frames
whatever the stack's length. ω comes from, in order: the ``omegas`` given; ω in the file names
(``..._omega-3.0.tif``, ``..._ome_12.5.tif``); a LabDCT ``input_main.m`` geometry file (``rot_start`` +
``rot_step`` × (frame number − 1), the frame number taken from the file name); else unknown (``None``).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .._validate import InputError

__all__ = ["FrameStack", "as_stack", "omegas_from_names", "omegas_from_geometry", "is_full_turn", "layer_metadata",
           "OMEGA_KEY", "GEOMETRY_NAMES"]

OMEGA_KEY = "omegas"  # layer.metadata[OMEGA_KEY]: ω (degrees) of every frame of a projection-stack layer
GEOMETRY_NAMES = ("input_main.m",)  # LabDCT geometry files looked for beside the frames

_TIFF = {".tif", ".tiff"}
_OMEGA_RE = re.compile(r"(?<![a-z])(?:omega|ome|om|w)[_=]?(m?-?\d+(?:[.p]\d+)?)(?:deg)?(?=[^0-9.]|$)", re.I)


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _frame_number(p: Path):
    nums = re.findall(r"\d+", p.stem)
    return int(nums[-1]) if nums else None


def omegas_from_names(files) -> list | None:
    """ω (degrees) parsed from every file name, or ``None`` when not every name carries one."""
    out = []
    for f in files:
        m = _OMEGA_RE.search(Path(f).stem)
        if not m:
            return None
        t = m.group(1).replace("p", ".")
        t = "-" + t[1:] if t.startswith("m") else t
        try:
            out.append(float(t))
        except ValueError:
            return None
    return out


def omegas_from_geometry(path, frame_numbers) -> list:
    """ω = rot_start + rot_step × (k − 1) for 1-based frame numbers ``k`` (LabDCT ``input_main.m``)."""
    from .geometry import read_geometry_m

    _, info = read_geometry_m(path)
    if "rot_start" not in info or "rot_step" not in info:
        raise InputError(f"{Path(path).name}: no rot_start / rot_step found for the rotation angles.")
    if any(k is None for k in frame_numbers):
        raise InputError("frame numbers are needed to take ω from a geometry file (numbered file names).")
    return [info["rot_start"] + info["rot_step"] * (k - 1) for k in frame_numbers]


def _geometry_file(folder: Path) -> Path | None:
    for name in GEOMETRY_NAMES:
        for d in (folder, folder.parent):
            if (d / name).is_file():
                return d / name
    return None


def layer_metadata(source) -> dict:
    """What a napari layer of the projection stack ``source`` (a folder of numbered TIFFs, a list of frame
    files, or a multi-page TIFF) should carry about its rotation: ``{"omegas": [ω per frame, degrees],
    "omega_source": where they came from, "full_turn": bool}``, or ``{}`` when ω is unknown. ω comes
    from the file names, else from an ``input_main.m`` beside the frames (or one folder up): frame
    numbers from the names for files, 1..N for the pages of a multi-page TIFF. Never raises for an
    unreadable geometry file (the stack still opens, without ω)."""
    if isinstance(source, (list, tuple)):
        files = [Path(f) for f in source]
        folder = files[0].parent if files else Path(".")
        pages = None
    else:
        p = Path(source)
        if p.is_dir():
            files = sorted((f for f in p.iterdir() if f.suffix.lower() in _TIFF and f.is_file()), key=_natural_key)
            folder, pages = p, None
        else:
            files, folder = None, p.parent
            try:
                import tifffile

                with tifffile.TiffFile(str(p)) as tf:
                    shape = tf.series[0].shape
                    pages = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            except Exception:  # noqa: BLE001 - not a readable TIFF: nothing to say
                return {}
    if files is not None and not files:
        return {}
    om, how = (omegas_from_names(files), "file names") if files is not None else (None, "")
    if om is None:
        geo = _geometry_file(folder)
        if geo is None:
            return {}
        numbers = [_frame_number(f) for f in files] if files is not None else list(range(1, pages + 1))
        try:
            om = omegas_from_geometry(geo, numbers)
        except (InputError, OSError, ValueError):
            return {}
        how = f"{geo.name}: rot_start + rot_step × (frame number − 1)"
    om = [float(w) for w in om]
    return {OMEGA_KEY: om, "omega_source": how, "full_turn": is_full_turn(om)}


def is_full_turn(omegas) -> bool:
    """True when equally spaced ω cover 360° (so a rolling window may wrap around)."""
    if omegas is None or len(omegas) < 3:
        return False
    om = np.asarray(omegas, float)
    step = np.median(np.abs(np.diff(om)))
    return bool(step > 0 and abs(len(om) * step - 360.0) <= 0.51 * step)


def _check_frame(arr: np.ndarray, k: int, name: str) -> np.ndarray:
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name}: frame {k} has unsupported data type {arr.dtype}; expected integer or float pixels.")
    if arr.ndim != 2:
        raise InputError(f"{name}: frame {k} has shape {arr.shape}; expected 2-D greyscale frames.")
    f = np.asarray(arr, np.float32)
    if not np.all(np.isfinite(f)):
        raise InputError(f"{name}: frame {k} contains NaN or infinite values; replace them (e.g. by 0 or the "
                         "frame median) before cleaning.")
    if not np.any(f):
        raise InputError(f"{name}: frame {k} is all zero (a blank or dropped frame?); remove it from the stack.")
    return f


class FrameStack:
    """A lazily read stack of 2-D frames (see the module docstring)."""

    def __init__(self, source, omegas=None, name: str = "stack", geometry_file=None, cache: int = 4):
        self.name = name
        self._arr = None
        self._files = None
        self._tiff = None
        self.files = None
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = int(cache)
        if isinstance(source, FrameStack):
            self.__dict__.update({k: v for k, v in source.__dict__.items() if k != "_cache"})
            self._cache = OrderedDict()
        elif isinstance(source, (str, Path)):
            self._open_path(Path(source))
        elif isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, Path)) for s in source):
            self._files = [Path(s) for s in source]
            self.files = [p.name for p in self._files]
        elif isinstance(source, (list, tuple)):
            if not source:
                raise InputError(f"{name}: no frames given.")
            shapes = {np.shape(a) for a in source}
            if len(shapes) > 1:
                raise InputError(f"{name}: frames have different shapes {sorted(shapes)}; all frames of a stack "
                                 "must have the same size.")
            self._arr = list(source)
        else:
            arr = np.asarray(source)
            if arr.dtype == object:
                raise InputError(f"{name}: frames of different shapes (or not numeric); all frames must match.")
            if arr.ndim == 2:
                raise InputError(f"{name}: a single 2-D frame of shape {arr.shape}, but a stack of projections "
                                 "(N, H, W) is needed: the rolling median and the network's neighbours come "
                                 "from the frames before and after each one.")
            if arr.ndim != 3:
                raise InputError(f"{name}: expected a stack of shape (N, H, W), got shape {arr.shape}.")
            if arr.shape[0] == 0 or arr.size == 0:
                raise InputError(f"{name}: the stack is empty (shape {arr.shape}).")
            self._arr = arr
        n = len(self)
        if n == 0:
            raise InputError(f"{name}: no frames.")
        if omegas is None and self._files is not None:
            omegas = omegas_from_names(self._files)
            if omegas is None and geometry_file is not None:
                omegas = omegas_from_geometry(geometry_file, [_frame_number(p) for p in self._files])
        elif omegas is None and geometry_file is not None:
            omegas = omegas_from_geometry(geometry_file, list(range(1, n + 1)))
        if omegas is not None:
            omegas = [float(w) for w in np.asarray(omegas, float).ravel()]
            if len(omegas) != n:
                raise InputError(f"{name}: {len(omegas)} rotation angles for {n} frames.")
        self.omegas = omegas
        first = self._read(0)
        self.shape = first.shape
        self._cache[0] = first

    def _open_path(self, p: Path):
        if not p.exists():
            raise InputError(f"not found: {p}")
        if p.is_dir():
            files = sorted((f for f in p.iterdir() if f.suffix.lower() in _TIFF and f.is_file()), key=_natural_key)
            if not files:
                raise InputError(f"{p} contains no TIFF frames.")
            self._files = files
            self.files = [f.name for f in files]
        else:
            import tifffile

            try:
                self._tiff = tifffile.TiffFile(str(p))
                self._tiff_path = str(p)
                npages = len(self._tiff.pages)
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"cannot read {p.name} as a TIFF stack: {exc}") from exc
            if npages == 1:
                arr = self._tiff.asarray()
                if arr.ndim == 2:
                    raise InputError(f"{p.name} holds a single 2-D frame, but a stack of projections is needed "
                                     "(the rolling median and the network's neighbours use the frames around each one).")
                self._tiff.close()
                self._tiff = None
                self._arr = arr.reshape((-1,) + arr.shape[-2:])
            self.files = [p.name]

    def __getstate__(self):
        """Picklable (for dask.distributed workers): an open multi-page TIFF travels as its path and is
        reopened where it lands; the frame cache stays behind."""
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        if state.get("_tiff") is not None:
            state["_tiff"] = None
            state["_reopen"] = True
        return state

    def __setstate__(self, state):
        reopen = state.pop("_reopen", False)
        self.__dict__.update(state)
        if reopen:
            import tifffile

            self._tiff = tifffile.TiffFile(self._tiff_path)

    def __len__(self) -> int:
        if self._arr is not None:
            return len(self._arr)
        if self._files is not None:
            return len(self._files)
        return len(self._tiff.pages)

    def _read(self, k: int) -> np.ndarray:
        if self._arr is not None:
            raw = np.asarray(self._arr[k])
        elif self._files is not None:
            import tifffile

            try:
                raw = tifffile.imread(str(self._files[k]))
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"cannot read frame {self._files[k].name}: {exc}") from exc
            raw = np.squeeze(raw)
        else:
            raw = self._tiff.pages[k].asarray()
        f = _check_frame(raw, k, self.name)
        if hasattr(self, "shape") and f.shape != self.shape:
            which = self._files[k].name if self._files is not None else f"frame {k}"
            raise InputError(f"{self.name}: {which} has shape {f.shape}, unlike the first frame {self.shape}; "
                             "all frames of a stack must have the same size.")
        return f

    def __getitem__(self, k: int) -> np.ndarray:
        k = int(k)
        n = len(self)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(k)
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        f = self._read(k)
        self._cache[k] = f
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return f

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    @property
    def full_turn(self) -> bool:
        return is_full_turn(self.omegas)

    def sample_pixels(self, n_frames: int = 8, per_frame: int = 200_000, seed: int = 0) -> np.ndarray:
        """Pixels from up to ``n_frames`` evenly spread frames (for the stack's own statistics)."""
        rng = np.random.default_rng(seed)
        idx = np.unique(np.linspace(0, len(self) - 1, min(n_frames, len(self))).round().astype(int))
        out = []
        for k in idx:
            f = self[k].ravel()
            out.append(f if f.size <= per_frame else f[rng.integers(0, f.size, per_frame)])
        return np.concatenate(out)

    def close(self):
        if self._tiff is not None:
            self._tiff.close()
            self._tiff = None


def as_stack(stack, name: str = "stack", min_frames: int = 1, omegas=None, geometry_file=None) -> FrameStack:
    """A :class:`FrameStack` from anything stack-like, with at least ``min_frames`` frames."""
    st = stack if (isinstance(stack, FrameStack) and omegas is None) else FrameStack(stack, omegas=omegas, name=name, geometry_file=geometry_file)
    if len(st) < min_frames:
        raise InputError(f"{name}: {len(st)} frame(s), but at least {min_frames} are needed "
                         f"(the rolling-median window; use a smaller window or more frames).")
    return st
