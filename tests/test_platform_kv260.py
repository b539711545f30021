"""The KV260 platform layer on ordinary files: mmap registers, u-dma-buf memory, sysfs sync."""

import numpy as np
import pytest

from hdl.spec.config import preset
from host.accel.driver import ConfigMismatch, Driver
from host.platforms.kv260 import UdmabufMemory, UioRegisters, find_uio


def test_uio_registers_map_the_file(tmp_path):
    image = tmp_path / "uio0"
    words = np.arange(1024, dtype=np.uint32) * 0x01010101
    image.write_bytes(words.tobytes())
    regs = UioRegisters(image, irq=False)
    assert regs.read32(0x10) == int(words[4])
    regs.write32(0x80, 0xDEADBEEF)
    regs.write32(0x84, -1)
    assert regs.read32(0x80) == 0xDEADBEEF
    assert regs.read32(0x84) == 0xFFFFFFFF
    regs.close()
    stored = np.frombuffer(image.read_bytes(), np.uint32)
    assert stored[0x80 // 4] == 0xDEADBEEF and stored[5] == words[5]
    with pytest.raises(ValueError, match="0x1002"):
        UioRegisters(image, irq=False).read32(0x1002)


def test_driver_refuses_a_device_that_is_not_systole(tmp_path):
    image = tmp_path / "uio0"
    image.write_bytes(bytes(4096))
    with pytest.raises(ConfigMismatch, match="ID reads 0x00000000"):
        Driver(UioRegisters(image, irq=False), memory=None, config=preset("kv260"))


def test_find_uio_by_name(tmp_path):
    for index, name in enumerate(["axi-gpio", "systole"]):
        (tmp_path / f"uio{index}").mkdir()
        (tmp_path / f"uio{index}" / "name").write_text(name + "\n")
    assert str(find_uio("systole", sysfs=tmp_path)) == "/dev/uio1"
    with pytest.raises(FileNotFoundError, match="xmutil loadapp"):
        find_uio("nope", sysfs=tmp_path)


def test_udmabuf_memory_and_cache_maintenance(tmp_path):
    sysfs = tmp_path / "sys" / "udmabuf0"
    sysfs.mkdir(parents=True)
    (sysfs / "phys_addr").write_text("0x70000000\n")
    (sysfs / "size").write_text("65536\n")
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "udmabuf0").write_bytes(bytes(65536))
    memory = UdmabufMemory("udmabuf0", dev=dev, sysfs=tmp_path / "sys")
    assert (memory.device_address, memory.size) == (0x70000000, 65536)
    payload = np.arange(-64, 64, dtype=np.int8)
    memory.write(4096, payload)
    memory.sync_for_device(4096, payload.nbytes)
    assert [(sysfs / f).read_text().strip() for f in
            ("sync_mode", "sync_offset", "sync_size", "sync_direction", "sync_for_device")] == \
        ["0", "4096", "128", "1", "1"]
    memory.sync_for_cpu(8192, 64)
    assert (sysfs / "sync_direction").read_text().strip() == "2"
    assert memory.read(4096, 128).view(np.int8).tolist() == payload.tolist()
    assert (dev / "udmabuf0").read_bytes()[4096:4096 + 128] == payload.tobytes()
    with pytest.raises(ValueError, match="outside"):
        memory.write(65536 - 4, np.zeros(8, np.uint8))
