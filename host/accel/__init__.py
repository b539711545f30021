"""The accelerator side: ``C[M, N] (int32) = A[M, K] (int8) x W[N, K]^T``, exactly.

``backend``   the contract every backend meets (``IntBackend``) and the registry of
              backends by name (``make_backend``)
``software``  the golden (exact int8) and float backends, on the CPU
``golden``    ``golden_matmul``: what the accelerator computes, bit for bit
``pack``      the packed weight layout the accelerator streams
``kernels``   the golden backend's exact int8 kernel (numba)
``driver``    the register-level driver, one code path for the simulator and the boards
``bus``       what the driver needs from a platform: ``RegisterBus``, ``DeviceMemory``
``hardware``  ``DriverBackend``: the contract over a driver
``cycles``    the cycle model of the RTL
``blas``      numpy's BLAS thread count
"""
