"""One parameters object per engine: the dataclass an engine takes is the one place for each option's
default, range, label, tooltip and remembered-settings key. Widgets build their controls from it
(:class:`matrestore._widgets._params.ParamForm`); the CLI and scripts pass the same dataclass. No Qt here.

    @dataclass
    class EnhanceOptions:
        tile: int | None = param(None, label="tile size", tip="Tile side in LR px ...", min=8, max=8192,
                                 step=32, suffix=" px", special="auto")
        mode: str = param("fast", label="stitching", tip="...", choices={"fast (...)": "fast", "paper (...)": "paper"})

``special`` names the value ``None`` (shown at the bottom of the range: "auto", "off", "model default");
``choices`` maps the texts a user sees to the values the engine takes. :func:`describe` lists the
parameters of a dataclass; :func:`defaults` its default values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Param", "param", "describe", "defaults"]


@dataclass(frozen=True)
class Param:
    """How one option is shown and remembered (the default lives in the dataclass field)."""

    label: str
    tip: str
    key: str | None = None  # remembered-settings key (default: the field name)
    min: float | None = None
    max: float | None = None
    step: float | None = None
    decimals: int | None = None  # a float option: shown with this many decimals
    suffix: str = ""
    special: str | None = None  # the text shown for None (at ``min``; the control's minimum is min - step)
    choices: dict | None = None  # shown text -> value
    advanced: bool = False


def param(default, *, label: str, tip: str, **kw) -> Any:
    """A dataclass field with a default and the :class:`Param` that shows it (keyword arguments of Param)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"param": Param(label, tip, **kw)})
    return field(default=default, metadata={"param": Param(label, tip, **kw)})


def describe(cls) -> dict[str, tuple[Param, Any]]:
    """``{field name: (Param, default)}`` of the fields of ``cls`` that carry a :class:`Param`, in order."""
    out = {}
    for f in dataclasses.fields(cls):
        p = f.metadata.get("param")
        if p is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out[f.name] = (p, default)
    return out


def defaults(cls) -> dict:
    """``{field name: default}`` of the described fields of ``cls``."""
    return {name: d for name, (_, d) in describe(cls).items()}
