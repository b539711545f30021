"""Amaranth platforms of the two boards Systole deploys to (amaranth-boards has neither).

``hdl.boards.kv260.KV260Platform`` (Kria KV260, XCK26 Zynq UltraScale+) and
``hdl.boards.nexys_video.NexysVideoPlatform`` (Digilent Nexys Video, XC7A200T). The
accelerator itself reaches Vivado as packaged IP through ``gen.vivado``; these
platforms carry the pins the board designs use and build small bring-up designs
(``python -m hdl.boards.nexys_video``, ``python -m hdl.boards.kv260``).
"""
