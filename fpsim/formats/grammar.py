"""Format names: :func:`parse`, :func:`as_format`, :func:`list_formats` and the registry
through which higher layers (:mod:`fpsim.block`, :mod:`fpsim.scaling`) add their names.

>>> import fpsim
>>> fpsim.parse("E4M3") is fpsim.parse("e4m3")
True
"""

from __future__ import annotations

import difflib
import re

from .base import DEFAULT_FAMILY, FAMILIES, Format, encoding
from .floats import FLOAT_ALIASES, SYNONYMS, FloatFormat, p3109
from .integers import FixedFormat, IntFormat
from .tables import CODEBOOKS, CodebookFormat, DIntFormat

__all__ = ["parse", "as_format", "list_formats", "register_name", "read_int_option"]

# family suffixes longest first, so that 'fnuz' is not read as 'fn' + 'uz'
_FAMILY_ALT = "|".join(sorted(FAMILIES, key=len, reverse=True))
_FLOAT_RE = re.compile(rf"^(u)?e(\d+)m(\d+)(?:b(-?\d+))?({_FAMILY_ALT})?(_ftz)?$")
_P3109_RE = re.compile(r"^p3109_k(\d+)p(\d+)(se|sf|ue|uf)?(_ftz)?$")
_INT_RE = re.compile(r"^(u)?int(\d+)(_narrow)?$")
_FIXED_RE = re.compile(r"^(u)?fixed(\d+)f(-?\d+)(_narrow)?$")
_DINT_RE = re.compile(r"^dint(\d+)(?:s([0-9.eE+-]+))?$")
_CODEBOOK_RE = re.compile(r"^codebook\[(.*)\]$")

_EXTRA_NAMES = ("e4m3fnuz", "e5m2fnuz", "e4m3b11fnuz", "int8", "int4", "uint8", "uint4", "dint4", "nf4",
                "p3109_k8p3", "p3109_k8p4")


def list_formats() -> list:
    """Canonical names of the well-known formats (what ``fpsim formats`` prints).

    >>> import fpsim
    >>> "e4m3" in fpsim.list_formats()
    True
    """
    return list(FLOAT_ALIASES) + list(_EXTRA_NAMES)


_PARSE_CACHE: dict = {}

#: Names defined by higher layers (``fpsim.block`` registers ``mxfp4``, ``nvfp4``...):
#: prefix -> factory(lower-case name) -> Format. fpsim.formats imports none of those layers.
_NAME_HOOKS: dict = {}


def read_int_option(name: str, option: str, text: str) -> int:
    """The int written for ``option`` in the format name ``name``, or a ValueError naming both.

    >>> from fpsim.formats import read_int_option
    >>> read_int_option("mxfp4[axis=0]", "axis", "0")
    0
    >>> read_int_option("mxfp4[axis=foo]", "axis", "foo")
    Traceback (most recent call last):
    ...
    ValueError: 'mxfp4[axis=foo]': axis='foo' is not an int (write e.g. axis=0)
    """
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name!r}: {option}={text!r} is not an int (write e.g. "
                         f"{option.replace(' ', '_')}=0)") from None


def register_name(prefix: str, factory) -> None:
    """Let :func:`parse` read names starting with ``prefix`` through ``factory(name)``.

    >>> import fpsim
    >>> fpsim.parse("mxfp4").kind  # a name fpsim.block registered
    'block'
    """
    _NAME_HOOKS[prefix.lower()] = factory


def parse(name: str) -> Format:
    """Read a format from its name (``parse(fmt.name) == fmt`` for every format).

    Accepts the names of :func:`list_formats`, ``e{E}m{M}`` with an optional bias
    ``b{bias}``, family suffix (``fn``, ``fnuz``, ``finite``, ``ieee``, ``p3109``...),
    ``u`` prefix (unsigned) and ``_ftz`` suffix (no subnormals);
    ``p3109_k{K}p{P}[se|sf|ue|uf]``; ``int{N}``, ``uint{N}``, ``int{N}_narrow``;
    ``fixed{N}f{F}``; ``dint{N}``; ``nf4``; ``codebook[v0,v1,...]``. Case-insensitive.

    >>> import fpsim
    >>> fpsim.parse("e4m3fnuz")
    FloatFormat(4, 3, family='fnuz')
    >>> fpsim.parse("e5m2b11")
    FloatFormat(5, 2, bias=11)
    """
    if isinstance(name, Format):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a format name must be a str, got {type(name).__name__}")
    key = re.sub(r"-(?![0-9.])", "_", name.strip().lower())  # keep minus signs of numbers
    hit = _PARSE_CACHE.get(key)
    if hit is not None:
        return hit
    fmt = _parse_uncached(key, name)
    if len(_PARSE_CACHE) < 4096:
        _PARSE_CACHE[key] = fmt
    return fmt


def _parse_uncached(key: str, original: str) -> Format:
    key = SYNONYMS.get(key, key)
    for prefix, factory in _NAME_HOOKS.items():
        if key.startswith(prefix):
            return factory(key)
    ftz = key.endswith("_ftz") and not key.startswith(("int", "uint", "fixed", "ufixed"))
    base = key[:-4] if ftz else key
    if base in FLOAT_ALIASES:
        E, M, fam, bias, signed = FLOAT_ALIASES[base]
        return FloatFormat(E, M, bias=bias, family=fam, signed=signed, subnormals=not ftz)
    if base in CODEBOOKS and not ftz:
        return CodebookFormat(CODEBOOKS[base])
    m = _FLOAT_RE.match(key)
    if m:
        u, E, M, bias, fam, ftz_s = m.groups()
        E, M = int(E), int(M)
        bare = f"e{E}m{M}"
        if fam is None:  # a well-known eXmY keeps its family (e4m3: fn), with any bias
            fam = FLOAT_ALIASES[bare][2] if bare in FLOAT_ALIASES else DEFAULT_FAMILY
        signed = not u and encoding(fam, False).sign != "unsigned"
        return FloatFormat(E, M, bias=None if bias is None else int(bias), family=fam,
                           signed=signed, subnormals=ftz_s is None)
    m = _P3109_RE.match(key)
    if m:
        K, P, tag, ftz_s = m.groups()
        tag = tag or "se"
        f = p3109(int(K), int(P), signed=tag[0] == "s", domain="extended" if tag[1] == "e" else "finite")
        return f.replace(subnormals=False) if ftz_s else f
    m = _INT_RE.match(key)
    if m:
        return IntFormat(int(m.group(2)), signed=not m.group(1), narrow=bool(m.group(3)))
    m = _FIXED_RE.match(key)
    if m:
        return FixedFormat(int(m.group(2)), int(m.group(3)), signed=not m.group(1), narrow=bool(m.group(4)))
    m = _DINT_RE.match(key)
    if m:
        try:
            special = float(m.group(2)) if m.group(2) else 0.5
        except ValueError:
            raise ValueError(f"{original!r}: the dINT special value {m.group(2)!r} is not a number "
                             "(write e.g. dint4s0.25)") from None
        return DIntFormat(int(m.group(1)), special)
    m = _CODEBOOK_RE.match(key)
    if m:
        try:
            vals = [float(v) for v in m.group(1).split(",")]
        except ValueError:
            raise ValueError(f"cannot read the codebook values in {original!r}") from None
        return CodebookFormat(vals)
    known = list_formats() + list(SYNONYMS) + list(_NAME_HOOKS)
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"unknown format name {original!r}.{hint} Known names: {', '.join(list_formats())}; "
        "or e{E}m{M}[b{bias}][fn|fnuz|finite], p3109_k{K}p{P}, int{N}, fixed{N}f{F}, dint{N}."
    )


def as_format(fmt) -> Format:
    """Accept a :class:`Format` or a name.

    >>> import fpsim
    >>> fpsim.as_format("bf16") == fpsim.FloatFormat(8, 7)
    True
    """
    if isinstance(fmt, Format):
        return fmt
    if isinstance(fmt, str):
        return parse(fmt)
    raise TypeError(f"expected a Format or a format name, got {type(fmt).__name__}")
