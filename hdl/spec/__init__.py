"""The facts the RTL, the host, the firmware and the Vivado flows share, each declared once.

Every module here imports only the standard library (an import test keeps it so),
so the host runtime reads them on a board without Amaranth:

``config``         ``AccelConfig``, the shape of one build, and its presets
``regmap``         the registers of ``s_axi_ctrl`` and the error codes
``job``            a job's argument fields and the rules that refuse a bad one
``dma``            how a job becomes DMA commands and AXI bursts (max_burst, 4 KiB)
``timing``         the fixed latencies of the RTL blocks
``boards``         the KV260 and the Nexys Video: parts, DRAM, windows, pins, clocks
``ddr``            the DRAM timing model: latency, shared cap, refresh, bank stalls
``link_protocol``  the serial/Ethernet link frames between a host and a Nexys Video

The Amaranth blocks (``hdl/*.py``), the C header and firmware vectors (``gen``), the
driver and cycle model (``host.accel``), the platforms (``host.platforms``) and the
Vivado files (``gen.vivado``) derive from these declarations instead of restating them.
"""
