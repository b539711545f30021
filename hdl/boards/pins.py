"""Amaranth resources built from the board registry's pins (``hdl.spec.boards``).

The platforms state which registry pins they expose and under which resource names;
site, I/O standard and polarity come from the ``Pin`` itself, so a pin is typed once.
"""

from __future__ import annotations

from amaranth.build import Attrs, Pins, PinsN, Resource, Subsignal

from hdl.spec.boards import Board, Pin

__all__ = ["pins", "attrs", "pin_resource", "pin_subsignal", "group_resources"]


def pins(pin: Pin, dir: str) -> Pins:
    """One-bit ``Pins`` on ``pin.site``; ``PinsN`` when the board wires it active low."""
    return (PinsN if pin.active_low else Pins)(pin.site, dir=dir, assert_width=1)


def attrs(pin: Pin, **extra: str) -> Attrs:
    """``IOSTANDARD`` of ``pin`` plus ``extra`` attributes (slew, drive: the design's choice)."""
    return Attrs(IOSTANDARD=pin.iostandard, **extra)


def pin_resource(name: str, number: int, pin: Pin, dir: str, *extras, **extra_attrs: str) -> Resource:
    """Resource ``name``/``number`` on ``pin``; ``extras`` are more ``Clock``/``Attrs`` items."""
    return Resource(name, number, pins(pin, dir), attrs(pin, **extra_attrs), *extras)


def pin_subsignal(name: str, pin: Pin, dir: str) -> Subsignal:
    """Subsignal ``name`` of a multi-pin resource, on ``pin`` with its own I/O standard."""
    return Subsignal(name, pins(pin, dir), attrs(pin))


def group_resources(board: Board, stem: str, name: str, dir: str) -> list[Resource]:
    """``name`` 0, 1, ... on the board's pins ``stem0``, ``stem1``, ... (``Board.pin_group``)."""
    return [pin_resource(name, number, pin, dir) for number, pin in enumerate(board.pin_group(stem))]
