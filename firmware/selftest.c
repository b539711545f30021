/*
 * Systole self-test: random matmuls on the accelerator against the C reference, in every
 * weight format the bitstream runs (CAP_FORMATS).
 *
 * Without hardware (any Linux build; the tests run them on the host):
 *   selftest reference [SEED [COUNT]]        packing + reference self-check, int8 and int4
 *   selftest dump DIR SEED M N K COLS PORTS FORMAT
 *                                            write a.bin, w.bin (int8) or q.bin s.bin (int4),
 *                                            packed.bin, c.bin; print the stream bytes (W_STRIDE)
 *   selftest errname CODE                    the name of an ERR_CODE value
 *   selftest checkjobs                       systole_check_job on every generated job-check
 *                                            vector (systole_job_vectors.h); exit 1 on a mismatch
 *   selftest fakeinit | fakewait CODE ADDR PORT | faketimeout TIMEOUT_US STEP_US | fakeformat FORMAT
 *                                            init, a job ending with ERR_CODE, a timeout, a job
 *                                            of a weight format, on a register file in RAM
 *                                            (fake_device.h)
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

/* Groups of 32 steps in K: the columns of an int4 scale matrix. */
static uint32_t int4_groups(uint32_t k)
{
    return (k + SYSTOLE_INT4_GROUP - 1u) / SYSTOLE_INT4_GROUP;
}

/*
 * Random weights of one format: int8 `values` [n, k] (w), or int4 `values` [n, k] (q in
 * -8..7) and `scales` [n, ceil(k/32)] (s in 0..15); with `extremes`, only -128/127, or only
 * q -8/7 and s 0/15.
 */
struct weights {
    uint32_t format, n, k;
    int8_t *values;
    uint8_t *scales;         /* int4 only, else NULL */
};

static int weights_alloc(struct weights *w, uint32_t format, uint32_t n, uint32_t k)
{
    w->format = format; w->n = n; w->k = k;
    w->values = malloc((size_t)n * k);
    w->scales = format == SYSTOLE_FORMAT_INT4 ? malloc((size_t)n * int4_groups(k)) : NULL;
    return w->values != NULL && (format != SYSTOLE_FORMAT_INT4 || w->scales != NULL);
}

static void weights_free(struct weights *w)
{
    free(w->values);
    free(w->scales);
}

static void weights_fill(uint64_t *state, struct weights *w, int extremes)
{
    size_t count = (size_t)w->n * w->k;
    if (w->format == SYSTOLE_FORMAT_INT8) {
        fill_int8(state, w->values, count, extremes);
        return;
    }
    const uint32_t q_span = SYSTOLE_INT4_Q_MAX - SYSTOLE_INT4_Q_MIN + 1;
    for (size_t i = 0; i < count; i++)
        w->values[i] = (int8_t)(extremes ? (next_random(state) >> 63 ? SYSTOLE_INT4_Q_MAX : SYSTOLE_INT4_Q_MIN)
                                         : SYSTOLE_INT4_Q_MIN + (int32_t)random_below(state, q_span));
    for (size_t i = 0; i < (size_t)w->n * int4_groups(w->k); i++)
        w->scales[i] = (uint8_t)(extremes ? (next_random(state) >> 63 ? SYSTOLE_INT4_S_MAX : 0u)
                                          : random_below(state, SYSTOLE_INT4_S_MAX + 1u));
}

static void weights_pack(const struct weights *w, uint32_t cols, uint32_t ports, int8_t *packed)
{
    if (w->format == SYSTOLE_FORMAT_INT8)
        systole_pack_weights(w->values, w->n, w->k, cols, ports, packed);
    else
        systole_pack_int4(w->values, w->scales, w->n, w->k, cols, ports, packed);
}

#ifndef SYSTOLE_NO_MAIN
/* The weight the array multiplies, from the unpacked values (never from the packing). */
static int32_t weight_at(const struct weights *w, uint32_t channel, uint32_t step)
{
    int32_t value = w->values[(size_t)channel * w->k + step];
    if (w->format == SYSTOLE_FORMAT_INT8)
        return value;
    return value * w->scales[(size_t)channel * int4_groups(w->k) + step / SYSTOLE_INT4_GROUP];
}

/* Reference self-check without hardware: the product of packed weights equals the plain
 * sum of a * w (int8) or a * q * s (int4), over 1, 2 or 4 ports; the padding channels of
 * the last tile are zero. Formats go int8, int8, int8, int8, int4, ... in runs of four, so
 * the extremes (every fourth test) fall to each format in turn. */
static int reference_check(uint64_t seed, unsigned count)
{
    uint64_t state = seed_state(seed);
    unsigned failures = 0, per_format[SYSTOLE_FORMAT_COUNT] = {0};
    for (unsigned test = 0; test < count; test++) {
        uint32_t format = test / 4u % SYSTOLE_FORMAT_COUNT;
        uint32_t m = 1 + random_below(&state, 9), n = 1 + random_below(&state, 40);
        uint32_t k = 1 + random_below(&state, 300), cols = 4u << random_below(&state, 3);
        uint32_t ports = 1u << random_below(&state, 3);
        struct weights w;
        int8_t *a = malloc((size_t)m * k), *packed = malloc(systole_packed_size(n, k, cols, format));
        int32_t *c = malloc((size_t)m * n * sizeof(int32_t));
        if (!weights_alloc(&w, format, n, k) || !a || !packed || !c) {
            fprintf(stderr, "out of memory\n");
            return 2;
        }
        fill_int8(&state, a, (size_t)m * k, test % 4 == 3);
        weights_fill(&state, &w, test % 4 == 3);
        weights_pack(&w, cols, ports, packed);
        systole_ref_matmul(a, k, packed, format, m, n, k, cols, ports, c, n);
        unsigned failed = 0;
        for (uint32_t row = 0; row < m; row++)
            for (uint32_t ch = 0; ch < n; ch++) {
                int64_t sum = 0;
                for (uint32_t kk = 0; kk < k; kk++)
                    sum += (int64_t)a[(size_t)row * k + kk] * weight_at(&w, ch, kk);
                if (sum != c[(size_t)row * n + ch]) {
                    failed = 1;
                    fprintf(stderr, "test %u (%s m=%u n=%u k=%u cols=%u ports=%u): c[%u][%u]=%" PRId32
                            " expected %" PRId64 "\n", test, systole_format_name(format), m, n, k, cols, ports,
                            row, ch, c[(size_t)row * n + ch], sum);
                    row = m;
                    break;
                }
            }
        /* Padding channels of the last tile must be zero: byte i is channel tile*cols +
         * port*port_bytes + j of its port's stream. */
        size_t padded = systole_packed_size(n, k, cols, format);
        size_t stream = systole_stream_bytes(n, k, cols, ports, format);
        size_t port_bytes = cols / ports, tile_bytes = (size_t)systole_tile_beats(format, k) * port_bytes;
        for (size_t i = 0; !failed && i < padded; i++)
            if (i % stream / tile_bytes * cols + i / stream * port_bytes + i % port_bytes >= n && packed[i] != 0) {
                failed = 1;
                fprintf(stderr, "test %u (%s): padding byte %zu is %d\n", test, systole_format_name(format), i,
                        packed[i]);
            }
        failures += failed;
        per_format[format] += !failed;
        weights_free(&w);
        free(a); free(packed); free(c);
    }
    printf("reference: %u of %u random products correct (seed %" PRIu64 ")", count - failures, count, seed);
#define COUNT(name) printf(", %s %u", systole_format_name(SYSTOLE_FORMAT_##name), per_format[SYSTOLE_FORMAT_##name]);
    SYSTOLE_FOR_EACH_FORMAT(COUNT)
#undef COUNT
    printf("\n");
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
static int dump(const char *dir, uint64_t seed, uint32_t m, uint32_t n, uint32_t k, uint32_t cols, uint32_t ports,
                uint32_t format)
{
    if (systole_tile_beats(format, 1) == 0u) {
        fprintf(stderr, "dump: unknown weight format %u\n", format);
        return 2;
    }
    uint64_t state = seed_state(seed);
    size_t packed_bytes = systole_packed_size(n, k, cols, format);
    struct weights w;
    int8_t *a = malloc((size_t)m * k), *packed = malloc(packed_bytes);
    int32_t *c = malloc((size_t)m * n * sizeof(int32_t));
    if (!weights_alloc(&w, format, n, k) || !a || !packed || !c)
        return 2;
    fill_int8(&state, a, (size_t)m * k, seed % 4 == 3);
    weights_fill(&state, &w, seed % 4 == 3);
    weights_pack(&w, cols, ports, packed);
    systole_ref_matmul(a, k, packed, format, m, n, k, cols, ports, c, n);
    printf("stream_bytes %zu\n", systole_stream_bytes(n, k, cols, ports, format));
    int status = write_file(dir, "a.bin", a, (size_t)m * k)
              || (format == SYSTOLE_FORMAT_INT8
                  ? write_file(dir, "w.bin", w.values, (size_t)n * k)
                  : write_file(dir, "q.bin", w.values, (size_t)n * k)
                    || write_file(dir, "s.bin", w.scales, (size_t)n * int4_groups(k)))
              || write_file(dir, "packed.bin", packed, packed_bytes)
              || write_file(dir, "c.bin", c, (size_t)m * n * sizeof(int32_t));
    weights_free(&w);
    free(a); free(packed); free(c);
    return status;
}

#endif /* SYSTOLE_NO_MAIN: host-only checks above */

static uint64_t align_up(uint64_t value, uint64_t multiple)
{
    return (value + multiple - 1u) / multiple * multiple;
}

#define GUARD 0x5A

/* W_STRIDE of weights packed back to back by systole_pack_weights/_int4; 0 with one port (unused). */
static uint32_t packed_w_stride(const struct systole_dev *dev, uint32_t n, uint32_t k, uint32_t format)
{
    return dev->ports > 1u ? (uint32_t)systole_stream_bytes(n, k, dev->cols, dev->ports, format) : 0u;
}

/* The weight formats both the driver and the device know (CAP_FORMATS), in W_FORMAT order;
 * returns how many (int8 alone on a bitstream without int4). */
static uint32_t device_formats(const struct systole_dev *dev, uint32_t formats[SYSTOLE_FORMAT_COUNT])
{
    uint32_t count = 0;
    for (uint32_t format = 0; format < SYSTOLE_FORMAT_COUNT; format++)
        if (systole_format_supported(dev, format))
            formats[count++] = format;
    return count;
}

/*
 * Run `count` random jobs on `dev` with buffers carved from [virt, virt + size), which the
 * device sees at `phys`: A at 0, the W streams back to back and C each on the next 4 KiB.
 * C's padding bytes are guards: the accelerator must leave them. The weight formats the
 * device runs (CAP_FORMATS) take turns, job 0 in the first (int8); each line ends with the
 * job's format. A job failing with DMA_READ prints ERR_PORT. Returns the number of failed
 * jobs (0 = pass).
 */
int systole_selftest(struct systole_dev *dev, uint8_t *virt, uint64_t phys, size_t size, uint64_t seed,
                     unsigned count);

int systole_selftest(struct systole_dev *dev, uint8_t *virt, uint64_t phys, size_t size, uint64_t seed,
                     unsigned count)
{
    uint64_t state = seed_state(seed);
    unsigned failures = 0;
    uint32_t max_k = dev->max_k < 512u ? dev->max_k : 512u;
    uint32_t formats[SYSTOLE_FORMAT_COUNT], format_count = device_formats(dev, formats);
    if (format_count == 0) {
        fprintf(stderr, "selftest: the device runs no weight format this driver knows (CAP_FORMATS 0x%" PRIx32
                ")\n", dev->formats);
        return (int)count;
    }
    for (unsigned test = 0; test < count; test++) {
        /* test + test / 4: the formats alternate, and the extremes (every fourth job) fall to
         * each in turn. */
        uint32_t format = formats[(test + test / 4u) % format_count];
        uint32_t m = 1 + random_below(&state, 2 * dev->rows + 1);
        uint32_t n = 1 + random_below(&state, 3 * dev->cols + 1);
        uint32_t k = test == 0 ? max_k : 1 + random_below(&state, max_k);
        struct systole_job job = {0};
        job.m = m; job.n = n; job.k = k;
        job.a_stride = systole_a_stride(dev, k);
        job.c_stride = systole_c_stride(dev, n) + dev->bus_bytes;  /* a guard beat per row */
        job.w_stride = packed_w_stride(dev, n, k, format);
        job.w_format = format;
        uint64_t a_off = 0, w_off = align_up(a_off + (uint64_t)m * job.a_stride, 4096);
        uint64_t c_off = align_up(w_off + systole_packed_size(n, k, dev->cols, format), 4096);
        uint64_t end = c_off + (uint64_t)m * job.c_stride;
        if (end > size) {
            fprintf(stderr, "selftest: buffer of %zu bytes is too small (%" PRIu64 " needed)\n", size, end);
            return (int)count;
        }
        job.a_addr = phys + a_off; job.w_addr = phys + w_off; job.c_addr = phys + c_off;
        int8_t *a = (int8_t *)(virt + a_off), *packed = (int8_t *)(virt + w_off);
        struct weights w;
        int32_t *expect = malloc((size_t)m * n * sizeof(int32_t));
        if (!weights_alloc(&w, format, n, k) || !expect)
            return (int)count;
        memset(virt, 0, (size_t)c_off);
        memset(virt + c_off, GUARD, (size_t)(end - c_off));
        for (uint32_t row = 0; row < m; row++)
            fill_int8(&state, a + (size_t)row * job.a_stride, k, test % 4 == 3);
        weights_fill(&state, &w, test % 4 == 3);
        weights_pack(&w, dev->cols, dev->ports, packed);
        systole_ref_matmul(a, job.a_stride, packed, format, m, n, k, dev->cols, dev->ports, expect, n);
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
        const char *err_name = status == SYSTOLE_E_JOB ? systole_err_name(dev->err_code) : "";
        printf("job %u m=%u n=%u k=%u: %s%s%s%s, busy %" PRIu32 " cycles, stall %" PRIu32 ", %" PRIu32
               " beats read, format %s\n", test, m, n, k, ok ? "ok" : "FAIL", *err_name ? " ERR_CODE=" : "", err_name,
               port, counters.busy, counters.stall, counters.rd_beats, systole_format_name(format));
        if (!ok && status != SYSTOLE_OK)
            fprintf(stderr, "job %u: %s\n", test, systole_strerror(status));
        failures += !ok;
        weights_free(&w);
        free(expect);
    }
    return (int)failures;
}

/*
 * Every refused job of systole_job_vectors.h through systole_check_job and through the
 * hardware's own check (systole_start_unchecked, then systole_wait). Prints one line per
 * job: its fields, then "precheck CODE ADDR hw CODE ADDR beats READ WRITE ok|FAIL".
 * Then, for each weight format the driver knows and CAP_FORMATS lacks, that a job of it
 * was among them, refused with FORMAT by both ("refuse: format NAME ...").
 * Returns how many disagree with each other or with the vector, or moved a DMA beat, plus
 * the formats lacking such a refusal.
 * The vectors' addresses are not the buffer's: a bitstream that wrongly accepted one
 * would DMA there. Its RTL has run this function first (sim/test_firmware_rtl.py).
 */
int systole_selftest_refusals(struct systole_dev *dev);

int systole_selftest_refusals(struct systole_dev *dev)
{
    unsigned failures = 0, count = 0, format_refused[SYSTOLE_FORMAT_COUNT] = {0};
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
        int expect_status = vector->err_code == SYSTOLE_ERR_FORMAT ? SYSTOLE_E_FORMAT : SYSTOLE_E_ARGS;
        int ok = precheck == expect_status && hardware == SYSTOLE_E_JOB && pre_code == vector->err_code
              && pre_addr == vector->err_addr && dev->err_code == pre_code && dev->err_addr == pre_addr
              && counters.rd_beats == 0 && counters.wr_beats == 0;
        if (ok && vector->err_code == SYSTOLE_ERR_FORMAT && job->w_format < SYSTOLE_FORMAT_COUNT)
            format_refused[job->w_format]++;
        printf("refusal %" PRIu32 " a_addr 0x%" PRIx64 " w_addr 0x%" PRIx64 " c_addr 0x%" PRIx64 " m %" PRIu32
               " n %" PRIu32 " k %" PRIu32 " a_stride %" PRIu32 " c_stride %" PRIu32 " w_stride %" PRIu32
               " w_format %" PRIu32 ": precheck %s 0x%" PRIx64 " hw %s 0x%" PRIx64 " beats %" PRIu32 " %" PRIu32
               " %s\n", i, job->a_addr, job->w_addr, job->c_addr, job->m, job->n, job->k, job->a_stride,
               job->c_stride, job->w_stride, job->w_format,
               systole_err_name(pre_code), pre_addr, hardware == SYSTOLE_E_JOB ? systole_err_name(dev->err_code)
               : systole_strerror(hardware), dev->err_addr, counters.rd_beats, counters.wr_beats,
               ok ? "ok" : "FAIL");
        failures += !ok;
    }
    printf("refuse: %u of %u refused jobs agree\n", count - failures, count);
    unsigned format_failures = 0;
    for (uint32_t format = 0; format < SYSTOLE_FORMAT_COUNT; format++) {
        if (systole_format_supported(dev, format))
            continue;
        format_failures += format_refused[format] == 0;
        printf("refuse: format %s, not in CAP_FORMATS 0x%" PRIx32 ": %u job(s) refused with FORMAT%s\n",
               systole_format_name(format), dev->formats, format_refused[format],
               format_refused[format] ? "" : " FAIL");
    }
    return (int)(failures + format_failures);
}

/*
 * The largest job of systole_selftest with a 1 us timeout (it needs thousands of
 * cycles): it must time out, the soft reset must leave the engine idle, and two random
 * jobs must pass after it. Returns the number of failed checks (0 = pass).
 */
int systole_selftest_timeout(struct systole_dev *dev, uint8_t *virt, uint64_t phys, size_t size, uint64_t seed);

int systole_selftest_timeout(struct systole_dev *dev, uint8_t *virt, uint64_t phys, size_t size, uint64_t seed)
{
    uint32_t formats[SYSTOLE_FORMAT_COUNT];
    if (device_formats(dev, formats) == 0) {
        fprintf(stderr, "timeout: the device runs no weight format this driver knows\n");
        return 1;
    }
    struct systole_job job = {0};
    job.m = 2 * dev->rows;
    job.n = 3 * dev->cols;
    job.k = dev->max_k < 512u ? dev->max_k : 512u;
    job.a_stride = systole_a_stride(dev, job.k);
    job.c_stride = systole_c_stride(dev, job.n);
    job.w_format = formats[0];
    job.w_stride = packed_w_stride(dev, job.n, job.k, job.w_format);
    uint64_t w_off = align_up((uint64_t)job.m * job.a_stride, 4096);
    uint64_t c_off = align_up(w_off + systole_packed_size(job.n, job.k, dev->cols, job.w_format), 4096);
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
                    "       selftest dump DIR SEED M N K COLS PORTS FORMAT\n"
                    "       selftest run /dev/uioN|PHYS_ADDR UDMABUF [SEED [COUNT]]\n"
                    "       selftest refuse|timeout /dev/uioN|PHYS_ADDR UDMABUF\n"
                    "       selftest errname CODE\n"
                    "       selftest fakeinit | checkjobs | fakewait CODE ADDR PORT | faketimeout TIMEOUT_US STEP_US\n"
                    "       selftest fakeformat FORMAT\n");
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
    if (argc == 10 && strcmp(argv[1], "dump") == 0)
        return dump(argv[2], number(argv[3]), (uint32_t)number(argv[4]), (uint32_t)number(argv[5]),
                    (uint32_t)number(argv[6]), (uint32_t)number(argv[7]), (uint32_t)number(argv[8]),
                    (uint32_t)number(argv[9]));
    if (argc == 2 && strcmp(argv[1], "fakeinit") == 0)
        return fake_init();
    if (argc == 2 && strcmp(argv[1], "checkjobs") == 0)
        return fake_check_jobs();
    if (argc == 5 && strcmp(argv[1], "fakewait") == 0)
        return fake_wait((uint32_t)number(argv[2]), number(argv[3]), (uint32_t)number(argv[4]));
    if (argc == 4 && strcmp(argv[1], "faketimeout") == 0)
        return fake_timeout(number(argv[2]), number(argv[3]));
    if (argc == 3 && strcmp(argv[1], "fakeformat") == 0)
        return fake_format((uint32_t)number(argv[2]));
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
