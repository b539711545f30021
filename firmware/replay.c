/*
 * Replay a planned job on memory-mapped registers: one call per job from the host runtime.
 *
 * host/accel/driver.py plans each matmul job once (its register writes, in order, from
 * hdl/spec/job.py's register image) and replays the plan for every token. On a board with
 * mapped registers (the KV260's UIO page) host/platforms/replay.py hands the plan to this
 * function through ctypes, so a job costs one call from Python instead of ~20 register
 * accesses: the busy check, the writes in the plan's order, ap_start, polling ap_done, and
 * the reads the driver wants afterwards (the performance counters and ERR_CODE). Every
 * offset and mask comes from the caller; nothing here restates the register map.
 *
 * Returns 1 when the job finished (ap_done seen), 0 on timeout (nothing is reset here: the
 * driver soft-resets and raises), -1 when the engine was busy before the first write.
 *
 * systole_job() wraps the replay in the job's memory traffic, so a matmul is one call:
 * A's rows copied into the DMA buffer (zero-padded to A_STRIDE), the u-dma-buf cache
 * maintenance for device, the replay, the maintenance for the CPU, and C's rows copied
 * out. A sync is host/platforms/kv260.py's UdmabufMemory sync: the sysfs attributes
 * sync_offset, sync_size and sync_direction, each written only when it differs from the
 * value the driver holds (the last written, kept in the state UdmabufMemory shares with
 * this code), then the trigger; none when the memory is coherent. The ranges are the
 * caller's (host/accel/driver.py: one range over A and C for a small job, so both syncs
 * of a job and consecutive jobs of one shape rewrite no attribute).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int systole_replay(volatile uint32_t *regs,
                   uint32_t status_offset, uint32_t busy_mask,
                   const uint32_t *offsets, const uint32_t *values, uint32_t count,
                   uint32_t ctrl_offset, uint32_t start, uint32_t done_mask, uint64_t timeout_ns,
                   const uint32_t *read_offsets, uint32_t read_count, uint32_t *read_values)
{
    if (regs[status_offset / 4] & busy_mask)
        return -1;
    for (uint32_t i = 0; i < count; i++)
        regs[offsets[i] / 4] = values[i];
    regs[ctrl_offset / 4] = start;
    /* Poll ap_done (clear on read); the clock is read every 64 polls. */
    uint64_t deadline = now_ns() + timeout_ns;
    int done = 0;
    for (uint32_t polls = 0;; polls++) {
        if (regs[ctrl_offset / 4] & done_mask) {
            done = 1;
            break;
        }
        if ((polls & 63) == 63 && now_ns() > deadline)
            break;
    }
    if (done)
        for (uint32_t i = 0; i < read_count; i++)
            read_values[i] = regs[read_offsets[i] / 4];
    return done;
}

/* One job's memory traffic (host/platforms/replay.py's JobIo mirrors this layout). */
struct systole_job_io {
    const uint8_t *a;          /* A, m rows of k bytes */
    uint8_t *a_buf;            /* the DMA buffer of A, rows a_stride apart */
    uint8_t *c_buf;            /* the DMA buffer of C, rows c_stride apart */
    uint8_t *c;                /* C out, m rows of c_row_bytes */
    uint64_t sync_device[3];   /* offset, size, direction of the sync before the job */
    uint64_t sync_cpu[3];      /* and of the sync after it */
    uint64_t *sync_state;      /* the attributes' last written offset, size, direction
                                * (SYNC_UNKNOWN: rewrite), shared with UdmabufMemory */
    uint32_t m, k, a_stride, c_row_bytes, c_stride;
    int32_t fds[5];            /* sync_offset, sync_size, sync_direction, sync_for_device,
                                * sync_for_cpu; fds[0] < 0: coherent memory, no syncs */
    uint32_t readback;         /* truncate after each write (ordinary files standing in) */
};

static int write_value(int fd, uint64_t value, uint32_t readback)
{
    char text[24];
    int n = snprintf(text, sizeof text, "%llu\n", (unsigned long long)value);
    if (pwrite(fd, text, (size_t)n, 0) != n)
        return -1;
    return readback ? ftruncate(fd, n) : 0;
}

#define SYNC_UNKNOWN UINT64_MAX

/* Attribute i (0 offset, 1 size, 2 direction) set to value, written only if it differs
 * from what the driver holds; unknown again if the write fails. */
static int set_attribute(const struct systole_job_io *io, int i, uint64_t value)
{
    if (io->sync_state == NULL)
        return write_value(io->fds[i], value, io->readback);
    if (io->sync_state[i] == value)
        return 0;
    io->sync_state[i] = SYNC_UNKNOWN;
    if (write_value(io->fds[i], value, io->readback))
        return -1;
    io->sync_state[i] = value;
    return 0;
}

/* range: offset, size, direction; the trigger reads the attributes as they stand. */
static int sync_range(const struct systole_job_io *io, const uint64_t range[3], int trigger_fd)
{
    if (io->fds[0] < 0)
        return 0;
    return set_attribute(io, 0, range[0]) | set_attribute(io, 1, range[1]) | set_attribute(io, 2, range[2])
        | write_value(trigger_fd, 1, io->readback);
}

/* As systole_replay, with the memory traffic around it; -2 when a sync write failed. */
int systole_job(volatile uint32_t *regs,
                uint32_t status_offset, uint32_t busy_mask,
                const uint32_t *offsets, const uint32_t *values, uint32_t count,
                uint32_t ctrl_offset, uint32_t start, uint32_t done_mask, uint64_t timeout_ns,
                const uint32_t *read_offsets, uint32_t read_count, uint32_t *read_values,
                const struct systole_job_io *io)
{
    for (uint32_t r = 0; r < io->m; r++) {
        memcpy(io->a_buf + (size_t)r * io->a_stride, io->a + (size_t)r * io->k, io->k);
        memset(io->a_buf + (size_t)r * io->a_stride + io->k, 0, io->a_stride - io->k);
    }
    if (sync_range(io, io->sync_device, io->fds[3]))
        return -2;
    int done = systole_replay(regs, status_offset, busy_mask, offsets, values, count, ctrl_offset,
                              start, done_mask, timeout_ns, read_offsets, read_count, read_values);
    if (done != 1)
        return done;
    if (sync_range(io, io->sync_cpu, io->fds[4]))
        return -2;
    for (uint32_t r = 0; r < io->m; r++)
        memcpy(io->c + (size_t)r * io->c_row_bytes, io->c_buf + (size_t)r * io->c_stride, io->c_row_bytes);
    return 1;
}
