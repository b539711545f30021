/*
 * A bulk memory transfer over the link's UDP transport in one call: the host side of the
 * Nexys Video's Ethernet bridge at wire speed.
 *
 * host/platforms/udp.py's UdpLink moves device memory in windows of MEM_WRITE or MEM_READ
 * requests, one frame a datagram (hdl/spec/link_protocol.py). In Python each datagram
 * costs ~20 us of CPU, which caps a transfer near 50 MB/s; systole_udp_bulk() runs the
 * same window here, with the same rules, and hands anything unusual back:
 *
 * - the range is cut into requests that each stay inside one max_payload window
 *   (link.py's _chunks); a request is numbered when it is first sent: writes from the
 *   write counter (state-changing: resent under the same seq), reads from the read
 *   counter; at most `window` are in flight, matched by (cmd, seq) however they come back;
 * - an answer OK completes its request (a read's payload copied into place; a payload
 *   of another length is an error for the caller); CRC or TRUNCATED (not executed) sends
 *   the same frame again; STALE to a write records it as overtaken (the caller reads its
 *   range back, as UdpLink does); any other status ends the call;
 * - a datagram that is not one response frame is counted (malformed), one whose CRC
 *   fails is counted too and charged to the oldest request in flight, a good frame for
 *   no request in flight is counted stale;
 * - a request unanswered for timeout_ns is sent again, at most `retries` times after the
 *   first send; then the call ends (the caller raises LinkTimeout or LinkCrcError).
 *
 * The frame layouts and the CRC (CRC-16/CCITT, initial 0xFFFF, not reflected: Python's
 * binascii.crc_hqx) are the protocol's; tests/test_link_udp.py checks this code against
 * hdl.spec.link_protocol's encoder and decoder through the Python bridge model, faults
 * included. Nothing here restates a register or a command number: the caller passes
 * the command and the statuses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* The call's inputs and results (host/platforms/udp.py's _Bulk mirrors this layout). */
struct systole_udp_bulk {
    int32_t fd;                 /* a connected UDP socket */
    uint32_t command;           /* MEM_WRITE or MEM_READ */
    uint32_t writes;            /* 1: the command changes state (numbered from write_seq) */
    uint32_t max_payload;       /* the bridge's window: no request crosses a multiple of it */
    uint64_t address;           /* device address of data[0] */
    uint8_t *data;              /* the bytes to write, or where the read bytes go */
    uint64_t nbytes;
    uint32_t window;            /* requests in flight at most */
    uint32_t retries;           /* sends after the first before giving up */
    uint64_t timeout_ns;        /* one answer's wait */
    uint32_t seq_modulus;
    uint32_t write_seq;         /* in: the last write seq used; out: after this call's */
    uint32_t read_seq;          /* likewise for reads */
    uint8_t request_sync, response_sync, status_ok, status_crc;
    uint8_t status_truncated, status_stale, pad[2];
    /* results */
    uint64_t frames, resent, answers, malformed, crc_errors, stale_frames, foreign;
    uint64_t bytes_sent, bytes_received;
    int32_t refused;            /* an ICMP port unreachable came back (a send or receive refused) */
    int32_t failed_status;      /* SYSTOLE_UDP_REFUSED: the status; _WRONG_LENGTH: the length; _SOCKET: errno */
    int64_t failed;             /* the request the failure is about (index in the range) */
    uint32_t failed_sends, failed_bad_answers;
    int64_t *overtaken;         /* indices of writes answered STALE (room for every request) */
    uint64_t overtaken_count;
};

enum { SYSTOLE_UDP_DONE = 0, SYSTOLE_UDP_GAVE_UP = 1, SYSTOLE_UDP_REFUSED = 2,
       SYSTOLE_UDP_WRONG_LENGTH = 3, SYSTOLE_UDP_SOCKET = 4, SYSTOLE_UDP_MEMORY = 5 };

/* A request frame: sync, cmd u8, seq u16, addr u64, length u16 (little-endian). */
#define REQUEST_HEAD 14
/* An answer: sync, cmd u8, seq u16, status u8, length u16; then payload and CRC u16. */
#define RESPONSE_HEAD 7
#define CRC_BYTES 2
#define MAX_DATAGRAM 65536

static uint16_t crc_table[256];

static void crc_init(void)
{
    for (unsigned i = 0; i < 256; i++) {
        uint16_t crc = (uint16_t)(i << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
        crc_table[i] = crc;
    }
}

static uint16_t crc16(const uint8_t *data, size_t n, uint16_t crc)
{
    for (size_t i = 0; i < n; i++)
        crc = (uint16_t)((crc << 8) ^ crc_table[(uint8_t)((crc >> 8) ^ data[i])]);
    return crc;
}

uint16_t systole_crc16(const uint8_t *data, uint64_t n, uint16_t crc)
{
    if (crc_table[1] == 0)
        crc_init();
    return crc16(data, (size_t)n, crc);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct request {
    uint64_t deadline;
    uint32_t seq, sends, bad_answers;
    int32_t prev, next;         /* in flight: ordered by deadline, oldest first */
};

struct state {
    struct systole_udp_bulk *b;
    struct request *requests;
    int32_t *in_flight;         /* by seq: the request in flight under it, or -1 */
    int32_t oldest, newest, count;
    uint64_t first_length;
    uint8_t frame[REQUEST_HEAD + 65536 + CRC_BYTES];
    uint8_t answer[MAX_DATAGRAM];
};

static uint64_t offset_of(const struct state *s, int64_t i)
{
    return i == 0 ? 0 : s->first_length + (uint64_t)(i - 1) * s->b->max_payload;
}

static uint32_t length_of(const struct state *s, int64_t i)
{
    uint64_t offset = offset_of(s, i), left = s->b->nbytes - offset;
    uint64_t most = i == 0 ? s->first_length : s->b->max_payload;
    return (uint32_t)(left < most ? left : most);
}

static void unlink_request(struct state *s, int32_t i)
{
    struct request *r = &s->requests[i];
    if (r->prev >= 0)
        s->requests[r->prev].next = r->next;
    else
        s->oldest = r->next;
    if (r->next >= 0)
        s->requests[r->next].prev = r->prev;
    else
        s->newest = r->prev;
    s->in_flight[r->seq] = -1;
    s->count--;
}

/* Send request i (framed anew: the same seq on a resend) and put it last in flight. */
static int send_request(struct state *s, int32_t i)
{
    struct systole_udp_bulk *b = s->b;
    struct request *r = &s->requests[i];
    uint64_t offset = offset_of(s, i), address = b->address + offset;
    uint32_t length = length_of(s, i), payload = b->writes ? length : 0;
    uint8_t *f = s->frame;
    f[0] = b->request_sync;
    f[1] = (uint8_t)b->command;
    f[2] = (uint8_t)r->seq;
    f[3] = (uint8_t)(r->seq >> 8);
    for (int k = 0; k < 8; k++)
        f[4 + k] = (uint8_t)(address >> (8 * k));
    f[12] = (uint8_t)length;
    f[13] = (uint8_t)(length >> 8);
    if (payload)
        memcpy(f + REQUEST_HEAD, b->data + offset, payload);
    uint16_t crc = crc16(f + 1, REQUEST_HEAD - 1 + payload, 0xFFFF);
    f[REQUEST_HEAD + payload] = (uint8_t)crc;
    f[REQUEST_HEAD + payload + 1] = (uint8_t)(crc >> 8);
    size_t size = REQUEST_HEAD + payload + CRC_BYTES;
    if (send(b->fd, f, size, 0) < 0) {
        if (errno != ECONNREFUSED) {
            b->failed = i;
            b->failed_status = errno;
            return -1;
        }
        b->refused = 1;                  /* an earlier datagram's port unreachable: a loss */
    }
    b->frames++;
    b->bytes_sent += size;
    if (r->sends)
        b->resent++;
    r->sends++;
    r->deadline = now_ns() + b->timeout_ns;
    r->prev = s->newest;
    r->next = -1;
    if (s->newest >= 0)
        s->requests[s->newest].next = i;
    else
        s->oldest = i;
    s->newest = i;
    s->in_flight[r->seq] = i;
    s->count++;
    return 0;
}

/* One datagram of `size` bytes in buf: act on it. 0 to go on, else the call's result. */
static int take_answer(struct state *s, const uint8_t *buf, size_t size)
{
    struct systole_udp_bulk *b = s->b;
    if (size < RESPONSE_HEAD + CRC_BYTES || buf[0] != b->response_sync) {
        b->malformed++;
        b->foreign++;
        return 0;
    }
    uint32_t cmd = buf[1], seq = (uint32_t)buf[2] | (uint32_t)buf[3] << 8, status = buf[4];
    size_t length = (size_t)buf[5] | (size_t)buf[6] << 8, end = RESPONSE_HEAD + length;
    if (size != end + CRC_BYTES) {
        b->malformed++;
        b->foreign++;
        return 0;
    }
    if (crc16(buf + 1, end - 1, 0xFFFF) != ((uint32_t)buf[end] | (uint32_t)buf[end + 1] << 8)) {
        b->malformed++;
        b->crc_errors++;
        s->requests[s->oldest].bad_answers++;      /* whose it was is unknown: its timeout resends it */
        return 0;
    }
    int32_t i = cmd == b->command && seq < b->seq_modulus ? s->in_flight[seq] : -1;
    if (i < 0) {
        b->stale_frames++;
        return 0;
    }
    unlink_request(s, i);
    if (status == b->status_ok) {
        if (!b->writes) {
            uint32_t want = length_of(s, i);
            if (length != want) {
                b->failed = i;
                b->failed_status = (int32_t)length;
                return SYSTOLE_UDP_WRONG_LENGTH;
            }
            memcpy(b->data + offset_of(s, i), buf + RESPONSE_HEAD, length);
        }
        b->answers++;
        return 0;
    }
    if (status == b->status_crc || status == b->status_truncated)
        return send_request(s, i) ? SYSTOLE_UDP_SOCKET : 0;
    if (status == b->status_stale && b->writes) {
        b->overtaken[b->overtaken_count++] = i;
        return 0;
    }
    b->failed = i;
    b->failed_status = (int32_t)status;
    b->failed_sends = s->requests[i].sends;
    return SYSTOLE_UDP_REFUSED;
}

static int run(struct state *s, int64_t total)
{
    struct systole_udp_bulk *b = s->b;
    uint8_t *buf = s->answer;
    int64_t next = 0;
    while (next < total || s->count) {
        while (next < total && (uint32_t)s->count < b->window) {
            struct request *r = &s->requests[next];
            if (b->writes) {
                b->write_seq = (b->write_seq + 1) % b->seq_modulus;
                r->seq = b->write_seq;
            } else {
                b->read_seq = (b->read_seq + 1) % b->seq_modulus;
                r->seq = b->read_seq;
            }
            if (send_request(s, (int32_t)next))
                return SYSTOLE_UDP_SOCKET;
            next++;
        }
        uint64_t first_deadline = s->requests[s->oldest].deadline;
        ssize_t size = recv(b->fd, buf, MAX_DATAGRAM, MSG_DONTWAIT);
        if (size < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            uint64_t now = now_ns();
            if (now < first_deadline) {
                struct pollfd p = {.fd = b->fd, .events = POLLIN};
                uint64_t wait = first_deadline - now;
                struct timespec ts = {.tv_sec = (time_t)(wait / 1000000000u),
                                      .tv_nsec = (long)(wait % 1000000000u)};
                if (ppoll(&p, 1, &ts, NULL) > 0)
                    size = recv(b->fd, buf, MAX_DATAGRAM, MSG_DONTWAIT);
            }
        }
        if (size >= 0) {
            b->bytes_received += (uint64_t)size;
            int result = take_answer(s, buf, (size_t)size);
            if (result)
                return result;
            if (now_ns() < first_deadline)
                continue;                            /* no deadline has passed */
        } else if (errno == ECONNREFUSED) {
            b->refused = 1;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            b->failed = s->oldest;
            b->failed_status = errno;
            return SYSTOLE_UDP_SOCKET;
        }
        uint64_t now = now_ns();
        while (s->count) {
            int32_t i = s->oldest;
            struct request *r = &s->requests[i];
            if (r->deadline > now)
                break;
            if (r->sends > b->retries) {
                b->failed = i;
                b->failed_sends = r->sends;
                b->failed_bad_answers = r->bad_answers;
                return SYSTOLE_UDP_GAVE_UP;
            }
            unlink_request(s, i);
            if (send_request(s, i))
                return SYSTOLE_UDP_SOCKET;
        }
    }
    return SYSTOLE_UDP_DONE;
}

/* The whole range moved (module comment); the result is one of SYSTOLE_UDP_*. */
int systole_udp_bulk(struct systole_udp_bulk *b)
{
    if (crc_table[1] == 0)
        crc_init();
    if (b->nbytes == 0)
        return SYSTOLE_UDP_DONE;
    struct state *s = malloc(sizeof *s);
    if (s == NULL)
        return SYSTOLE_UDP_MEMORY;
    s->b = b;
    uint64_t into_window = b->max_payload - b->address % b->max_payload;
    s->first_length = b->nbytes < into_window ? b->nbytes : into_window;
    int64_t total = 1 + (int64_t)((b->nbytes - s->first_length + b->max_payload - 1) / b->max_payload);
    s->requests = calloc((size_t)total, sizeof *s->requests);
    s->in_flight = malloc(sizeof *s->in_flight * b->seq_modulus);
    int result = SYSTOLE_UDP_MEMORY;
    if (s->requests != NULL && s->in_flight != NULL) {
        for (uint32_t k = 0; k < b->seq_modulus; k++)
            s->in_flight[k] = -1;
        s->oldest = s->newest = -1;
        s->count = 0;
        result = run(s, total);
    }
    free(s->in_flight);
    free(s->requests);
    free(s);
    return result;
}
