"""The Systole host runtime, in three layers (``host/README.md`` draws the data flow).

``host.llm``        the LLM side: model files, tokenizers, quantization, the transformer,
                    ``generate()``, profiling, quality. Knows nothing about hardware.
``host.accel``      the accelerator side: the backend contract and registry, the golden
                    model, weight packing, the register-level driver and the bus it
                    talks through, the cycle model. Knows nothing about LLMs.
``host.platforms``  where the bus goes: the RTL in a simulator, a KV260, a Nexys Video
                    over its link. Each implements ``host.accel.bus``.
``host.perf``       projections and host-time benchmarks that join the layers above.

``tests/test_layering.py`` keeps the layers apart: the LLM side never imports the
driver, the bus or a platform; nothing in ``host`` imports ``sim`` or ``gen``.
"""
