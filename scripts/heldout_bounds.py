"""How much PSNR over bicubic can be had on the held-out SEM micrographs? Three diagnostics (model card).

    python scripts/heldout_bounds.py                   # noise share + reference-trained linear SR (~1 min)
    python scripts/heldout_bounds.py --oracle 400      # + the model fine-tuned on the test halves (~20 min, 1 thread)

Same protocol as ``eval_default.py``: per held-out micrograph the left half is the HR ground truth (LR = its
4×4 area average), the right half the references. Per image it prints, as PSNR gain over bicubic in dB:

``noise``   the share of bicubic's squared error that is the HR image's own noise (Immerkær's estimate of
            white noise), which no method can predict from the LR image.
``linear``  the least-squares linear 4× upsampler (one 7×7 LR filter per output phase) fitted on the
            references (right half) and applied to the left half: what a linear method learns from the sample.
``model``   the SR model (``--model``, default: the shipped one) with the right half as references.
``oracle``  (``--oracle STEPS``) the model fine-tuned for STEPS steps (reconstruction loss) *on the left halves
            themselves* (80 % of their cells), then evaluated on them. It is not a valid result (it has seen
            the test pixels); it is an upper bound of what more same-sample data could give this network.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_default import HELD_OUT  # noqa: E402

IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def immerkaer_sigma(image: np.ndarray) -> float:
    """Standard deviation of white Gaussian noise (Immerkær 1996, 'Fast noise variance estimation')."""
    from scipy.signal import convolve2d

    h, w = image.shape
    conv = convolve2d(image.astype(np.float64), IMMERKAER, mode="valid")
    return float(np.sqrt(np.pi / 2) * np.abs(conv).sum() / (6.0 * (w - 2) * (h - 2)))


def _windows(lr: np.ndarray, k: int) -> np.ndarray:
    p = k // 2
    padded = np.pad(lr, p, mode="reflect")
    h, w = lr.shape
    cols = [padded[i : i + h, j : j + w] for i in range(k) for j in range(k)]
    return np.stack(cols + [np.ones_like(lr)], -1).reshape(h * w, -1)


def fit_linear_sr(lr: np.ndarray, hr: np.ndarray, scale: int = 4, k: int = 7, ridge: float = 1e-3) -> np.ndarray:
    """Least-squares filters (``scale²`` phases × (k² + 1) weights) mapping an LR window to each HR pixel."""
    X = _windows(lr, k)
    A = X.T @ X
    A += ridge * len(X) * np.eye(len(A))
    return np.stack([np.linalg.solve(A, X.T @ hr[dy::scale, dx::scale].reshape(-1))
                     for dy in range(scale) for dx in range(scale)])


def apply_linear_sr(lr: np.ndarray, filters: np.ndarray, scale: int = 4, k: int = 7) -> np.ndarray:
    X = _windows(lr, k)
    h, w = lr.shape
    out = np.empty((h * scale, w * scale))
    for n, f in enumerate(filters):
        out[n // scale :: scale, n % scale :: scale] = (X @ f).reshape(h, w)
    return out


def load_halves(data: Path):
    """``(name, left, right, data_range)`` per held-out micrograph (data bar cut, halves cropped to ×4)."""
    from matrestore import io
    from matrestore.degrade import crop_to_multiple
    from matrestore.metrics import effective_data_range

    for name in HELD_OUT:
        img = io.read_image(data / name)[0]
        w = img.shape[1] // 2
        yield (Path(name).stem, crop_to_multiple(img[:, :w], 4).astype(np.float32),
               crop_to_multiple(img[:, w:], 4).astype(np.float32), effective_data_range(img))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/work/shared/data/sem")
    p.add_argument("--model", default="default")
    p.add_argument("--oracle", type=int, default=0, metavar="STEPS", help="also fine-tune on the test halves (diagnostic)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    from matrestore.baselines import upsample
    from matrestore.degrade import downsample
    from matrestore.metrics import psnr
    from matrestore.sr import enhance, load_model

    halves = list(load_halves(Path(a.data)))
    models = {"model": load_model(a.model)}
    if a.oracle:
        from matrestore.sr.train import train

        out = Path(tempfile.mkdtemp(prefix="matrestore_oracle_"))
        print(f"oracle: fine-tuning {a.model} for {a.oracle} steps on the left halves (in {out}) ...", flush=True)
        for rec in train([h[1] for h in halves], out_dir=out, init=a.model, references=[h[2] for h in halves],
                         epochs=max(1, a.oracle // 50), steps_per_epoch=min(50, a.oracle), adv_from=1.0,
                         lr_min=5e-5, lr_max=3e-4, threads=a.threads, select_by="psnr", log=False):
            if rec["kind"] == "epoch":
                print(f"  epoch {rec['epoch']}: validation cells {rec['val']['psnr_gain_db']:+.3f} dB", flush=True)
        models["oracle"] = load_model(out / "last.safetensors")

    rows = []
    for name, left, right, L in halves:
        lr = downsample(left, 4)
        hr = left.astype(np.float64)
        bic = upsample(lr.astype(np.float64), 4)
        base = psnr(hr, bic, L)
        mse_bic = float(np.mean((hr - bic) ** 2))
        row = {"image": name, "bicubic": base, "noise": immerkaer_sigma(hr) ** 2 / mse_bic}
        lin = apply_linear_sr(lr.astype(np.float64), fit_linear_sr(downsample(right, 4).astype(np.float64), right.astype(np.float64)))
        row["linear"] = psnr(hr, lin, L) - base
        for key, m in models.items():
            row[key] = psnr(hr, np.asarray(enhance(lr, [right], m), np.float64), L) - base
        rows.append(row)
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "image"), flush=True)

    keys = [k for k in ("linear", "model", "oracle") if k in rows[0]]
    print("\n| held-out image | bicubic PSNR (dB) | noise share of bicubic's error | "
          + " | ".join(f"{k} (dB over bicubic)" for k in keys) + " |")
    print("|" + "---|" * (3 + len(keys)))
    for r in rows:
        print(f"| {r['image']} | {r['bicubic']:.2f} | {100 * r['noise']:.0f} % | " + " | ".join(f"{r[k]:+.2f}" for k in keys) + " |")
    print(f"| **mean** | | | " + " | ".join(f"**{np.mean([r[k] for r in rows]):+.2f}**" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
