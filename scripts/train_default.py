"""Train the default CPU super-resolution model on the shared SEM images (resumable).

    python scripts/train_default.py --out runs/sr_default --threads 1            # start or resume
    python scripts/train_default.py --out runs/sr_default --epochs 2 --steps 5   # smoke run

Held out (never trained on, for `matrestore sr evaluate`): the files in HELD_OUT below.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HELD_OUT = (
    "sem2surface__P33_scale2s3_detectorA.tif",
    "openecci__steel_SEM_003.tif",
    "rsciio__test_tiff_Zeiss_SEM_512pix.tif",
)
SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/work/shared/data/sem")
    p.add_argument("--out", default="runs/sr_default")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps", type=int, default=100, help="steps per epoch")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr-min", type=float, default=1e-4)
    p.add_argument("--lr-max", type=float, default=5e-4)
    p.add_argument("--adv-from", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    from matrestore.sr.train import train

    files = sorted(f for f in Path(a.data).iterdir() if f.suffix.lower() in SUFFIXES and f.name not in HELD_OUT)
    print("training images:", ", ".join(f.name for f in files), flush=True)
    t0 = time.time()
    for rec in train(files, out_dir=a.out, preset=a.preset, epochs=a.epochs, steps_per_epoch=a.steps, batch_size=a.batch,
                     lr_min=a.lr_min, lr_max=a.lr_max, adv_from=a.adv_from, resume=not a.fresh, threads=a.threads,
                     checkpoint_every=50):
        if rec["kind"] == "step":
            if rec["step"] % 10 == 0:
                l = rec["losses"]
                print(f"[{time.time() - t0:7.0f}s] step {rec['step']}/{rec['total']} {rec['phase']} "
                      + " ".join(f"{k}={v:.4g}" for k, v in l.items()) + f" lr={rec['lr']:.2e}", flush=True)
        elif rec["kind"] == "epoch":
            v = rec["val"]
            print(f"[{time.time() - t0:7.0f}s] epoch {rec['epoch']}: val PSNR {v['ttsr']['psnr']:.3f} (bicubic {v['bicubic']['psnr']:.3f}, "
                  f"{v['psnr_gain_db']:+.3f} dB) SSIM {v['ttsr']['ssim']:.4f} ({v['bicubic']['ssim']:.4f}) ESSIM {v['ttsr']['essim']:.4f} "
                  f"({v['bicubic']['essim']:.4f}, x{v['essim_ratio']:.4f}){' BEST' if rec['best'] else ''}", flush=True)
        else:
            print(json.dumps({k: v for k, v in rec.items() if k != "losses"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
