/*
 * Systole C driver: run int8 matmul jobs on the accelerator through its registers.
 *
 * C[M,N] (int32) = A[M,K] (int8) x W[N,K]^T, W in the tile-major packed layout of
 * host/accel/pack.py: one stream per weight port (CAP_PORTS), port p's read from
 * W_ADDR + p*W_STRIDE. W's format is the job's w_format (W_FORMAT, hdl/spec/formats.py):
 * SYSTOLE_FORMAT_INT8, one byte per weight, or SYSTOLE_FORMAT_INT4, q in -8..7 times a
 * 4-bit scale per group of 32 steps of K (exact in int8); CAP_FORMATS says which ones the
 * bitstream runs. Every register offset, field (SYSTOLE_<REG>_<FIELD>(value)), error
 * code and name, weight format and expected capability comes from the generated systole_regs.h
 * (`python -m gen.verilog --preset P` writes it to build/P/systole_regs.h); nothing here
 * restates one. The job rules are hdl/spec/job.py's: the self-test's `checkjobs` runs
 * systole_check_job() on the vectors generated from them (systole_job_vectors.h).
 *
 * Bare metal: point systole_init() at the s_axi_ctrl base address.
 * Linux userspace: systole_open_uio() / systole_open_devmem() map the registers and
 * systole_udmabuf_open() maps a u-dma-buf buffer (uncached, physical address known).
 */
#ifndef SYSTOLE_H
#define SYSTOLE_H

#include <stddef.h>
#include <stdint.h>

#include "systole_regs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Driver status codes (negative); a hardware job error is SYSTOLE_E_JOB plus ERR_CODE. */
enum systole_status {
    SYSTOLE_OK = 0,
    SYSTOLE_E_ID = -1,       /* ID register is not 'SYST': wrong base address or bitstream */
    SYSTOLE_E_VERSION = -2,  /* register map major version differs from the header */
    SYSTOLE_E_CAPS = -3,     /* capability registers differ from the header's build */
    SYSTOLE_E_TIMEOUT = -4,  /* the job did not finish in time (soft reset issued) */
    SYSTOLE_E_JOB = -5,      /* the hardware refused or failed the job: see err_code */
    SYSTOLE_E_ARGS = -6,     /* the job's arguments fail a check done before touching HW */
    SYSTOLE_E_BUSY = -7,     /* a job is already running */
    SYSTOLE_E_OS = -8,       /* open/mmap/sysfs failed (errno is set) */
    SYSTOLE_E_FORMAT = -9,   /* the job's weight format is not one CAP_FORMATS lists: refused
                              * before touching HW (err_code SYSTOLE_ERR_FORMAT) */
};

/* Optional platform hooks; NULL members are no-ops / poll counting. */
struct systole_platform {
    uint64_t (*now_us)(void);                              /* monotonic microseconds */
    void (*cache_flush)(const void *addr, size_t nbytes);  /* CPU -> device */
    void (*cache_invalidate)(const void *addr, size_t nbytes); /* device -> CPU */
};

/* One opened accelerator. Capabilities are read from the hardware by systole_init(). */
struct systole_dev {
    volatile uint32_t *regs;
    struct systole_platform platform;
    uint32_t rows, cols, bus_bytes, addr_width, max_burst, act_bytes, max_k, max_mn;
    uint32_t ports;          /* CAP_PORTS.count: weight read ports; cols == ports * bus_bytes */
    uint32_t coherent_io;    /* CAP_PORTS.coherent_io: A and C bursts are I/O coherent (no cache
                              * maintenance of A and C per job) */
    uint32_t formats;        /* CAP_FORMATS: bit f set when W_FORMAT f runs (SYSTOLE_FORMAT_*) */
    uint32_t err_code;       /* ERR_CODE of the last failed job (SYSTOLE_ERR_*) */
    uint64_t err_addr;       /* ERR_ADDR of the last failed job */
    uint32_t err_port;       /* ERR_PORT of a DMA_READ failure (0 = m_axi_dma, p = m_axi_w<p>), else 0 */
};

/* A job's arguments: device (physical) addresses, shapes and strides in bytes, in the order
 * of hdl.spec.job.FIELDS. w_stride is read only with more than one weight port; w_format is
 * the packing of W (SYSTOLE_FORMAT_*; 0, int8, in a zero-initialised job). */
struct systole_job {
    uint64_t a_addr, w_addr, c_addr;
    uint32_t m, n, k;
    uint32_t a_stride, c_stride, w_stride;
    uint32_t w_format;
};

/* Performance counters of the last job plus the free-running cycle counter. */
struct systole_counters {
    uint64_t cycles;
    uint32_t busy, stall, rd_beats, wr_beats;
};

/* Check ID, version and capabilities (CAP_ARRAY, CAP_BUS, CAP_ACT_BYTES, CAP_MAX_K, CAP_MAX_MN,
 * CAP_PORTS, CAP_FORMATS) at `regs` against systole_regs.h; soft-reset to idle.
 * Returns SYSTOLE_OK, SYSTOLE_E_ID, SYSTOLE_E_VERSION or SYSTOLE_E_CAPS. */
int systole_init(struct systole_dev *dev, volatile void *regs, const struct systole_platform *platform);

/*
 * Register access: the driver's one seam to the hardware. On a board these are plain
 * loads and stores to the mapped window, inlined, so the seam costs nothing. A build
 * with -DSYSTOLE_REMOTE_BUS sends each access to a transport instead (remote_bus.c:
 * the tests run the self-test against the co-simulated RTL that way), and
 * systole_poll_pause() lets simulated time pass between two polls of a wait.
 */
#ifdef SYSTOLE_REMOTE_BUS
uint32_t systole_remote_read32(uint32_t offset);
void systole_remote_write32(uint32_t offset, uint32_t value);
void systole_remote_pause(void);
uint64_t systole_remote_now_us(void);
#endif

static inline uint32_t systole_read(const struct systole_dev *dev, uint32_t offset)
{
#ifdef SYSTOLE_REMOTE_BUS
    (void)dev;
    return systole_remote_read32(offset);
#else
    return dev->regs[offset / 4u];
#endif
}

static inline void systole_write(const struct systole_dev *dev, uint32_t offset, uint32_t value)
{
#ifdef SYSTOLE_REMOTE_BUS
    (void)dev;
    systole_remote_write32(offset, value);
#else
    dev->regs[offset / 4u] = value;
#endif
}

/* Called between two polls of a register that has not changed yet. */
static inline void systole_poll_pause(void)
{
#ifdef SYSTOLE_REMOTE_BUS
    systole_remote_pause();
#endif
}

/* The smallest legal row strides: multiples of the bus width. */
uint32_t systole_a_stride(const struct systole_dev *dev, uint32_t k);
uint32_t systole_c_stride(const struct systole_dev *dev, uint32_t n);

/* Check `job` the way the hardware will: the rules of hdl/spec/job.py in their order, the
 * first failing one giving dev->err_code and dev->err_addr (the offending address or
 * stride, 0 for the M, N, K and FORMAT rules) and dev->err_port 0. Returns SYSTOLE_OK
 * (dev->err_* untouched), SYSTOLE_E_FORMAT when the FORMAT rule refuses (a weight format
 * this bitstream does not run) or SYSTOLE_E_ARGS for every other rule. */
int systole_check_job(struct systole_dev *dev, const struct systole_job *job);

/* Nonzero when the bitstream runs weight format `format` (its CAP_FORMATS bit is set). */
int systole_format_supported(const struct systole_dev *dev, uint32_t format);

/* "int8", "int4" for a SYSTOLE_FORMAT_* value; "unknown" otherwise. */
const char *systole_format_name(uint32_t format);

/* systole_check_job, then program the arguments and start; does not wait. */
int systole_start(struct systole_dev *dev, const struct systole_job *job);

/* Program the arguments and start without systole_check_job, so the hardware's own check
 * decides (the self-test's `refuse` compares the two). SYSTOLE_OK or SYSTOLE_E_BUSY. */
int systole_start_unchecked(struct systole_dev *dev, const struct systole_job *job);

/* Wait for ap_done, then read ERR_CODE and ERR_ADDR into dev->err_code/err_addr, and for
 * DMA_READ ERR_PORT into dev->err_port (else 0): returns SYSTOLE_OK, or SYSTOLE_E_JOB when
 * ERR_CODE is not OK. timeout_us is microseconds of
 * platform.now_us (else register polls); once more than timeout_us have passed without
 * ap_done, CTRL is written with soft_reset and SYSTOLE_E_TIMEOUT returned. */
int systole_wait(struct systole_dev *dev, uint64_t timeout_us);

/* systole_start + systole_wait. */
int systole_run(struct systole_dev *dev, const struct systole_job *job, uint64_t timeout_us);

/* End any job and return to idle (CTRL.soft_reset). */
void systole_soft_reset(struct systole_dev *dev);

void systole_read_counters(const struct systole_dev *dev, struct systole_counters *out);

/* "M_RANGE", "DMA_READ", ... for an ERR_CODE value (SYSTOLE_FOR_EACH_ERR); "UNKNOWN" otherwise. */
const char *systole_err_name(uint32_t err_code);
/* Text for a systole_status value. */
const char *systole_strerror(int status);

/* Host-side helpers (no hardware): packing and the reference product. `ports` divides `cols`
 * (on the accelerator: dev->ports, and cols / ports == bus_bytes); `format` is a
 * SYSTOLE_FORMAT_* value. */
/* Beats of one port per tile of a K-step job (hdl.spec.formats.tile_beats): K for int8,
 * ceil(K/2) pair beats + ceil(K/64) scale beats for int4; 0 for an unknown format. */
uint32_t systole_tile_beats(uint32_t format, uint32_t k);
/* Bytes of the packed [n, k] matrix, every port's stream (host.accel.pack.packed_size). */
size_t systole_packed_size(uint32_t n, uint32_t k, uint32_t cols, uint32_t format);
/* Bytes of one port's stream, the distance between the streams of systole_pack_weights and
 * systole_pack_int4: the W_STRIDE of a packed matrix (PackedWeights.stream_bytes). */
size_t systole_stream_bytes(uint32_t n, uint32_t k, uint32_t cols, uint32_t ports, uint32_t format);
/* w: int8 [n, k] row-major -> packed int8 (host/accel/pack.py): `ports` streams back to back,
 * stream p holding, for each tile of `cols` channels, for each k, the cols/ports weights of
 * channels tile*cols + p*cols/ports + j; channels past n are zero. */
void systole_pack_weights(const int8_t *w, uint32_t n, uint32_t k, uint32_t cols, uint32_t ports, int8_t *packed);
/* q: int8 [n, k] in -8..7 and s: uint8 [n, ceil(k/32)] in 0..15, row-major -> packed int4,
 * byte for byte host.accel.pack.pack_int4: the tiles and ports of systole_pack_weights, each
 * tile's k steps in blocks of 64, a scale beat (byte j: s[j, 2b] | s[j, 2b+1] << 4) then
 * ceil(steps in block / 2) pair beats (byte j: q[j, k] & 15 | q[j, k+1] << 4). Steps past k,
 * groups past ceil(k/32) and channels past n are zero. */
void systole_pack_int4(const int8_t *q, const uint8_t *s, uint32_t n, uint32_t k, uint32_t cols, uint32_t ports,
                       int8_t *packed);
/* c[m, n] = a[m, k] x W^T, exact int32; row strides in elements. W is read back from `packed`
 * in `format`: int8 bytes, or int4 nibbles times their group scale (q * s, an int8). */
void systole_ref_matmul(const int8_t *a, uint32_t a_row_stride, const int8_t *packed, uint32_t format,
                        uint32_t m, uint32_t n, uint32_t k, uint32_t cols, uint32_t ports,
                        int32_t *c, uint32_t c_row_stride);

#ifdef __linux__
/* A mapped register window or DMA buffer; release with systole_unmap(). */
struct systole_mapping {
    int fd;
    void *virt;
    size_t size;
    uint64_t phys;           /* physical address (u-dma-buf, /dev/mem), else 0 */
};

/* Map the registers of /dev/uioN (map 0). */
int systole_open_uio(const char *path, struct systole_mapping *map);
/* Map `size` bytes of /dev/mem at physical address `phys` (needs root). */
int systole_open_devmem(uint64_t phys, size_t size, struct systole_mapping *map);
/* Map u-dma-buf `name` (e.g. "udmabuf0") uncached; phys and size come from sysfs. */
int systole_udmabuf_open(const char *name, struct systole_mapping *map);
void systole_unmap(struct systole_mapping *map);
/* CLOCK_MONOTONIC in microseconds, for systole_platform.now_us (in a SYSTOLE_REMOTE_BUS
 * build: the simulated time, so a timeout means the same on every machine). */
uint64_t systole_linux_now_us(void);
#endif

#ifdef __cplusplus
}
#endif

#endif /* SYSTOLE_H */
