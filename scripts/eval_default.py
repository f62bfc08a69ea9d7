"""Measure an SR model on the held-out SEM micrographs with the protocol of issue 5 (model card table).

    python scripts/eval_default.py --model src/matrestore/sr/models/default.safetensors --json eval.json

For every held-out micrograph (never trained on, see ``train_default.HELD_OUT``), after cropping its data
bar: the left half is the HR ground truth (4x area-averaged to make the LR input) and the right half, which
does not overlap it, is the reference set, as in the paper (HR images of the same sample). Each image is
evaluated with ``matrestore sr evaluate`` (the same code path) against its own references; the per-image
tables and the set summary are printed and written as one compare JSON document.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_default import HELD_OUT  # noqa: E402


def split_halves(src: Path, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<stem>_left.tif`` (HR ground truth) and ``refs/<stem>_right.tif`` (references)."""
    from matrestore import io

    img, meta = io.read_image(src)
    w = img.shape[1] // 2
    px = meta.get("pixel_size")
    left, right = out_dir / f"{src.stem}_left.tif", out_dir / f"refs_{src.stem}" / f"{src.stem}_right.tif"
    right.parent.mkdir(parents=True, exist_ok=True)
    io.write_tiff(left, img[:, :w], pixel_size_nm=px)
    io.write_tiff(right, img[:, w:], pixel_size_nm=px)
    return left, right.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/work/shared/data/sem")
    p.add_argument("--model", default="default")
    p.add_argument("--json", help="write the compare document here")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--work", help="folder for the half images (default: a temporary folder)")
    p.add_argument("--markdown", action="store_true", help="also print the table in Markdown (for the model card)")
    p.add_argument("--record", action="store_true",
                   help="write the held-out summary into the model file's metadata (metrics.held_out; weights unchanged)")
    a = p.parse_args(argv)

    from matrestore.cli import build_parser, report_compare
    from matrestore.metrics import summarize
    from matrestore.sr.cli import evaluate_files

    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="matrestore_eval_"))
    work.mkdir(parents=True, exist_ok=True)
    parser = build_parser()
    docs = []
    for name in HELD_OUT:
        left, refs = split_halves(Path(a.data) / name, work)
        cmd = ["sr", "evaluate", "--hr", str(left), "--refs", str(refs), "--model", a.model]
        if a.threads:
            cmd += ["--threads", str(a.threads)]
        docs.append(evaluate_files(parser.parse_args(cmd)))
    images = [img for d in docs for img in d["images"]]
    summary = summarize([{m: {k: float(v) for k, v in d.items()} for m, d in img["metrics"].items()} for img in images])
    doc = {**docs[0], "images": images, "references": [s for d in docs for s in d["references"]], "summary": summary,
           "protocol": "HR = left half, references = right half of the same micrograph; 4x area average"}
    report_compare(doc, a.json)
    rec = held_out_record(images, summary)
    print(f"\nTTSR vs bicubic: ESSIM x{rec['essim_ratio']:.3f} (target >= 1.13), PSNR {rec['psnr_gain_db']:+.2f} dB "
          f"(target >= +0.40), worst image {rec['worst_psnr_gain_db']:+.2f} dB (target >= -0.20)")
    if a.markdown:
        print("\n" + markdown_table(images, summary))
    if a.record:
        print("recorded in", record_held_out(a.model, rec))
    return 0


def held_out_record(images, summary) -> dict:
    """The model file's ``metrics.held_out`` entry: protocol, images, means and the gains over bicubic."""
    t, b = summary["ttsr"], summary["bicubic"]
    return {
        "protocol": "HR = left half of each micrograph (4x area average = LR), references = right half; matrestore sr evaluate",
        "images": [img["name"] for img in images],
        "ttsr": {k: t[k]["mean"] for k in ("psnr", "ssim", "essim")},
        "bicubic": {k: b[k]["mean"] for k in ("psnr", "ssim", "essim")},
        "n": len(images),
        "psnr_gain_db": t["psnr"]["mean"] - b["psnr"]["mean"],
        "essim_ratio": t["essim"]["mean"] / b["essim"]["mean"],
        "worst_psnr_gain_db": min(img["metrics"]["ttsr"]["psnr"] - img["metrics"]["bicubic"]["psnr"] for img in images),
    }


def record_held_out(model: str, record: dict) -> Path:
    """Rewrite the model file with ``metrics.held_out`` added; the weights and other metadata stay as they are."""
    from matrestore.sr import load_model, save_model
    from matrestore.sr.modelio import DEFAULT_MODEL

    path = DEFAULT_MODEL if model == "default" else Path(model)
    m = load_model(path)
    metrics = dict(m.meta.get("metrics") or {}, held_out=record)
    return save_model(m, path, metrics=metrics)


def markdown_table(images, summary) -> str:
    """Per-image PSNR / SSIM / ESSIM of bicubic, Lanczos and TTSR, then the mean ± SEM row."""
    methods = ("nearest", "bicubic", "lanczos", "ttsr")
    head = "| held-out image (left half) | HR px | " + " | ".join(f"{m} PSNR / SSIM / ESSIM" for m in methods) + " |"
    rows = [head, "|" + "---|" * (2 + len(methods))]
    for img in images:
        cells = [f"{img['metrics'][m]['psnr']:.2f} / {img['metrics'][m]['ssim']:.4f} / {img['metrics'][m]['essim']:.4f}" for m in methods]
        rows.append(f"| {img['name']} | {img['shape'][0]}×{img['shape'][1]} | " + " | ".join(cells) + " |")
    cells = [" / ".join(f"{summary[m][k]['mean']:.{2 if k == 'psnr' else 4}f} ± {summary[m][k]['sem']:.{2 if k == 'psnr' else 4}f}"
                        for k in ("psnr", "ssim", "essim")) for m in methods]
    rows.append(f"| **mean ± SEM** ({len(images)} images) | | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
