/*
 * Driver checks without hardware (host builds of the self-test): the driver runs against
 * a register file in RAM whose constant registers read what systole_regs.h expects, and
 * a fake platform clock plays the engine (it ends the job after a set number of polls).
 *
 * fake_init, fake_wait, fake_timeout and fake_format print what the driver did ("key
 * value" lines) and return 0 (2 if the fake device does not initialise);
 * tests/test_firmware.py judges the output against hdl.spec. fake_check_jobs judges itself against the generated
 * systole_job_vectors.h: it prints each disagreement and returns 1 if there is one.
 */
#ifndef SYSTOLE_FAKE_DEVICE_H
#define SYSTOLE_FAKE_DEVICE_H

#include <stdint.h>

/* systole_init() on a good register file, then with each kind of mismatch. */
int fake_init(void);
/* systole_check_job() on every vector of systole_job_vectors.h; prints each mismatch. */
int fake_check_jobs(void);
/* systole_run() of a legal job that ends with ERR_CODE err_code, ERR_ADDR err_addr and
 * ERR_PORT err_port. */
int fake_wait(uint32_t err_code, uint64_t err_addr, uint32_t err_port);
/* systole_run() of a job that never ends; the clock advances step_us per poll. */
int fake_timeout(uint64_t timeout_us, uint64_t step_us);
/* systole_run() of the legal job with W_FORMAT w_format: a format CAP_FORMATS does not list
 * must be refused before a register is written. */
int fake_format(uint32_t w_format);

#endif /* SYSTOLE_FAKE_DEVICE_H */
