import json

import numpy as np
import pytest
import tifffile

from matrestore import io
from matrestore._validate import InputError

# SOURCES.md: file -> (pixel size in nm or None, vendor, has a data bar)
SEM_FILES = {
    "rsciio__ZEISS_SEM_multipage.tif": (12.33, "zeiss", False),
    "rsciio__test_tiff_Zeiss_SEM_1k.tif": (2615.0, "zeiss", True),
    "rsciio__test_tiff_Zeiss_SEM_512pix.tif": (5.825, "zeiss", True),
    "aquami__Sample.tif": (0.543, "zeiss", True),
    "nistgsat__sem_alpha_beta_ti_6al_4v.tif": (111.6, "zeiss", False),
    "stabix__cpTi_before_polishing.tif": (830.3, "zeiss", True),
    "stabix__cpTi_post_polishing.tif": (830.3, "zeiss", True),
    "openecci__steel_SEM_001.tif": (66.91, "fei", True),
    "openecci__steel_SEM_003.tif": (77.08, "fei", True),
    "sem2surface__P33_scale1_detectorA.tif": (325.5, "fei", True),
    "sem2surface__P33_scale2s3_detectorA.tif": (65.1, "fei", True),
    "scipylectures__MV_HFV_012.jpg": (None, None, True),
}


@pytest.mark.parametrize("name", sorted(SEM_FILES))
def test_sem_files_pixel_size_vendor_databar(shared_data, name):
    px, vendor, bar = SEM_FILES[name]
    arr, meta = io.read_image(shared_data / "sem" / name)
    assert arr.ndim == 2, "SEM images come out grey"
    if px is None:
        assert meta["pixel_size"] is None
    else:
        assert meta["pixel_size"] == pytest.approx(px, rel=0.01)
    assert meta["vendor"] == vendor
    assert meta["pixel_size_unit"] == "nm"
    if bar:
        assert 20 <= meta["databar_rows"] <= 0.15 * meta["shape_original"][0]
    else:
        assert meta["databar_rows"] == 0
    assert arr.shape[0] + meta["databar_rows"] == meta["shape_original"][0]
    # no data-bar rows left: no bar is found again and the last rows are not one drawn value
    lossy = name.endswith(".jpg")
    assert io.detect_databar(arr, lossy=lossy) == 0
    grey = arr if arr.ndim == 2 else arr.mean(axis=-1)
    _, frac = io._row_modes(grey[-5:].astype(float), 0.0)
    assert frac.max() < 0.5


def test_fei_databar_matches_instrument_resolution(shared_data):
    # the FEI metadata states the image height without the bar: detection must agree
    arr, meta = io.read_image(shared_data / "sem" / "openecci__steel_SEM_001.tif")
    assert arr.shape == (meta["raw"]["Image"]["ResolutionY"], meta["raw"]["Image"]["ResolutionX"])
    assert meta["dwell_time_us"] == pytest.approx(6.0)


def test_palette_converted_with_colormap(shared_data):
    path = shared_data / "sem" / "stabix__cpTi_post_polishing.tif"
    arr, meta = io.read_image(path)
    page = tifffile.TiffFile(path).pages[0]
    idx = page.asarray()[: arr.shape[0]]
    assert meta["colormap_applied"]
    np.testing.assert_array_equal(arr, (page.colormap[0][idx] // 257).astype(np.uint8))
    assert arr.max() > 168  # beyond the raw index range 0..168


def test_rgb_with_equal_channels_becomes_grey(shared_data):
    arr, meta = io.read_image(shared_data / "sem" / "nistgsat__sem_alpha_beta_ti_6al_4v.tif")
    assert arr.ndim == 2 and meta["rgb_to_grey"]


def test_optical_files(shared_data):
    arr, meta = io.read_image(shared_data / "optical" / "nistgsat__grain_structures_steel.tif")
    assert arr.shape == (600, 800) and arr.dtype == np.uint8 and meta["databar_rows"] == 0
    rgb, meta = io.read_image(shared_data / "optical" / "mlography__metallography_train_image_10.jpg")
    assert rgb.shape == (874, 1330, 3) and meta.get("rgb")


def test_labdct_folder_stack_in_numeric_order(shared_data):
    stack, meta = io.read_stack(shared_data / "xrd" / "labdct_pure_iron")
    assert stack.shape == (40, 1024, 1024) and stack.dtype == np.uint16
    assert meta["frame_indices"] == list(range(1, 41))
    first = tifffile.imread(shared_data / "xrd" / "labdct_pure_iron" / "Iron_sample_tomo-B_Export0001.tiff")
    np.testing.assert_array_equal(stack[0], first)


def test_numeric_sort_and_shape_mismatch(tmp_path):
    for i in (10, 2, 1):
        tifffile.imwrite(tmp_path / f"frame{i}.tif", np.full((8, 8), i, np.uint16))
    stack, meta = io.read_stack(tmp_path)
    assert meta["frame_indices"] == [1, 2, 10]
    assert stack[:, 0, 0].tolist() == [1, 2, 10]
    tifffile.imwrite(tmp_path / "frame11.tif", np.zeros((9, 8), np.uint16))
    with pytest.raises(InputError, match="shape"):
        io.read_stack(tmp_path)


def test_multipage_tiff_stack(tmp_path):
    data = np.arange(5 * 16 * 16, dtype=np.uint16).reshape(5, 16, 16)
    tifffile.imwrite(tmp_path / "s.tif", data)
    stack, meta = io.read_stack(tmp_path / "s.tif")
    np.testing.assert_array_equal(stack, data)
    assert meta["n_frames"] == 5
    first, meta1 = io.read_image(tmp_path / "s.tif")
    assert first.shape == (16, 16) and meta1["n_pages"] == 5


@pytest.mark.parametrize("px", [0.543, 66.91, 2615.0])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_writer_roundtrip_and_fiji_unit(tmp_path, px, dtype):
    data = (np.random.default_rng(0).random((70, 90)) * 200).astype(dtype)
    path = io.write_tiff(tmp_path / "out.tif", data, pixel_size_nm=px, metadata={"databar_rows": 12})
    back, meta = io.read_image(path)
    np.testing.assert_array_equal(back, data)
    assert back.dtype == data.dtype
    assert meta["pixel_size"] == pytest.approx(px, rel=1e-9)
    assert meta["databar_rows"] == 12
    with tifffile.TiffFile(path) as tf:  # what Fiji reads: ImageJ unit + resolution
        unit = tf.imagej_metadata["unit"]
        num, den = tf.pages[0].tags["XResolution"].value
    per_unit = num / den
    assert unit == ("micron" if px >= 1000 else "nm")
    size_nm = (1 / per_unit) * (1000 if unit == "micron" else 1)
    assert size_nm == pytest.approx(px, rel=1e-4)


def test_imagej_tiff_without_our_tag(tmp_path):
    tifffile.imwrite(tmp_path / "fiji.tif", np.zeros((32, 32), np.uint8), imagej=True,
                     resolution=(1 / 0.25, 1 / 0.25), metadata={"unit": "micron"})
    _, meta = io.read_image(tmp_path / "fiji.tif")
    assert meta["pixel_size"] == pytest.approx(250.0) and meta["calibration"] == "imagej"
    assert meta["vendor"] is None  # a calibration, not an instrument


def test_tescan_and_jeol_metadata(tmp_path):
    tescan_text = "[MAIN]\r\nDevice=MIRA3\r\nPixelSizeX=1.2345e-08\r\nPixelSizeY=1.2345e-08\r\nDwellTime=3.2e-06\r\n"
    tifffile.imwrite(tmp_path / "tescan.tif", np.zeros((64, 64), np.uint8), extratags=[(50431, "s", 0, tescan_text, True)])
    _, meta = io.read_image(tmp_path / "tescan.tif")
    assert meta["vendor"] == "tescan" and meta["pixel_size"] == pytest.approx(12.345)
    assert meta["dwell_time_us"] == pytest.approx(3.2)
    tifffile.imwrite(tmp_path / "jeol.tif", np.zeros((64, 64), np.uint8))
    (tmp_path / "jeol.txt").write_text("$CM_FORMAT JEOL/SEM\n$CM_FULL_SIZE 1280 960\n$$SM_MICRON_BAR 160\n$$SM_MICRON_MARKER 2um\n")
    _, meta = io.read_image(tmp_path / "jeol.tif")
    assert meta["vendor"] == "jeol" and meta["pixel_size"] == pytest.approx(12.5)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        io.read_image(tmp_path / "missing.tif")
    (tmp_path / "text.tif").write_text("this is not a TIFF")
    with pytest.raises(InputError, match="text.tif"):
        io.read_image(tmp_path / "text.tif")
    good = io.write_tiff(tmp_path / "good.tif", np.zeros((256, 256), np.uint16))
    raw = good.read_bytes()
    (tmp_path / "trunc.tif").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(InputError, match="trunc.tif"):
        io.read_image(tmp_path / "trunc.tif")
    (tmp_path / "a.xyz").write_text("x")
    with pytest.raises(InputError, match="unsupported"):
        io.read_image(tmp_path / "a.xyz")


def test_writer_never_half_writes_and_respects_overwrite(tmp_path):
    path = io.write_tiff(tmp_path / "a.tif", np.ones((8, 8), np.uint8))
    before = path.read_bytes()
    with pytest.raises(InputError, match="exists"):
        io.write_tiff(path, np.zeros((8, 8), np.uint8), overwrite=False)
    assert path.read_bytes() == before
    with pytest.raises(InputError, match="empty"):
        io.write_tiff(tmp_path / "b.tif", np.zeros((0, 8)))
    assert not list(tmp_path.glob(".*part"))


def test_to_float_and_samples():
    arr, meta = io.read_image(io.sample_path("sem"))
    f = io.to_float(arr)
    assert f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1
    assert meta["pixel_size"] == pytest.approx(0.543)
    u16 = (arr.astype(np.uint16) * 16)
    # 8-bit data ×16 in a uint16 container is scaled by its 12-bit range, not by 65535
    np.testing.assert_allclose(io.to_float(u16), io.to_float(arr) * (255 * 16 / 4095), rtol=1e-5)


def test_no_databar_found_in_natural_images():
    from skimage import data

    for img in (data.camera(), data.moon(), data.moon()[:160, :200], data.coins(), data.brick(), data.grass(), data.text()):
        assert io.detect_databar(img) == 0


def test_synthetic_databar_detected_without_metadata(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.random((300, 400)) * 200 + 20).astype(np.uint8)
    img[260:] = 0  # black bar of 40 rows
    img[275:285, 30:200:3] = 255  # "text"
    tifffile.imwrite(tmp_path / "bar.tif", img)
    arr, meta = io.read_image(tmp_path / "bar.tif")
    assert meta["databar_rows"] == 40 and arr.shape == (260, 400)
    arr, meta = io.read_image(tmp_path / "bar.tif", crop_databar=False)
    assert arr.shape == (300, 400) and meta["databar_rows"] == 0


def test_databar_sizes_of_the_real_files(shared_data):
    # rows checked by eye on crops of every file (the boundary is the bar's top line / top edge)
    expected = {"aquami__Sample.tif": 77, "rsciio__test_tiff_Zeiss_SEM_1k.tif": 77,
                "rsciio__test_tiff_Zeiss_SEM_512pix.tif": 34, "stabix__cpTi_before_polishing.tif": 57,
                "stabix__cpTi_post_polishing.tif": 57, "openecci__steel_SEM_001.tif": 70,
                "openecci__steel_SEM_003.tif": 70, "sem2surface__P33_scale1_detectorA.tif": 79,
                "sem2surface__P33_scale2s3_detectorA.tif": 79, "scipylectures__MV_HFV_012.jpg": 59,
                "rsciio__ZEISS_SEM_multipage.tif": 0, "nistgsat__sem_alpha_beta_ti_6al_4v.tif": 0}
    for name, rows in expected.items():
        path = shared_data / "sem" / name
        full, _ = io.read_image(path, crop_databar=False)
        # from the pixels alone (no metadata hint), and through read_image
        assert io.detect_databar(full, lossy=name.endswith(".jpg")) == rows, name
        assert io.read_image(path)[1]["databar_rows"] == rows, name


def test_no_databar_in_optical_and_detector_frames(shared_data):
    for path in [*(shared_data / "optical").iterdir(), shared_data / "xrd" / "labdct_pure_iron" / "Iron_sample_tomo-B_Export0001.tiff"]:
        if path.suffix.lower() in (".tif", ".tiff", ".jpg", ".png"):
            assert io.read_image(path)[1]["databar_rows"] == 0, path.name


def test_noisy_dark_bottom_is_not_a_bar():
    # a dark, noisy region across the bottom (vacuum, shadow) is image data: its rows are not one
    # drawn value; neither is a binary mask ever cropped
    from skimage import data

    rng = np.random.default_rng(0)
    img = data.camera().copy()
    img[-90:] = np.clip(rng.normal(3, 2, (90, 512)), 0, 255).astype(np.uint8)
    assert io.detect_databar(img) == 0
    mask = np.zeros((200, 200), np.uint8)
    mask[:150] = 255
    mask[170:180, 20:120:4] = 255
    assert io.detect_databar(mask) == 0


def test_framed_overlay_bar_detected():
    # Zeiss "data zone": a black frame drawn over the image, image visible inside it
    from skimage import data

    img = data.camera().copy()
    img[-45, :] = 0
    img[-2, :] = 0
    img[-45:-1, 0] = 0
    img[-45:-1, -3] = 0
    img[-30:-20, 40:300:5] = 0  # text
    assert io.detect_databar(img) == 45


def test_vendor_raw_and_provenance_round_trip(tmp_path):
    arr, meta = io.read_image(io.sample_path("sem"))
    out = io.write_tiff(tmp_path / "np_gold.tif", arr, pixel_size_nm=meta["pixel_size"], metadata=meta)
    back, meta2 = io.read_image(out)
    np.testing.assert_array_equal(back, arr)
    assert meta2["vendor"] == "zeiss" and meta2["written_by"] == "matrestore"
    assert meta2["databar_rows"] == 77 and back.shape == (691, 1024)  # not cropped a second time
    assert meta2["raw"]["ap_image_pixel_size"][1] == pytest.approx(543.0)
    assert meta2["provenance"]["source"] == str(io.sample_path("sem"))
    assert meta2["source"] == str(out)
    json.dumps(meta2)  # JSON-serialisable


def test_writer_never_overwrites_the_source_silently(tmp_path):
    src = tmp_path / "orig.tif"
    src.write_bytes(io.sample_path("sem").read_bytes())
    arr, meta = io.read_image(src)
    before = src.read_bytes()
    with pytest.raises(InputError, match="read from"):
        io.write_tiff(src, arr, pixel_size_nm=meta["pixel_size"], metadata=meta)
    assert src.read_bytes() == before
    io.write_tiff(tmp_path / "other.tif", arr, metadata=meta)  # another name is fine
    io.write_tiff(tmp_path / "other.tif", arr, metadata=meta)  # and replacing an output too
    io.write_tiff(src, arr, pixel_size_nm=meta["pixel_size"], metadata=meta, overwrite=True)  # asked for
    assert io.read_image(src)[0].shape == (691, 1024)


@pytest.mark.parametrize("values, dtype, stored", [
    ([[-5, 7], [100, 1]], np.int8, np.int16),
    ([[0, 7], [60000, 1]], np.int32, np.uint16),
    ([[-40000, 7], [300, 1]], np.int32, np.float32),
    ([[2**40, 7], [300, 1]], np.int64, np.int64),
    ([[1, 0], [0, 1]], bool, np.uint8),
    ([[0.1, 0.2], [0.3, 0.4]], np.float16, np.float32),
])
def test_writer_other_dtypes_are_lossless(tmp_path, values, dtype, stored):
    arr = np.array(values).astype(dtype)
    path = io.write_tiff(tmp_path / "x.tif", np.tile(arr, (40, 40)), pixel_size_nm=7.5)
    back, meta = io.read_image(path)
    assert back.dtype == stored
    np.testing.assert_array_equal(back, np.tile(arr, (40, 40)).astype(stored))
    assert meta["pixel_size"] == pytest.approx(7.5)


def test_writer_float_nan_rgb_and_stack(tmp_path):
    f = np.random.default_rng(0).random((30, 40))
    f[3, 4] = np.nan
    back, _ = io.read_image(io.write_tiff(tmp_path / "f.tif", f, pixel_size_nm=3.0))
    assert back.dtype == np.float32 and np.isnan(back[3, 4])  # float64 -> float32; NaN kept
    np.testing.assert_array_equal(back[np.isfinite(back)], f.astype(np.float32)[np.isfinite(f)])
    rgb = np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    path = io.write_tiff(tmp_path / "rgb.tif", rgb, pixel_size_nm=1500.0)
    back, meta = io.read_image(path)
    np.testing.assert_array_equal(back, rgb)
    assert meta["pixel_size"] == pytest.approx(1500.0) and meta["unit"] == "µm"
    assert tifffile.TiffFile(path).imagej_metadata["unit"] == "micron"
    st = np.random.default_rng(2).integers(0, 65535, (3, 20, 24), dtype=np.uint16)
    path = io.write_tiff(tmp_path / "st.tif", st, pixel_size_nm=50.0)
    back, meta = io.read_stack(path)
    np.testing.assert_array_equal(back, st)
    assert meta["pixel_size"] == pytest.approx(50.0) and meta["frame_indices"] == [0, 1, 2]


def test_stack_memory_guard_and_palette_pages(tmp_path, shared_data):
    for i in (1, 2):
        tifffile.imwrite(tmp_path / f"f{i}.tif", np.zeros((64, 64), np.uint16))
    with pytest.raises(InputError, match="max_bytes"):
        io.read_stack(tmp_path, max_bytes=1000)
    stack, meta = io.read_stack(shared_data / "sem" / "rsciio__ZEISS_SEM_multipage.tif")
    assert stack.shape == (2, 1536, 2048) and stack.dtype == np.uint8
    assert meta["pixel_size"] == pytest.approx(12.33, rel=0.01)
