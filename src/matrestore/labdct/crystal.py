"""Cubic crystals for the forward model: lattices, the first {hkl} families, structure factors,
atomic form factors and random orientations.

Structure factors (one atom per lattice point):

* fcc (Al): ``F = 4 f`` when h, k, l are all even or all odd, else 0 -> {111}, {200}, {220}, {311};
* bcc (Fe): ``F = 2 f`` when h + k + l is even, else 0 -> {110}, {200}, {211}, {220}.

``f(s)`` is the Cromer–Mann fit of the atomic form factor (International Tables for Crystallography
Vol. C, Table 6.1.1.4) at ``s = sin(theta)/lambda = 1/(2 d)`` (Å⁻¹); it is constant per reflection.
"""

from __future__ import annotations

import itertools

import numpy as np

from .._validate import InputError

__all__ = ["MATERIALS", "reflections", "random_orientations", "form_factor"]

# Cromer-Mann coefficients a1 b1 a2 b2 a3 b3 a4 b4 c
_CM = {
    "Al": (6.4202, 3.0387, 1.9002, 0.7426, 1.5936, 31.5472, 1.9646, 85.0886, 1.1151),
    "Fe": (11.7695, 4.7611, 7.3573, 0.3072, 3.5222, 15.3535, 2.3045, 76.8805, 1.0369),
}

#: name -> (lattice, lattice parameter in Å, element)
MATERIALS = {"Al": ("fcc", 4.0495, "Al"), "Fe": ("bcc", 2.8665, "Fe")}


def form_factor(element: str, s) -> np.ndarray:
    """Atomic form factor (electrons) at ``s = sin(theta)/lambda`` in Å⁻¹."""
    a1, b1, a2, b2, a3, b3, a4, b4, c = _CM[element]
    s2 = np.asarray(s, float) ** 2
    return a1 * np.exp(-b1 * s2) + a2 * np.exp(-b2 * s2) + a3 * np.exp(-b3 * s2) + a4 * np.exp(-b4 * s2) + c


def _allowed(lattice: str, h, k, l) -> bool:
    if lattice == "fcc":
        return len({h % 2, k % 2, l % 2}) == 1
    if lattice == "bcc":
        return (h + k + l) % 2 == 0
    return True


def reflections(material: str = "Fe", families: int = 4) -> dict:
    """All reflections (both signs) of the first ``families`` allowed {hkl} families of ``material``.

    Returns ``hkl`` (m, 3) ints, ``d`` (m,) d-spacings in Å, ``F2`` (m,) |F|² (electrons²),
    ``family`` (m,) index of the family and ``families``: list of the families' (h, k, l) with h>=k>=l>=0.
    """
    if material not in MATERIALS:
        raise InputError(f"unknown material {material!r}; choose from {', '.join(MATERIALS)}.")
    lattice, a, element = MATERIALS[material]
    fams = []
    for n2 in range(1, 40):
        for h in range(int(np.sqrt(n2)) + 1, -1, -1):
            for k in range(h, -1, -1):
                for l in range(k, -1, -1):
                    if h * h + k * k + l * l == n2 and _allowed(lattice, h, k, l) and (h, k, l) != (0, 0, 0):
                        fams.append((h, k, l))
        if len(fams) >= families:
            break
    fams = fams[:families]
    hkl, fam_idx = [], []
    for i, f in enumerate(fams):
        seen = set()
        for perm in set(itertools.permutations(f)):
            for signs in itertools.product((1, -1), repeat=3):
                v = tuple(p * s for p, s in zip(perm, signs))
                if v not in seen:
                    seen.add(v)
                    hkl.append(v)
                    fam_idx.append(i)
    hkl = np.array(sorted(set(map(tuple, hkl)), key=lambda v: (sum(x * x for x in v), v)), int)
    n2 = (hkl**2).sum(1)
    fam_of = {sum(x * x for x in f): i for i, f in enumerate(fams)}
    family = np.array([fam_of[int(v)] for v in n2])
    d = a / np.sqrt(n2)
    mult = 4.0 if lattice == "fcc" else 2.0
    f = form_factor(element, 1.0 / (2.0 * d))
    return {"hkl": hkl, "d": d, "F2": (mult * f) ** 2, "family": family, "families": fams, "a": a,
            "lattice": lattice, "material": material}


def random_orientations(n: int, rng) -> np.ndarray:
    """``n`` uniformly random rotation matrices (crystal -> sample), shape (n, 3, 3) (unit quaternions)."""
    q = rng.normal(size=(int(n), 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], 1)
