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
 * maintenance for device (the four sysfs writes of host/platforms/kv260.py's
 * UdmabufMemory: offset, size, direction, trigger; none when the memory is coherent),
 * the replay, the maintenance for the CPU, and C's rows copied out.
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
    uint64_t a_offset, c_offset; /* the buffers' offsets in the u-dma-buf window (syncs) */
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

static int sync_range(const struct systole_job_io *io, uint64_t offset, uint64_t nbytes,
                      uint32_t direction, int trigger_fd)
{
    if (io->fds[0] < 0)
        return 0;
    return write_value(io->fds[0], offset, io->readback) | write_value(io->fds[1], nbytes, io->readback)
        | write_value(io->fds[2], direction, io->readback) | write_value(trigger_fd, 1, io->readback);
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
    if (sync_range(io, io->a_offset, (uint64_t)io->m * io->a_stride, 1, io->fds[3]))
        return -2;
    int done = systole_replay(regs, status_offset, busy_mask, offsets, values, count, ctrl_offset,
                              start, done_mask, timeout_ns, read_offsets, read_count, read_values);
    if (done != 1)
        return done;
    if (sync_range(io, io->c_offset, (uint64_t)io->m * io->c_stride, 2, io->fds[4]))
        return -2;
    for (uint32_t r = 0; r < io->m; r++)
        memcpy(io->c + (size_t)r * io->c_row_bytes, io->c_buf + (size_t)r * io->c_stride, io->c_row_bytes);
    return 1;
}
