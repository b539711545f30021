"""The numba-compiled int8 and int4 matmuls behind ``host.accel.kernels`` (imported only when used).

Importing this module imports numba (about 0.3 s) and loads the compiled code from
numba's on-disk cache, compiling it on the first run on a machine (about 2 s).
"""

from __future__ import annotations

import types

import llvmlite.binding as llvm_binding
import numba
import numpy as np
from llvmlite import ir
from numba import prange
from numba import types as numba_types
from numba.extending import intrinsic

_SIGNATURE = "void(int8[:, ::1], int8[:, ::1], int32[:, ::1])"


def _rows(x, w, out):
    # out[m, n] = sum_k x[m, k] * w[n, k]: one int32 reduction per output, which LLVM
    # vectorises (widen, multiply, add). Blocking several rows of x per weight row
    # defeated the vectoriser and ran 2-3x slower, measured. prange is plain range in
    # the serial build; the parallel build splits the output channels across threads
    # (numba's OpenMP layer when gcc's libgomp is present; its workqueue fallback costs
    # ~0.1 ms per call, measured, which only the classifier hides).
    m_total, k_total = x.shape
    for n in prange(w.shape[0]):
        for m in range(m_total):
            acc = np.int32(0)
            for k in range(k_total):
                acc += np.int32(x[m, k]) * np.int32(w[n, k])
            out[m, n] = acc


def _renamed(function, name: str):
    """``function`` under another name. numba's disk cache is keyed by the function's
    name, so a serial and a parallel build of one function would load each other's
    code; the parallel build compiles this copy instead."""
    copy = types.FunctionType(function.__code__, function.__globals__, name)
    copy.__qualname__ = name
    return copy


serial = numba.njit(_SIGNATURE, cache=True, boundscheck=False)(_rows)
parallel = numba.njit(_SIGNATURE, cache=True, boundscheck=False,
                      parallel=True)(_renamed(_rows, "_rows_parallel"))


# 4-bit weights (host.accel.kernels.int4_blocks): output channels in blocks of
# INT4_BLOCK = 16, one 512-bit vector of int32 sums. Per block and group of 32 steps, 256
# bytes of unsigned nibbles u = q + 8 then 16 scale bytes: chunk p (bytes 64p..64p+63)
# holds in byte 4c + i the step 4p + i of channel c in its low nibble and the step
# 16 + 4p + i in its high one. So a chunk masked to either nibble is the operand of
# vpdpbusd (u8 x s8, four adjacent products summed into each channel's int32 lane) with
# four steps of x broadcast to every lane: eight instructions do the block's 512 MACs
# of a group, as vertical sums per channel, with no horizontal reduction. Per group
# sum x * q * s = s * (sum x * u - 8 * sum x); every partial sum is exact in int32
# (|sum x * u| <= 32 * 15 * 128 per group, and K <= 65535 bounds the total as for
# int8), so the result is the int8 product of the effective weights bit for bit.
# The int8 loop above does 8 MACs per 3-4 instructions (128-bit vpmaddwd); this one
# ran 2.6x faster in cache and 5x faster from DRAM, measured (README.md, "4-bit weights").
INT4_BLOCK = 16
_INT4_SIGNATURE = "void(int8[:, ::1], uint8[:, :, ::1], int32[:, ::1])"


@numba.njit(cache=True, boundscheck=False)
def _group_sums8(x):
    """8 * the sums of each 32 steps of x [M, 32 G]: int32 [M, G]. Here rather than
    in numpy, whose reductions cost more than a small layer's whole product."""
    m_total, k_padded = x.shape
    sums = np.empty((m_total, k_padded // 32), np.int32)
    for m in range(m_total):
        for g in range(k_padded // 32):
            total = np.int32(0)
            for k in range(32 * g, 32 * g + 32):
                total += np.int32(x[m, k])
            sums[m, g] = 8 * total
    return sums
_VNNI = "llvm.x86.avx512.vpdpbusd.512"
_INT4_PREFETCH_AHEAD = 8 * 272     # bytes: eight groups of a block (a prefetch never faults)


def _target_has_vnni() -> bool:
    """Whether the code numba generates may use AVX-512 VNNI (the machine's features,
    or those NUMBA_CPU_FEATURES fixes for a portable cache)."""
    if numba.config.CPU_NAME and not numba.config.CPU_FEATURES:
        return False                                   # a named generic target
    features = numba.config.CPU_FEATURES or llvm_binding.get_host_cpu_features().flatten()
    flags = set(features.split(","))
    return {"+avx512f", "+avx512bw", "+avx512vnni"} <= flags


@intrinsic
def _vnni_group(typingctx, acc_address, block_address, x_address, x_sum8):
    """acc[0:16] += s * (sum_k u[c, k] * x[k] - x_sum8) for one block and group: the 256
    nibble bytes and 16 scale bytes at ``block_address``, 32 int8 of x at ``x_address``,
    ``x_sum8 = 8 * sum x`` over the group, 16 int32 sums at ``acc_address``."""
    signature = numba_types.void(numba_types.intp, numba_types.intp, numba_types.intp,
                                 numba_types.int32)

    def codegen(context, builder, sig, args):
        acc_address, block_address, x_address, x_sum8 = args
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        bytes64, lanes = ir.VectorType(i8, 64), ir.VectorType(i32, 16)
        module = builder.module
        vnni = module.globals.get(_VNNI) or ir.Function(
            module, ir.FunctionType(lanes, [lanes, bytes64, bytes64]), _VNNI)

        def pointer(address, offset, ty):
            return builder.inttoptr(builder.add(address, ir.Constant(i64, offset)), ir.PointerType(ty))

        def splat(value):
            vector = builder.insert_element(ir.Constant(lanes, ir.Undefined), value, ir.Constant(i32, 0))
            return builder.shuffle_vector(vector, vector, ir.Constant(lanes, [0] * 16))

        low, high = ir.Constant(bytes64, [0x0F] * 64), ir.Constant(bytes64, [0xF0] * 64)
        steps = [builder.bitcast(splat(builder.load(pointer(x_address, 4 * t, i32), align=1)), bytes64)
                 for t in range(8)]
        # The high nibbles are multiplied in place (16 u): one shift of their sum per
        # group instead of one per chunk, as shifts and vpdpbusd share a port. Four
        # independent chains of two, not one of eight, hide vpdpbusd's latency.
        chunks = [builder.load(pointer(block_address, 64 * p, bytes64), align=1) for p in range(4)]
        # Fetch the group eight ahead (its five lines): the hardware prefetcher alone
        # left a 262144 x 640 product at 5.5 GB/s from DRAM, this at 7.5, measured.
        prefetch = module.globals.get("llvm.prefetch.p0") or ir.Function(
            module, ir.FunctionType(ir.VoidType(), [ir.PointerType(i8), i32, i32, i32]), "llvm.prefetch.p0")
        for line in range(5):
            builder.call(prefetch, [pointer(block_address, _INT4_PREFETCH_AHEAD + 64 * line, i8),
                                    ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        zero = ir.Constant(lanes, [0] * 16)
        chains = []
        for mask, first_step in ((low, 0), (high, 4)):
            for pair in (0, 2):
                dot = zero
                for p in (pair, pair + 1):
                    dot = builder.call(vnni, [dot, builder.and_(chunks[p], mask), steps[first_step + p]])
                chains.append(dot)
        dot = builder.add(builder.add(chains[0], chains[1]),
                          builder.ashr(builder.add(chains[2], chains[3]), ir.Constant(lanes, [4] * 16)))
        scales = builder.zext(builder.load(pointer(block_address, 256, ir.VectorType(i8, 16)), align=1), lanes)
        acc_pointer = pointer(acc_address, 0, lanes)
        acc = builder.load(acc_pointer, align=4)
        acc = builder.add(acc, builder.mul(builder.sub(dot, splat(x_sum8)), scales))
        builder.store(acc, acc_pointer, align=4)
        return context.get_dummy_value()

    return signature, codegen


def _int4_blocks_vnni(x, blocks, out):
    # x [M, 32 G] int8 (zero past K), blocks [ceil(N / 16), G, 272] uint8,
    # out [M, 16 ceil(N / 16)] int32. The block's sums live in out itself (LLVM keeps
    # them in a register across the groups).
    m_total, k_padded = x.shape
    block_total, groups, block_bytes = blocks.shape
    x_address, blocks_address, out_address = x.ctypes.data, blocks.ctypes.data, out.ctypes.data
    n_padded = out.shape[1]
    x_sum8 = _group_sums8(x)
    for block in prange(block_total):
        for m in range(m_total):
            for c in range(INT4_BLOCK):
                out[m, block * INT4_BLOCK + c] = 0
            acc_address = out_address + 4 * (m * n_padded + block * INT4_BLOCK)
            for g in range(groups):
                _vnni_group(acc_address, blocks_address + block_bytes * (block * groups + g),
                            x_address + m * k_padded + 32 * g, x_sum8[m, g])


def _int4_blocks_portable(x, blocks, out):
    # The same sums in plain numba, for CPUs without AVX-512 VNNI (and to test the
    # layout against the vector kernel on one that has it). Straight loops over the 64
    # bytes of a chunk, against x tiled to match (byte 4 c + i meets step 4 p + i), so
    # that LLVM vectorises them; each channel's four lanes are added per group.
    m_total = x.shape[0]
    block_total, groups = blocks.shape[0], blocks.shape[1]
    x_sum8 = _group_sums8(x)
    tiled = np.empty((m_total, groups, 8, 64), np.int16)
    for m in range(m_total):
        for g in range(groups):
            for t in range(8):
                for j in range(64):
                    tiled[m, g, t, j] = x[m, 32 * g + 4 * t + (j & 3)]
    for block in prange(block_total):
        lanes = np.empty(64, np.int32)
        for m in range(m_total):
            for c in range(INT4_BLOCK):
                out[m, block * INT4_BLOCK + c] = 0
            for g in range(groups):
                lanes[:] = 0
                for p in range(4):
                    for j in range(64):
                        byte = np.int32(blocks[block, g, 64 * p + j])
                        lanes[j] += ((byte & 15) * np.int32(tiled[m, g, p, j])
                                     + (byte >> 4) * np.int32(tiled[m, g, p + 4, j]))
                for c in range(INT4_BLOCK):
                    dot = lanes[4 * c] + lanes[4 * c + 1] + lanes[4 * c + 2] + lanes[4 * c + 3]
                    out[m, block * INT4_BLOCK + c] += np.int32(blocks[block, g, 256 + c]) * (dot - x_sum8[m, g])


HAS_VNNI = _target_has_vnni()
_int4_blocks = _int4_blocks_vnni if HAS_VNNI else _int4_blocks_portable
_int4_name = _int4_blocks.__name__
int4_serial = numba.njit(_INT4_SIGNATURE, cache=True, boundscheck=False)(_renamed(_int4_blocks, _int4_name))
int4_parallel = numba.njit(_INT4_SIGNATURE, cache=True, boundscheck=False,
                           parallel=True)(_renamed(_int4_blocks, _int4_name + "_parallel"))
# compiled on first use: the tests check it against the vector kernel
int4_portable = numba.njit(cache=True, boundscheck=False)(_renamed(_int4_blocks_portable,
                                                                    "_int4_blocks_portable_lazy"))
set_num_threads = numba.set_num_threads
max_threads = numba.config.NUMBA_NUM_THREADS
