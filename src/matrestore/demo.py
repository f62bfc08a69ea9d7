"""The main job of ``make demo``: baseline comparison on the bundled SEM sample.

Prints the metrics table (nearest, bicubic, Lanczos against the ground truth, as in Tables 2-4 of the
SEM paper), writes the LR and upsampled images as calibrated TIFFs and a side-by-side PNG of a crop.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def side_by_side(panels: dict[str, np.ndarray], data_range: float, crop: int = 192, zoom: int = 2, gap: int = 6):
    """An 8-bit montage of the centre crop of each (same-shape) panel, left to right, ``zoom``× enlarged."""
    first = next(iter(panels.values()))
    h, w = first.shape
    c = min(crop, h, w)
    y0, x0 = (h - c) // 2, (w - c) // 2
    tiles = []
    for img in panels.values():
        t = np.asarray(img, dtype=np.float64)[y0 : y0 + c, x0 : x0 + c]
        t = np.clip(t / data_range * 255.0, 0, 255).astype(np.uint8)
        tiles.append(np.kron(t, np.ones((zoom, zoom), dtype=np.uint8)))
    sep = np.full((c * zoom, gap), 255, dtype=np.uint8)
    out = tiles[0]
    for t in tiles[1:]:
        out = np.concatenate([out, sep, t], axis=1)
    return _label(out, list(panels), c * zoom + gap)


def _label(montage: np.ndarray, names, step: int, height: int = 22) -> np.ndarray:
    """Add a white header row with each panel's name (Pillow's built-in font)."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (montage.shape[1], montage.shape[0] + height), 255)
    img.paste(Image.fromarray(montage), (0, height))
    draw = ImageDraw.Draw(img)
    for i, name in enumerate(names):
        draw.text((i * step + 6, 5), name, fill=0)
    return np.asarray(img)


def io_png(rgb) -> bytes:
    """PNG bytes of an image, marked as written by matrestore (``Software`` text)."""
    import io as _io

    from PIL import Image, PngImagePlugin

    from . import __version__

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", f"matrestore {__version__}")
    buf = _io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def run_demo(out_dir="demo_output", scale: int = 4, model="default", progress: bool = True,
             overwrite: bool = False) -> dict:
    """Enhance the bundled SEM sample with the SR model and compare it with the baselines; then denoise the
    bundled optical micrograph with both bundled denoising models and measure its grains (:func:`denoise_demo`;
    skipped with ``model=None``).

    The sample's left half is the ground truth (its ``scale``×``scale`` area average is the LR scan); its
    right half, which does not overlap, is the set of HR references (the paper's practice: HR images of
    the same sample). ``model=None`` skips the network (baselines only). Files in ``out_dir`` that
    matrestore did not write are only replaced with ``overwrite``.
    """
    from . import io
    from ._paths import MARK, WRITTEN_BY, Outputs, atomic_write_bytes, atomic_write_text
    from ._validate import InputError
    from .baselines import upsample
    from .evaluation import evaluate_baselines, format_table

    path = io.sample_path("sem")
    image, meta = io.read_image(path)
    w = image.shape[1] // 2
    hr, refs = image[:, :w], image[:, w:]
    px = meta.get("pixel_size")
    print(f"matrestore demo: {Path(path).name} ({image.shape[0]}×{image.shape[1]} px after removing a "
          f"{meta.get('databar_rows', 0)}-row data bar, pixel size {px} nm)")
    res = evaluate_baselines(hr, scale=scale)
    print(f"ground truth: the left half ({res['hr'].shape[0]}×{res['hr'].shape[1]} px); low-resolution scan simulated "
          f"by {scale}×{scale} area averaging: {res['lr'].shape[0]}×{res['lr'].shape[1]} px")
    extra, model_info = {}, None
    if model is not None:
        import time

        from .sr import enhance, load_model
        from .sr.modelio import DEFAULT_MODEL, held_out_summary

        net = load_model(model)
        if net.scale != scale:
            raise InputError(f"the model enhances {net.scale}x, not {scale}x: use --scale {net.scale} or --no-model.")
        print(f"references: the right half ({refs.shape[0]}×{refs.shape[1]} px, no overlap); model: "
              f"{DEFAULT_MODEL.name if model == 'default' else model} ({net.cfg.preset} preset)")
        t0 = time.perf_counter()
        sr = enhance(res["lr"], [refs], net)
        secs = time.perf_counter() - t0
        extra["ttsr"] = sr
        res = evaluate_baselines(hr, lr=res["lr"], scale=scale, extra=extra)
        model_info = {"model": str(model), "preset": net.cfg.preset, "seconds": round(secs, 2),
                      "note": (net.meta or {}).get("note")}
        print(f"TTSR enhancement: {secs:.1f} s on {_device_name()}")
        if "aquami" in Path(path).name and "aquami" in json.dumps((net.meta or {}).get("training", "")):
            held = held_out_summary(net.meta, where="on {n} micrographs it never saw")
            where = f"{held} (docs/model_sr_default.md)" if held else "docs/model_sr_default.md gives its figures on micrographs it never saw"
            print("note: this public sample was among the default model's training images (80 % of its cells), so these "
                  f"figures flatter it;\n      {where}.")
    print()
    print(format_table(res["metrics"]))
    outputs = Outputs(inputs=[model if isinstance(model, (str, Path)) and model != "default" else None],
                      overwrite=overwrite)
    out = outputs.folder(out_dir)
    io.write_tiff(outputs.in_folder(out, "lr.tif"), res["lr"], pixel_size_nm=None if px is None else px * scale)
    io.write_tiff(outputs.in_folder(out, "hr.tif"), res["hr"], pixel_size_nm=px)
    for method, img in res["images"].items():
        io.write_tiff(outputs.in_folder(out, f"{method}.tif"), img, pixel_size_nm=px)
    panels = {"LR (nearest)": upsample(res["lr"], scale, "nearest"), "bicubic": res["images"]["bicubic"]}
    if "ttsr" in res["images"]:
        panels["TTSR"] = res["images"]["ttsr"]
    else:
        panels["lanczos"] = res["images"]["lanczos"]
    panels["HR"] = res["hr"]
    png = io_png(side_by_side(panels, res["data_range"]))
    atomic_write_bytes(outputs.in_folder(out, "side_by_side.png"), png)
    doc = {"image": Path(path).name, "scale": scale, "metrics": res["metrics"], "panels": list(panels),
           "ground_truth": "left half", "references": "right half", "model": model_info}
    grains = None
    if model is not None:
        grains = denoise_demo(outputs, out)
        doc["optical"] = grains
    atomic_write_text(outputs.in_folder(out, "metrics.json"), json.dumps({**doc, WRITTEN_BY: MARK}, indent=2))
    print(f"\nwrote {out}/: lr.tif, hr.tif, {', '.join(f'{m}.tif' for m in res['images'])}, "
          + ("optical_denoised.tif, optical_etched_model.tif, " if grains else "")
          + f"metrics.json and side_by_side.png (left to right: {', '.join(panels)})")
    return doc


def denoise_demo(outputs, out) -> dict:
    """The bundled optical micrograph (NIST etched steel) denoised with both bundled denoising models, and
    the grains of the input and of each result measured (one rule, chosen on the input; ASTM E112 numbers
    at its 0.2252 µm pixels). Writes ``optical_denoised.tif`` and ``optical_etched_model.tif``."""
    from . import io
    from ._samples import OPTICAL_PIXEL_SIZE_NM
    from .denoise import denoise, measure_grains
    from .denoise.grains import choose_rule

    um_per_px = OPTICAL_PIXEL_SIZE_NM / 1e3

    path = io.sample_path("optical")
    image, _ = io.read_image(path)
    rule, _ = choose_rule(image)
    outs = {"input": image}
    for name, spec in (("default model", "default"), ("etched-steel model", "etched")):
        outs[name] = denoise(image, spec)
    print(f"\noptical: {Path(path).name} ({image.shape[0]}×{image.shape[1]} px, {um_per_px:.4g} µm/px) denoised with "
          f"the bundled models; grains ({rule} rule):")
    print("| image | grains | mean area µm² | ASTM G (planimetric) | G (intercept) |\n|---|---:|---:|---:|---:|")
    rows = {}
    for name, img in outs.items():
        s = measure_grains(img, um_per_px, "um", method=rule)["summary"]
        rows[name] = {k: s[k] for k in ("count", "inside", "mean_area", "mean_diameter", "astm_g", "astm_g_intercept")}
        print(f"| {name} | {s['count']} | {s['mean_area']:.1f} | {s['astm_g']:.2f} | {s['astm_g_intercept']:.2f} |")
    print("(NIST's hand-highlighted boundaries of this micrograph enclose 207 grains, G 9.87 / 10.17: "
          "docs/model_denoise_default.md)")
    for name, file in (("default model", "optical_denoised.tif"), ("etched-steel model", "optical_etched_model.tif")):
        io.write_tiff(outputs.in_folder(out, file), outs[name], pixel_size_nm=OPTICAL_PIXEL_SIZE_NM)
    return {"image": Path(path).name, "um_per_px": um_per_px, "rule": rule, "grains": rows}


def _device_name() -> str:
    from .device import describe, pick_device

    return describe(pick_device(None))
