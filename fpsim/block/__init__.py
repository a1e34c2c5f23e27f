"""Block-scaled formats (SPEC §1.5): OCP MX v1.0, NVFP4, and any element/scale pairing.

A :class:`BlockFormat` cuts a tensor into blocks of ``block`` consecutive elements along
``axis``; each block stores one scale (in the ``scale`` format) and its elements (in the
``elem`` format). A value decodes as ``element * scale`` (times an optional per-tensor scale),
exactly.

How the scale of a block is chosen (``scale_rounding``), with ``amax`` the block's largest
magnitude and ``emax_elem = floor(log2(elem.max))``:

============ ============================================================================
``floor``    OCP MX v1.0 §6.3: ``2**(floor(log2 amax) - emax_elem)``; the default for E8M0
``ceil``     torchao ``CEIL``: ``2**(ceil(log2 amax) - emax_elem)``
``even``     torchao ``EVEN``: ``amax`` first rounded to the element's precision (its
             fraction bits, ties away), then ``floor``: amax never rounds past ±max
``rceil``    torchao ``RCEIL`` / cuBLAS MX recipe: ``2**ceil(log2(amax / elem.max))``,
             the smallest power of two with which no element overflows
``rne`` ...  ``amax / elem.max`` rounded once into the scale format with that rounding
             mode (``rne``, ``rna``, ``rtz``, ``rup``, ``rdn``): NVFP4's E4M3 scales
============ ============================================================================

Power-of-two scales are clamped to the scale format's range (E8M0: ``2**-127 .. 2**127``).
Blocks whose amax is 0 get the smallest scale (E8M0 code 0; a zero scale for formats with a
zero). A block holding a NaN **or an infinity** gets a NaN scale (E8M0 code 0xFF) and decodes
to all NaN: ``log2(inf)`` has no E8M0 code (this follows torchao; gfloat instead clamps the
scale to ``2**127`` and saturates). Elements are rounded with any rounding mode (stochastic
included) and *saturate*: normals clamp to ``±elem.max`` as the MX spec asks.

The last block along the axis may be shorter when ``block`` does not divide the axis length
(``partial=True``, the default); its scale uses its own elements only. ``partial=False``
refuses such shapes.

The package, by concept: :mod:`~fpsim.block.descriptor` (:class:`BlockFormat`,
:class:`BlockCodes`, presets, names), :mod:`~fpsim.block.rules` (scale rules, precisions),
:mod:`~fpsim.block.engine` (kernel parameters and runs; also used by :mod:`fpsim.scaling`),
:mod:`~fpsim.block.packing` (:func:`pack`, :func:`unpack`) and :mod:`~fpsim.block.errors`
(:func:`block_errors`; the figure is :func:`fpsim.analysis.plot_block_error`).
"""

from .descriptor import MX_FORMATS, BlockCodes, BlockFormat
from .engine import BLOCK_CHUNK, TABLE_BLOCK_CHUNK  # copies for reading: tune them in engine
from .errors import block_errors
from .packing import pack, unpack
from .rules import POW2_RULES, SCALE_ROUNDINGS, VALUE_RULES, out_dtype

__all__ = ["BlockFormat", "BlockCodes", "MX_FORMATS", "SCALE_ROUNDINGS", "pack", "unpack",
           "block_errors", "out_dtype"]
