"""Platforms: where the register-level driver's bus and memory go.

Each module implements ``host.accel.bus`` (a ``RegisterBus`` and a ``DeviceMemory``)
and offers ``backend(config)``, the ``DriverBackend`` the backend registry builds:

``sim``          the generated RTL in Verilator, in a simulator process (``sim.cosim``)
``kv260``        Linux on the Kria KV260: UIO registers, u-dma-buf memory
``link``         the link protocol's client: frames over any byte transport
``nexys_video``  the Nexys Video over its USB-UART link bridge
"""
