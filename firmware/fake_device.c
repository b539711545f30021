/* The driver against a register file in RAM; see fake_device.h for the commands. */
#include "fake_device.h"

#include <inttypes.h>
#include <stdio.h>

#include "systole.h"
#include "systole_job_vectors.h"

#define WORDS (SYSTOLE_REG_SPAN / 4u)

/* volatile: the fake clock changes it while the driver polls it. */
static volatile uint32_t regs[WORDS];

/* Every register 0 but the constant ones, which read what the header expects; idle. */
static void reset_regs(void)
{
    for (uint32_t word = 0; word < WORDS; word++)
        regs[word] = 0;
#define EXPECT(name) regs[SYSTOLE_##name / 4u] = SYSTOLE_EXPECT_##name;
    SYSTOLE_FOR_EACH_EXPECT(EXPECT)
#undef EXPECT
    regs[SYSTOLE_CTRL / 4u] = SYSTOLE_CTRL_AP_IDLE_MASK;
}

/* The platform clock: each call advances time by step_us; call number finish_after
 * ends the job as the engine would (ERR_* set, then ap_done with ap_idle and ap_ready). */
static struct fake_clock {
    uint64_t now_us, step_us, first_us, last_us;
    unsigned calls, finish_after;
    uint32_t err_code, err_port;
    uint64_t err_addr;
} fake_clock;

static uint64_t fake_now_us(void)
{
    fake_clock.now_us += fake_clock.step_us;
    if (++fake_clock.calls == 1u)
        fake_clock.first_us = fake_clock.now_us;
    fake_clock.last_us = fake_clock.now_us;
    if (fake_clock.calls == fake_clock.finish_after) {
        regs[SYSTOLE_ERR_CODE / 4u] = fake_clock.err_code;
        regs[SYSTOLE_ERR_ADDR_LO / 4u] = (uint32_t)fake_clock.err_addr;
        regs[SYSTOLE_ERR_ADDR_HI / 4u] = (uint32_t)(fake_clock.err_addr >> 32);
        regs[SYSTOLE_ERR_PORT / 4u] = fake_clock.err_port;
        regs[SYSTOLE_CTRL / 4u] = SYSTOLE_CTRL_AP_DONE_MASK | SYSTOLE_CTRL_AP_IDLE_MASK | SYSTOLE_CTRL_AP_READY_MASK;
    }
    return fake_clock.now_us;
}

/* A fresh register file and clock, and systole_init() on them; nonzero if init fails. */
static int open_fake(struct systole_dev *dev, int with_clock)
{
    static const struct systole_platform platform = {fake_now_us, NULL, NULL};
    reset_regs();
    fake_clock = (struct fake_clock){0};
    int status = systole_init(dev, regs, with_clock ? &platform : NULL);
    if (status != SYSTOLE_OK)
        fprintf(stderr, "fake device: init failed: %s\n", systole_strerror(status));
    return status != SYSTOLE_OK;
}

/* The first vector the rules accept: a legal job of this configuration. */
static const struct systole_job *legal_job(void)
{
    for (uint32_t i = 0; i < SYSTOLE_JOB_VECTOR_COUNT; i++)
        if (systole_job_vectors[i].err_code == SYSTOLE_ERR_OK)
            return &systole_job_vectors[i].job;
    return NULL;  /* gen.job_vectors always emits one */
}

static void print_job(const struct systole_job *job)
{
    printf("job a_addr 0x%" PRIx64 "\njob w_addr 0x%" PRIx64 "\njob c_addr 0x%" PRIx64 "\n"
           "job m %" PRIu32 "\njob n %" PRIu32 "\njob k %" PRIu32 "\n"
           "job a_stride %" PRIu32 "\njob c_stride %" PRIu32 "\njob w_stride %" PRIu32 "\njob w_format %" PRIu32 "\n",
           job->a_addr, job->w_addr, job->c_addr, job->m, job->n, job->k, job->a_stride, job->c_stride, job->w_stride,
           job->w_format);
}

static void print_regs(void)
{
#define REG(name) printf("reg " #name " 0x%08" PRIx32 "\n", regs[SYSTOLE_##name / 4u]);
    SYSTOLE_FOR_EACH_REGISTER(REG)
#undef REG
}

int fake_init(void)
{
    const struct { const char *name; uint32_t offset, bad_value; } cases[] = {
        {"good", SYSTOLE_ID, SYSTOLE_EXPECT_ID},
        {"id", SYSTOLE_ID, 0xDEADBEEFu},
        {"version", SYSTOLE_VERSION, SYSTOLE_EXPECT_VERSION + 0x10000u},
        {"minor", SYSTOLE_VERSION, SYSTOLE_EXPECT_VERSION + 1u},
        {"array", SYSTOLE_CAP_ARRAY, SYSTOLE_EXPECT_CAP_ARRAY + 1u},
        {"bus", SYSTOLE_CAP_BUS, SYSTOLE_EXPECT_CAP_BUS ^ 0x10000u},
        {"max_k", SYSTOLE_CAP_MAX_K, SYSTOLE_EXPECT_CAP_MAX_K - 1u},
        {"ports", SYSTOLE_CAP_PORTS, SYSTOLE_EXPECT_CAP_PORTS + 1u},
        {"coherent_io", SYSTOLE_CAP_PORTS, SYSTOLE_EXPECT_CAP_PORTS ^ SYSTOLE_CAP_PORTS_COHERENT_IO_MASK},
        {"formats", SYSTOLE_CAP_FORMATS, SYSTOLE_EXPECT_CAP_FORMATS ^ (1u << SYSTOLE_FORMAT_INT4)},
    };
    for (size_t which = 0; which < sizeof(cases) / sizeof(cases[0]); which++) {
        reset_regs();
        regs[cases[which].offset / 4u] = cases[which].bad_value;
        struct systole_dev dev;
        int status = systole_init(&dev, regs, NULL);
        printf("%s %d rows=%u cols=%u bus_bytes=%u addr_width=%u max_burst=%u max_k=%u ports=%u coherent_io=%u "
               "formats=0x%x ctrl=0x%x\n", cases[which].name, status, dev.rows, dev.cols, dev.bus_bytes, dev.addr_width,
               dev.max_burst, dev.max_k, dev.ports, dev.coherent_io, dev.formats, regs[SYSTOLE_CTRL / 4u]);
    }
    return 0;
}

int fake_check_jobs(void)
{
    struct systole_dev dev;
    if (open_fake(&dev, 0))
        return 2;
    uint32_t mismatches = 0;
    for (uint32_t i = 0; i < SYSTOLE_JOB_VECTOR_COUNT; i++) {
        const struct systole_job_vector *vector = &systole_job_vectors[i];
        const struct systole_job *job = &vector->job;
        dev.err_code = SYSTOLE_ERR_OK;
        dev.err_addr = 0;
        int status = systole_check_job(&dev, job);
        int expect_status = vector->err_code == SYSTOLE_ERR_OK ? SYSTOLE_OK
                          : vector->err_code == SYSTOLE_ERR_FORMAT ? SYSTOLE_E_FORMAT : SYSTOLE_E_ARGS;
        if (status == expect_status && dev.err_code == vector->err_code && dev.err_addr == vector->err_addr)
            continue;
        mismatches++;
        printf("vector %" PRIu32 " (a 0x%" PRIx64 " w 0x%" PRIx64 " c 0x%" PRIx64 " m %" PRIu32 " n %" PRIu32
               " k %" PRIu32 " a_stride %" PRIu32 " c_stride %" PRIu32 " w_stride %" PRIu32 " w_format %" PRIu32
               "): %s %s at 0x%" PRIx64 ", the rules give %s at 0x%" PRIx64 "\n",
               i, job->a_addr, job->w_addr, job->c_addr, job->m, job->n, job->k, job->a_stride, job->c_stride,
               job->w_stride, job->w_format,
               systole_strerror(status), systole_err_name(dev.err_code), dev.err_addr,
               systole_err_name(vector->err_code), vector->err_addr);
    }
    printf("checkjobs: %" PRIu32 " of %u vectors agree (seed %u)\n", SYSTOLE_JOB_VECTOR_COUNT - mismatches,
           SYSTOLE_JOB_VECTOR_COUNT, SYSTOLE_JOB_VECTOR_SEED);
    return mismatches ? 1 : 0;
}

int fake_wait(uint32_t err_code, uint64_t err_addr, uint32_t err_port)
{
    struct systole_dev dev;
    if (open_fake(&dev, 1))
        return 2;
    /* Call 1 starts the wait, calls 2 and 3 are polls: the job ends during the second. */
    fake_clock.step_us = 1;
    fake_clock.finish_after = 3;
    fake_clock.err_code = err_code;
    fake_clock.err_addr = err_addr;
    fake_clock.err_port = err_port;
    const struct systole_job *job = legal_job();
    int status = systole_run(&dev, job, 1000000u);
    printf("status %d\nerr_code %" PRIu32 "\nerr_name %s\nerr_addr 0x%" PRIx64 "\nerr_port %" PRIu32
           "\nclock_calls %u\nfinish_after %u\n", status, dev.err_code, systole_err_name(dev.err_code), dev.err_addr,
           dev.err_port, fake_clock.calls, fake_clock.finish_after);
    print_job(job);
    print_regs();
    return 0;
}

int fake_timeout(uint64_t timeout_us, uint64_t step_us)
{
    struct systole_dev dev;
    if (open_fake(&dev, 1))
        return 2;
    fake_clock.step_us = step_us;
    const struct systole_job *job = legal_job();
    int status = systole_run(&dev, job, timeout_us);
    printf("status %d\nwaited_us %" PRIu64 "\nclock_calls %u\n", status, fake_clock.last_us - fake_clock.first_us,
           fake_clock.calls);
    print_job(job);
    print_regs();
    return 0;
}

int fake_format(uint32_t w_format)
{
    struct systole_dev dev;
    if (open_fake(&dev, 1))
        return 2;
    fake_clock.step_us = 1;
    fake_clock.finish_after = 3;
    struct systole_job job = *legal_job();
    job.w_format = w_format;
    /* Any register word that differs after the call was written by the driver. */
    uint32_t before[WORDS];
    for (uint32_t word = 0; word < WORDS; word++)
        before[word] = regs[word];
    int status = systole_run(&dev, &job, 1000000u);
    unsigned written = 0;
    for (uint32_t word = 0; word < WORDS; word++)
        written += regs[word] != before[word];
    printf("status %d\nstrerror %s\nsupported %d\nformat_name %s\nerr_code %" PRIu32 "\nerr_name %s\n"
           "err_addr 0x%" PRIx64 "\nwritten %u\n", status, systole_strerror(status),
           systole_format_supported(&dev, w_format), systole_format_name(w_format), dev.err_code,
           systole_err_name(dev.err_code), dev.err_addr, written);
    print_job(&job);
    print_regs();
    return 0;
}
