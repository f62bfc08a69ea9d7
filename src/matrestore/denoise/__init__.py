"""Optical micrograph denoising (Ahmad et al.): phase-field training data made from real micrographs,
the attention residual denoiser, classical baselines and a grey-scale-independent evaluation.

::

    from matrestore import denoise

    structure, labels = denoise.phase_field((256, 256), n_grains=60, steps=500, seed=0)
    pair = denoise.synthesize(denoise.phase_field((256, 256), 60, 500, 1), real="steel.tif", seed=1)
    clean = denoise.denoise(image, model="default")          # float32, the input's shape and grey scale
    grains = denoise.measure_grains(clean, pixel_size=0.2252, unit="um")  # labels, per grain, ASTM E112 G
    lazy = denoise.denoise_lazy(dask_array)                   # larger than memory: a lazy dask array
    denoise.denoise_to_zarr("big.tif", "big_denoised.zarr")   # block by block into a resumable OME-Zarr store
    for rec in denoise.train(["steel.tif"], "runs/denoise", preset="cpu", epochs=10):
        ...

No Qt or napari here; long work is a generator of :mod:`matrestore.progress` records
(``phase_field_iter``, ``denoise_iter``, ``train``, ``evaluate_iter``).
"""

from .apply import denoise, denoise_iter
from .lazy import denoise_lazy, denoise_to_zarr, denoise_to_zarr_iter
from .baselines import BASELINES, available_baselines, run_baseline
from .grains import measure_grains
from .scoring import boundary_f1, evaluate_output, format_table, grain_stats, segment
from .model import PRESETS, DenoiseConfig, DenoiseNet, build_model, count_parameters, receptive_radius
from .modelio import DEFAULT_MODEL, load_model, save_model
from .phasefield import PhaseField, colour_grains, phase_field, phase_field_iter
from .synth import SynthPair, fourier_mix, match_histogram, synthesize, synthesize_set
from .testset import evaluate, evaluate_iter, make_test_set
from .train import TrainConfig, train

__all__ = [
    "phase_field", "phase_field_iter", "PhaseField", "colour_grains",
    "synthesize", "synthesize_set", "SynthPair", "fourier_mix", "match_histogram",
    "build_model", "DenoiseNet", "DenoiseConfig", "PRESETS", "count_parameters", "receptive_radius",
    "load_model", "save_model", "DEFAULT_MODEL",
    "denoise", "denoise_iter", "denoise_lazy", "denoise_to_zarr", "denoise_to_zarr_iter",
    "train", "TrainConfig",
    "run_baseline", "available_baselines", "BASELINES",
    "measure_grains",
    "segment", "boundary_f1", "grain_stats", "evaluate_output", "format_table",
    "make_test_set", "evaluate", "evaluate_iter",
]
