"""Training data for the SR engine: (LR, HR, Ref) triplets from micrographs.

Sources
-------
(a) real LR/HR pairs of the same field, realigned with the SEM paper's search (:func:`align_patch`):
    for each LR cell the HR window is shifted within ``±search`` HR px, down-sampled, and the offset with
    the highest SSIM against the LR cell wins (drift between the two scans is compensated per cell);
(b) HR-only images, degraded with :func:`matrestore.degrade.downsample` (area average, optional noise).

Every image is cut into non-overlapping *cells* (default 64×64 LR = 256×256 HR), which are split
80/10/10 into train / validation / test with a fixed seed, so no pixel of a validation or test cell is
ever trained on. Training patches (default 32×32 LR → 128×128 HR) are random crops inside training
cells with random flips and 90° rotations; validation uses whole validation cells.

References for training are crops of the training cells' HR (one ``ref_crop`` square per cell); each
cell is assigned its most similar references (eqs. 1-5) from *other* cells, so a patch never sees its
own ground truth through the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .._validate import InputError, as_2d_image
from ..degrade import crop_to_multiple, downsample
from ..metrics import effective_data_range, ssim
from .model import denormalise, norm_stats, normalise
from .references import IMAGE_SUFFIXES, ReferenceBank, read_image

__all__ = ["Cell", "TrainingData", "align_patch", "split_indices", "build_training_data", "augment", "expand_image_sources",
           "alignment_summary"]


@dataclass
class Cell:
    """One square cell: normalised LR (c, c) and HR (s·c, s·c), its source image and split."""

    lr: np.ndarray
    hr: np.ndarray
    source: int
    origin: tuple  # (row, col) of the cell in the source's LR grid
    split: str = "train"
    refs: list = field(default_factory=list)  # selected reference ids (training bank)


@dataclass
class TrainingData:
    cells: list
    bank: ReferenceBank
    bank_cell: np.ndarray  # cell index each reference crop was cut from
    sources: list  # [{"name", "stats", "data_range", "kind", "shape"}]
    scale: int
    patch: int
    cell: int

    def split(self, name: str) -> list[int]:
        return [i for i, c in enumerate(self.cells) if c.split == name]

    def summary(self) -> dict:
        return {
            "sources": [{k: s[k] for k in ("name", "kind", "shape")} for s in self.sources],
            "cells": {k: len(self.split(k)) for k in ("train", "val", "test")},
            "cell_lr_px": self.cell,
            "patch_lr_px": self.patch,
            "scale": self.scale,
            "reference_crops": len(self.bank),
        }


def expand_image_sources(items) -> list:
    """Paths (files or folders) and arrays -> flat list of paths/arrays."""
    if items is None:
        return []
    if isinstance(items, (str, Path)):
        p = Path(items).expanduser()
        if p.is_dir():
            return sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not p.exists():
            raise InputError(f"training image not found: {p}")
        return [p]
    if isinstance(items, np.ndarray):
        return [items] if items.ndim == 2 else list(items)
    out = []
    for it in items:
        out += expand_image_sources(it)
    return out


def _load(src, i):
    if isinstance(src, (str, Path)):
        img, _ = read_image(src)
        return as_2d_image(img, str(src)), Path(src).name
    return as_2d_image(src, f"image {i}"), f"array{i}"


def split_indices(n: int, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> list[str]:
    """Split labels for ``n`` items: a fixed-seed shuffle, then 80/10/10 (at least one validation item
    when n >= 2)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    if n >= 2 and n_val == 0:
        n_val = 1
    if n - n_val - n_test < 1:
        n_test = max(0, n - n_val - 1)
    labels = ["train"] * n
    for j, i in enumerate(order):
        if j < n_val:
            labels[i] = "val"
        elif j < n_val + n_test:
            labels[i] = "test"
    return labels


def _area(hr: np.ndarray, s: int) -> np.ndarray:
    h, w = hr.shape
    return hr[: h - h % s, : w - w % s].reshape(h // s, s, w // s, s).mean(axis=(1, 3))


def align_patch(lr_patch, hr, y0: int, x0: int, scale: int = 4, search: int = 8, method: str = "area"):
    """Paper's realignment: the HR window of size ``scale × lr_patch`` near ``(y0, x0)`` (HR px) whose
    down-sampled version (``"area"`` average, or ``"nearest"`` sampling as in the paper) has the
    highest SSIM with ``lr_patch``, searching offsets within ``±search`` HR px.

    Returns ``(y, x, ssim)``: the best top-left corner in the HR image and its score.
    """
    lr_patch = np.asarray(lr_patch, dtype=np.float64)
    hr = np.asarray(hr, dtype=np.float64)
    ph, pw = lr_patch.shape[0] * scale, lr_patch.shape[1] * scale
    rng = max(float(lr_patch.max() - lr_patch.min()), 1e-12)
    best = (y0, x0, -np.inf)
    for dy in range(-search, search + 1):
        for dx in range(-search, search + 1):
            y, x = y0 + dy, x0 + dx
            if y < 0 or x < 0 or y + ph > hr.shape[0] or x + pw > hr.shape[1]:
                continue
            win = hr[y : y + ph, x : x + pw]
            small = _area(win, scale) if method == "area" else win[scale // 2 :: scale, scale // 2 :: scale]
            score = ssim(lr_patch, small, data_range=rng) if min(lr_patch.shape) >= 7 else -np.mean((lr_patch - small) ** 2)
            if score > best[2]:
                best = (y, x, float(score))
    if not np.isfinite(best[2]):
        raise InputError("the HR image is too small for the LR patch and search window.")
    return best


def augment(arrays: Sequence[np.ndarray], code: int) -> list[np.ndarray]:
    """One of the 8 flips/rotations (``code`` 0..7), the same for every array."""
    out = []
    for a in arrays:
        if code & 4:
            a = a[:, ::-1]
        a = np.rot90(a, code & 3)
        out.append(np.ascontiguousarray(a))
    return out


def _cells_of(lr_shape, cell: int):
    h, w = lr_shape
    ny, nx = h // cell, w // cell
    oy, ox = (h - ny * cell) // 2, (w - nx * cell) // 2
    return [(oy + i * cell, ox + j * cell) for i in range(ny) for j in range(nx)]


def build_training_data(hr_images=None, pairs=None, scale: int = 4, patch: int = 32, cell: int = 64,
                        ref_crop: int = 128, seed: int = 0, noise: float | None = None, search: int = 8,
                        references=None, progress=None) -> TrainingData:
    """Cut sources into cells, split them 80/10/10 (fixed seed) and make the training reference bank.

    ``hr_images``: HR files/folders/arrays (LR made by area averaging); ``pairs``: ``[(lr, hr), ...]``
    real pairs (files or arrays), realigned per cell. ``references``: an explicit reference bank source
    instead of crops of the training cells.
    """
    if cell < patch:
        raise InputError(f"cell ({cell}) must be at least the patch size ({patch}).")
    if ref_crop % scale:
        raise InputError(f"ref_crop {ref_crop} must be a multiple of the scale {scale}.")
    srcs = expand_image_sources(hr_images)
    pair_list = list(pairs or [])
    if not srcs and not pair_list:
        raise InputError("no training images given (HR images or LR/HR pairs).")
    cells: list[Cell] = []
    sources = []
    for i, src in enumerate(srcs):
        hr, name = _load(src, i)
        hr = crop_to_multiple(hr, scale)
        if min(hr.shape) < cell * scale:
            raise InputError(f"{name}: image {hr.shape} is smaller than one training cell ({cell * scale} px).")
        lr = downsample(hr.astype(np.float32), scale, noise=noise, seed=seed + i)
        stats = norm_stats(lr)
        sid = len(sources)
        sources.append({"name": name, "stats": stats, "data_range": effective_data_range(hr), "kind": "hr", "shape": list(hr.shape)})
        lrn, hrn = normalise(lr, stats), normalise(hr, stats)
        for (y, x) in _cells_of(lr.shape, cell):
            cells.append(Cell(lrn[y : y + cell, x : x + cell], hrn[y * scale : (y + cell) * scale, x * scale : (x + cell) * scale], sid, (y, x)))
        if progress:
            progress(f"loaded {name}")
    for i, pair in enumerate(pair_list):
        lr_src, hr_src = pair
        lr, lname = _load(lr_src, i)
        hr, hname = _load(hr_src, i)
        check_pair_shapes(lr.shape, hr.shape, scale, f"pair '{lname}' / '{hname}'")
        stats = norm_stats(lr)
        sid = len(sources)
        sources.append({"name": f"{lname}|{hname}", "stats": stats, "data_range": effective_data_range(hr), "kind": "pair", "shape": list(hr.shape)})
        lrn, hrn = normalise(lr, stats), normalise(hr, stats)
        fy, fx = hr.shape[0] / (lr.shape[0] * scale), hr.shape[1] / (lr.shape[1] * scale)
        offsets = []  # found (dy, dx) of each aligned cell, HR px from its nominal position
        for (y, x) in _cells_of(lr.shape, cell):
            gy, gx = int(round(y * scale * fy)), int(round(x * scale * fx))
            try:
                by, bx, _ = align_patch(lrn[y : y + cell, x : x + cell], hrn, gy, gx, scale, search)
            except InputError:
                continue
            offsets.append((int(by - gy), int(bx - gx)))
            cells.append(Cell(lrn[y : y + cell, x : x + cell], hrn[by : by + cell * scale, bx : bx + cell * scale], sid, (y, x)))
        sources[sid]["offsets"] = offsets
        sources[sid]["search"] = search
        if progress:
            progress(f"aligned {lname} / {hname}")
    check_cell_count(len(cells), cell, has_references=references is not None, seed=seed)
    for c, lab in zip(cells, split_indices(len(cells), seed)):
        c.split = lab
    if references is not None:
        from .references import load_references

        bank = load_references(references, crop=ref_crop, scale=scale)
        bank_cell = np.full(len(bank), -1)
    else:
        crops, names, origins, owner = [], [], [], []
        for ci, c in enumerate(cells):
            if c.split != "train":
                continue
            hs = c.hr.shape[0]
            if hs >= ref_crop:
                o = (hs - ref_crop) // 2
                crop = c.hr[o : o + ref_crop, o : o + ref_crop]
            else:
                pad = ref_crop - hs
                crop = np.pad(c.hr, ((pad // 2, pad - pad // 2),) * 2, mode="symmetric")
            crops.append(crop)
            names.append(sources[c.source]["name"])
            origins.append(c.origin)
            owner.append(ci)
        bank = ReferenceBank(np.stack(crops), names, origins, ref_crop, sources=[s["name"] for s in sources])
        bank_cell = np.asarray(owner)
    return TrainingData(cells, bank, bank_cell, sources, scale, patch, cell)


def check_pair_shapes(lr_shape, hr_shape, scale: int, name: str = "pair") -> None:
    """InputError unless the HR image of a pair is about ``scale`` × its LR image (within 0.8-1.25 per
    axis: real pairs differ by a few rows or a small field mismatch, not by a factor)."""
    ratio = np.asarray(hr_shape[:2], float) / (np.asarray(lr_shape[:2], float) * scale)
    if np.any(ratio < 0.8) or np.any(ratio > 1.25):
        raise InputError(f"{name}: the HR image ({hr_shape[0]}×{hr_shape[1]}) must be about {scale}× the LR image "
                         f"({lr_shape[0]}×{lr_shape[1]}).")


def check_cell_count(n_cells: int, cell: int, has_references: bool = False, seed: int = 0) -> None:
    """InputError unless ``n_cells`` split cells make a run: at least 2 cells (training and validation), and
    without an explicit reference bank at least 2 training cells (the references are cut from them)."""
    n_train = split_indices(n_cells, seed).count("train") if n_cells else 0
    if n_cells < 2 or (n_train < 2 and not has_references):
        need = "2 cells (training and validation)" if n_cells < 2 else \
            "2 training cells to cut references from (or give references)"
        raise InputError(f"only {n_cells} cell(s) of {cell}×{cell} LR px in the training data: at least {need} are "
                         "needed; use more or larger images, or lower 'cell' under Advanced.")


def alignment_summary(data: TrainingData) -> list[dict]:
    """The realignment found for every LR/HR pair source: ``[{"name", "cells", "dy", "dx", "dy_range",
    "dx_range", "search"}]`` (median and range of the per-cell offsets, HR px from the nominal position
    of each cell; ``dy``/``dx`` None when no cell could be aligned). Empty without pairs."""
    out = []
    for s in data.sources:
        if s.get("kind") != "pair" or "offsets" not in s:
            continue
        off = np.asarray(s["offsets"], dtype=float).reshape(-1, 2)
        row = {"name": s["name"], "cells": int(len(off)), "search": s.get("search")}
        if len(off):
            row.update(dy=float(np.median(off[:, 0])), dx=float(np.median(off[:, 1])),
                       dy_range=[int(off[:, 0].min()), int(off[:, 0].max())],
                       dx_range=[int(off[:, 1].min()), int(off[:, 1].max())])
        else:
            row.update(dy=None, dx=None, dy_range=None, dx_range=None)
        out.append(row)
    return out


@torch.no_grad()
def assign_references(model, data: TrainingData, k: int = 1, device="cpu", batch: int = 16) -> None:
    """Pre-determine the ``k`` most similar references of every cell (eqs. 1-5, the model's LTE as the
    embedding network), excluding the cell's own crop."""
    from .references import cosine_similarity

    was = model.training
    model.eval()
    ref_emb = []
    for i in range(0, len(data.bank), batch):
        ref = data.bank.tensor(list(range(i, min(i + batch, len(data.bank)))), device)
        ref_emb.append(model.embed(model.query(model.ref_dsup(ref))))
    ref_emb = torch.cat(ref_emb)
    centre = ref_emb.mean(0, keepdim=True)
    k = max(1, min(k, len(data.bank) - 1))
    for i in range(0, len(data.cells), batch):
        chunk = data.cells[i : i + batch]
        lr = torch.from_numpy(np.stack([c.lr for c in chunk]))[:, None].to(device)
        emb = model.embed(model.query(model.upsample(lr)))
        sim = cosine_similarity(emb - centre, ref_emb - centre)
        for j, c in enumerate(chunk):
            s = sim[j].clone()
            s[torch.as_tensor(data.bank_cell == i + j)] = -float("inf")
            c.refs = torch.topk(s, k).indices.tolist()
    model.train(was)


def sample_batch(data: TrainingData, ids: Sequence[int], rng: np.random.Generator, k: int = 1):
    """A training batch ``(lr (B,1,p,p), hr (B,1,sp,sp), ref (B,k,1,R,R))`` of random patches."""
    p, s = data.patch, data.scale
    lrs, hrs, refs = [], [], []
    for ci in ids:
        c = data.cells[ci]
        y, x = rng.integers(0, c.lr.shape[0] - p + 1), rng.integers(0, c.lr.shape[1] - p + 1)
        lr = c.lr[y : y + p, x : x + p]
        hr = c.hr[y * s : (y + p) * s, x * s : (x + p) * s]
        lr, hr = augment([lr, hr], int(rng.integers(8)))
        lrs.append(lr)
        hrs.append(hr)
        rids = (c.refs or [int(rng.integers(len(data.bank)))])[:k]
        while len(rids) < k:
            rids = rids + rids[: k - len(rids)]
        refs.append(np.stack([augment([data.bank.crops[r]], int(rng.integers(8)))[0] for r in rids]))
    t = lambda a: torch.from_numpy(np.stack(a)).unsqueeze(1)  # noqa: E731
    ref = torch.from_numpy(np.stack(refs)).unsqueeze(2)
    return t(lrs), t(hrs), ref


def to_original(x: np.ndarray, data: TrainingData, cell: Cell) -> np.ndarray:
    return denormalise(x, data.sources[cell.source]["stats"])
