"""The named values of rounding options: :class:`Rounding`, :class:`Overflow`, :class:`NaNPolicy`.

They live here, below every other module of fpsim but the kernels' constants, so that :mod:`fpsim.lowering` (which
resolves options into kernel parameters) and :mod:`fpsim.formats` can use them without an
import cycle; users import them from ``fpsim`` or :mod:`fpsim.rounding` (the same objects).

>>> from fpsim import options, rounding
>>> options.Rounding is rounding.Rounding
True
"""

from __future__ import annotations

import enum

import numpy as np

from .kernels import _modes as _C

__all__ = ["Rounding", "Overflow", "NaNPolicy", "ROUNDING_MODES", "MODE_CODE", "OVF_CODE",
           "NAN_CODE", "enum_value", "check_flag"]


class Rounding(str, enum.Enum):
    """Rounding modes. Pass the member or its string value (``"rne"``).

    >>> import fpsim
    >>> fpsim.Rounding("rne") is fpsim.Rounding.RNE, fpsim.ROUNDING_MODES[:3]
    (True, ('rne', 'rna', 'rtz'))
    """

    RNE = "rne"  #: to nearest, ties to even
    RNA = "rna"  #: to nearest, ties away from zero
    RTZ = "rtz"  #: toward zero
    RUP = "rup"  #: toward +infinity
    RDN = "rdn"  #: toward -infinity
    RTO = "rto"  #: to odd
    STOCHASTIC = "stochastic"  #: stochastic rounding


class Overflow(str, enum.Enum):
    """What a value beyond the largest finite number becomes.

    >>> import fpsim
    >>> fpsim.quantize(1e6, "e5m2", overflow=fpsim.Overflow.SATURATE)
    57344.0
    """

    SATURATE = "saturate"  #: ±max (±inf too)
    INF = "inf"  #: IEEE: ±inf or ±max depending on the rounding direction
    NAN = "nan"  #: NaN (non-saturating OCP E4M3 / ml_dtypes behaviour)
    WRAP = "wrap"  #: integers and fixed point: modulo 2**bits


class NaNPolicy(str, enum.Enum):
    """What a NaN input becomes.

    >>> import fpsim
    >>> fpsim.quantize(float("nan"), "e2m1", nan=fpsim.NaNPolicy.MAX)
    6.0
    """

    PROPAGATE = "propagate"  #: stays NaN (formats that have a NaN)
    RAISE = "raise"  #: ValueError (default for formats without NaN)
    ZERO = "zero"  #: +0 (what ml_dtypes does for its NaN-less types, up to the sign)
    MAX = "max"  #: +max


#: The names of the rounding modes, in the order of :class:`Rounding`.
ROUNDING_MODES = tuple(r.value for r in Rounding)

#: Kernel codes (``fpsim/kernels/_modes.py``) of the option values, next to the values: a
#: new mode or policy is a member above and a line here.
MODE_CODE = {Rounding.RNE: _C.RNE, Rounding.RNA: _C.RNA, Rounding.RTZ: _C.RTZ, Rounding.RUP: _C.RUP,
             Rounding.RDN: _C.RDN, Rounding.RTO: _C.RTO, Rounding.STOCHASTIC: _C.SR}
OVF_CODE = {Overflow.SATURATE: _C.OVF_SATURATE, Overflow.INF: _C.OVF_INF, Overflow.NAN: _C.OVF_NAN,
            Overflow.WRAP: _C.OVF_WRAP}
NAN_CODE = {NaNPolicy.PROPAGATE: _C.NAN_PROPAGATE, NaNPolicy.RAISE: _C.NAN_ERROR,
            NaNPolicy.ZERO: _C.NAN_ZERO, NaNPolicy.MAX: _C.NAN_MAX}


def enum_value(cls, value, what):
    """The member of the enum ``cls`` named by ``value`` (case-insensitive), else ValueError.

    >>> from fpsim.options import Rounding, enum_value
    >>> enum_value(Rounding, "RTZ", "rounding")
    <Rounding.RTZ: 'rtz'>
    >>> enum_value(Rounding, "nearest", "rounding")
    Traceback (most recent call last):
    ...
    ValueError: rounding='nearest' is not allowed; choose one of 'rne', 'rna', 'rtz', 'rup', 'rdn', 'rto', 'stochastic'
    """
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).lower())
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"{what}={value!r} is not allowed; choose one of {allowed}") from None


def check_flag(value, name: str) -> bool:
    """``value`` if it is a real bool (``True``/``False`` or a numpy bool), else ``TypeError``.

    Flags are never read by truthiness: ``"False"``, ``"no"`` or ``0`` would silently mean
    the opposite of what was written, or something else.

    >>> from fpsim.formats import check_flag
    >>> check_flag(False, "subnormals")
    False
    >>> check_flag("no", "signed")
    Traceback (most recent call last):
    ...
    TypeError: signed='no' is not a bool; pass True or False
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name}={value!r} is not a bool; pass True or False")
