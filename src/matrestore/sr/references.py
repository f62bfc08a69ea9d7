"""Reference bank and reference selector (SEM paper, section 2.3.1, eqs. 1-5).

* :class:`ReferenceBank` — HR reference images (files, a folder, arrays) cut into square crops of the
  model's ``ref_crop`` size (images smaller than a crop are mirrored up to it), each normalised with
  the percentiles of its whole source image. The Ref↓↑ version (area-average down, bicubic up, to
  match LR↑) is made on the fly by the model.
* :class:`RefFeatures` — everything a model needs from a bank, computed once per image (or once for
  many images) and reused by every tile: the selector embeddings of all crops (computed up front), and
  per crop the normalised 3×3 key patches of LTE(Ref↓↑) and the value tables of LTE(Ref) at three
  scales (computed when a crop is first selected, kept in a memory-bounded cache).
* Selection (eqs. 1-5): embeddings ``K`` of LR↑ (or a tile of it) and ``V`` of every Ref↓↑ are the
  channel means and standard deviations of the LTE relu3_1 features (the trained LTE is the embedding
  network, as the paper suggests after training); both are centred on the bank's mean embedding, then
  ``S_ij`` is their cosine similarity (eq. 3), ``B_j = argmax_i S_ij`` (eq. 4; top-k for k > 1) and
  the selected crops form the reference batch (eq. 5).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .._validate import InputError, as_2d_image
from .model import NORM, normalise, norm_stats, running_search, unfold_normalised, value_table

__all__ = ["ReferenceBank", "load_references", "RefFeatures", "cosine_similarity", "select_top_k", "read_image",
           "IMAGE_SUFFIXES", "features_iter", "fingerprint", "clear_feature_cache"]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


def read_image(path):
    """``(array, metadata)`` of an image file via :func:`matrestore.io.read_image` (data bar cropped)."""
    from .. import io as mio

    return mio.read_image(path)


def _crop_origins(shape, crop: int, max_crops: int | None) -> list[tuple[int, int]]:
    """Top-left corners of non-overlapping crops on a grid centred in the image (evenly thinned to
    ``max_crops``)."""
    h, w = shape
    ny, nx = max(h // crop, 1), max(w // crop, 1)
    oy, ox = max((h - ny * crop) // 2, 0), max((w - nx * crop) // 2, 0)
    origins = [(oy + i * crop, ox + j * crop) for i in range(ny) for j in range(nx)]
    if max_crops is not None and len(origins) > max_crops:
        pick = np.linspace(0, len(origins) - 1, max_crops).round().astype(int)
        origins = [origins[i] for i in sorted(set(pick.tolist()))]
    return origins


def _fit(img: np.ndarray, crop: int) -> np.ndarray:
    """Mirror-pad an image smaller than a crop up to the crop size."""
    ph, pw = max(crop - img.shape[0], 0), max(crop - img.shape[1], 0)
    if ph or pw:
        img = np.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="symmetric")
    return img


class ReferenceBank:
    """Normalised HR reference crops ``(N, crop, crop)`` (float32, about [-1, 1]) and their provenance."""

    def __init__(self, crops: np.ndarray, names: Sequence[str], origins: Sequence[tuple], crop: int, sources: Sequence[str] | None = None):
        crops = np.asarray(crops, dtype=np.float32)
        if crops.ndim != 3 or crops.shape[1:] != (crop, crop) or len(crops) == 0:
            raise InputError(f"reference crops must have shape (N, {crop}, {crop}) with N >= 1, got {crops.shape}.")
        self.crops = crops
        self.names = list(names)
        self.origins = [tuple(o) for o in origins]
        self.crop = int(crop)
        self.sources = list(sources) if sources is not None else sorted(set(self.names))

    def __len__(self) -> int:
        return len(self.crops)

    def tensor(self, ids=None, device="cpu") -> torch.Tensor:
        arr = self.crops if ids is None else self.crops[np.asarray(ids)]
        return torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(1).to(device)

    def subset(self, ids) -> "ReferenceBank":
        ids = list(ids)
        return ReferenceBank(self.crops[ids], [self.names[i] for i in ids], [self.origins[i] for i in ids], self.crop)

    def summary(self) -> dict:
        return {"crops": len(self), "crop": self.crop, "sources": self.sources}

    @classmethod
    def from_images(cls, images: Sequence[np.ndarray], names: Sequence[str], crop: int, scale: int = 4,
                    max_per_image: int | None = 64, norm: dict = NORM) -> "ReferenceBank":
        if crop % scale:
            raise InputError(f"reference crop {crop} must be a multiple of the scale {scale}.")
        crops, cnames, origins = [], [], []
        for img, name in zip(images, names):
            img = as_2d_image(img, f"reference {name}")
            stats = norm_stats(img, norm)
            src = _fit(img, crop)
            for y, x in _crop_origins(src.shape, crop, max_per_image):
                crops.append(normalise(src[y : y + crop, x : x + crop], stats))
                cnames.append(name)
                origins.append((y, x))
        if not crops:
            raise InputError("no reference crops could be made.")
        return cls(np.stack(crops), cnames, origins, crop, sources=list(names))


def _expand_sources(refs) -> list:
    if refs is None:
        return []
    if isinstance(refs, (str, Path)):
        p = Path(refs).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not files:
                raise InputError(f"no reference images ({', '.join(IMAGE_SUFFIXES)}) in folder {p}.")
            return files
        if not p.exists():
            raise InputError(f"reference file or folder not found: {p}")
        return [p]
    if isinstance(refs, np.ndarray) or torch.is_tensor(refs):
        arr = np.asarray(refs)
        if arr.ndim == 3 and arr.shape[-1] not in (3, 4):  # a stack of reference images (not RGB)
            return [a for a in arr]
        return [arr]
    out = []
    for r in refs:
        out += _expand_sources(r)
    return out


def load_references(refs, crop: int = 128, scale: int = 4, max_per_image: int | None = 64) -> ReferenceBank:
    """A :class:`ReferenceBank` from a bank (returned unchanged), a folder, file paths, arrays or a list
    of any of these. Files are read with :func:`matrestore.io.read_image` (instrument data bar removed)."""
    if isinstance(refs, ReferenceBank):
        if refs.crop != crop:
            raise InputError(f"the reference bank has {refs.crop} px crops but the model expects {crop} px.")
        return refs
    sources = _expand_sources(refs)
    if not sources:
        raise InputError("at least one reference image is needed (a file, a folder of images or an array).")
    images, names = [], []
    for i, s in enumerate(sources):
        if isinstance(s, Path):
            img, _meta = read_image(s)
            names.append(s.name)
        else:
            img = s
            names.append(f"array{i}")
        images.append(as_2d_image(img, f"reference {names[-1]}"))
    return ReferenceBank.from_images(images, names, crop=crop, scale=scale, max_per_image=max_per_image)


def cosine_similarity(k: torch.Tensor, v: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 3: ``S_ij = K_i · V_j / (|K_i| |V_j|)`` for K (n, E) and V (m, E) -> (n, m)."""
    kn = k / k.norm(dim=1, keepdim=True).clamp(min=eps)
    vn = v / v.norm(dim=1, keepdim=True).clamp(min=eps)
    return kn @ vn.T


def select_top_k(sim: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. 4 (k = 1: argmax; more: the k most similar, best first), indices (n, k)."""
    k = max(1, min(int(k), sim.shape[1]))
    return torch.topk(sim, k, dim=1).indices


class RefFeatures:
    """Reference features of one bank under one model, reused by all tiles of an image (or several images).

    ``cache_mb`` bounds the memory of the key/value cache (least recently used crops are dropped and
    recomputed if needed again); the embeddings of all crops are always kept.
    """

    def __init__(self, model, bank: ReferenceBank, device=None, cache_mb: float = 512, batch: int = 8,
                 _embed: bool = True):
        self.model = model
        self.bank = bank
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.cache_bytes = int(cache_mb * 2**20)
        self.batch = max(1, int(batch))
        self._cache: OrderedDict = OrderedDict()
        self._bytes = 0
        self._combined: dict = {}
        self.computed = 0  # number of crops whose keys/values were computed (tests, benchmarks)
        if _embed:
            from ..progress import drive

            drive(self._embed_iter())

    @classmethod
    def build_iter(cls, model, bank: ReferenceBank, device=None, cancel=None, **kw):
        """Generator form of the constructor: yields a progress record per batch of crops (the
        selector embeddings of the whole bank, the "reference features" phase), checks ``cancel``
        between batches and returns the :class:`RefFeatures` (``None`` when cancelled)."""
        feats = cls(model, bank, device, _embed=False, **kw)
        done = yield from feats._embed_iter(cancel)
        return feats if done else None

    def _embed_iter(self, cancel=None):
        import time

        from ..progress import Kind, eta_text, is_cancelled, record

        embs, n, t0 = [], len(self.bank), time.perf_counter()
        with torch.no_grad():
            for i in range(0, n, self.batch):
                if is_cancelled(cancel):
                    return False
                ref = self.bank.tensor(list(range(i, min(i + self.batch, n))), self.device)
                k3 = self.model.query(self.model.ref_dsup(ref))  # LTE(Ref↓↑) relu3_1: the embedding source
                embs.append(self.model.embed(k3))
                step = min(i + self.batch, n)
                el = time.perf_counter() - t0
                yield record(Kind.STEP, phase="reference features", step=step, total=n, elapsed_s=el,
                             message="reference features: " + eta_text(step, n, el, "crop"))
        self.emb = torch.cat(embs, 0)
        self.centre = self.emb.mean(0, keepdim=True)
        self.key_hw = tuple(k3.shape[-2:])
        self.P = self.key_hw[0] * self.key_hw[1]
        self.grid_w = self.key_hw[1] + 2
        self.Pp = (self.key_hw[0] + 2) * self.grid_w
        return True

    # --- cache ---------------------------------------------------------------------------------
    def _store(self, idx, k3, values):
        keys = unfold_normalised(k3)[0].T.contiguous()  # (D, P)
        tables = [value_table(v, b) for v, b in zip(values, (4, 2, 1))]
        nbytes = keys.numel() * keys.element_size() + sum(t.numel() * t.element_size() for t in tables)
        self.computed += 1
        if nbytes > self.cache_bytes:
            return None
        while self._cache and self._bytes + nbytes > self.cache_bytes:
            _, (_, _, nb) = self._cache.popitem(last=False)
            self._bytes -= nb
            self._combined.clear()
        self._cache[idx] = (keys, tables, nbytes)
        self._bytes += nbytes
        return keys, tables

    def get(self, idx: int):
        """``(keys (D, P), [table1, table2, table3])`` of crop ``idx``."""
        hit = self._cache.get(idx)
        if hit is not None:
            self._cache.move_to_end(idx)
            return hit[0], hit[1]
        with torch.no_grad():
            k3, values = self.model.ref_features(self.bank.tensor([idx], self.device))
            stored = self._store(idx, k3, values)
            if stored is None:  # larger than the whole cache: use without keeping
                keys = unfold_normalised(k3)[0].T.contiguous()
                return keys, [value_table(v, b) for v, b in zip(values, (4, 2, 1))]
        return stored

    def combined_tables(self, unique: tuple) -> list:
        """Value tables of several crops stacked (crop ``unique[i]`` starts at row ``i * Pp``), plus a zero row."""
        hit = self._combined.get(unique)
        if hit is not None:
            return hit
        per = [self.get(i)[1] for i in unique]
        out = []
        for lvl in range(3):
            t = torch.cat([p[lvl] for p in per], 0)
            out.append(torch.cat((t, t.new_zeros(1, t.shape[1])), 0))
        if len(self._combined) > 4:
            self._combined.clear()
        self._combined[unique] = out
        return out

    # --- selection (eqs. 1-5) ---------------------------------------------------------------
    def similarity(self, emb: torch.Tensor) -> torch.Tensor:
        return cosine_similarity(emb.float() - self.centre, self.emb - self.centre)

    def select(self, emb: torch.Tensor, k: int) -> torch.Tensor:
        return select_top_k(self.similarity(emb), k)

    # --- search -------------------------------------------------------------------------------
    def search(self, q: torch.Tensor, ids: torch.Tensor, slab: int = 4096):
        """Relevance search of queries ``q`` (B, Nq, D) over the crops ``ids`` (B, k) of each tile.

        Returns ``(S (B, Nq), rows0, ry, rx, tables)`` for :func:`matrestore.sr.model.transfer`.
        Every crop is searched once for all the tiles that selected it, in slabs of key positions.
        """
        B = q.shape[0]
        ids_np = ids.cpu().numpy()
        unique = tuple(sorted(set(ids_np.ravel().tolist())))
        best = arg = None
        full = all(len(set(r.tolist())) == len(unique) for r in ids_np)
        if full:
            for ui, u in enumerate(unique):
                keys, _ = self.get(u)
                best, arg = running_search(q, keys.to(q.dtype), slab, best, arg, offset=ui * self.P)
        else:
            best = q.new_full((B, q.shape[1]), -float("inf"))
            arg = torch.zeros((B, q.shape[1]), dtype=torch.long, device=q.device)
            for ui, u in enumerate(unique):
                rows = torch.as_tensor(np.nonzero((ids_np == u).any(1))[0], device=q.device)
                keys, _ = self.get(u)
                b, a = running_search(q[rows], keys.to(q.dtype), slab, best[rows], arg[rows], offset=ui * self.P)
                best[rows] = b
                arg[rows] = a
        tables = self.combined_tables(unique)
        slot = arg // self.P
        pos = arg % self.P
        rows0 = slot * self.Pp
        ry, rx = pos // self.key_hw[1], pos % self.key_hw[1]
        return best, rows0, ry, rx, tables



# --------------------------------------------------------------------------------- features across runs
_FEATURE_CACHE: OrderedDict = OrderedDict()  # (model, bank, device) fingerprints -> RefFeatures
FEATURE_CACHE_SIZE = 1  # banks kept: the last one (it holds at most its RefFeatures.cache_mb of keys/values)


def fingerprint(model, bank: ReferenceBank) -> str:
    """A key for the features of ``bank`` under ``model``: a hash of the model's weights and the bank's
    crop pixels (so a fine-tuned model or changed references never reuse stale features)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    h.update(str(bank.crop).encode())
    h.update(np.ascontiguousarray(bank.crops).tobytes())
    return h.hexdigest()


def clear_feature_cache() -> None:
    _FEATURE_CACHE.clear()


def features_iter(model, bank: ReferenceBank, device, cancel=None):
    """The :class:`RefFeatures` of ``bank`` under ``model`` on ``device`` — reused from an earlier run
    with the same weights and reference pixels (a cache of :data:`FEATURE_CACHE_SIZE` banks), else
    computed with progress (:meth:`RefFeatures.build_iter`). A generator; returns ``None`` if cancelled."""
    from ..progress import Kind, record

    key = (fingerprint(model, bank), str(torch.device(device)))
    hit = _FEATURE_CACHE.get(key)
    if hit is not None:
        _FEATURE_CACHE.move_to_end(key)
        hit.model = model  # the same weights; this object is on the device now
        yield record(Kind.STEP, phase="reference features", step=len(bank), total=len(bank), elapsed_s=0.0,
                     message=f"reference features of {len(bank)} crop(s) reused from the last run")
        return hit
    feats = yield from RefFeatures.build_iter(model, bank, device, cancel)
    if feats is not None:
        _FEATURE_CACHE[key] = feats
        while len(_FEATURE_CACHE) > FEATURE_CACHE_SIZE:
            _FEATURE_CACHE.popitem(last=False)
    return feats
