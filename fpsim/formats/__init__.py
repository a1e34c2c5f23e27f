"""Number-format descriptors: small, frozen, hashable dataclasses.

Every format answers the same questions (``bits``, ``max``, ``min_normal``,
``min_subnormal``, ``eps``, ``name``; ``values()`` for element formats) and is read back
from its name by :func:`parse`. A format describes itself and implements the small
protocol of :class:`Format` (``_quantize``, ``_encode``, ``_decode``) on top of
:mod:`fpsim.lowering`; the public verbs live in :mod:`fpsim.rounding`, the loops in
:mod:`fpsim.kernels`.

Modules, by concept: ``base`` (the protocol, capability flags, the special-value
:class:`Encoding` records), ``floats`` (:class:`FloatFormat`, :func:`p3109`), ``integers``
(:class:`IntFormat`, :class:`FixedFormat`), ``tables`` (:class:`CodebookFormat`,
:class:`DIntFormat`), ``grammar`` (:func:`parse`, :func:`as_format`, :func:`list_formats`,
the name registry).

>>> import fpsim
>>> fpsim.formats.parse("e4m3").encoding.family
'fn'
"""

from .base import (DEFAULT_FAMILY, FAMILIES, MAX_TABLE_BITS, ElementFormat, Encoding, Format,
                   GridFormat, check_flag, encoding)
from .floats import FLOAT_ALIASES, SYNONYMS, FloatFormat, p3109
from .grammar import as_format, list_formats, parse, read_int_option, register_name
from .integers import FixedFormat, IntFormat
from .tables import CODEBOOKS, NF4_VALUES, CodebookFormat, DIntFormat, TableFormat

__all__ = [
    "Format",
    "FloatFormat",
    "IntFormat",
    "FixedFormat",
    "DIntFormat",
    "CodebookFormat",
    "FAMILIES",
    "parse",
    "as_format",
    "list_formats",
    "p3109",
    # the protocol and the records behind it
    "ElementFormat",
    "GridFormat",
    "TableFormat",
    "Encoding",
    "encoding",
    "DEFAULT_FAMILY",
    # helpers of the layers above (fpsim.block, fpsim.scaling)
    "MAX_TABLE_BITS",
    "check_flag",
    "read_int_option",
    "register_name",
    "FLOAT_ALIASES",
    "SYNONYMS",
    "CODEBOOKS",
    "NF4_VALUES",
]
