/*
 * The register transport of SYSTOLE_REMOTE_BUS builds (see systole.h): each register
 * access is one request of host/platforms/sim.py's protocol, request <B op><Q a><Q b>,
 * reply <B status><Q value>, little-endian, on the stream socket $SYSTOLE_REMOTE_FD.
 *
 * Why this shape: sim/test_firmware_rtl.py relays these requests into a CosimSession
 * unchanged, so the session's process start, build cache, timeouts and log stay one
 * implementation; speaking to the simulator directly would restate all of them in C.
 * The DDR image needs no transport: the self-test maps it as its u-dma-buf.
 *
 * Time: a wait's pause is WAIT_IRQ for PAUSE_CYCLES, and now_us is the simulated cycle
 * count over $SYSTOLE_REMOTE_CLOCK_MHZ, so timeouts are deterministic. A failed request
 * ends the process with status 3: the bus has gone, as on a hung board.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "systole.h"

/* host/platforms/sim.py OPS, in order (sim/test_firmware_rtl.py checks that they agree). */
enum remote_op { OP_READ32, OP_WRITE32, OP_WAIT_IRQ, OP_NOW };

#define PAUSE_CYCLES 32u

static int remote_fd(void)
{
    static int fd = -1;
    if (fd < 0) {
        const char *text = getenv("SYSTOLE_REMOTE_FD");
        if (text == NULL) {
            fprintf(stderr, "remote bus: SYSTOLE_REMOTE_FD is not set\n");
            exit(3);
        }
        fd = atoi(text);
    }
    return fd;
}

static void transfer(int fd, unsigned char *bytes, size_t size, int sending)
{
    for (size_t done = 0; done < size;) {
        ssize_t moved = sending ? write(fd, bytes + done, size - done) : read(fd, bytes + done, size - done);
        if (moved <= 0) {
            fprintf(stderr, "remote bus: the transport closed\n");
            exit(3);
        }
        done += (size_t)moved;
    }
}

static uint64_t request(enum remote_op op, uint64_t a, uint64_t b)
{
    unsigned char message[17];
    message[0] = (unsigned char)op;
    for (unsigned byte = 0; byte < 8u; byte++) {
        message[1 + byte] = (unsigned char)(a >> (8u * byte));
        message[9 + byte] = (unsigned char)(b >> (8u * byte));
    }
    transfer(remote_fd(), message, sizeof(message), 1);
    transfer(remote_fd(), message, 9, 0);
    uint64_t value = 0;
    for (unsigned byte = 0; byte < 8u; byte++)
        value |= (uint64_t)message[1 + byte] << (8u * byte);
    if (message[0] != 0u) {
        fprintf(stderr, "remote bus: request %d (0x%llx, 0x%llx) failed\n", (int)op, (unsigned long long)a,
                (unsigned long long)b);
        exit(3);
    }
    return value;
}

uint32_t systole_remote_read32(uint32_t offset)
{
    return (uint32_t)request(OP_READ32, offset, 0);
}

void systole_remote_write32(uint32_t offset, uint32_t value)
{
    (void)request(OP_WRITE32, offset, value);
}

void systole_remote_pause(void)
{
    (void)request(OP_WAIT_IRQ, PAUSE_CYCLES, 0);
}

uint64_t systole_remote_now_us(void)
{
    static double mhz = 0.0;
    if (mhz <= 0.0) {
        const char *text = getenv("SYSTOLE_REMOTE_CLOCK_MHZ");
        mhz = text != NULL ? atof(text) : 0.0;
        if (mhz <= 0.0) {
            fprintf(stderr, "remote bus: SYSTOLE_REMOTE_CLOCK_MHZ is not a clock in MHz\n");
            exit(3);
        }
    }
    return (uint64_t)((double)request(OP_NOW, 0, 0) / mhz);
}
