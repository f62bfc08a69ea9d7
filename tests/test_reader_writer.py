import numpy as np
import pytest

from matrestore import _reader, _samples, _writer, io


def test_get_reader_rejects_unsupported(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert _reader.get_reader(str(tmp_path / "notes.txt")) is None
    assert _reader.get_reader(str(tmp_path)) is None  # a folder without TIFF frames
    assert _reader.get_reader([str(tmp_path / "notes.txt")]) is None


def test_reader_layer_has_physical_scale(shared_data):
    path = str(shared_data / "sem" / "openecci__steel_SEM_001.tif")
    reader = _reader.get_reader(path)
    (data, kwargs, kind), = reader(path)
    assert kind == "image" and data.shape == (1024, 1536)
    assert kwargs["scale"] == pytest.approx([66.91, 66.91], rel=1e-3)
    assert kwargs["metadata"]["unit"] == "nm" and kwargs["metadata"]["databar_rows"] == 70
    assert kwargs["units"] == ["nm", "nm"]  # napari's own units: the scale bar shows nm, not "kpixel"
    assert kwargs["metadata"]["raw"]["Beam"]  # instrument metadata kept
    assert kwargs["name"] == "openecci__steel_SEM_001"


def test_reader_micron_unit_and_several_paths(shared_data):
    paths = [str(shared_data / "sem" / "rsciio__test_tiff_Zeiss_SEM_1k.tif"), str(shared_data / "sem" / "aquami__Sample.tif")]
    layers = _reader.get_reader(paths)(paths)
    assert len(layers) == 2
    assert layers[0][1]["metadata"]["unit"] == "µm" and layers[0][1]["scale"] == pytest.approx([2.615, 2.615])
    assert layers[0][1]["units"] == ["µm", "µm"]
    assert layers[1][1]["metadata"]["unit"] == "nm"


def test_reader_folder_stack(shared_data):
    folder = str(shared_data / "xrd" / "labdct_pure_iron")
    (data, kwargs, _), = _reader.get_reader(folder)(folder)
    assert data.shape == (40, 1024, 1024) and len(kwargs["scale"]) == 3
    assert kwargs.get("units", ["pixel"])[0] == "pixel"  # the frame axis stays in pixels
    assert kwargs["metadata"]["frame_indices"][-1] == 40


def test_writer_roundtrip_via_layer_attributes(tmp_path):
    data = np.random.default_rng(1).integers(0, 255, (40, 50), dtype=np.uint8)
    attrs = {"name": "x", "scale": (2.615, 2.615), "metadata": {"unit": "µm", "databar_rows": 80}}
    out = _writer.write_tiff(str(tmp_path / "x.tif"), data, attrs)
    (back, kwargs, _), = _reader.get_reader(out[0])(out[0])
    np.testing.assert_array_equal(back, data)
    assert kwargs["metadata"]["pixel_size_nm"] == pytest.approx(2615.0)
    assert kwargs["scale"] == pytest.approx([2.615, 2.615])
    assert kwargs["metadata"]["databar_rows"] == 80


def test_samples():
    (data, kwargs, _), = _samples.sem_sample()
    assert data.ndim == 2 and kwargs["scale"] == pytest.approx([0.543, 0.543])
    (data, kwargs, _), = _samples.optical_sample()
    assert data.shape == (600, 800) and kwargs["scale"] == pytest.approx([225.2, 225.2])


def test_npe2_reads_through_the_plugin(shared_data):
    npe2 = pytest.importorskip("npe2")
    path = str(shared_data / "sem" / "aquami__Sample.tif")
    npe2.PluginManager.instance().discover()  # finds the entry point of the installed package
    assert "napari-matrestore" in npe2.PluginManager.instance()._manifests
    layers = npe2.read([path], stack=False, plugin_name="napari-matrestore")
    assert layers[0][1]["scale"] == pytest.approx([0.543, 0.543])


def test_napari_opens_with_the_plugin(request, shared_data):
    import os
    import sys

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        pytest.skip("no display for a napari viewer: run under xvfb-run (make test)")
    viewer = request.getfixturevalue("make_napari_viewer")()
    layers = viewer.open(str(shared_data / "sem" / "sem2surface__P33_scale1_detectorA.tif"), plugin="napari-matrestore")
    assert tuple(layers[0].scale) == pytest.approx((325.5, 325.5), rel=1e-3)
    assert layers[0].data.shape == (1024, 1536)
    viewer.open_sample("napari-matrestore", "sem_nanoporous_gold")
    assert viewer.layers[-1].data.shape == (691, 1024)


def test_manifest_validates_and_points_to_these_functions():
    npe2 = pytest.importorskip("npe2")
    import importlib
    from pathlib import Path

    manifest = Path(__file__).resolve().parents[1] / "napari.yaml"
    pm = npe2.PluginManifest.from_file(manifest)  # schema validation (what `npe2 validate` checks)
    assert pm.name == "napari-matrestore"
    ours = {"get_reader": _reader.get_reader, "write_tiff": _writer.write_tiff,
            "sample_sem": _samples.sem_sample, "sample_optical": _samples.optical_sample}
    for cmd in pm.contributions.commands:
        short = cmd.id.split(".", 1)[1]
        if short in ours:
            module, attr = cmd.python_name.split(":")
            assert getattr(importlib.import_module(module), attr) is ours[short]
    # the installed distribution's manifest (found through the entry point) validates as well
    pm2 = npe2.PluginManifest._from_package_or_name("napari-matrestore")
    assert pm2.contributions.readers and pm2.contributions.writers and pm2.contributions.sample_data


def test_writer_refuses_to_replace_the_opened_file_and_uses_napari_units(tmp_path):
    from matrestore._validate import InputError

    src = tmp_path / "orig.tif"
    src.write_bytes(io.sample_path("sem").read_bytes())
    (data, kwargs, _), = _reader.get_reader(str(src))(str(src))
    with pytest.raises(InputError, match="read from"):
        _writer.write_tiff(str(src), data, {"name": "x", **kwargs})
    # a layer made in napari: no unit in the metadata, napari's own units say nm
    pint = pytest.importorskip("pint")
    ureg = pint.UnitRegistry()
    out = _writer.write_tiff(str(tmp_path / "new.tif"), data,
                             {"name": "new", "scale": (2.0, 2.0), "metadata": {}, "units": (ureg.nanometer, ureg.nanometer)})
    assert io.read_image(out[0])[1]["pixel_size"] == pytest.approx(2.0)


def test_reader_stack_of_our_own_multipage_file(tmp_path):
    st = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    path = str(io.write_tiff(tmp_path / "st.tif", st, pixel_size_nm=40.0, metadata={"vendor": "zeiss"}))
    (data, kwargs, _), = _reader.get_reader(path)(path)
    assert data.shape == (3, 8, 8) and kwargs["scale"] == pytest.approx([1.0, 40.0, 40.0])


def test_drag_and_drop_asks_and_lists_matrestore_then_the_preference_opens_with_it(request, shared_data):
    """napari 0.9 with two readers: ``viewer.open(path, plugin=None)`` (what drag-and-drop calls) raises
    MultipleReaderError, which the GUI turns into its reader dialog listing "matrestore"; with the
    preference that `matrestore prefer-reader` sets (= "Remember this choice"), ours opens it."""
    import os
    import sys

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        pytest.skip("no display for a napari viewer: run under xvfb-run (make test)")
    from napari.errors import MultipleReaderError
    from napari.plugins import _npe2
    from napari.settings import get_settings

    viewer = request.getfixturevalue("make_napari_viewer")()
    path = str(shared_data / "sem" / "aquami__Sample.tif")
    assert _npe2.get_readers(path).get("napari-matrestore") == "matrestore"  # the name in napari's dialog
    settings = get_settings()
    saved = dict(settings.plugins.extension2reader)
    try:
        settings.plugins.extension2reader = {}
        with pytest.raises(MultipleReaderError) as exc:
            viewer.open(path, plugin=None)
        assert "napari-matrestore" in exc.value.available_plugins
        _reader.prefer_matrestore_reader(settings=settings)
        layers = viewer.open(path, plugin=None)
        assert tuple(layers[0].scale) == pytest.approx((0.543, 0.543)) and layers[0].data.shape == (691, 1024)
        assert [str(u) for u in layers[0].units] == ["nanometer", "nanometer"]
        _reader.prefer_matrestore_reader(undo=True, settings=settings)
        assert "*.tif" not in settings.plugins.extension2reader
    finally:
        settings.plugins.extension2reader = saved
