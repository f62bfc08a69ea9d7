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
    assert kwargs["metadata"]["raw"]["Beam"]  # instrument metadata kept
    assert kwargs["name"] == "openecci__steel_SEM_001"


def test_reader_micron_unit_and_several_paths(shared_data):
    paths = [str(shared_data / "sem" / "rsciio__test_tiff_Zeiss_SEM_1k.tif"), str(shared_data / "sem" / "aquami__Sample.tif")]
    layers = _reader.get_reader(paths)(paths)
    assert len(layers) == 2
    assert layers[0][1]["metadata"]["unit"] == "µm" and layers[0][1]["scale"] == pytest.approx([2.615, 2.615])
    assert layers[1][1]["metadata"]["unit"] == "nm"


def test_reader_folder_stack(shared_data):
    folder = str(shared_data / "xrd" / "labdct_pure_iron")
    (data, kwargs, _), = _reader.get_reader(folder)(folder)
    assert data.shape == (40, 1024, 1024) and len(kwargs["scale"]) == 3
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


def test_napari_opens_with_the_plugin(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    layers = viewer.open(str(shared_data / "sem" / "sem2surface__P33_scale1_detectorA.tif"), plugin="napari-matrestore")
    assert tuple(layers[0].scale) == pytest.approx((325.5, 325.5), rel=1e-3)
    assert layers[0].data.shape == (1024, 1536)
    viewer.open_sample("napari-matrestore", "sem_nanoporous_gold")
    assert viewer.layers[-1].data.shape == (691, 1024)
