"""Performance figures that join the layers: board projections and host-time benchmarks.

``projection``  a model's matmul shapes, through the cycle model (``host.accel.cycles``),
                on a board of ``hdl.spec.boards``: decode and prefill tok/s, roofline
``host_time``   the host's own (non-matmul) time per token, measured with free matmuls
"""
