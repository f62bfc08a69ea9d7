"""``matrestore labdct ...``: end to end on small stacks, exit 2 with one line on bad input."""

import numpy as np
import pytest
import tifffile
import torch

from matrestore.cli import main
from matrestore.labdct import build_model, save_model

from labdct_helpers import moving_spot_stack


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    return save_model(build_model("tiny"), tmp_path_factory.mktemp("m") / "tiny.safetensors")


@pytest.fixture
def stack_file(tmp_path):
    stack, _, _ = moving_spot_stack(n=12, shape=(64, 64))
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, stack.astype(np.uint16))
    return p


def error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def test_simulate_routine_clean_end_to_end(tmp_path, tiny_model, capsys):
    sim = tmp_path / "sim.tif"
    assert main(["labdct", "simulate", "-o", str(sim), "--frames", "12", "--size", "96", "--diameter", "0.6",
                 "--height", "0.4"]) == 0
    x = tifffile.imread(sim)
    assert x.shape == (12, 96, 96)
    assert tifffile.imread(tmp_path / "sim_truth.tif").shape == (12, 96, 96)
    masks = tmp_path / "routine.tif"
    table = tmp_path / "routine.csv"
    assert main(["labdct", "routine", str(sim), "-o", str(masks), "--window", "5", "--beamstop", "none",
                 "--table", str(table)]) == 0
    m = tifffile.imread(masks)
    assert m.shape == (12, 96, 96) and set(np.unique(m)) <= {0, 255}
    assert table.read_text().startswith("frame,label,omega,centroid_row")
    out = tmp_path / "clean.tif"
    assert main(["labdct", "clean", str(sim), "-o", str(out), "--model", str(tiny_model), "--masks",
                 str(tmp_path / "cm.tif"), "--table", str(tmp_path / "c.csv")]) == 0
    c = tifffile.imread(out)
    assert c.shape == (12, 96, 96) and c.dtype == np.float32
    # rerunning over our own outputs works; a foreign file is protected
    assert main(["labdct", "routine", str(sim), "-o", str(masks), "--window", "5", "--beamstop", "none"]) == 0
    foreign = tmp_path / "foreign.tif"
    tifffile.imwrite(foreign, np.zeros((2, 2), np.uint8))
    assert main(["labdct", "routine", str(sim), "-o", str(foreign), "--window", "5"]) == 2
    assert "--overwrite" in error_line(capsys)
    assert main(["labdct", "routine", str(sim), "-o", str(foreign), "--window", "5", "--overwrite"]) == 0


def test_bad_inputs_exit_2(tmp_path, stack_file, tiny_model, capsys):
    from matrestore import modelfile

    frame = tmp_path / "frame.tif"
    tifffile.imwrite(frame, np.ones((32, 32), np.uint16))
    assert main(["labdct", "routine", str(frame), "-o", str(tmp_path / "o.tif")]) == 2
    assert "single 2-D frame" in error_line(capsys)
    assert main(["labdct", "routine", str(stack_file), "-o", str(tmp_path / "o.tif"), "--window", "21"]) == 2
    assert "window" in error_line(capsys)
    assert main(["labdct", "routine", str(stack_file), "-o", str(stack_file), "--overwrite"]) == 2
    assert "inputs" in error_line(capsys)
    sr = modelfile.save(tmp_path / "sr.safetensors", {"w": torch.zeros(1)}, {"config": {}}, task="sr")
    assert main(["labdct", "clean", str(stack_file), "-o", str(tmp_path / "c.tif"), "--model", str(sr)]) == 2
    assert "task 'sr'" in error_line(capsys)
    assert main(["labdct", "routine", str(stack_file), "-o", str(tmp_path / "o.tif"), "--beamstop", "1,2"]) == 2
    assert "beamstop" in error_line(capsys)
    assert main(["labdct", "routine", str(tmp_path / "missing"), "-o", str(tmp_path / "o.tif")]) == 2
    assert "not found" in error_line(capsys)
    nan = tmp_path / "nan.tif"
    a = np.ones((12, 16, 16), np.float32)
    a[3, 2, 2] = np.nan
    tifffile.imwrite(nan, a)
    assert main(["labdct", "clean", str(nan), "-o", str(tmp_path / "n.tif"), "--model", str(tiny_model)]) == 2
    assert "NaN" in error_line(capsys)
    assert not (tmp_path / "n.tif").exists()  # nothing half-written
    assert list(tmp_path.glob(".*part*")) == []
