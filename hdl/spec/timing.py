"""Fixed latencies of the RTL blocks, in cycles: stated here, built by the blocks.

Each block takes its latency from this table (``ActBuffer.LATENCY``,
``PE.RESULT_LATENCY``, ``JobCheck.LATENCY``) and its unit test measures it on the
Amaranth simulator; the cycle model (``host.accel.cycles``) reads the same numbers
instead of retyping them.
"""

from __future__ import annotations

from .job import product_bits

__all__ = ["ACT_BUFFER_READ", "PE_RESULT", "JOB_CHECK"]

# ActBuffer: a read address registered, the memory read, the output registered.
ACT_BUFFER_READ = 3
# PE: multiplier register, then the accumulator (a DSP48's MREG and PREG).
PE_RESULT = 2
# JobCheck, start to done: the arguments latched, one shift-add step per multiplier
# bit, the buffer ends summed, compared with the top of the address space, the result.
JOB_CHECK = 1 + product_bits() + 3
