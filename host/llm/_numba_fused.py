"""The numba kernels behind ``host.llm.fused``: everything one decode token does between
two accelerator jobs, each stage one compiled call.

float32 throughout, in the order ``host.llm.transformer`` and ``host.llm.quant`` compute
(``x * (w * inverse)`` for a norm, ``acc * (w_scale * x_scale)`` to dequantize, RoPE
as ``x * cos + swapped * sin``). Literals are ``np.float32``: a float64 literal times a
float32 value is float64 in numba as in numpy (``/work/shared/NOTES.md``). Sums of
squares accumulate in float64 and round once, so they sit within an ulp of numpy's
float32 BLAS sums, not bit-equal to them. Only the dot products of attention may be
reassociated (``_scores``), which lets LLVM vectorize them; nothing else is (no FMA
contraction, so RoPE and the scales round exactly as numpy's do).

Arrays come in preallocated; the kernels allocate nothing except the logits of
``dequantize_logits`` and, per ``attention`` call, one ``head_dim`` row into which a
bfloat16 KV cache row is widened (``_kv_row``: once per row, not once per query head).

**exp without libm.** The softmaxes take ``_exp`` (``host.llm.expf``): ``EXP_FLOPS``
flops a float32 e^x within ``EXP_MAX_ULP`` ulp, which vectorizes where libm's ``expf``
does not.

**tanh without libm.** ``_tanh`` is the host's one tanh (``host.llm.tanh``), a float32
rational approximation that vectorizes: ``TANH_FLOPS`` flops per element, within
``TANH_MAX_ULP`` ulp and ``TANH_MAX_ERROR`` of the exact tanh. ``gated_quantize`` uses
it, and ``Transformer.activation`` uses its numpy twin ``tanh32`` (bit-equal,
``tests/test_fused.py``), so the two paths' FFN activations stay equal.

**Jobs submitted from here.** Where the backend's driver has a compiled job path (the
KV260 and the Nexys Video's UDP link: ``host.accel.driver.CompiledJob``), each gap
kernel has a ``*_job`` twin that runs it and then submits the next accelerator job
itself: it calls ``firmware/replay.c``'s ``systole_job`` (or ``firmware/udp_bulk.c``'s
``systole_udp_job``, the same signature) through the address in the job's words
(``_systole_job``), checks ERR_CODE in the plan's read-back array and adds the job's
busy cycles to a counter. It returns the status (``JOB_DONE``: done, ERR_CODE 0;
``JOB_ERROR``: done with an error code; else ``systole_job``'s 0 timeout, -1 busy, -2
sync failure, or -3 the link failed) for the caller to hand to the driver's error path. The twins release the GIL (``nogil``) as ctypes does around
a foreign call: a job may wait on another thread (the tests' accelerator is one).
``token_jobs`` calls the twins in a token's order, so a whole decode token is one call.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

from .expf import EXP_C, EXP_FLOPS, EXP_LN2_HI, EXP_LN2_LO, EXP_LOG2E, EXP_MAX, EXP_MAX_ULP, EXP_MIN  # noqa: F401
from .tanh import TANH_CLAMP, TANH_FLOPS, TANH_MAX_ERROR, TANH_MAX_ULP, TANH_P, TANH_Q, TANH_TINY  # noqa: F401

_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_GELU_C = np.float32(0.7978845608028654)            # sqrt(2/pi), as transformer._GELU_C
_GELU_C3 = np.float32(0.7978845608028654 * 0.044715)
_REASSOC = {"reassoc"}

# _tanh: the host's one tanh (host.llm.tanh: the constants, the bound, tanh32 for numpy).
_TANH_CLAMP, _TANH_TINY, _TANH_P, _TANH_Q = TANH_CLAMP, TANH_TINY, TANH_P, TANH_Q

JOB_DONE, JOB_ERROR = 1, 2
# systole_job's 14 parameters (firmware/replay.c): p a pointer, u uint32_t, q uint64_t.
_JOB_PARAMETERS = "puuppuuuuqpupp"


# numba 0.68.1 can call a ctypes function object passed as an argument (it types as
# ExternalFunctionPointer, and its c_void_p parameters take integer addresses), but
# unboxing one costs three Python-level calls per dispatch (_numba_unpickle,
# get_pointer, cast: measured with sys.setprofile), and a ctypes global would bake one
# process's address into the cache. So the address travels as a uint64 word and this
# intrinsic calls through it: each word truncated to uint32 or turned into a pointer as
# the C parameter is declared.
@intrinsic
def _systole_job(typingctx, function, regs, status_offset, busy_mask, offsets, values, count,
                 ctrl_offset, start, done_mask, timeout_ns, read_offsets, read_count, read_values, io):
    """``systole_job(regs, ...)`` at the address ``function``, every argument a uint64 word."""
    arguments = (function, regs, status_offset, busy_mask, offsets, values, count, ctrl_offset, start,
                 done_mask, timeout_ns, read_offsets, read_count, read_values, io)
    if any(argument != types.uint64 for argument in arguments):
        return None
    signature = types.int32(*arguments)

    def codegen(context, builder, sig, args):
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        kinds = {"p": i8.as_pointer(), "u": i32, "q": i64}
        function_type = ir.FunctionType(i32, [kinds[kind] for kind in _JOB_PARAMETERS])
        values = [builder.inttoptr(value, kinds[kind]) if kind == "p" else
                  builder.trunc(value, i32) if kind == "u" else value
                  for value, kind in zip(args[1:], _JOB_PARAMETERS)]
        return builder.call(builder.inttoptr(args[0], function_type.as_pointer()), values)

    return signature, codegen


@intrinsic
def _load_u32(typingctx, address, index):
    """The uint32 at ``address`` (a uint64 word) + 4 ``index``."""
    if address != types.uint64 or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        base = builder.inttoptr(args[0], ir.IntType(32).as_pointer())
        offset = context.cast(builder, args[1], sig.args[1], types.intp)
        return builder.load(builder.gep(base, [offset]))

    return types.uint32(address, index), codegen


def _pointer_intrinsic(element):
    """An intrinsic: a pointer to ``element`` at ``address`` (a uint64 word), for
    ``numba.carray``."""
    @intrinsic
    def pointer_at(typingctx, address):
        if address != types.uint64:
            return None

        def codegen(context, builder, sig, args):
            return builder.inttoptr(args[0], context.get_value_type(element).as_pointer())

        return types.CPointer(element)(address), codegen

    return pointer_at


_uint16_at = _pointer_intrinsic(types.uint16)
_int8_at = _pointer_intrinsic(types.int8)
_float32_at = _pointer_intrinsic(types.float32)


def _bitcast_intrinsic(source, target):
    """An intrinsic: the bits of a ``source`` value read as ``target`` (same width)."""
    @intrinsic
    def bitcast(typingctx, x):
        if x != source:
            return None

        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], context.get_value_type(target))

        return target(x), codegen

    return bitcast


_float_bits = _bitcast_intrinsic(types.float32, types.uint32)      # float32 -> its bits
_bits_float = _bitcast_intrinsic(types.uint32, types.float32)      # bits -> the float32


@numba.njit(cache=True, inline="always")
def _bf16_float(bits):
    """The bfloat16 ``bits`` (a uint16) widened to float32: the bits shifted up 16, exact."""
    return _bits_float(np.uint32(np.uint32(bits) << np.uint32(16)))     # (numba widens a shift to 64 bits)


@numba.njit(cache=True, inline="always")
def _bf16(x):
    """float32 ``x`` rounded to bfloat16 bits, as ``host.llm.bf16.to_bf16``: to nearest,
    ties to even; NaN quiet."""
    bits = np.uint64(_float_bits(x))
    if x != x:
        return np.uint16((bits >> np.uint64(16)) | np.uint64(0x40))
    return np.uint16((bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16))


def _kv_store(x, like):
    """``x`` (float32) as an element of KV cache array ``like``: bfloat16 bits for a
    uint16 cache, itself for float32 (numba picks one by ``like``'s type)."""


@overload(_kv_store, inline="always")
def _kv_store_typed(x, like):
    if like.dtype == types.uint16:
        return lambda x, like: _bf16(x)
    if like.dtype == types.float32:
        return lambda x, like: x
    return None


def _kv_row(row, wide):
    """The float32 values of KV cache row ``row``: ``row`` itself for a float32 cache; a
    bfloat16 row widened into ``wide`` (once per row, not once per query head)."""


@overload(_kv_row, inline="always")
def _kv_row_typed(row, wide):
    if row.dtype == types.float32:
        return lambda row, wide: row
    if row.dtype == types.uint16:
        def widen(row, wide):
            for j in range(row.shape[0]):
                wide[j] = _bf16_float(row[j])
            return wide
        return widen
    return None


@numba.njit(cache=True, boundscheck=False, inline="always")
def _submit(job, cycles):
    """Run the ``CompiledJob`` whose words are ``job``; on success add its PERF_BUSY to
    ``cycles[0]``. The status (module docstring)."""
    status = _systole_job(job[0], job[1], job[2], job[3], job[4], job[5], job[6], job[7], job[8],
                          job[9], job[10], job[11], job[12], job[13], job[14])
    if status != JOB_DONE:
        return status
    read_values, read_count = job[13], job[12]
    if _load_u32(read_values, read_count - np.uint64(1)) != 0:      # ERR_CODE, the last word read
        return JOB_ERROR
    cycles[0] += _load_u32(read_values, 0)               # PERF_BUSY, the first
    return JOB_DONE


@numba.njit(cache=True, boundscheck=False, fastmath=_REASSOC)
def _scores(q, keys, scores, wide):
    """``scores[g, t] = q[g] . keys[t]`` (``q [group, hd]``, ``keys [T, hd]`` float32 or
    bfloat16, widened into ``wide [hd]``): float32 dot products, reassociated so they
    vectorize (this function only: numba compiles it apart, with its own flags)."""
    count, hd = keys.shape
    for t in range(count):
        row = _kv_row(keys[t], wide)
        for g in range(q.shape[0]):
            total = np.float32(0.0)
            for j in range(hd):
                total += q[g, j] * row[j]
            scores[g, t] = total


@numba.njit(cache=True, boundscheck=False)
def _softmax_rows(scores):
    """Softmax of each row of ``scores [rows, T]`` in place: shift by the max, exp,
    divide by the sum (``Transformer.attend``'s order)."""
    rows, count = scores.shape
    for r in range(rows):
        top = np.float32(-np.inf)
        for t in range(count):
            if scores[r, t] > top:
                top = scores[r, t]
        total = np.float32(0.0)
        for t in range(count):
            e = _exp(scores[r, t] - top)
            scores[r, t] = e
            total += e
        for t in range(count):
            scores[r, t] = scores[r, t] / total


@numba.njit(cache=True, boundscheck=False)
def _weighted_values(p, values, out, wide):
    """``out = p @ values`` (``p [group, T]``, ``values [T, hd]`` float32 or bfloat16,
    widened into ``wide [hd]``, ``out [group, hd]``) in one pass over the values."""
    count, hd = values.shape
    for g in range(out.shape[0]):
        for j in range(hd):
            out[g, j] = np.float32(0.0)
    for t in range(count):
        value = _kv_row(values[t], wide)
        for g in range(out.shape[0]):
            weight = p[g, t]
            for j in range(hd):
                out[g, j] += weight * value[j]


@numba.njit(cache=True, boundscheck=False, inline="always")
def _exp(x):
    """float32 e^x without libm (``host.llm.expf``): 0 below ``EXP_MIN`` and for -inf,
    NaN for NaN, the input clamped to ``EXP_MAX``."""
    if not (x >= EXP_MIN):
        return x if x != x else np.float32(0.0)
    x = min(x, EXP_MAX)
    n = np.rint(x * EXP_LOG2E)
    r = x - n * EXP_LN2_HI
    r = r - n * EXP_LN2_LO
    return _horner(EXP_C, r) * _bits_float(np.uint32((np.int32(n) + np.int32(127)) << np.int32(23)))


@numba.njit(cache=True, boundscheck=False)
def exp_into(x, out):
    """``out[i] = _exp(x[i])``: the fused kernels' exp over an array (tests, timing)."""
    for i in range(x.shape[0]):
        out[i] = _exp(x[i])


@numba.njit(cache=True, boundscheck=False, inline="always")
def _horner(coefficients, x):
    """``coefficients`` (highest power first) at ``x`` by Horner's rule, in their type."""
    p = coefficients[0]
    for c in coefficients[1:]:
        p = p * x + c
    return p


@numba.njit(cache=True, boundscheck=False, inline="always")
def _tanh(x):
    """float32 tanh without libm (module docstring): NaN in, NaN out; +-inf give +-1."""
    c = min(max(x, -_TANH_CLAMP), _TANH_CLAMP)
    x2 = c * c
    r = (c * _horner(_TANH_P, x2)) / _horner(_TANH_Q, x2)
    r = x if abs(x) < _TANH_TINY else r
    return x if x != x else r


@numba.njit(cache=True, boundscheck=False)
def tanh_into(x, out):
    """``out[i] = _tanh(x[i])``: the fused kernels' tanh over an array (tests, timing)."""
    for i in range(x.shape[0]):
        out[i] = _tanh(x[i])


@numba.njit(cache=True, boundscheck=False, inline="always")
def _inverse_rms(x, x0, n, eps):
    """``1 / sqrt(mean(x[x0:x0+n]^2) + eps)`` as ``rms_norm``'s one-token path: float32."""
    total = 0.0
    for j in range(x0, x0 + n):
        v = np.float64(x[j])
        total += v * v
    mean_square = np.float32(total) / np.float32(n)
    return _ONE / np.sqrt(mean_square + eps)


@numba.njit(cache=True, boundscheck=False, inline="always")
def _norm_quantize(x, weight, eps, h, q, scale, qmax_inverse, tiny):
    """``h = rms_norm(x, weight)``, then ``q, scale`` = ``quantize_row(h)``."""
    n = x.shape[0]
    inverse = _inverse_rms(x, 0, n, eps)
    for j in range(n):
        h[j] = x[j] * (weight[j] * inverse)
    _quantize(h, n, q, scale, qmax_inverse, tiny)


@numba.njit(cache=True, boundscheck=False, inline="always")
def _quantize(h, n, q, scale, qmax_inverse, tiny):
    """``host.llm._numba_quant.quantize_row`` on ``h[:n]`` into ``q [1, n]``."""
    amax = np.float32(0.0)
    for j in range(n):
        a = abs(h[j])
        if a > amax:
            amax = a
    s = max(amax * qmax_inverse, tiny)
    inverse = _ONE / s
    for j in range(n):
        q[0, j] = np.int8(np.rint(h[j] * inverse))
    scale[0] = s


@numba.njit(cache=True, boundscheck=False, inline="always")
def _dequantize(acc, w_scale, x_scale, y):
    """``y = acc * (w_scale * x_scale)``: ``QuantizedLinears``' one-token dequantize."""
    for j in range(y.shape[0]):
        y[j] = np.float32(acc[0, j]) * (w_scale[j] * x_scale)


@numba.njit(cache=True, boundscheck=False)
def embed_norm_quantize(table, token, embed_scale, scaled, x, weight, eps, h, q, scale,
                        qmax_inverse, tiny):
    """Before a token's first job: ``x = table[token] (* embed_scale)``, then the first
    layer's attention norm, quantized into ``q``."""
    for j in range(x.shape[0]):
        x[j] = table[token, j] * embed_scale if scaled else table[token, j]
    _norm_quantize(x, weight, eps, h, q, scale, qmax_inverse, tiny)


@numba.njit(cache=True, boundscheck=False, inline="always")
def _qkv_prepare(acc, w_scale, x_scale, bias, has_bias, qk_norm, has_qk_norm, eps, inv_head_dim,
                 cos, sin, position, qk_heads, hd, qkv):
    """The qkv job's result in ``qkv``: dequantize (+ bias), the per-head q/k RMSNorm of
    the first ``qk_heads`` heads, RoPE at ``position`` (rows of ``cos``/``sin``)."""
    half = hd // 2
    _dequantize(acc, w_scale, x_scale, qkv)
    if has_bias:
        for j in range(qkv.shape[0]):
            qkv[j] += bias[j]
    if has_qk_norm:        # rms_norm's general path: x * (w / sqrt(mean(x^2) + eps))
        for head in range(qk_heads):
            base = head * hd
            total = 0.0
            for j in range(base, base + hd):
                v = np.float64(qkv[j])
                total += v * v
            root = np.sqrt(np.float32(total) * inv_head_dim + eps)
            for j in range(hd):
                qkv[base + j] = qkv[base + j] * (qk_norm[head, j] / root)
    for head in range(qk_heads):      # RoPE, half-split pairs: x * cos + swap_halves(x) * sin
        base = head * hd
        for j in range(half):
            lo, hi = qkv[base + j], qkv[base + half + j]
            rotated_lo = lo * cos[position, j]
            rotated_lo += hi * sin[position, j]
            rotated_hi = hi * cos[position, half + j]
            rotated_hi += lo * sin[position, half + j]
            qkv[base + j], qkv[base + half + j] = rotated_lo, rotated_hi


@numba.njit(cache=True, boundscheck=False)
def attention(acc, w_scale, x_scale, bias, has_bias, qk_norm, has_qk_norm, eps, inv_head_dim,
              cos, sin, position, keys, values, first, attn_scale, n_heads, qkv, scores,
              attended, q, scale, qmax_inverse, tiny):
    """Between the qkv job and the attn_out job: dequantize (+ bias), per-head q/k
    RMSNorm, RoPE at ``position`` (rows of ``cos``/``sin``), append k and v to the cache
    at ``position``, softmax attention of the query heads over cached positions
    ``first..position``, then quantize the result ``[H * hd]`` into ``q``."""
    n_kv, _, hd = keys.shape
    _qkv_prepare(acc, w_scale, x_scale[0], bias, has_bias, qk_norm, has_qk_norm, eps, inv_head_dim,
                 cos, sin, position, n_heads + n_kv, hd, qkv)
    k0, v0 = n_heads * hd, (n_heads + n_kv) * hd
    for kv in range(n_kv):
        for j in range(hd):
            keys[kv, position, j] = _kv_store(qkv[k0 + kv * hd + j], keys)
            values[kv, position, j] = _kv_store(qkv[v0 + kv * hd + j], values)
    group = n_heads // n_kv
    count = position + 1 - first
    for j in range(n_heads * hd):
        qkv[j] = qkv[j] * attn_scale
    heads = qkv[:n_heads * hd].reshape(n_kv, group, hd)      # [KV, group, hd]
    out = attended.reshape(n_kv, group, hd)
    probabilities = scores[:group * count].reshape(group, count)
    wide = np.empty(hd, np.float32)          # a bfloat16 row widened (unused for float32)
    for kv in range(n_kv):
        _scores(heads[kv], keys[kv, first:position + 1], probabilities, wide)
        _softmax_rows(probabilities)
        _weighted_values(probabilities, values[kv, first:position + 1], out[kv], wide)
    _quantize(attended, attended.shape[0], q, scale, qmax_inverse, tiny)


@numba.njit(cache=True, boundscheck=False)
def residual_norm_quantize(acc, w_scale, x_scale, post_norm, has_post_norm, x, weight, eps,
                           out, h, q, scale, qmax_inverse, tiny):
    """After attn_out or ffn_down: dequantize, the post-norm (Gemma), add to the residual
    ``x``, then the next norm (``weight``: ffn norm, next layer's attention norm or the
    output norm), quantized into ``q``."""
    _dequantize(acc, w_scale, x_scale[0], out)
    n = x.shape[0]
    if has_post_norm:
        inverse = _inverse_rms(out, 0, n, eps)
        for j in range(n):
            x[j] = x[j] + out[j] * (post_norm[j] * inverse)
    else:
        for j in range(n):
            x[j] = x[j] + out[j]
    _norm_quantize(x, weight, eps, h, q, scale, qmax_inverse, tiny)


@numba.njit(cache=True, boundscheck=False)
def gated_quantize(acc, w_scale, x_scale, gelu, gate_up, q, scale, qmax_inverse, tiny):
    """Between ffn_up_gate and ffn_down: dequantize ``[gate, up]``, GeGLU (tanh GELU) or
    SwiGLU in ``Transformer.activation``'s float32 order (``_tanh``, as its ``tanh32``),
    quantize the ``[F]`` result."""
    _dequantize(acc, w_scale, x_scale[0], gate_up)
    f = gate_up.shape[0] // 2
    for j in range(f):
        gate = gate_up[j]
        if gelu:
            inner = gate * gate
            inner *= _GELU_C3
            inner += _GELU_C
            inner *= gate
        else:
            inner = gate * _HALF
        hidden = _tanh(inner)
        hidden *= _HALF
        hidden += _HALF
        hidden *= gate
        hidden *= gate_up[f + j]
        gate_up[j] = hidden              # the gate half becomes the FFN's hidden vector
    _quantize(gate_up, f, q, scale, qmax_inverse, tiny)


# -- the gap kernels with the next job submitted (the module docstring) ----------------

@numba.njit(cache=True, boundscheck=False, nogil=True)
def embed_norm_quantize_job(job, cycles, table, token, embed_scale, scaled, x, weight, eps, h, q, scale,
                            qmax_inverse, tiny):
    """``embed_norm_quantize``, then ``job``; its status."""
    embed_norm_quantize(table, token, embed_scale, scaled, x, weight, eps, h, q, scale, qmax_inverse, tiny)
    return _submit(job, cycles)


@numba.njit(cache=True, boundscheck=False, nogil=True)
def attention_job(job, cycles, acc, w_scale, x_scale, bias, has_bias, qk_norm, has_qk_norm, eps,
                  inv_head_dim, cos, sin, position, keys, values, first, attn_scale, n_heads, qkv, scores,
                  attended, q, scale, qmax_inverse, tiny):
    """``attention``, then ``job``; its status."""
    attention(acc, w_scale, x_scale, bias, has_bias, qk_norm, has_qk_norm, eps, inv_head_dim, cos, sin,
              position, keys, values, first, attn_scale, n_heads, qkv, scores, attended, q, scale,
              qmax_inverse, tiny)
    return _submit(job, cycles)


@numba.njit(cache=True, boundscheck=False, nogil=True)
def residual_norm_quantize_job(job, cycles, acc, w_scale, x_scale, post_norm, has_post_norm, x, weight,
                               eps, out, h, q, scale, qmax_inverse, tiny):
    """``residual_norm_quantize``, then ``job``; its status."""
    residual_norm_quantize(acc, w_scale, x_scale, post_norm, has_post_norm, x, weight, eps, out, h, q,
                           scale, qmax_inverse, tiny)
    return _submit(job, cycles)


@numba.njit(cache=True, boundscheck=False, nogil=True)
def gated_quantize_job(job, cycles, acc, w_scale, x_scale, gelu, gate_up, q, scale, qmax_inverse, tiny):
    """``gated_quantize``, then ``job``; its status."""
    gated_quantize(acc, w_scale, x_scale, gelu, gate_up, q, scale, qmax_inverse, tiny)
    return _submit(job, cycles)


@numba.njit(cache=True, boundscheck=False, inline="always")
def _chunk_max(values, count):
    """``max(values[:count])`` for values known to hold no NaN, in four independent
    lanes (one long chain of compares runs ~4x slower). Exact: max does not round."""
    a = b = c = d = values[0]
    j = 0
    while j + 4 <= count:
        if values[j] > a:
            a = values[j]
        if values[j + 1] > b:
            b = values[j + 1]
        if values[j + 2] > c:
            c = values[j + 2]
        if values[j + 3] > d:
            d = values[j + 3]
        j += 4
    top = max(max(a, b), max(c, d))
    for k in range(j, count):
        if values[k] > top:
            top = values[k]
    return top


ARGMAX_BLOCK = 32


def argmax_bounds(w_scale: np.ndarray) -> np.ndarray:
    """What ``argmax_logit`` needs besides the scales: the largest ``w_scale`` of each
    block of ``ARGMAX_BLOCK`` vocabulary entries (float32), each +inf when some scale is
    negative or not finite (no bound holds then: every logit is computed)."""
    w_scale = np.asarray(w_scale, np.float32)
    n = w_scale.shape[0]
    padded = np.full(-(-n // ARGMAX_BLOCK) * ARGMAX_BLOCK, -np.inf, np.float32)
    padded[:n] = w_scale
    blocks = padded.reshape(-1, ARGMAX_BLOCK).max(axis=1)
    if not (np.all(np.isfinite(w_scale)) and np.all(w_scale >= 0)):
        blocks[:] = np.inf
    return blocks


@numba.njit(cache=True, boundscheck=False, inline="always")
def _bounded(w_block, x_scale):
    """Whether the block bounds hold: ``max(w_block) * x_scale`` finite and ``x_scale`` > 0."""
    top_scale = w_block[0]
    for b in range(1, w_block.shape[0]):
        if w_block[b] > top_scale:
            top_scale = w_block[b]
    bound = top_scale * x_scale
    return bound - bound == 0 and x_scale > 0


@numba.njit(cache=True, boundscheck=False)
def argmax_logit(acc, w_scale, x_scale, w_block, scanned):
    """``(index, value)`` of ``np.argmax(acc * (w_scale * x_scale))`` without the logits:
    the first maximum, or the first NaN (as ``np.argmax``).

    ``w_block`` is ``argmax_bounds(w_scale)``. A logit is NaN only if some ``w_scale *
    x_scale`` is not finite (an int32 sum is finite); when ``max(w_block) * x_scale`` is
    finite and positive no logit can be NaN, and the vocabulary goes in blocks of
    ``ARGMAX_BLOCK``. A block whose logits cannot beat the best so far is skipped on its
    sums alone: with every scale >= 0 and ``x_scale`` > 0, each logit of a block is at
    most ``float32(max sum) * (w_block * x_scale)`` (rounding is monotonic: a larger
    operand never gives a smaller product), or 0 when its largest sum is <= 0; a block
    whose bound is <= the best is skipped (an equal logit later would not be the first
    maximum). The others' logits are computed as before, their maximum found in four
    lanes and scanned for only when it beats the best. Exact: the same index and value
    as the full scan. ``scanned[0]`` counts the blocks whose logits were computed.
    Otherwise one exact scan with NaN checks (every block counted)."""
    x_scale = x_scale[0]
    n = w_scale.shape[0]
    blocks = w_block.shape[0]
    if not _bounded(w_block, x_scale):                    # inf, NaN or x_scale <= 0: the full scan
        scanned[0] += blocks
        best = np.float32(acc[0, 0]) * (w_scale[0] * x_scale)
        if best != best:
            return 0, best
        index = 0
        for j in range(1, n):
            value = np.float32(acc[0, j]) * (w_scale[j] * x_scale)
            if value > best:
                best, index = value, j
            elif value != value:
                return j, value
        return index, best
    chunk = np.empty(ARGMAX_BLOCK, np.float32)
    best = np.float32(0.0)
    index = -1
    zero = np.float32(0.0)
    for b in range(blocks):
        c0 = b * ARGMAX_BLOCK
        count = min(n - c0, ARGMAX_BLOCK)
        if index >= 0:
            m0 = m1 = m2 = m3 = acc[0, c0]
            j = 0
            while j + 4 <= count:
                m0 = max(m0, acc[0, c0 + j])
                m1 = max(m1, acc[0, c0 + j + 1])
                m2 = max(m2, acc[0, c0 + j + 2])
                m3 = max(m3, acc[0, c0 + j + 3])
                j += 4
            top_sum = max(max(m0, m1), max(m2, m3))
            for k in range(j, count):
                top_sum = max(top_sum, acc[0, c0 + k])
            if top_sum > 0:
                limit = np.float32(top_sum) * (w_block[b] * x_scale)
            else:
                limit = zero
            if limit <= best:
                continue
        scanned[0] += 1
        for j in range(count):
            chunk[j] = np.float32(acc[0, c0 + j]) * (w_scale[c0 + j] * x_scale)
        top = _chunk_max(chunk, count)
        if index < 0 or top > best:
            for j in range(count):
                if chunk[j] == top:
                    best, index = chunk[j], c0 + j
                    break
    return index, best


@numba.njit(cache=True, boundscheck=False)
def dequantize_logits(acc, w_scale, x_scale):
    """float32 logits ``[1, vocab]`` = ``acc * (w_scale * x_scale)``, a new array."""
    logits = np.empty((1, w_scale.shape[0]), np.float32)
    _dequantize(acc, w_scale, x_scale[0], logits[0])
    return logits


# -- the int4 classifier's shortlist (QuantScheme.shortlist, host.llm.linear.Shortlist) --
# The ``size`` largest int4 logits are recomputed from the int8 rows. Order: a larger
# value first, an equal value with a smaller index first (as ``Shortlist.apply`` picks
# them and as ``np.argmax`` takes the first maximum). A min-heap of ``size + 1``
# entries keeps the candidates and the best of the rest, whose int4 logit still counts.

@numba.njit(cache=True, boundscheck=False, inline="always")
def _worse(v0, i0, v1, i1):
    """Entry (v0, i0) ranks below (v1, i1)."""
    return v0 < v1 or (v0 == v1 and i0 > i1)


@numba.njit(cache=True, boundscheck=False)
def _heap_offer(values, indices, count, value, index):
    """Offer an entry to the min-heap of ``values.shape[0]`` entries holding ``count``;
    the new count."""
    cap = values.shape[0]
    if count == cap:
        if not _worse(values[0], indices[0], value, index):
            return count
        slot = 0                       # replace the root, sift down
        while True:
            child = 2 * slot + 1
            if child >= cap:
                break
            if child + 1 < cap and _worse(values[child + 1], indices[child + 1], values[child], indices[child]):
                child += 1
            if not _worse(values[child], indices[child], value, index):
                break
            values[slot], indices[slot] = values[child], indices[child]
            slot = child
        values[slot], indices[slot] = value, index
        return count
    slot = count                       # append, sift up
    while slot > 0:
        parent = (slot - 1) // 2
        if not _worse(value, index, values[parent], indices[parent]):
            break
        values[slot], indices[slot] = values[parent], indices[parent]
        slot = parent
    values[slot], indices[slot] = value, index
    return count + 1


@numba.njit(cache=True, boundscheck=False)
def _int8_logit(q8, row, q_x, w_scale, x_scale):
    """The int8 classifier's logit of vocabulary ``row``: ``float32(sum) * (w_scale * x_scale)``."""
    total = 0
    for k in range(q_x.shape[1]):
        total += np.int32(q8[row, k]) * np.int32(q_x[0, k])
    return np.float32(total) * (w_scale[row] * x_scale)


@numba.njit(cache=True, boundscheck=False)
def shortlist_argmax(acc, w_scale, x_scale, w_block, scanned, size, q8, s8, q_x):
    """Greedy over the shortlisted int4 classifier without the logits: ``(index, value)``
    of ``np.argmax`` of ``Shortlist.apply``'s result. The ``size + 1`` largest int4
    logits are found as ``argmax_logit`` finds one (blocks of ``ARGMAX_BLOCK`` whose
    bound cannot enter the heap are skipped on their sums; ``scanned[0]`` counts the
    others); the first ``size`` are recomputed from the int8 rows ``q8`` (scales ``s8``)
    and the activations ``q_x [1, K]``; the best of those and of the one left over wins.
    With a bound that is not finite (a scale not finite, ``x_scale`` <= 0), the int4
    ``argmax_logit`` answers alone."""
    xs = x_scale[0]
    n = w_scale.shape[0]
    blocks = w_block.shape[0]
    if not _bounded(w_block, xs):
        return argmax_logit(acc, w_scale, x_scale, w_block, scanned)
    cap = min(size + 1, n)
    values = np.empty(cap, np.float32)
    indices = np.empty(cap, np.int64)
    count = 0
    zero = np.float32(0.0)
    for b in range(blocks):
        c0 = b * ARGMAX_BLOCK
        stop = min(n, c0 + ARGMAX_BLOCK)
        if count == cap:               # a block wholly at or below the root cannot enter
            top_sum = acc[0, c0]
            for j in range(c0 + 1, stop):
                top_sum = max(top_sum, acc[0, j])
            limit = np.float32(top_sum) * (w_block[b] * xs) if top_sum > 0 else zero
            if limit <= values[0]:
                continue
        scanned[0] += 1
        for j in range(c0, stop):
            value = np.float32(acc[0, j]) * (w_scale[j] * xs)
            if count < cap or value > values[0]:    # (an equal value later ranks below the root)
                count = _heap_offer(values, indices, count, value, j)
    return _shortlist_best(values, indices, count, size, q8, s8, q_x, xs)


@numba.njit(cache=True, boundscheck=False)
def _shortlist_best(values, indices, count, size, q8, s8, q_x, xs):
    """From the heap: rank its entries, recompute the first ``size`` in int8 (in place,
    ``values`` then holds the final logits of ``indices``), and return the winner."""
    order = np.empty(count, np.int64)     # insertion sort, best first (size is small)
    for a in range(count):
        slot = a
        while slot > 0 and _worse(values[order[slot - 1]], indices[order[slot - 1]], values[a], indices[a]):
            order[slot] = order[slot - 1]
            slot -= 1
        order[slot] = a
    best_value = np.float32(0.0)
    best_index = -1
    for rank in range(count):
        e = order[rank]
        if rank < size:
            values[e] = _int8_logit(q8, indices[e], q_x, s8, xs)
        if best_index < 0 or _worse(best_value, best_index, values[e], indices[e]):
            best_value, best_index = values[e], indices[e]
    return best_index, best_value


@numba.njit(cache=True, boundscheck=False)
def shortlist_logits(acc, w_scale, x_scale, size, q8, s8, q_x):
    """Float32 logits ``[1, vocab]`` of the shortlisted int4 classifier (a new array):
    ``dequantize_logits``, then the ``size`` largest recomputed from the int8 rows."""
    logits = dequantize_logits(acc, w_scale, x_scale)
    row = logits[0]
    cap = min(size, row.shape[0])
    values = np.empty(cap, np.float32)
    indices = np.empty(cap, np.int64)
    count = 0
    for j in range(row.shape[0]):
        if count < cap or row[j] > values[0]:
            count = _heap_offer(values, indices, count, row[j], j)
    for e in range(count):
        row[indices[e]] = _int8_logit(q8, indices[e], q_x, s8, x_scale[0])
    return logits


# -- attention on the accelerator (host.llm.attention): three calls around two jobs ----

@numba.njit(cache=True, boundscheck=False)
def attention_prepare(acc, w_scale, x_scale, bias, has_bias, qk_norm, has_qk_norm, eps, inv_head_dim,
                      cos, sin, position, n_heads, n_kv, qkv, q_rows, q_scale, attn_scale, kv_rows,
                      kv_scale, qmax_inverse, tiny):
    """Between the qkv job and the first q.K^T job: dequantize (+ bias), q/k head norms
    and RoPE as ``attention``; then int8 per row: the query heads into ``q_rows [H, hd]``
    (``q_scale[h]`` = the row scale times ``attn_scale``), the new key and value of each
    KV head into ``kv_rows [2 KV, hd]`` (keys first) with ``kv_scale [2 KV]``."""
    hd = q_rows.shape[1]
    _qkv_prepare(acc, w_scale, x_scale[0], bias, has_bias, qk_norm, has_qk_norm, eps, inv_head_dim,
                 cos, sin, position, n_heads + n_kv, hd, qkv)
    for row in range(n_heads + 2 * n_kv):          # q heads, then k heads, then v heads
        base = row * hd
        amax = np.float32(0.0)
        for j in range(hd):
            a = abs(qkv[base + j])
            if a > amax:
                amax = a
        s = max(amax * qmax_inverse, tiny)
        inverse = _ONE / s
        if row < n_heads:
            for j in range(hd):
                q_rows[row, j] = np.int8(np.rint(qkv[base + j] * inverse))
            q_scale[row] = s * attn_scale
        else:
            for j in range(hd):
                kv_rows[row - n_heads, j] = np.int8(np.rint(qkv[base + j] * inverse))
            kv_scale[row - n_heads] = s


@numba.njit(cache=True, boundscheck=False)
def attention_softmax(acc, rows, q_scale, key_scale, value_scale, probabilities, a_q, a_scale,
                      staged_slots, staged_count, a_staged, qmax_inverse, tiny):
    """Between a q.K^T job and its p.V job: scores ``acc[:, :rows] * q_scale * key_scale``
    (``acc [group, >= rows]``: the job's columns, whole tiles),
    softmax per row, ``p * value_scale`` quantized per row into ``a_q [group, slots]``
    (zero past ``rows``: slots not yet filled) with ``a_scale [group]``; the entries of
    the values staged on the host (``staged_slots[:staged_count]``) move to
    ``a_staged [group, STAGED]`` and are zeroed in ``a_q``."""
    group = acc.shape[0]
    slots = a_q.shape[1]
    for g in range(group):
        p = probabilities[g * rows:(g + 1) * rows]
        top = np.float32(-np.inf)
        for t in range(rows):
            s = np.float32(acc[g, t]) * q_scale[g]
            s *= key_scale[t]
            p[t] = s
            if s > top:
                top = s
        total = np.float32(0.0)
        for t in range(rows):
            e = _exp(p[t] - top)
            p[t] = e
            total += e
        amax = np.float32(0.0)
        for t in range(rows):
            w = (p[t] / total) * value_scale[t]
            p[t] = w
            if w > amax:
                amax = w
        s = max(amax * qmax_inverse, tiny)
        inverse = _ONE / s
        for t in range(rows):
            a_q[g, t] = np.int8(np.rint(p[t] * inverse))
        for t in range(rows, slots):
            a_q[g, t] = 0
        a_scale[g] = s
        for i in range(staged_count):
            a_staged[g, i] = a_q[g, staged_slots[i]]
            a_q[g, staged_slots[i]] = 0


@numba.njit(cache=True, boundscheck=False)
def attention_finish(acc, a_staged, staged_values, staged_count, a_scale, attended, first_head, last,
                     q, scale, qmax_inverse, tiny):
    """After a p.V job: ``attended[head] = (acc [group, hd] + a_staged . staged_values) *
    a_scale`` (the staged values' terms in exact int32) for the group's heads from
    ``first_head``; after the last KV head's, quantize ``attended`` into ``q``."""
    group, hd = acc.shape
    for g in range(group):
        base = (first_head + g) * hd
        for j in range(hd):
            total = np.int32(acc[g, j])
            for i in range(staged_count):
                total += np.int32(a_staged[g, i]) * np.int32(staged_values[i, j])
            attended[base + j] = np.float32(total) * a_scale[g]
    if last:
        _quantize(attended, attended.shape[0], q, scale, qmax_inverse, tiny)


# -- the whole decode token in one call (host.llm.fused's one-call path) ---------------

@numba.njit(cache=True, boundscheck=False, inline="always")
def _layer_tail(jobs, job, up_cycles, down_cycles, next_cycles, acc_dim, acc_up, out_scale, up_scale,
                down_scale, post_attn_norm, ffn_norm, post_ffw_norm, next_norm, has_post_norm, gelu, eps, x,
                out, h, gate_up, q_dim, q_hidden, scale, qmax_inverse, tiny):
    """A layer after its attn_out job (``jobs[job]``): ``residual_norm_quantize_job``
    (ffn_up_gate), ``gated_quantize_job`` (ffn_down), ``residual_norm_quantize_job``
    (the next qkv or the classifier, its cycles to ``next_cycles``). Returns ``(status,
    the index of the job it is about)``."""
    status = residual_norm_quantize_job(jobs[job + 1], up_cycles, acc_dim, out_scale, scale, post_attn_norm,
                                        has_post_norm, x, ffn_norm, eps, out, h, q_dim, scale, qmax_inverse, tiny)
    if status != JOB_DONE:
        return status, job + 1
    status = gated_quantize_job(jobs[job + 2], down_cycles, acc_up, up_scale, scale, gelu, gate_up, q_hidden,
                                scale, qmax_inverse, tiny)
    if status != JOB_DONE:
        return status, job + 2
    status = residual_norm_quantize_job(jobs[job + 3], next_cycles, acc_dim, down_scale, scale, post_ffw_norm,
                                        has_post_norm, x, next_norm, eps, out, h, q_dim, scale, qmax_inverse, tiny)
    return status, job + 3

@numba.njit(cache=True, boundscheck=False, inline="always")
def _token_end(greedy, acc_vocab, classifier_scale, scale, classifier_block, scanned):
    """A one-call token's result after its last job: ``(JOB_DONE, -1, argmax, logit)``
    when ``greedy`` (``argmax_logit``), else ``(JOB_DONE, -1, -1, 0)``."""
    if greedy:
        best, value = argmax_logit(acc_vocab, classifier_scale, scale, classifier_block, scanned)
        return np.int64(JOB_DONE), np.int64(-1), np.int64(best), np.float32(value)
    return np.int64(JOB_DONE), np.int64(-1), np.int64(-1), np.float32(0.0)


@numba.njit(cache=True, boundscheck=False, nogil=True)
def token_jobs(jobs, cycles, table, token, embed_scale, scaled, first_norm, qkv_scales, biases, has_bias,
               qk_norms, has_qk_norm, is_global, cos_global, sin_global, cos_local, sin_local, position,
               first_local, kv_addresses, kv_shape, attn_scale, n_heads, inv_head_dim, out_scales, post_attn_norms,
               has_post_norm, ffn_norms, up_scales, gelu, down_scales, post_ffw_norms, next_norms, eps,
               x, h, out, qkv, scores, attended, gate_up, q_dim, q_heads, q_hidden, scale, acc_qkv, acc_dim,
               acc_up, acc_vocab, classifier_scale, classifier_block, scanned, greedy, qmax_inverse, tiny):
    """Every gap kernel of a decode token and every job after it, in the ``*_job`` twins'
    order: ``embed_norm_quantize_job``, then per layer ``attention_job``,
    ``residual_norm_quantize_job``, ``gated_quantize_job``, ``residual_norm_quantize_job``
    (the last one's job is the classifier); then, if ``greedy``, ``argmax_logit``.

    ``jobs [4 L + 1, 15]`` are the ``CompiledJob`` words in submission order (qkv of
    layer 0; per layer attn_out, ffn_up_gate, ffn_down, the next qkv or the classifier);
    their busy cycles go to ``cycles [5]`` by kind (qkv, attn_out, ffn_up_gate,
    ffn_down, classifier). Per-layer inputs are stacked ``[L, ...]`` (empty second axis
    where the model has none). The ``KVCache``'s per-layer arrays, bfloat16 (uint16) C-contiguous
    ``kv_shape`` each, are given by address: ``kv_addresses [2, L]`` (keys, then values;
    one array argument instead of 2 L, which numba unboxes one by one). Layer ``i``
    attends from position 0 with the global RoPE tables if ``is_global[i]``, else from
    ``first_local`` with the local ones.

    Returns ``(status, job, argmax, logit)``: status ``JOB_DONE`` and the argmax and its
    logit (-1 and 0 when not ``greedy``), or the first failing job's status and its
    index in ``jobs``, nothing after it run."""
    qkv_cycles, out_cycles, up_cycles = cycles[0:1], cycles[1:2], cycles[2:3]
    down_cycles, classifier_cycles = cycles[3:4], cycles[4:5]
    status = embed_norm_quantize_job(jobs[0], qkv_cycles, table, token, embed_scale, scaled, x, first_norm,
                                     eps, h, q_dim, scale, qmax_inverse, tiny)
    if status != JOB_DONE:
        return np.int64(status), np.int64(0), np.int64(-1), np.float32(0.0)
    layers = is_global.shape[0]
    for layer in range(layers):
        job = 1 + 4 * layer
        if is_global[layer]:
            cos, sin, first = cos_global, sin_global, 0
        else:
            cos, sin, first = cos_local, sin_local, first_local
        status = attention_job(jobs[job], out_cycles, acc_qkv, qkv_scales[layer], scale, biases[layer],
                               has_bias, qk_norms[layer], has_qk_norm, eps, inv_head_dim, cos, sin, position,
                               numba.carray(_uint16_at(kv_addresses[0, layer]), kv_shape),
                               numba.carray(_uint16_at(kv_addresses[1, layer]), kv_shape), first, attn_scale,
                               n_heads, qkv, scores, attended,
                               q_heads, scale, qmax_inverse, tiny)
        if status != JOB_DONE:
            return np.int64(status), np.int64(job), np.int64(-1), np.float32(0.0)
        status, failed = _layer_tail(jobs, job, up_cycles, down_cycles, classifier_cycles if layer == layers - 1
                                     else qkv_cycles, acc_dim, acc_up, out_scales[layer], up_scales[layer],
                                     down_scales[layer], post_attn_norms[layer], ffn_norms[layer],
                                     post_ffw_norms[layer], next_norms[layer], has_post_norm, gelu, eps, x, out, h,
                                     gate_up, q_dim, q_hidden, scale, qmax_inverse, tiny)
        if status != JOB_DONE:
            return np.int64(status), np.int64(failed), np.int64(-1), np.float32(0.0)
    return _token_end(greedy, acc_vocab, classifier_scale, scale, classifier_block, scanned)


# -- attention on the accelerator with the whole token in one call ------------------------

# A KV head's words in ``offloaded_token_jobs``' ``places [L, KV, PLACE_WORDS]`` (uint64):
# the keys matrix ``[slots, hd]`` packed, its host copy (address, port stride) and its
# device view (address, port stride); V^T ``[hd, slots]`` likewise; the addresses of the
# float32 key and value scales ``[slots]``; slots; the ring (0: none); the address of the
# int8 p.V input ``[group, slots]``.
PLACE_WORDS = 13


@numba.njit(cache=True, boundscheck=False, inline="always")
def _put_row(base, port_stride, cols, port_bytes, k, channel, row):
    """Output channel ``channel`` of an int8 matrix packed for ``cols`` columns over
    ``cols // port_bytes`` ports (``host.accel.pack``: one byte of each of its tile's
    ``k`` beats on one port), set to ``row [k]``; the port streams at ``base``,
    ``port_stride`` bytes apart."""
    tile = channel // cols
    within = channel - tile * cols
    port = within // port_bytes
    byte = within - port * port_bytes
    start = base + np.uint64(port) * port_stride + np.uint64(tile * k * port_bytes + byte)
    out = numba.carray(_int8_at(start), ((k - 1) * port_bytes + 1,))
    for j in range(k):
        out[j * port_bytes] = row[j]


@numba.njit(cache=True, boundscheck=False, inline="always")
def _put_column(base, port_stride, cols, port_bytes, n, k, step, column):
    """Step ``step`` of every output channel of an int8 ``[n, k]`` matrix packed as
    ``_put_row``'s, set to ``column [n]``: one beat of ``port_bytes`` per tile and port."""
    ports = cols // port_bytes
    for tile in range((n + cols - 1) // cols):
        for port in range(ports):
            c0 = tile * cols + port * port_bytes
            if c0 >= n:
                break
            start = base + np.uint64(port) * port_stride + np.uint64((tile * k + step) * port_bytes)
            out = numba.carray(_int8_at(start), (port_bytes,))
            for b in range(min(port_bytes, n - c0)):
                out[b] = column[c0 + b]


@numba.njit(cache=True, boundscheck=False, nogil=True)
def offloaded_attention_job(job, cycles, attention_jobs, attention_cycles, places, cols, port_bytes, acc, w_scale,
                            x_scale, bias, has_bias, qk_norm, has_qk_norm, eps, inv_head_dim, cos, sin, position,
                            n_heads, qkv, q_rows, q_scale, attn_scale, kv_rows, kv_scale, qk_acc, pv_acc,
                            probabilities, a_scale, no_slots, no_staged, no_staged_values, attended, q, scale,
                            qmax_inverse, tiny):
    """The attention gap of ``host.llm.fused``'s offloaded path with its jobs submitted
    from here, then ``job`` (attn_out): ``attention_prepare``; each KV head's new key
    row and value column written into its matrices' host copy and device view
    (``places [KV, PLACE_WORDS]``; no sync: the device view is ``direct_view``) and
    their scales; per KV head the q.K^T job over the visible keys in whole tiles
    (``attention_jobs[kv, tiles]``, into ``qk_acc``), ``attention_softmax``, the p.V job
    (``attention_jobs[kv, 0]``, into ``pv_acc``), ``attention_finish``. The attention
    jobs' busy cycles go to ``attention_cycles``. Returns ``(status, which)``: ``which``
    -1 for ``job``, else the failing job's index in ``attention_jobs`` flattened to
    ``[KV * (1 + T)]``."""
    n_kv = places.shape[0]
    hd = q_rows.shape[1]
    group = n_heads // n_kv
    attention_prepare(acc, w_scale, x_scale, bias, has_bias, qk_norm, has_qk_norm, eps, inv_head_dim, cos, sin,
                      position, n_heads, n_kv, qkv, q_rows, q_scale, attn_scale, kv_rows, kv_scale, qmax_inverse,
                      tiny)
    for kv in range(n_kv):
        place = places[kv]
        slots, ring = np.int64(place[10]), np.int64(place[11])
        slot = position if ring == 0 else position % ring
        for copy in range(2):                      # the host copy, then the device view
            _put_row(place[2 * copy], place[2 * copy + 1], cols, port_bytes, hd, slot, kv_rows[kv])
            _put_column(place[4 + 2 * copy], place[5 + 2 * copy], cols, port_bytes, hd, slots, slot,
                        kv_rows[n_kv + kv])
        numba.carray(_float32_at(place[8]), (slots,))[slot] = kv_scale[kv]
        numba.carray(_float32_at(place[9]), (slots,))[slot] = kv_scale[n_kv + kv]
    for kv in range(n_kv):
        place = places[kv]
        slots, ring = np.int64(place[10]), np.int64(place[11])
        rows = position + 1 if ring == 0 else min(position + 1, ring)
        tiles = (rows + cols - 1) // cols
        columns = min(slots, tiles * cols)                # the job's N: whole tiles, within the matrix
        status = _submit(attention_jobs[kv, tiles], attention_cycles)
        if status != JOB_DONE:
            return status, kv * attention_jobs.shape[1] + tiles
        attention_softmax(qk_acc[:group * columns].reshape(group, columns), rows,
                          q_scale[kv * group:(kv + 1) * group], numba.carray(_float32_at(place[8]), (slots,)),
                          numba.carray(_float32_at(place[9]), (slots,)), probabilities,
                          numba.carray(_int8_at(place[12]), (group, slots)), a_scale, no_slots, 0, no_staged,
                          qmax_inverse, tiny)
        status = _submit(attention_jobs[kv, 0], attention_cycles)
        if status != JOB_DONE:
            return status, kv * attention_jobs.shape[1]
        attention_finish(pv_acc, no_staged, no_staged_values, 0, a_scale, attended, kv * group, kv == n_kv - 1,
                         q, scale, qmax_inverse, tiny)
    return _submit(job, cycles), -1


@numba.njit(cache=True, boundscheck=False, nogil=True)
def offloaded_token_jobs(jobs, cycles, attention_jobs, attention_cycles, places, cols, port_bytes, table, token,
                         embed_scale, scaled, first_norm, qkv_scales, biases, has_bias, qk_norms, has_qk_norm,
                         is_global, cos_global, sin_global, cos_local, sin_local, position, attn_scale, n_heads,
                         inv_head_dim, out_scales, post_attn_norms, has_post_norm, ffn_norms, up_scales, gelu,
                         down_scales, post_ffw_norms, next_norms, eps, x, h, out, qkv, q_rows, q_scale, kv_rows,
                         kv_scale, qk_acc, pv_acc, probabilities, a_scale, no_slots, no_staged,
                         no_staged_values, attended, gate_up, q_dim, q_heads, q_hidden, scale, acc_qkv, acc_dim,
                         acc_up, acc_vocab, classifier_scale, classifier_block, scanned, greedy, qmax_inverse,
                         tiny):
    """``token_jobs`` with attention on the accelerator: each layer's attention gap is
    ``offloaded_attention_job`` (``attention_jobs [L, KV, 1 + T, 15]``: the p.V job,
    then the q.K^T job over 1..T tiles of keys; ``places [L, KV, PLACE_WORDS]``), the
    rest as ``token_jobs``. A failing attention job's index is ``len(jobs)`` plus its
    index in ``attention_jobs`` flattened to ``[L * KV * (1 + T)]``."""
    qkv_cycles, out_cycles, up_cycles = cycles[0:1], cycles[1:2], cycles[2:3]
    down_cycles, classifier_cycles = cycles[3:4], cycles[4:5]
    status = embed_norm_quantize_job(jobs[0], qkv_cycles, table, token, embed_scale, scaled, x, first_norm,
                                     eps, h, q_dim, scale, qmax_inverse, tiny)
    if status != JOB_DONE:
        return np.int64(status), np.int64(0), np.int64(-1), np.float32(0.0)
    layers, n_kv = places.shape[0], places.shape[1]
    for layer in range(layers):
        job = 1 + 4 * layer
        if is_global[layer]:
            cos, sin = cos_global, sin_global
        else:
            cos, sin = cos_local, sin_local
        status, which = offloaded_attention_job(
            jobs[job], out_cycles, attention_jobs[layer], attention_cycles, places[layer], cols, port_bytes,
            acc_qkv, qkv_scales[layer], scale, biases[layer], has_bias, qk_norms[layer], has_qk_norm, eps,
            inv_head_dim, cos, sin, position, n_heads, qkv, q_rows, q_scale, attn_scale, kv_rows, kv_scale, qk_acc,
            pv_acc, probabilities, a_scale, no_slots, no_staged, no_staged_values, attended, q_heads, scale,
            qmax_inverse, tiny)
        if status != JOB_DONE:
            failed = job if which < 0 else jobs.shape[0] + layer * n_kv * attention_jobs.shape[2] + which
            return np.int64(status), np.int64(failed), np.int64(-1), np.float32(0.0)
        status, failed = _layer_tail(jobs, job, up_cycles, down_cycles, classifier_cycles if layer == layers - 1
                                     else qkv_cycles, acc_dim, acc_up, out_scales[layer], up_scales[layer],
                                     down_scales[layer], post_attn_norms[layer], ffn_norms[layer],
                                     post_ffw_norms[layer], next_norms[layer], has_post_norm, gelu, eps, x, out, h,
                                     gate_up, q_dim, q_hidden, scale, qmax_inverse, tiny)
        if status != JOB_DONE:
            return np.int64(status), np.int64(failed), np.int64(-1), np.float32(0.0)
    return _token_end(greedy, acc_vocab, classifier_scale, scale, classifier_block, scanned)
