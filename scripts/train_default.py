"""Train the default CPU super-resolution model on the shared SEM images (resumable).

    python scripts/train_default.py --out runs/sr_default --threads 1            # start or resume
    python scripts/train_default.py --out runs/sr_default --epochs 2 --steps 5   # smoke run
    python scripts/train_default.py --out runs/deeper --init default --deepen 8,16,4,2 --adv-from 1   # grow + fine-tune

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
    p.add_argument("--init", help="fine-tune this model ('default' or a file) instead of training a new one")
    p.add_argument("--deepen", help="with --init: residual blocks per stage, e.g. 8,16,4,2 (new blocks start as identities)")
    p.add_argument("--feats", help="new model: main-network widths, e.g. 48,24,12")
    p.add_argument("--res-blocks", help="new model: residual blocks per stage, e.g. 8,16,4,2")
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    from matrestore.sr import deepen, load_model
    from matrestore.sr.train import train

    ints = lambda text: tuple(int(v) for v in text.split(","))  # noqa: E731
    init = a.init
    if init and a.deepen:
        init = deepen(load_model(init), ints(a.deepen))
    model_options = {k: ints(v) for k, v in (("feats", a.feats), ("res_blocks", a.res_blocks)) if v}
    files = sorted(f for f in Path(a.data).iterdir() if f.suffix.lower() in SUFFIXES and f.name not in HELD_OUT)
    print("training images:", ", ".join(f.name for f in files), flush=True)
    t0 = time.time()
    for rec in train(files, out_dir=a.out, preset=a.preset, epochs=a.epochs, steps_per_epoch=a.steps, batch_size=a.batch,
                     lr_min=a.lr_min, lr_max=a.lr_max, adv_from=a.adv_from, resume=not a.fresh, threads=a.threads,
                     checkpoint_every=50, init=init, model_options=model_options or None):
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
