"""The LLM side: models, tokenizers, quantization, the transformer and ``generate()``.

Data flow: ``model`` loads a file into float32 weights and a tokenizer; ``layers``
names the linear layers; ``quant`` and ``linear`` quantize them and load them onto a
backend once; ``transformer`` runs the forward pass, sending every linear layer
through the ``linear(name, x)`` seam; ``generate`` samples tokens; ``profile`` says
where the time went; ``quality`` measures each quantization scheme against float.
The backend is reached only through ``host.accel.backend``'s contract.
"""
