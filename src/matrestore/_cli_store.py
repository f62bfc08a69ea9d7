"""The command line's out-of-core output, shared by every image-to-image command (``sr enhance``,
``denoise apply``, ...): the ``--chunk/--scheduler/--workers`` options, when a run goes to an OME-Zarr
store, the store's default name, and running the store generator with a bar of blocks."""

from __future__ import annotations

from pathlib import Path

from ._validate import InputError

__all__ = ["add_store_options", "wants_store", "store_path", "run_store"]


def add_store_options(parser, unit: str = "input px") -> None:
    """``--chunk``, ``--scheduler`` and ``--workers`` (used with an OME-Zarr output)."""
    parser.add_argument("--chunk", type=int, default=None,
                        help=f"Zarr output: block side in {unit} (default 1024, rounded to the tile grid)")
    parser.add_argument("--scheduler", default=None,
                        help="Zarr output: a dask.distributed scheduler address (tcp://host:8786), 'processes:N' for a "
                             "local cluster of N processes; default: local threads")
    parser.add_argument("--workers", type=int, default=1, help="Zarr output, local threads: blocks computed at once")


def is_store_name(path) -> bool:
    return str(path or "").rstrip("/\\").endswith(".zarr")


def wants_store(out, source, chunk=None, scheduler=None) -> bool:
    """The out-of-core path: an OME-Zarr output (a name ending in .zarr), a Zarr input (a folder), or a
    block/scheduler option."""
    return is_store_name(out) or Path(source).is_dir() or bool(chunk) or bool(scheduler)


def store_path(source, out, suffix: str) -> Path:
    """The store to write: ``out`` (which must end in .zarr), or ``<stem>_<suffix>.zarr`` beside
    ``source``."""
    if out and not is_store_name(out):
        raise InputError(f"--out {out}: with --chunk/--scheduler or a Zarr input the output is an OME-Zarr store "
                         "(a folder ending in .zarr).")
    src = Path(source)
    if out:
        return Path(out)
    return src.with_name(src.name.removesuffix(".zarr").rsplit(".", 1)[0] + f"_{suffix}.zarr")


def run_store(gen, desc: str, threads: int | None = None) -> Path:
    """Run a store generator (``..._to_zarr_iter``) with a bar of blocks; KeyboardInterrupt when it stopped
    (the store is resumable); prints the store written."""
    from ._cli_progress import drive_with_bar

    if threads:
        import torch

        torch.set_num_threads(int(threads))
    result = drive_with_bar(gen, desc, unit="block")
    if result is None:
        raise KeyboardInterrupt
    print(f"wrote {result} (OME-Zarr)")
    return result
