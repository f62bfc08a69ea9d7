"""Where commands may write: never onto one of their inputs, never over a file matrestore did not write
(unless asked), always atomically. One place for every command (``matrestore compare``, ``sr``,
``ser``, ``denoise``, ``labdct``) and script.

    outputs = Outputs(inputs=[args.hr, args.lr, args.refs], overwrite=args.overwrite)
    path = outputs.file(args.json)          # InputError if it is an input, or a foreign existing file
    atomic_write_text(path, json.dumps(doc))
    folder = outputs.folder(args.out_dir)   # InputError if it is an existing file or cannot be made

A file counts as matrestore's own when it carries matrestore's mark: the private TIFF tag of
:func:`matrestore.io.write_tiff`, ``"written_by": "matrestore"`` in a JSON document, the header of a
ROI table (:func:`matrestore.ser.write_rois_csv`), the ``Software`` text of a PNG, or the metadata of a
model file. Rerunning a command over its own earlier outputs therefore works without ``--overwrite``;
replacing anything else needs it, and replacing an input is refused even then.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from ._validate import InputError

__all__ = ["Outputs", "add_overwrite_option", "atomic_write_text", "atomic_write_bytes", "written_by_matrestore", "WRITTEN_BY", "MARK"]

WRITTEN_BY = "written_by"
MARK = "matrestore"
ROI_CSV_HEADER = "id,row0,col0,row1,col1"  # the first columns of matrestore's ROI tables


def _flatten(items) -> Iterable:
    for it in items:
        if it is None:
            continue
        if isinstance(it, (list, tuple, set)):
            yield from _flatten(it)
        else:
            yield it


def _input_files(inputs) -> list[Path]:
    """The files behind ``inputs`` (paths; a folder stands for the files in it)."""
    out = []
    for it in _flatten(inputs):
        if not isinstance(it, (str, os.PathLike)):
            continue  # arrays, models given as objects
        p = Path(it).expanduser()
        if p.is_dir():
            out += [f for f in p.iterdir() if f.is_file()]
        elif p.exists():
            out.append(p)
    return out


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # also through links and different spellings
        return a.resolve() == b.resolve()
    except OSError:
        return False


def written_by_matrestore(path) -> bool:
    """Whether the existing file ``path`` carries matrestore's mark (see the module docstring)."""
    p = Path(path)
    try:
        if not p.is_file():
            return False
        suffix = p.suffix.lower()
        if suffix in (".tif", ".tiff"):
            import tifffile

            from .io import MATRESTORE_TAG

            with tifffile.TiffFile(p) as tf:
                return MATRESTORE_TAG in tf.pages[0].tags
        if suffix == ".json":
            doc = json.loads(p.read_text())
            return isinstance(doc, dict) and doc.get(WRITTEN_BY) == MARK
        if suffix == ".csv":
            with p.open() as fh:
                return fh.readline().startswith(ROI_CSV_HEADER)
        if suffix == ".png":
            from PIL import Image

            with Image.open(p) as im:
                return str(im.info.get("Software", "")).startswith(MARK)
        if suffix == ".safetensors":
            from . import modelfile

            modelfile.read_metadata(p)
            return True
    except Exception:  # noqa: BLE001 - unreadable or foreign: not ours
        return False
    return False


class Outputs:
    """The output rules of one command: ``inputs`` (paths, folders, nested lists; other objects are
    ignored) may never be written; an existing file is replaced only when matrestore wrote it or when
    ``overwrite`` is set."""

    def __init__(self, inputs=(), overwrite: bool = False):
        self.inputs = _input_files([inputs])
        self.overwrite = bool(overwrite)

    def file(self, path, what: str = "output") -> Path:
        """``path`` checked as an output file (returned as a Path); InputError when it may not be written."""
        p = Path(path).expanduser()
        for src in self.inputs:
            if _same(p, src):
                raise InputError(f"{what} {p} is one of this command's inputs ({src}); refusing to overwrite it — "
                                 "choose another output name.")
        if p.is_dir():
            raise InputError(f"{what} {p} is a folder; give a file name.")
        if p.exists() and not self.overwrite and not written_by_matrestore(p):
            raise InputError(f"{what} {p} exists and was not written by matrestore; choose another name or pass "
                             "--overwrite to replace it.")
        for parent in p.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise InputError(f"cannot write {p}: {parent} is a file, not a folder.")
                if not os.access(parent, os.W_OK):
                    raise InputError(f"cannot write {p}: the folder {parent} is not writable.")
                break
        return p

    def folder(self, path, what: str = "output folder") -> Path:
        """``path`` checked as an output folder and created; InputError when it cannot be."""
        p = Path(path).expanduser()
        if p.exists() and not p.is_dir():
            raise InputError(f"{what} {p} is an existing file, not a folder; choose a folder name.")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the {what} {p}: {exc.strerror or exc}.") from exc
        if not os.access(p, os.W_OK):
            raise InputError(f"the {what} {p} is not writable.")
        return p

    def in_folder(self, folder: Path, name: str) -> Path:
        """An output file ``name`` inside the (checked) ``folder``."""
        return self.file(Path(folder) / name)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename: an
    interrupted write never leaves a half-written file under ``path``. OSError becomes InputError."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.part{os.getpid()}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {p}: {exc.strerror or exc}.") from exc
    return p


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def add_overwrite_option(parser) -> None:
    """``--overwrite``: the one switch that lets a command replace existing files matrestore did not write
    (inputs are never replaced)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files that matrestore did not write (inputs are never replaced)")
