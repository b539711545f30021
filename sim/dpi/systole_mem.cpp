// Backing store of the simulated DDR for the Systole co-simulation.
//
// The memory is a file that this simulator process and the host driver both map
// (MAP_SHARED). The driver writes weights and activations straight into it, and
// the accelerator's DMA reads them through the Verilog port below. Nothing passes
// through Python beat by beat.
//
// Environment: SYSTOLE_SIM_MEM (path of the file; its size is the window size) and
// SYSTOLE_SIM_MEM_BASE (device address of byte 0, decimal or 0x-hex).
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

uint8_t *mem = nullptr;
uint64_t mem_size = 0;
uint64_t mem_base = 0;

void open_memory() {
    const char *path = std::getenv("SYSTOLE_SIM_MEM");
    const char *base = std::getenv("SYSTOLE_SIM_MEM_BASE");
    if (path == nullptr || base == nullptr) {
        std::fprintf(stderr, "systole_mem: SYSTOLE_SIM_MEM and SYSTOLE_SIM_MEM_BASE must be set\n");
        std::abort();
    }
    int fd = open(path, O_RDWR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0) {
        std::fprintf(stderr, "systole_mem: cannot open %s: %s\n", path, std::strerror(errno));
        std::abort();
    }
    void *map = mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        std::fprintf(stderr, "systole_mem: mmap of %s failed: %s\n", path, std::strerror(errno));
        std::abort();
    }
    mem = static_cast<uint8_t *>(map);
    mem_size = static_cast<uint64_t>(st.st_size);
    mem_base = std::strtoull(base, nullptr, 0);
}

// Map at program start, so the host may unlink the file as soon as the simulator
// has connected: the memory then disappears with the two processes, even on a crash.
__attribute__((constructor)) void map_at_start() {
    if (std::getenv("SYSTOLE_SIM_MEM") != nullptr) open_memory();
}

inline uint8_t *word(uint64_t addr) {
    if (mem == nullptr) open_memory();
    if (addr < mem_base || addr - mem_base > mem_size - 4) return nullptr;
    return mem + (addr - mem_base);
}

}  // namespace

// Read the 32-bit little-endian word at addr into *data; returns 1 when addr is
// outside the window (the data then reads 0), 0 otherwise.
extern "C" int systole_mem_read32(uint64_t addr, uint32_t *data) {
    uint8_t *p = word(addr);
    if (p == nullptr) { *data = 0; return 1; }
    std::memcpy(data, p, 4);
    return 0;
}

// Write the bytes of data selected by strb (bit i: byte i) at addr; returns 1 when
// addr is outside the window (nothing is written), 0 otherwise.
extern "C" int systole_mem_write32(uint64_t addr, uint32_t data, uint32_t strb) {
    uint8_t *p = word(addr);
    if (p == nullptr) return 1;
    for (int i = 0; i < 4; i++)
        if (strb >> i & 1) p[i] = static_cast<uint8_t>(data >> (8 * i));
    return 0;
}
