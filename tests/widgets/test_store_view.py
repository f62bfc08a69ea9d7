"""The layer of a store being written shows what the blocks wrote: StoreView.refresh re-reads every level,
the coarsest one included (napari keeps that one, the thumbnail level, as a cached numpy copy)."""

import numpy as np
import zarr

from matrestore._widgets._store import show_store


def _store(path, shape=(512, 512)):
    g = zarr.open_group(str(path), mode="w")
    levels = [g.create_array(str(i), shape=(shape[0] >> i, shape[1] >> i), chunks=(128, 128), dtype="float32",
                             fill_value=0) for i in range(2)]
    return levels


def test_refresh_shows_blocks_written_after_the_layer_was_added(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    a0, a1 = _store(tmp_path / "s.zarr")
    view = show_store(viewer, "out", tmp_path / "s.zarr", (1.0, 1.0), (0.0, 0.0), {}, contrast_limits=(0.0, 1.0))
    layer = view.layer
    assert layer.multiscale and tuple(layer.contrast_limits) == (0.0, 1.0)
    layer._data_level = 1  # drawn from the coarsest level (as when zoomed out on a big image)
    layer.refresh()
    assert float(np.asarray(layer._slicing_state._slice.image.view).max()) == 0.0
    a0[:256, :256] = 1.0  # a block completes: level 0 and its part of level 1
    a1[:128, :128] = 1.0
    view.refresh(force=True)
    shown = np.asarray(layer._slicing_state._slice.image.view)
    assert float(shown.max()) == 1.0 and float(shown.mean()) > 0.2
    assert float(np.asarray(layer.thumbnail)[..., :3].max()) > 0  # the thumbnail too
    # throttled: a second refresh within every_s does not re-read
    a1[128:, 128:] = 1.0
    view.refresh()
    assert float(np.asarray(layer._slicing_state._slice.image.view).mean()) < 0.5
