"""LabDCT spot cleaning (Fang et al., IUCrJ 8, 719–731, 2021): forward-simulated training data on real
backgrounds, a U-Net on a ResNet34 encoder, and the standard rolling-median + LoG routine.

Python API::

    from matrestore import labdct
    sim = labdct.simulate(36, step_deg=3.0)                      # noise-free spot frames (SimResult)
    i_bg = labdct.extract_background(real_stack)                 # appendix A: (N, H, W) in [0, 1]
    masks = labdct.standard_routine(stack, window=11)            # rolling median + LoG -> bool (N, H, W)
    cleaned = labdct.clean(stack, model="default")               # float32 (N, H, W), background ~ 0
    spots = labdct.segment(cleaned)                              # threshold 5/255 -> bool (N, H, W)
    rows = labdct.spot_table(spots, stack, omegas=None)          # frame, label, centroid, area, ...
    for rec in labdct.train(i_bg, out_dir="runs/labdct"): ...    # generator of progress records
    model = labdct.load_model("runs/labdct/best.safetensors")    # or "default"

Everything long is (also) a generator of :mod:`matrestore.progress` records; no Qt or napari here.
"""

from .background import extract_background, ground_truth, synthesize
from .geometry import IRON_GEOMETRY, Geometry, read_geometry_m
from .infer import clean, clean_iter, segment, spot_table, write_spot_csv
from .model import PRESETS, LabdctConfig, SpotUNet, build_model, count_parameters
from .modelio import load_model, save_model
from .routine import ROUTINE_DEFAULTS, RoutineOptions, log_segment, standard_routine, standard_routine_iter, tune_routine
from .simulate import SampleConfig, SimResult, simulate, simulate_iter  # noqa: E402 (function shadows module)
from .stack import FrameStack
from .train import TrainConfig, train  # noqa: E402  (the function shadows the submodule name)

__all__ = [
    "simulate", "simulate_iter", "SampleConfig", "SimResult", "Geometry", "IRON_GEOMETRY", "read_geometry_m",
    "extract_background", "synthesize", "ground_truth",
    "standard_routine", "standard_routine_iter", "tune_routine", "log_segment", "ROUTINE_DEFAULTS", "RoutineOptions",
    "clean", "clean_iter", "segment", "spot_table", "write_spot_csv",
    "build_model", "load_model", "save_model", "train", "TrainConfig", "PRESETS", "LabdctConfig", "SpotUNet",
    "count_parameters", "FrameStack",
]
