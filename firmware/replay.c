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
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <time.h>

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
