"""The fused kernels' exp: a float32 e^x without libm, for their softmaxes.

``host.llm._numba_fused._exp`` takes e^x as 2^n e^r: ``n = rint(x log2 e)``, ``r = x -
n ln 2`` in two steps (``EXP_LN2_HI`` has few mantissa bits, so ``n EXP_LN2_HI`` is
exact), e^r by its Taylor polynomial to r^7 (``EXP_C``, Horner; |r| <= ln 2 / 2), 2^n
built in the exponent bits. Below ``EXP_MIN`` (and -inf) it is 0, which a softmax's
shifted scores (<= 0) reach only where e^x is below float32's normal range; NaN gives
NaN; the input is clamped to ``EXP_MAX``. Against float64 exp over [-87.3, 88] (every
0.000731): at most ``EXP_MAX_ULP`` ulp (1.17 measured; numpy's float32 ``np.exp`` 2.3),
``tests/test_fused.py``.

It vectorizes where libm's ``expf`` does not, and on the KV260's Cortex-A53 it replaces
~30 ns a call (the ``host.perf.a53`` constant) by ``EXP_FLOPS`` flops. The numpy paths
(``Transformer.attend``, ``OffloadedAttention``) keep ``np.exp``: the two paths' softmaxes
already sum in different orders, and the tests compare them within float32 tolerance.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EXP_LOG2E", "EXP_LN2_HI", "EXP_LN2_LO", "EXP_C", "EXP_MIN", "EXP_MAX", "EXP_FLOPS", "EXP_MAX_ULP"]

EXP_LOG2E = np.float32(1.4426950408889634)
EXP_LN2_HI = np.float32(0.693359375)              # 8 significant bits: n * EXP_LN2_HI is exact
EXP_LN2_LO = np.float32(-2.12194440e-4)           # ln 2 - EXP_LN2_HI
EXP_C = tuple(np.float32(c) for c in (1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 0.5, 1.0, 1.0))  # r^7 .. r^0
EXP_MIN = np.float32(-87.33654)                   # e^x below float32's smallest normal: 0
EXP_MAX = np.float32(88.0)                        # 2^127 at most
# x log2 e, rint, two multiply-subtracts (4), 7 Horner steps (14), the exponent bits (2),
# the product, the clamp and the range compare.
EXP_FLOPS = 25
EXP_MAX_ULP = 2
