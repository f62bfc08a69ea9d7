"""matrestore: restore microscopy images (SEM super-resolution, optical denoising, LabDCT cleaning).

The computing modules (``io``, ``metrics``, ``baselines``, ``degrade``, ``evaluation``, ``sr`` ...) work
on numpy arrays and torch tensors and import neither Qt nor napari; the napari dock widgets in
``matrestore._widgets`` are a thin layer over them, as is the command line (``matrestore.cli``).
"""

__version__ = "0.1.0"

from ._validate import InputError  # noqa: E402  (every bad input raises this, with a clear message)

__all__ = ["__version__", "InputError"]
