/*
 * Systole self-test: random int8 matmuls on the accelerator against the C reference.
 *
 * Without hardware (any Linux build; the tests run them on the host):
 *   selftest reference [SEED [COUNT]]        packing + reference self-check
 *   selftest dump DIR SEED M N K COLS PORTS  write a.bin w.bin packed.bin c.bin; print the stream
 *                                            bytes (W_STRIDE)
 *   selftest errname CODE                    the name of an ERR_CODE value
 *   selftest checkjobs                       systole_check_job on every generated job-check
 *                                            vector (systole_job_vectors.h); exit 1 on a mismatch
 *   selftest fakeinit | fakewait CODE ADDR PORT | faketimeout TIMEOUT_US STEP_US
 *                                            init, a job ending with ERR_CODE, a timeout, on a
 *                                            register file in RAM (fake_device.h)
 * On the board:
 *   selftest run UIO_OR_PHYS UDMABUF [SEED [COUNT]]   (Linux), e.g.
 *       selftest run /dev/uio4 udmabuf0      (registers through UIO)
 *       selftest run 0xA0000000 udmabuf0     (registers through /dev/mem)
 *   selftest refuse UIO_OR_PHYS UDMABUF       every refused job of systole_job_vectors.h,
 *                                            checked by the driver and by the hardware
 *   selftest timeout UIO_OR_PHYS UDMABUF      a job timing out, the soft reset, recovery
 * A build with REMOTE=1 (systole.h: SYSTOLE_REMOTE_BUS) runs these same commands against
 * the co-simulated RTL (sim/test_firmware_rtl.py).
 *
 * Bare metal: build with -DSYSTOLE_NO_MAIN and call systole_selftest() with an
 * identity-mapped buffer and the platform's cache hooks.
 */
#define _DEFAULT_SOURCE 1
#include "systole.h"
#include "fake_device.h"
#include "systole_job_vectors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* xorshift64*: the same sequence on every platform, so a failing seed reproduces. */
static uint64_t next_random(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * UINT64_C(0x2545F4914F6CDD1D);
}

static uint32_t random_below(uint64_t *state, uint32_t bound)
{
    return (uint32_t)((next_random(state) >> 32) % bound);
}

/* Random int8s; every fourth matrix uses only -128/127 to reach the int32 extremes. */
static void fill_int8(uint64_t *state, int8_t *out, size_t count, int extremes)
{
    for (size_t i = 0; i < count; i++)
        out[i] = extremes ? (next_random(state) >> 63 ? 127 : -128) : (int8_t)(next_random(state) >> 56);
}

static uint64_t seed_state(uint64_t seed)
{
    return seed * UINT64_C(0x9E3779B97F4A7C15) + 1u;  /* never zero */
}

#ifndef SYSTOLE_NO_MAIN
/* Reference self-check without hardware: the packed product equals the plain one, over 1, 2
 * or 4 ports. */
static int reference_check(uint64_t seed, unsigned count)
{
    uint64_t state = seed_state(seed);
    unsigned failures = 0;
    for (unsigned test = 0; test < count; test++) {
        uint32_t m = 1 + random_below(&state, 9), n = 1 + random_below(&state, 40);
        uint32_t k = 1 + random_below(&state, 300), cols = 4u << random_below(&state, 3);
        uint32_t ports = 1u << random_below(&state, 3);
        int8_t *a = malloc((size_t)m * k), *w = malloc((size_t)n * k);
        int8_t *packed = malloc(systole_packed_size(n, k, cols));
        int32_t *c = malloc((size_t)m * n * sizeof(int32_t));
        if (!a || !w || !packed || !c) {
            fprintf(stderr, "out of memory\n");
            return 2;
        }
        fill_int8(&state, a, (size_t)m * k, test % 4 == 3);
        fill_int8(&state, w, (size_t)n * k, test % 4 == 3);
        systole_pack_weights(w, n, k, cols, ports, packed);
        systole_ref_matmul(a, k, packed, m, n, k, cols, ports, c, n);
        for (uint32_t row = 0; row < m; row++)
            for (uint32_t ch = 0; ch < n; ch++) {
                int64_t sum = 0;
                for (uint32_t kk = 0; kk < k; kk++)
                    sum += (int64_t)a[(size_t)row * k + kk] * w[(size_t)ch * k + kk];
                if (sum != c[(size_t)row * n + ch]) {
                    failures++;
                    fprintf(stderr, "test %u (m=%u n=%u k=%u cols=%u ports=%u): c[%u][%u]=%" PRId32
                            " expected %" PRId64 "\n", test, m, n, k, cols, ports, row, ch, c[(size_t)row * n + ch],
                            sum);
                    row = m;
                    break;
                }
            }
        /* Padding channels of the last tile must be zero: byte i is channel tile*cols +
         * port*port_bytes + j of its port's stream. */
        size_t padded = systole_packed_size(n, k, cols), stream = systole_stream_bytes(n, k, cols, ports);
        size_t port_bytes = cols / ports;
        for (size_t i = 0; i < padded; i++)
            if (i % stream / ((size_t)k * port_bytes) * cols + i / stream * port_bytes + i % port_bytes >= n
                && packed[i] != 0) {
                failures++;
                fprintf(stderr, "test %u: padding byte %zu is %d\n", test, i, packed[i]);
                break;
            }
        free(a); free(w); free(packed); free(c);
    }
    printf("reference: %u of %u random products correct (seed %" PRIu64 ")\n", count - failures, count, seed);
    return failures ? 1 : 0;
}

static int write_file(const char *dir, const char *name, const void *data, size_t nbytes)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *file = fopen(path, "wb");
    if (file == NULL || fwrite(data, 1, nbytes, file) != nbytes) {
        perror(path);
        if (file)
            fclose(file);
        return 1;
    }
    return fclose(file) != 0;
}

/* One random problem written out so the Python tests compare it with host.pack/golden. */
static int dump(const char *dir, uint64_t seed, uint32_t m, uint32_t n, uint32_t k, uint32_t cols, uint32_t ports)
{
    uint64_t state = seed_state(seed);
    size_t packed_bytes = systole_packed_size(n, k, cols);
    int8_t *a = malloc((size_t)m * k), *w = malloc((size_t)n * k), *packed = malloc(packed_bytes);
    int32_t *c = malloc((size_t)m * n * sizeof(int32_t));
    if (!a || !w || !packed || !c)
        return 2;
    fill_int8(&state, a, (size_t)m * k, seed % 4 == 3);
    fill_int8(&state, w, (size_t)n * k, seed % 4 == 3);
    systole_pack_weights(w, n, k, cols, ports, packed);
    systole_ref_matmul(a, k, packed, m, n, k, cols, ports, c, n);
    printf("stream_bytes %zu\n", systole_stream_bytes(n, k, cols, ports));
    int status = write_file(dir, "a.bin", a, (size_t)m * k) || write_file(dir, "w.bin", w, (size_t)n * k)
              || write_file(dir, "packed.bin", packed, packed_bytes)
              || write_file(dir, "c.bin", c, (size_t)m * n * sizeof(int32_t));
    free(a); free(w); free(packed); free(c);
    return status;
}

#endif /* SYSTOLE_NO_MAIN: host-only checks above */

static uint64_t align_up(uint64_t value, uint64_t multiple)
{
    return (value + multiple - 1u) / multiple * multiple;
}

#define GUARD 0x5A

/* W_STRIDE of weights packed back to back by systole_pack_weights; 0 with one port (unused). */
static uint32_t packed_w_stride(const struct systole_dev *dev, uint32_t n, uint32_t k)
{
    return dev->ports > 1u ? (uint32_t)systole_stream_bytes(n, k, dev->cols, dev->ports) : 0u;
}

/*
 * Run `count` random jobs on `dev` with buffers carved from [virt, virt + size), which the
 * device sees at `phys`. C's padding bytes are guards: the accelerator must leave them.
 * A job failing with DMA_READ prints ERR_PORT. Returns the number of failed jobs (0 = pass).
 */
int systole_selftest(struct systole_dev *dev, uint8_t *virt, uint64_t phys, size_t size, uint64_t seed,
                     unsigned count);

int systole_selftest(struct systole_dev *dev, uint8_t *virt, uint64_t phys, size_t size, uint64_t seed,
                     unsigned count)
{
    uint64_t state = seed_state(seed);
    unsigned failures = 0;
    uint32_t max_k = dev->max_k < 512u ? dev->max_k : 512u;
    for (unsigned test = 0; test < count; test++) {
        uint32_t m = 1 + random_below(&state, 2 * dev->rows + 1);
        uint32_t n = 1 + random_below(&state, 3 * dev->cols + 1);
        uint32_t k = test == 0 ? max_k : 1 + random_below(&state, max_k);
        struct systole_job job = {0};
        job.m = m; job.n = n; job.k = k;
        job.a_stride = systole_a_stride(dev, k);
        job.c_stride = systole_c_stride(dev, n) + dev->bus_bytes;  /* a guard beat per row */
        job.w_stride = packed_w_stride(dev, n, k);
        uint64_t a_off = 0, w_off = align_up(a_off + (uint64_t)m * job.a_stride, 4096);
        uint64_t c_off = align_up(w_off + systole_packed_size(n, k, dev->cols), 4096);
        uint64_t end = c_off + (uint64_t)m * job.c_stride;
        if (end > size) {
            fprintf(stderr, "selftest: buffer of %zu bytes is too small (%" PRIu64 " needed)\n", size, end);
            return (int)count;
        }
        job.a_addr = phys + a_off; job.w_addr = phys + w_off; job.c_addr = phys + c_off;
        int8_t *a = (int8_t *)(virt + a_off), *packed = (int8_t *)(virt + w_off);
        int8_t *w = malloc((size_t)n * k);
        int32_t *expect = malloc((size_t)m * n * sizeof(int32_t));
        if (!w || !expect)
            return (int)count;
        memset(virt, 0, (size_t)c_off);
        memset(virt + c_off, GUARD, (size_t)(end - c_off));
        for (uint32_t row = 0; row < m; row++)
            fill_int8(&state, a + (size_t)row * job.a_stride, k, test % 4 == 3);
        fill_int8(&state, w, (size_t)n * k, test % 4 == 3);
        systole_pack_weights(w, n, k, dev->cols, dev->ports, packed);
        systole_ref_matmul(a, job.a_stride, packed, m, n, k, dev->cols, dev->ports, expect, n);
        if (dev->platform.cache_flush)
            dev->platform.cache_flush(virt, (size_t)end);
        int status = systole_run(dev, &job, 1000000u);
        if (dev->platform.cache_invalidate)
            dev->platform.cache_invalidate(virt + c_off, (size_t)(end - c_off));
        int ok = status == SYSTOLE_OK;
        for (uint32_t row = 0; ok && row < m; row++) {
            const uint8_t *c_row = virt + c_off + (size_t)row * job.c_stride;
            int32_t got;
            for (uint32_t ch = 0; ok && ch < n; ch++) {
                memcpy(&got, c_row + 4u * ch, sizeof(got));
                ok = got == expect[(size_t)row * n + ch];
                if (!ok)
                    fprintf(stderr, "job %u: c[%u][%u]=%" PRId32 " expected %" PRId32 "\n", test, row, ch, got,
                            expect[(size_t)row * n + ch]);
            }
            for (uint32_t byte = 4u * n; ok && byte < job.c_stride; byte++) {
                ok = c_row[byte] == GUARD;
                if (!ok)
                    fprintf(stderr, "job %u: guard byte %u of C row %u overwritten\n", test, byte, row);
            }
        }
        struct systole_counters counters;
        systole_read_counters(dev, &counters);
        char port[32] = "";
        if (status == SYSTOLE_E_JOB && dev->err_code == SYSTOLE_ERR_DMA_READ)
            snprintf(port, sizeof(port), " ERR_PORT=%" PRIu32, dev->err_port);
        printf("job %u m=%u n=%u k=%u: %s%s%s%s, busy %" PRIu32 " cycles, stall %" PRIu32 ", %" PRIu32 " beats read\n",
               test, m, n, k, ok ? "ok" : "FAIL", status == SYSTOLE_E_JOB ? " ERR_CODE=" : "",
               status == SYSTOLE_E_JOB ? systole_err_name(dev->err_code) : "", port, counters.busy, counters.stall,
               counters.rd_beats);
        if (!ok && status != SYSTOLE_OK)
            fprintf(stderr, "job %u: %s\n", test, systole_strerror(status));
        failures += !ok;
        free(w);
        free(expect);
    }
    return (int)failures;
}

/*
 * Every refused job of systole_job_vectors.h through systole_check_job and through the
 * hardware's own check (systole_start_unchecked, then systole_wait). Prints one line per
 * job: its fields, then "precheck CODE ADDR hw CODE ADDR beats READ WRITE ok|FAIL".
 * Returns how many disagree with each other or with the vector, or moved a DMA beat.
 * The vectors' addresses are not the buffer's: a bitstream that wrongly accepted one
 * would DMA there. Its RTL has run this function first (sim/test_firmware_rtl.py).
 */
int systole_selftest_refusals(struct systole_dev *dev);

int systole_selftest_refusals(struct systole_dev *dev)
{
    unsigned failures = 0, count = 0;
    for (uint32_t i = 0; i < SYSTOLE_JOB_VECTOR_COUNT; i++) {
        const struct systole_job_vector *vector = &systole_job_vectors[i];
        const struct systole_job *job = &vector->job;
        /* A legal vector's addresses are anywhere in the address space: not run. */
        if (vector->err_code == SYSTOLE_ERR_OK)
            continue;
        count++;
        dev->err_code = SYSTOLE_ERR_OK;
        dev->err_addr = 0;
        int precheck = systole_check_job(dev, job);
        uint32_t pre_code = dev->err_code;
        uint64_t pre_addr = dev->err_addr;
        dev->err_code = SYSTOLE_ERR_OK;
        dev->err_addr = 0;
        int hardware = systole_start_unchecked(dev, job);
        if (hardware == SYSTOLE_OK)
            hardware = systole_wait(dev, 1000000u);
        struct systole_counters counters;
        systole_read_counters(dev, &counters);
        int ok = precheck == SYSTOLE_E_ARGS && hardware == SYSTOLE_E_JOB && pre_code == vector->err_code
              && pre_addr == vector->err_addr && dev->err_code == pre_code && dev->err_addr == pre_addr
              && counters.rd_beats == 0 && counters.wr_beats == 0;
        printf("refusal %" PRIu32 " a_addr 0x%" PRIx64 " w_addr 0x%" PRIx64 " c_addr 0x%" PRIx64 " m %" PRIu32
               " n %" PRIu32 " k %" PRIu32 " a_stride %" PRIu32 " c_stride %" PRIu32 " w_stride %" PRIu32
               ": precheck %s 0x%" PRIx64 " hw %s 0x%" PRIx64 " beats %" PRIu32 " %" PRIu32 " %s\n",
               i, job->a_addr, job->w_addr, job->c_addr, job->m, job->n, job->k, job->a_stride, job->c_stride,
               job->w_stride,
               systole_err_name(pre_code), pre_addr, hardware == SYSTOLE_E_JOB ? systole_err_name(dev->err_code)
               : systole_strerror(hardware), dev->err_addr, counters.rd_beats, counters.wr_beats,
               ok ? "ok" : "FAIL");
        failures += !ok;
    }
    printf("refuse: %u of %u refused jobs agree\n", count - failures, count);
    return (int)failures;
}

/*
 * The largest job of systole_selftest with a 1 us timeout (it needs thousands of
 * cycles): it must time out, the soft reset must leave the engine idle, and two random
 * jobs must pass after it. Returns the number of failed checks (0 = pass).
 */
int systole_selftest_timeout(struct systole_dev *dev, uint8_t *virt, uint64_t phys, size_t size, uint64_t seed);

int systole_selftest_timeout(struct systole_dev *dev, uint8_t *virt, uint64_t phys, size_t size, uint64_t seed)
{
    struct systole_job job = {0};
    job.m = 2 * dev->rows;
    job.n = 3 * dev->cols;
    job.k = dev->max_k < 512u ? dev->max_k : 512u;
    job.a_stride = systole_a_stride(dev, job.k);
    job.c_stride = systole_c_stride(dev, job.n);
    job.w_stride = packed_w_stride(dev, job.n, job.k);
    uint64_t w_off = align_up((uint64_t)job.m * job.a_stride, 4096);
    uint64_t c_off = align_up(w_off + systole_packed_size(job.n, job.k, dev->cols), 4096);
    uint64_t end = c_off + (uint64_t)job.m * job.c_stride;
    if (end > size) {
        fprintf(stderr, "timeout: buffer of %zu bytes is too small (%" PRIu64 " needed)\n", size, end);
        return 1;
    }
    job.a_addr = phys; job.w_addr = phys + w_off; job.c_addr = phys + c_off;
    memset(virt, 0, (size_t)end);
    if (dev->platform.cache_flush)
        dev->platform.cache_flush(virt, (size_t)end);
    int status = systole_run(dev, &job, 1u);
    int idle = SYSTOLE_CTRL_AP_IDLE(systole_read(dev, SYSTOLE_CTRL)) != 0;
    printf("timeout: m=%u n=%u k=%u within 1 us: %s; engine %s after it\n", job.m, job.n, job.k,
           systole_strerror(status), idle ? "idle" : "NOT idle");
    int failures = (status != SYSTOLE_E_TIMEOUT) + !idle;
    return failures + systole_selftest(dev, virt, phys, size, seed, 2);
}

#ifndef SYSTOLE_NO_MAIN
static int usage(void)
{
    fprintf(stderr, "usage: selftest reference [SEED [COUNT]]\n"
                    "       selftest dump DIR SEED M N K COLS PORTS\n"
                    "       selftest run /dev/uioN|PHYS_ADDR UDMABUF [SEED [COUNT]]\n"
                    "       selftest refuse|timeout /dev/uioN|PHYS_ADDR UDMABUF\n"
                    "       selftest errname CODE\n"
                    "       selftest fakeinit | checkjobs | fakewait CODE ADDR PORT | faketimeout TIMEOUT_US STEP_US\n");
    return 2;
}

static uint64_t number(const char *text)
{
    return strtoull(text, NULL, 0);
}

#ifdef __linux__
/* `command` is "run", "refuse" or "timeout". */
static int run_on_board(const char *command, const char *regs, const char *udmabuf, uint64_t seed, unsigned count)
{
    struct systole_mapping reg_map, buf_map;
    int status = regs[0] == '/' ? systole_open_uio(regs, &reg_map) : systole_open_devmem(number(regs), 4096, &reg_map);
    if (status != SYSTOLE_OK) {
        perror(regs);
        return 2;
    }
    if (systole_udmabuf_open(udmabuf, &buf_map) != SYSTOLE_OK) {
        perror(udmabuf);
        return 2;
    }
    struct systole_platform platform = {systole_linux_now_us, NULL, NULL};
    struct systole_dev dev;
    status = systole_init(&dev, reg_map.virt, &platform);
    if (status != SYSTOLE_OK) {
        fprintf(stderr, "init: %s\n", systole_strerror(status));
        return 1;
    }
    printf("systole: %ux%u array, %u-byte bus, %u weight port(s), max K %u\n", dev.rows, dev.cols, dev.bus_bytes,
           dev.ports, dev.max_k);
    int failures;
    if (strcmp(command, "refuse") == 0)
        failures = systole_selftest_refusals(&dev);
    else if (strcmp(command, "timeout") == 0)
        failures = systole_selftest_timeout(&dev, buf_map.virt, buf_map.phys, buf_map.size, seed);
    else {
        failures = systole_selftest(&dev, buf_map.virt, buf_map.phys, buf_map.size, seed, count);
        printf("selftest: %d of %u jobs failed\n", failures, count);
    }
    systole_unmap(&buf_map);
    systole_unmap(&reg_map);
    return failures ? 1 : 0;
}
#endif

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "reference") == 0)
        return reference_check(argc > 2 ? number(argv[2]) : 1, argc > 3 ? (unsigned)number(argv[3]) : 200);
    if (argc == 9 && strcmp(argv[1], "dump") == 0)
        return dump(argv[2], number(argv[3]), (uint32_t)number(argv[4]), (uint32_t)number(argv[5]),
                    (uint32_t)number(argv[6]), (uint32_t)number(argv[7]), (uint32_t)number(argv[8]));
    if (argc == 2 && strcmp(argv[1], "fakeinit") == 0)
        return fake_init();
    if (argc == 2 && strcmp(argv[1], "checkjobs") == 0)
        return fake_check_jobs();
    if (argc == 5 && strcmp(argv[1], "fakewait") == 0)
        return fake_wait((uint32_t)number(argv[2]), number(argv[3]), (uint32_t)number(argv[4]));
    if (argc == 4 && strcmp(argv[1], "faketimeout") == 0)
        return fake_timeout(number(argv[2]), number(argv[3]));
    if (argc == 3 && strcmp(argv[1], "errname") == 0) {
        printf("%s\n", systole_err_name((uint32_t)number(argv[2])));
        return 0;
    }
#ifdef __linux__
    if (argc >= 4 && strcmp(argv[1], "run") == 0)
        return run_on_board("run", argv[2], argv[3], argc > 4 ? number(argv[4]) : 1,
                            argc > 5 ? (unsigned)number(argv[5]) : 20);
    if (argc == 4 && (strcmp(argv[1], "refuse") == 0 || strcmp(argv[1], "timeout") == 0))
        return run_on_board(argv[1], argv[2], argv[3], 1, 0);
#endif
    return usage();
}
#endif
