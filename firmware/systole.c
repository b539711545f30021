/* Systole C driver; see systole.h for the contract of every function. */
#define _DEFAULT_SOURCE 1  /* mmap, O_SYNC, clock_gettime under -std=c11 */
#include "systole.h"

#ifdef __linux__
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#endif

#include <string.h>

/* Without a clock, a timeout counts register polls instead of microseconds. */
#define POLLS_PER_US 1u

int systole_init(struct systole_dev *dev, volatile void *regs, const struct systole_platform *platform)
{
    memset(dev, 0, sizeof(*dev));
    dev->regs = (volatile uint32_t *)regs;
    if (platform != NULL)
        dev->platform = *platform;
    if (systole_read(dev, SYSTOLE_ID) != SYSTOLE_EXPECT_ID)
        return SYSTOLE_E_ID;
    /* A minor version bump only adds registers; a major one changes meanings. */
    if ((systole_read(dev, SYSTOLE_VERSION) >> 16) != (SYSTOLE_REGMAP_VERSION >> 16))
        return SYSTOLE_E_VERSION;
    uint32_t array = systole_read(dev, SYSTOLE_CAP_ARRAY);
    uint32_t bus = systole_read(dev, SYSTOLE_CAP_BUS);
    dev->rows = SYSTOLE_CAP_ARRAY_ROWS(array);
    dev->cols = SYSTOLE_CAP_ARRAY_COLS(array);
    dev->bus_bytes = SYSTOLE_CAP_BUS_BUS_BYTES(bus);
    dev->addr_width = SYSTOLE_CAP_BUS_ADDR_WIDTH(bus);
    dev->max_burst = 1u << SYSTOLE_CAP_BUS_MAX_BURST_LOG2(bus);
    dev->act_bytes = systole_read(dev, SYSTOLE_CAP_ACT_BYTES);
    dev->max_k = systole_read(dev, SYSTOLE_CAP_MAX_K);
    dev->max_mn = systole_read(dev, SYSTOLE_CAP_MAX_MN);
    uint32_t ports = systole_read(dev, SYSTOLE_CAP_PORTS);
    dev->ports = SYSTOLE_CAP_PORTS_COUNT(ports);
    dev->coherent_io = SYSTOLE_CAP_PORTS_COHERENT_IO(ports);
    dev->formats = systole_read(dev, SYSTOLE_CAP_FORMATS);
    if (array != SYSTOLE_EXPECT_CAP_ARRAY || bus != SYSTOLE_EXPECT_CAP_BUS
        || dev->act_bytes != SYSTOLE_EXPECT_CAP_ACT_BYTES || dev->max_k != SYSTOLE_EXPECT_CAP_MAX_K
        || dev->max_mn != SYSTOLE_EXPECT_CAP_MAX_MN || ports != SYSTOLE_EXPECT_CAP_PORTS
        || dev->formats != SYSTOLE_EXPECT_CAP_FORMATS)
        return SYSTOLE_E_CAPS;
    systole_soft_reset(dev);
    return SYSTOLE_OK;
}

static uint32_t round_up(uint32_t value, uint32_t multiple)
{
    return (value + multiple - 1u) / multiple * multiple;
}

uint32_t systole_a_stride(const struct systole_dev *dev, uint32_t k)
{
    return round_up(k, dev->bus_bytes);
}

uint32_t systole_c_stride(const struct systole_dev *dev, uint32_t n)
{
    return round_up(4u * n, dev->bus_bytes);
}

/* True when [addr, addr + nbytes) lies below 2^addr_width, without overflowing. */
static int fits(uint64_t addr, uint64_t nbytes, uint32_t addr_width)
{
    uint64_t top = addr_width >= 64u ? UINT64_MAX : (UINT64_C(1) << addr_width) - 1u;
    return nbytes == 0u || (addr <= top && nbytes - 1u <= top - addr);
}

static int refuse(struct systole_dev *dev, uint32_t code, uint64_t addr)
{
    dev->err_code = code;
    dev->err_addr = addr;
    dev->err_port = 0;
    return code == SYSTOLE_ERR_FORMAT ? SYSTOLE_E_FORMAT : SYSTOLE_E_ARGS;
}

int systole_format_supported(const struct systole_dev *dev, uint32_t format)
{
    /* W_FORMAT keeps 32 bits; a shift by 32 or more is undefined in C, and no such bit is set. */
    return format < 32u && ((dev->formats >> format) & 1u) != 0u;
}

const char *systole_format_name(uint32_t format)
{
    switch (format) {
    case SYSTOLE_FORMAT_INT8: return "int8";
    case SYSTOLE_FORMAT_INT4: return "int4";
    default: return "unknown";
    }
}

uint32_t systole_tile_beats(uint32_t format, uint32_t k)
{
    /* Written without k + 1, so every 32-bit K is exact. */
    switch (format) {
    case SYSTOLE_FORMAT_INT8: return k;
    case SYSTOLE_FORMAT_INT4:
        return k / 2u + (k & 1u) + k / SYSTOLE_INT4_BLOCK_K + (k % SYSTOLE_INT4_BLOCK_K != 0u);
    default: return 0u;
    }
}

/* The rules, their order and the ERR_ADDR of each are hdl/spec/job.py's; the generated
 * systole_job_vectors.h (`selftest checkjobs`) holds this function to them. */
int systole_check_job(struct systole_dev *dev, const struct systole_job *job)
{
    const uint64_t bb = dev->bus_bytes;
    if (job->m == 0u || job->m > dev->max_mn)
        return refuse(dev, SYSTOLE_ERR_M_RANGE, 0);
    if (job->n == 0u || job->n > dev->max_mn)
        return refuse(dev, SYSTOLE_ERR_N_RANGE, 0);
    /* K's register keeps 32 bits; a K wider than its count field is refused, not truncated. */
    if (job->k == 0u || SYSTOLE_K_COUNT(job->k) != job->k)
        return refuse(dev, SYSTOLE_ERR_K_RANGE, 0);
    if (job->k > dev->max_k)
        return refuse(dev, SYSTOLE_ERR_A_OVERFLOW, 0);
    if (!systole_format_supported(dev, job->w_format))
        return refuse(dev, SYSTOLE_ERR_FORMAT, 0);
    /* W_STRIDE, last, only with more than one weight port: one port never reads it. */
    const uint64_t aligned[] = {job->a_addr, job->w_addr, job->c_addr, job->a_stride, job->c_stride, job->w_stride};
    const size_t aligned_count = sizeof(aligned) / sizeof(aligned[0]) - (dev->ports > 1u ? 0u : 1u);
    for (size_t i = 0; i < aligned_count; i++)
        if (aligned[i] % bb)
            return refuse(dev, SYSTOLE_ERR_ALIGN, aligned[i]);
    if (job->a_stride < job->k)
        return refuse(dev, SYSTOLE_ERR_STRIDE, job->a_stride);
    if ((uint64_t)job->c_stride < 4u * (uint64_t)job->n)
        return refuse(dev, SYSTOLE_ERR_STRIDE, job->c_stride);
    /* Exactly the bytes the DMA touches; 64-bit sums, so size_t's width does not matter. W is
     * the last port's stream end: ports - 1 strides, then one stream of ceil(N/cols) tiles of
     * the format's beats (the FORMAT rule passed: a format the driver knows). */
    const struct { uint64_t base, nbytes; } buffers[] = {
        {job->a_addr, (uint64_t)(job->m - 1u) * job->a_stride + round_up(job->k, dev->bus_bytes)},
        {job->w_addr, (uint64_t)(dev->ports - 1u) * job->w_stride
                      + (uint64_t)((job->n + dev->cols - 1u) / dev->cols)
                        * systole_tile_beats(job->w_format, job->k) * bb},
        {job->c_addr, (uint64_t)(job->m - 1u) * job->c_stride + round_up(4u * job->n, dev->bus_bytes)},
    };
    for (size_t i = 0; i < sizeof(buffers) / sizeof(buffers[0]); i++)
        if (!fits(buffers[i].base, buffers[i].nbytes, dev->addr_width))
            return refuse(dev, SYSTOLE_ERR_ADDR_RANGE, buffers[i].base);
    return SYSTOLE_OK;
}

static void write64(const struct systole_dev *dev, uint32_t lo, uint32_t hi, uint64_t value)
{
    systole_write(dev, lo, (uint32_t)value);
    systole_write(dev, hi, (uint32_t)(value >> 32));
}

int systole_start(struct systole_dev *dev, const struct systole_job *job)
{
    int status = systole_check_job(dev, job);
    return status == SYSTOLE_OK ? systole_start_unchecked(dev, job) : status;
}

int systole_start_unchecked(struct systole_dev *dev, const struct systole_job *job)
{
    if (SYSTOLE_STATUS_BUSY(systole_read(dev, SYSTOLE_STATUS)))
        return SYSTOLE_E_BUSY;
    write64(dev, SYSTOLE_A_ADDR_LO, SYSTOLE_A_ADDR_HI, job->a_addr);
    write64(dev, SYSTOLE_W_ADDR_LO, SYSTOLE_W_ADDR_HI, job->w_addr);
    write64(dev, SYSTOLE_C_ADDR_LO, SYSTOLE_C_ADDR_HI, job->c_addr);
    systole_write(dev, SYSTOLE_M, job->m);
    systole_write(dev, SYSTOLE_N, job->n);
    systole_write(dev, SYSTOLE_K, job->k);
    systole_write(dev, SYSTOLE_A_STRIDE, job->a_stride);
    systole_write(dev, SYSTOLE_C_STRIDE, job->c_stride);
    systole_write(dev, SYSTOLE_W_STRIDE, job->w_stride);
    systole_write(dev, SYSTOLE_W_FORMAT, job->w_format);
    /* ap_done is clear-on-read: drop a stale one so the wait sees this job's. */
    (void)systole_read(dev, SYSTOLE_CTRL);
    systole_write(dev, SYSTOLE_CTRL, SYSTOLE_CTRL_AP_START_MASK);
    return SYSTOLE_OK;
}

int systole_wait(struct systole_dev *dev, uint64_t timeout_us)
{
    uint64_t start = dev->platform.now_us ? dev->platform.now_us() : 0u;
    uint64_t polls = 0u;
    for (;;) {
        if (SYSTOLE_CTRL_AP_DONE(systole_read(dev, SYSTOLE_CTRL)))
            break;
        uint64_t elapsed = dev->platform.now_us ? dev->platform.now_us() - start : ++polls / POLLS_PER_US;
        if (elapsed > timeout_us) {
            systole_soft_reset(dev);
            return SYSTOLE_E_TIMEOUT;
        }
        systole_poll_pause();
    }
    dev->err_code = systole_read(dev, SYSTOLE_ERR_CODE);
    dev->err_addr = (uint64_t)systole_read(dev, SYSTOLE_ERR_ADDR_HI) << 32 | systole_read(dev, SYSTOLE_ERR_ADDR_LO);
    dev->err_port = dev->err_code == SYSTOLE_ERR_DMA_READ ? systole_read(dev, SYSTOLE_ERR_PORT) : 0u;
    return dev->err_code == SYSTOLE_ERR_OK ? SYSTOLE_OK : SYSTOLE_E_JOB;
}

int systole_run(struct systole_dev *dev, const struct systole_job *job, uint64_t timeout_us)
{
    int status = systole_start(dev, job);
    return status == SYSTOLE_OK ? systole_wait(dev, timeout_us) : status;
}

void systole_soft_reset(struct systole_dev *dev)
{
    systole_write(dev, SYSTOLE_CTRL, SYSTOLE_CTRL_SOFT_RESET_MASK);
    /* The engine completes outstanding AXI transactions before it reports idle. */
    for (uint32_t polls = 0; polls < 1000000u; polls++) {
        if (SYSTOLE_CTRL_AP_IDLE(systole_read(dev, SYSTOLE_CTRL)))
            break;
        systole_poll_pause();
    }
}

void systole_read_counters(const struct systole_dev *dev, struct systole_counters *out)
{
    /* HI, LO, HI: retry when LO wrapped between the two HI reads. */
    uint32_t hi, lo;
    do {
        hi = systole_read(dev, SYSTOLE_CYCLES_HI);
        lo = systole_read(dev, SYSTOLE_CYCLES_LO);
    } while (systole_read(dev, SYSTOLE_CYCLES_HI) != hi);
    out->cycles = (uint64_t)hi << 32 | lo;
    out->busy = systole_read(dev, SYSTOLE_PERF_BUSY);
    out->stall = systole_read(dev, SYSTOLE_PERF_STALL);
    out->rd_beats = systole_read(dev, SYSTOLE_PERF_RD_BEATS);
    out->wr_beats = systole_read(dev, SYSTOLE_PERF_WR_BEATS);
}

const char *systole_err_name(uint32_t err_code)
{
    switch (err_code) {
#define NAME(code) case SYSTOLE_ERR_##code: return #code;
    SYSTOLE_FOR_EACH_ERR(NAME)
#undef NAME
    default: return "UNKNOWN";
    }
}

const char *systole_strerror(int status)
{
    switch (status) {
    case SYSTOLE_OK: return "ok";
    case SYSTOLE_E_ID: return "ID register is not 'SYST' (wrong address or bitstream)";
    case SYSTOLE_E_VERSION: return "register map major version differs from systole_regs.h";
    case SYSTOLE_E_CAPS: return "capabilities differ from the build systole_regs.h describes";
    case SYSTOLE_E_TIMEOUT: return "job timed out (engine soft-reset)";
    case SYSTOLE_E_JOB: return "the accelerator reported a job error";
    case SYSTOLE_E_ARGS: return "job arguments refused before starting";
    case SYSTOLE_E_BUSY: return "a job is already running";
    case SYSTOLE_E_OS: return "operating system call failed";
    case SYSTOLE_E_FORMAT: return "weight format not run by this bitstream (see CAP_FORMATS)";
    default: return "unknown status";
    }
}

size_t systole_packed_size(uint32_t n, uint32_t k, uint32_t cols, uint32_t format)
{
    return (size_t)((n + cols - 1u) / cols) * systole_tile_beats(format, k) * cols;
}

size_t systole_stream_bytes(uint32_t n, uint32_t k, uint32_t cols, uint32_t ports, uint32_t format)
{
    return (size_t)((n + cols - 1u) / cols) * systole_tile_beats(format, k) * (cols / ports);
}

void systole_pack_weights(const int8_t *w, uint32_t n, uint32_t k, uint32_t cols, uint32_t ports, int8_t *packed)
{
    uint32_t tiles = (n + cols - 1u) / cols, port_bytes = cols / ports;
    for (uint32_t port = 0; port < ports; port++)
        for (uint32_t tile = 0; tile < tiles; tile++)
            for (uint32_t kk = 0; kk < k; kk++)
                for (uint32_t j = 0; j < port_bytes; j++) {
                    uint32_t channel = tile * cols + port * port_bytes + j;
                    *packed++ = channel < n ? w[(size_t)channel * k + kk] : 0;
                }
}

/* The nibble of weight (channel, step) and of its group scale, 0 past n or k. */
static uint8_t q_nibble(const int8_t *q, uint32_t n, uint32_t k, uint32_t channel, uint32_t step)
{
    return channel < n && step < k ? (uint8_t)((uint8_t)q[(size_t)channel * k + step] & 0xFu) : 0u;
}

static uint8_t s_nibble(const uint8_t *s, uint32_t n, uint32_t k, uint32_t channel, uint32_t group)
{
    uint32_t groups = (k + SYSTOLE_INT4_GROUP - 1u) / SYSTOLE_INT4_GROUP;
    return channel < n && group < groups ? (uint8_t)(s[(size_t)channel * groups + group] & 0xFu) : 0u;
}

void systole_pack_int4(const int8_t *q, const uint8_t *s, uint32_t n, uint32_t k, uint32_t cols, uint32_t ports,
                       int8_t *packed)
{
    uint32_t tiles = (n + cols - 1u) / cols, port_bytes = cols / ports;
    uint8_t *out = (uint8_t *)packed;
    for (uint32_t port = 0; port < ports; port++)
        for (uint32_t tile = 0; tile < tiles; tile++)
            for (uint32_t block = 0; block * SYSTOLE_INT4_BLOCK_K < k; block++) {
                uint32_t first = block * SYSTOLE_INT4_BLOCK_K;
                uint32_t steps = k - first < SYSTOLE_INT4_BLOCK_K ? k - first : SYSTOLE_INT4_BLOCK_K;
                /* The scale beat, then one pair beat per two steps (the last may hold one). */
                for (uint32_t j = 0; j < port_bytes; j++) {
                    uint32_t channel = tile * cols + port * port_bytes + j;
                    *out++ = (uint8_t)(s_nibble(s, n, k, channel, 2u * block)
                                       | s_nibble(s, n, k, channel, 2u * block + 1u) << 4);
                }
                for (uint32_t step = first; step < first + steps; step += 2u)
                    for (uint32_t j = 0; j < port_bytes; j++) {
                        uint32_t channel = tile * cols + port * port_bytes + j;
                        *out++ = (uint8_t)(q_nibble(q, n, k, channel, step)
                                           | q_nibble(q, n, k, channel, step + 1u) << 4);
                    }
            }
}

/* Weight `step` of the channel whose first beat of its tile is `beats` (its byte of it):
 * int8 reads beat `step`; int4 its nibble of the block's pair beat times its group's scale
 * nibble of the block's scale beat (both beats `port_bytes` apart in the stream). */
static int32_t packed_weight(const int8_t *beats, uint32_t format, uint32_t step, uint32_t port_bytes)
{
    if (format == SYSTOLE_FORMAT_INT8)
        return beats[(size_t)step * port_bytes];
    uint32_t block = step / SYSTOLE_INT4_BLOCK_K, in_block = step % SYSTOLE_INT4_BLOCK_K;
    size_t scale_beat = (size_t)block * (1u + SYSTOLE_INT4_BLOCK_K / 2u);
    uint8_t pair = (uint8_t)beats[(scale_beat + 1u + in_block / 2u) * port_bytes];
    uint8_t scales = (uint8_t)beats[scale_beat * port_bytes];
    int32_t q = (int32_t)((in_block & 1u) ? pair >> 4 : pair & 0xFu);
    int32_t s = (int32_t)(((in_block / SYSTOLE_INT4_GROUP) & 1u) ? scales >> 4 : scales & 0xFu);
    return ((q ^ 8) - 8) * s;   /* q sign-extended from 4 bits */
}

void systole_ref_matmul(const int8_t *a, uint32_t a_row_stride, const int8_t *packed, uint32_t format,
                        uint32_t m, uint32_t n, uint32_t k, uint32_t cols, uint32_t ports,
                        int32_t *c, uint32_t c_row_stride)
{
    uint32_t port_bytes = cols / ports, beats_per_tile = systole_tile_beats(format, k);
    size_t stream = systole_stream_bytes(n, k, cols, ports, format);
    for (uint32_t row = 0; row < m; row++)
        for (uint32_t channel = 0; channel < n; channel++) {
            /* The channel's byte of each beat of its tile on its port. */
            uint32_t port = channel % cols / port_bytes;
            const int8_t *beats = packed + port * stream + (size_t)(channel / cols) * beats_per_tile * port_bytes
                                + channel % port_bytes;
            /* |w| <= 128 (int4: |q * s| <= 120), so |sum| <= 128 * 128 * 65535 < 2^31: int32 is
             * exact for every legal K. */
            int32_t sum = 0;
            for (uint32_t kk = 0; kk < k; kk++)
                sum += (int32_t)a[(size_t)row * a_row_stride + kk] * packed_weight(beats, format, kk, port_bytes);
            c[(size_t)row * c_row_stride + channel] = sum;
        }
}

#ifdef __linux__
static int map_fd(int fd, size_t size, off_t offset, struct systole_mapping *map)
{
    void *virt = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
    if (virt == MAP_FAILED) {
        close(fd);
        return SYSTOLE_E_OS;
    }
    map->fd = fd;
    map->virt = virt;
    map->size = size;
    return SYSTOLE_OK;
}

int systole_open_uio(const char *path, struct systole_mapping *map)
{
    memset(map, 0, sizeof(*map));
    int fd = open(path, O_RDWR | O_SYNC);
    if (fd < 0)
        return SYSTOLE_E_OS;
    /* UIO map N is selected by offset N * page size; the registers are map 0. */
    return map_fd(fd, (size_t)sysconf(_SC_PAGESIZE), 0, map);
}

int systole_open_devmem(uint64_t phys, size_t size, struct systole_mapping *map)
{
    memset(map, 0, sizeof(*map));
    int fd = open("/dev/mem", O_RDWR | O_SYNC);
    if (fd < 0)
        return SYSTOLE_E_OS;
    map->phys = phys;
    return map_fd(fd, size, (off_t)phys, map);
}

/* The root /sys and /dev are under: "/" on a board; in a SYSTOLE_REMOTE_BUS build the
 * directory $SYSTOLE_REMOTE_ROOT, which the tests lay out as u-dma-buf would. */
static const char *os_root(void)
{
#ifdef SYSTOLE_REMOTE_BUS
    const char *root = getenv("SYSTOLE_REMOTE_ROOT");
    return root != NULL ? root : "";
#else
    return "";
#endif
}

static int read_sysfs_u64(const char *name, const char *attribute, uint64_t *value)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/sys/class/u-dma-buf/%s/%s", os_root(), name, attribute);
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return SYSTOLE_E_OS;
    unsigned long long parsed = 0;
    int ok = fscanf(file, "%lli", (long long *)&parsed) == 1;
    fclose(file);
    if (!ok) {
        errno = EINVAL;
        return SYSTOLE_E_OS;
    }
    *value = parsed;
    return SYSTOLE_OK;
}

int systole_udmabuf_open(const char *name, struct systole_mapping *map)
{
    memset(map, 0, sizeof(*map));
    uint64_t phys = 0, size = 0;
    if (read_sysfs_u64(name, "phys_addr", &phys) != SYSTOLE_OK || read_sysfs_u64(name, "size", &size) != SYSTOLE_OK)
        return SYSTOLE_E_OS;
    char path[256];
    snprintf(path, sizeof(path), "%s/dev/%s", os_root(), name);
    /* O_SYNC makes u-dma-buf map the buffer uncached: no cache maintenance needed. */
    int fd = open(path, O_RDWR | O_SYNC);
    if (fd < 0)
        return SYSTOLE_E_OS;
    map->phys = phys;
    return map_fd(fd, (size_t)size, 0, map);
}

void systole_unmap(struct systole_mapping *map)
{
    if (map->virt != NULL)
        munmap(map->virt, map->size);
    if (map->fd > 0)
        close(map->fd);
    memset(map, 0, sizeof(*map));
}

uint64_t systole_linux_now_us(void)
{
#ifdef SYSTOLE_REMOTE_BUS
    return systole_remote_now_us();
#else
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
#endif
}
#endif
