"""Platforms the driver runs on: each provides a ``RegisterBus`` and a ``DeviceMemory``.

- ``sim``: the generated RTL in Verilator under cocotb, memory shared through a file;
- ``kv260``: Linux on the Kria KV260, registers through UIO, memory from u-dma-buf.
"""
