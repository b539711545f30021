/*
 * The link's UDP windows in one call each: the host side of the Nexys Video's Ethernet
 * bridge at wire speed.
 *
 * host/platforms/udp.py's UdpLink sends requests in windows, one frame a datagram
 * (hdl/spec/link_protocol.py). In Python each datagram costs ~20 us of CPU, which caps a
 * transfer near 50 MB/s and adds a few hundred microseconds to every job; this file runs
 * the same window with the same rules and hands anything unusual back. Two entry points
 * share one engine:
 *
 * - systole_udp_window() sends a list of requests the caller framed the fields of
 *   (command, address, length, payload, where the answer goes): a job's A, its
 *   REPLAY_AFTER and C's first MEM_READ_AFTERs (protocol 2.2), or any window;
 * - systole_udp_bulk() moves a memory range: it cuts the range into requests that each
 *   stay inside one max_payload window (link.py's _chunks) and runs them;
 * - systole_udp_job() runs a whole job: A staged, its prepared window, C copied out, with
 *   firmware/replay.c's systole_job signature, so that compiled code submits jobs over
 *   the link as it does on the KV260's mapped registers (host.accel.driver.CompiledJob).
 *
 * The engine's rules (UdpLink._exchange's):
 * - a request is numbered when it is first sent: one marked `numbered` (state-changing)
 *   from the write counter and resent under the same seq, others from the read counter;
 *   at most `window` are in flight, matched by (cmd, seq) however they come back;
 * - an answer OK completes its request (a payload copied to `into`: exactly into_bytes
 *   when `exact`, else at most; another length is an error for the caller); CRC or
 *   TRUNCATED (not executed) sends the same frame again; EARLY (an AFTER request whose
 *   predecessor has not run) keeps it in flight, and it is sent again when the request
 *   numbered just before it answers OK, or at its deadline; STALE to a request marked
 *   `stale_ok` records it (the caller reads back what it wrote or read, as UdpLink
 *   does); any other status ends the call;
 * - a datagram that is not one response frame is counted (malformed), one whose CRC
 *   fails is counted too and charged to the oldest request in flight, a good frame for
 *   no request in flight is counted stale;
 * - a request unanswered for timeout_ns (plus its own wait_ns: a REPLAY's job, and what
 *   waits behind it) is sent again, at most `retries` times after the first send; then
 *   the call ends (the caller raises LinkTimeout, LinkCrcError or the EARLY error).
 *
 * The frame layouts and the CRC (CRC-16/CCITT, initial 0xFFFF, not reflected: Python's
 * binascii.crc_hqx) are the protocol's; tests/test_link_udp.py checks this code against
 * hdl.spec.link_protocol's encoder and decoder through the Python bridge model, faults
 * included. Nothing here restates a register or a command number: the caller passes
 * the commands and the statuses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* The link's settings, its seq counters and the counters every call adds to (one struct a
 * link, host/platforms/udp.py's _Link mirrors it), and one call's results. */
struct systole_udp_link {
    int32_t fd;                 /* a connected UDP socket */
    uint32_t window;            /* requests in flight at most */
    uint32_t retries;           /* sends after the first before giving up */
    uint32_t seq_modulus;
    uint64_t timeout_ns;        /* one answer's wait */
    uint32_t write_seq;         /* in: the last write seq used; out: after this call's */
    uint32_t read_seq;          /* likewise for reads */
    uint8_t request_sync, response_sync, status_ok, status_crc;
    uint8_t status_truncated, status_stale, status_early, pad;
    /* counters, added to by every call (foreign: this call's datagrams of no link frame) */
    uint64_t frames, resent, answers, malformed, crc_errors, stale_frames, foreign, early;
    uint64_t bytes_sent, bytes_received;
    /* this call's results */
    int32_t refused;            /* an ICMP port unreachable came back (a send or receive refused) */
    int32_t failed_status;      /* SYSTOLE_UDP_REFUSED: the status; _WRONG_LENGTH: the length; _SOCKET: errno */
    int64_t failed;             /* the request the failure is about (its index) */
    uint32_t failed_sends, failed_bad_answers, failed_early_answers, pad2;   /* its counts */
    int64_t *overtaken;         /* indices of requests answered STALE (room for every request; the caller's) */
    uint64_t overtaken_count;
    uint64_t *by_command;       /* NULL, or answers OK counted by command (256 counters) */
};

/* One request of a window (host/platforms/udp.py's _Piece mirrors this layout). */
struct systole_udp_request {
    uint64_t address;
    const uint8_t *payload;     /* payload_bytes sent after the header */
    uint8_t *into;              /* where an OK answer's payload goes (into_bytes of room) */
    uint64_t wait_ns;           /* added to its timeout: the bridge works this long on it */
    uint32_t length;            /* the frame's length field */
    uint32_t payload_bytes;
    uint32_t into_bytes;
    uint8_t command;
    uint8_t numbered;           /* 1: state-changing, numbered from the write counter */
    uint8_t exact;              /* 1: an OK answer carries exactly into_bytes */
    uint8_t stale_ok;           /* 1: STALE is recorded in overtaken, not a failure */
    /* results (zeroed by each call) */
    uint32_t seq;               /* the seq it was sent under */
    uint32_t answered;          /* the OK answer's payload bytes */
    uint32_t sends, bad_answers, early_answers;
};

enum { SYSTOLE_UDP_DONE = 0, SYSTOLE_UDP_GAVE_UP = 1, SYSTOLE_UDP_REFUSED = 2,
       SYSTOLE_UDP_WRONG_LENGTH = 3, SYSTOLE_UDP_SOCKET = 4, SYSTOLE_UDP_MEMORY = 5,
       /* systole_udp_job's own causes */
       SYSTOLE_UDP_JOB_STALE = 6, SYSTOLE_UDP_JOB_ANSWER = 7, SYSTOLE_UDP_JOB_UNPREPARED = 8 };

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

/* A request's place in flight: ordered by deadline, oldest first. */
struct slot {
    uint64_t deadline;
    int32_t prev, next;
    uint8_t early;               /* answered EARLY: waits for its predecessor's answer */
};

struct state {
    struct systole_udp_link *b;
    struct systole_udp_request *requests;
    struct slot *slots;
    int32_t oldest, newest, count;
    uint8_t *frame, *answer;
};

/* A request being framed and an answer received: per thread, kept between calls (a
 * job's window is a few datagrams, and fresh pages for these cost more than its sends). */
static _Thread_local uint8_t frame_buffer[REQUEST_HEAD + 65536 + CRC_BYTES], answer_buffer[MAX_DATAGRAM];

/* The call ends on request i: its index and counts for the caller's message. */
static int fail(struct state *s, int32_t i, int32_t status, int result)
{
    struct systole_udp_request *q = &s->requests[i];
    s->b->failed = i;
    s->b->failed_status = status;
    s->b->failed_sends = q->sends;
    s->b->failed_bad_answers = q->bad_answers;
    s->b->failed_early_answers = q->early_answers;
    return result;
}

static void unlink_request(struct state *s, int32_t i)
{
    struct slot *r = &s->slots[i];
    if (r->prev >= 0)
        s->slots[r->prev].next = r->next;
    else
        s->oldest = r->next;
    if (r->next >= 0)
        s->slots[r->next].prev = r->prev;
    else
        s->newest = r->prev;
    s->count--;
}

/* The request in flight under (cmd, seq), or -1 (a window holds few: a scan is enough). */
static int32_t find(const struct state *s, uint32_t cmd, uint32_t seq)
{
    for (int32_t i = s->oldest; i >= 0; i = s->slots[i].next)
        if (s->requests[i].seq == seq && s->requests[i].command == cmd)
            return i;
    return -1;
}

/* Send request i (framed anew: the same seq on a resend) and put it last in flight. */
static int send_request(struct state *s, int32_t i)
{
    struct systole_udp_link *b = s->b;
    struct systole_udp_request *q = &s->requests[i];
    struct slot *r = &s->slots[i];
    uint8_t *f = s->frame;
    f[0] = b->request_sync;
    f[1] = q->command;
    f[2] = (uint8_t)q->seq;
    f[3] = (uint8_t)(q->seq >> 8);
    for (int k = 0; k < 8; k++)
        f[4 + k] = (uint8_t)(q->address >> (8 * k));
    f[12] = (uint8_t)q->length;
    f[13] = (uint8_t)(q->length >> 8);
    if (q->payload_bytes)
        memcpy(f + REQUEST_HEAD, q->payload, q->payload_bytes);
    uint16_t crc = crc16(f + 1, REQUEST_HEAD - 1 + q->payload_bytes, 0xFFFF);
    f[REQUEST_HEAD + q->payload_bytes] = (uint8_t)crc;
    f[REQUEST_HEAD + q->payload_bytes + 1] = (uint8_t)(crc >> 8);
    size_t size = REQUEST_HEAD + q->payload_bytes + CRC_BYTES;
    if (send(b->fd, f, size, 0) < 0) {
        if (errno != ECONNREFUSED)
            return fail(s, i, errno, -1);
        b->refused = 1;                  /* an earlier datagram's port unreachable: a loss */
    }
    b->frames++;
    b->bytes_sent += size;
    if (q->sends)
        b->resent++;
    q->sends++;
    r->early = 0;
    r->deadline = now_ns() + b->timeout_ns + q->wait_ns;
    r->prev = s->newest;
    r->next = -1;
    if (s->newest >= 0)
        s->slots[s->newest].next = i;
    else
        s->oldest = i;
    s->newest = i;
    s->count++;
    return 0;
}

/* Request i answered OK: an AFTER request numbered just after it, answered EARLY, goes again. */
static int release_early(struct state *s, int32_t i)
{
    if (!s->requests[i].numbered)
        return 0;
    uint32_t following = (s->requests[i].seq + 1) % s->b->seq_modulus;
    for (int32_t j = s->oldest; j >= 0; j = s->slots[j].next)
        if (s->slots[j].early && s->requests[j].numbered && s->requests[j].seq == following) {
            unlink_request(s, j);
            return send_request(s, j);
        }
    return 0;
}

/* One datagram of `size` bytes in buf: act on it. 0 to go on, else the call's result. */
static int take_answer(struct state *s, const uint8_t *buf, size_t size)
{
    struct systole_udp_link *b = s->b;
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
    int32_t i = find(s, cmd, seq);
    if (i < 0) {
        b->stale_frames++;
        return 0;
    }
    struct systole_udp_request *q = &s->requests[i];
    if (status == b->status_early) {              /* stays in flight: released or resent at its deadline */
        s->slots[i].early = 1;
        q->early_answers++;
        b->early++;
        return 0;
    }
    unlink_request(s, i);
    if (status == b->status_ok) {
        if (length > q->into_bytes || (q->exact && length != q->into_bytes))
            return fail(s, i, (int32_t)length, SYSTOLE_UDP_WRONG_LENGTH);
        if (length)
            memcpy(q->into, buf + RESPONSE_HEAD, length);
        q->answered = (uint32_t)length;
        b->answers++;
        if (b->by_command != NULL)
            b->by_command[cmd]++;
        return release_early(s, i) ? SYSTOLE_UDP_SOCKET : 0;
    }
    if (status == b->status_crc || status == b->status_truncated)
        return send_request(s, i) ? SYSTOLE_UDP_SOCKET : 0;
    if (status == b->status_stale && q->stale_ok) {
        b->overtaken[b->overtaken_count++] = i;
        return 0;
    }
    return fail(s, i, (int32_t)status, SYSTOLE_UDP_REFUSED);
}

static int run(struct state *s, int64_t total)
{
    struct systole_udp_link *b = s->b;
    uint8_t *buf = s->answer;
    int64_t next = 0;
    while (next < total || s->count) {
        while (next < total && (uint32_t)s->count < b->window) {
            struct systole_udp_request *q = &s->requests[next];
            if (q->numbered) {
                b->write_seq = (b->write_seq + 1) % b->seq_modulus;
                q->seq = b->write_seq;
            } else {
                b->read_seq = (b->read_seq + 1) % b->seq_modulus;
                q->seq = b->read_seq;
            }
            if (send_request(s, (int32_t)next))
                return SYSTOLE_UDP_SOCKET;
            next++;
        }
        uint64_t first_deadline = s->slots[s->oldest].deadline;
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
            if (s->count == 0 || now_ns() < s->slots[s->oldest].deadline)
                continue;                            /* no deadline has passed */
        } else if (errno == ECONNREFUSED) {
            b->refused = 1;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return fail(s, s->oldest, errno, SYSTOLE_UDP_SOCKET);
        }
        uint64_t now = now_ns();
        while (s->count) {
            int32_t i = s->oldest;
            if (s->slots[i].deadline > now)
                break;
            if (s->requests[i].sends > b->retries)
                return fail(s, i, 0, SYSTOLE_UDP_GAVE_UP);
            unlink_request(s, i);
            if (send_request(s, i))
                return SYSTOLE_UDP_SOCKET;
        }
    }
    return SYSTOLE_UDP_DONE;
}

/* Every request of the window answered (module comment); one of SYSTOLE_UDP_*. */
int systole_udp_window(struct systole_udp_link *b, struct systole_udp_request *requests, uint64_t count)
{
    if (crc_table[1] == 0)
        crc_init();
    b->overtaken_count = 0;                         /* this call's; the counters add up */
    b->refused = 0;
    b->foreign = 0;
    if (count == 0)
        return SYSTOLE_UDP_DONE;
    for (uint64_t i = 0; i < count; i++) {          /* a prepared window is run again and again */
        struct systole_udp_request *q = &requests[i];
        q->seq = q->answered = q->sends = q->bad_answers = q->early_answers = 0;
    }
    struct slot *slots = calloc((size_t)count, sizeof *slots);
    if (slots == NULL)
        return SYSTOLE_UDP_MEMORY;
    struct state s = {.b = b, .requests = requests, .slots = slots, .oldest = -1, .newest = -1,
                      .frame = frame_buffer, .answer = answer_buffer};
    int result = run(&s, (int64_t)count);
    free(slots);
    return result;
}

/* The range [address, address + nbytes) written from data (`writes`: command is
 * state-changing) or read into it, as one window of requests inside max_payload windows. */
int systole_udp_bulk(struct systole_udp_link *b, uint32_t command, uint32_t writes, uint32_t max_payload,
                     uint64_t address, uint8_t *data, uint64_t nbytes)
{
    if (nbytes == 0)
        return systole_udp_window(b, NULL, 0);
    uint64_t into_window = max_payload - address % max_payload;
    uint64_t first = nbytes < into_window ? nbytes : into_window;
    uint64_t total = 1 + (nbytes - first + max_payload - 1) / max_payload;
    struct systole_udp_request *requests = calloc((size_t)total, sizeof *requests);
    if (requests == NULL)
        return SYSTOLE_UDP_MEMORY;
    uint64_t offset = 0;
    for (uint64_t i = 0; i < total; i++) {
        struct systole_udp_request *q = &requests[i];
        uint64_t left = nbytes - offset, most = i == 0 ? first : max_payload;
        uint32_t length = (uint32_t)(left < most ? left : most);
        q->address = address + offset;
        q->length = length;
        q->command = (uint8_t)command;
        if (writes) {
            q->payload = data + offset;
            q->payload_bytes = length;
            q->numbered = q->stale_ok = 1;
        } else {
            q->into = data + offset;
            q->into_bytes = length;
            q->exact = 1;
        }
        offset += length;
    }
    int result = systole_udp_window(b, requests, total);
    free(requests);
    return result;
}

/* A job's prepared window and its memory traffic (host/platforms/udp.py's _JobIo mirrors
 * this; UdpLink.job_window fills it). */
struct systole_udp_job_io {
    const uint8_t *a;           /* A in: m rows of k bytes (NULL: already in a_stage) */
    uint8_t *c;                 /* C out: m rows of c_row_bytes (NULL: left in c_stage) */
    uint8_t *a_stage;           /* A as the window sends it: rows a_stride apart, padding zero */
    uint8_t *c_stage;           /* C as it comes back: rows c_stride apart */
    struct systole_udp_request *requests;   /* A's writes, the REPLAY_AFTER, C's first reads */
    uint64_t c_address;         /* C's device address */
    uint32_t count, replay;     /* the window's requests; the REPLAY's index among them */
    uint32_t m, k, a_stride, c_row_bytes, c_stride;
    uint32_t behind;            /* C's bytes the window reads; the rest is read after its answer */
    uint32_t c_bytes, max_payload;
    uint8_t done, busy, timeout;             /* ReplayResult's codes */
    uint8_t mem_read, mem_read_after, pad[3];  /* the commands */
    /* results: what a -3 was */
    int32_t result;             /* SYSTOLE_UDP_* of the failing call, or SYSTOLE_UDP_JOB_* */
    int32_t stage;              /* 0 the window, 1 a read of C made again, 2 C's rest */
};

static int job_failed(struct systole_udp_job_io *io, int result, int stage)
{
    io->result = result;
    io->stage = stage;
    return -3;
}

/* One job (firmware/replay.c's systole_job, over the link): 1 done (read_values filled,
 * C copied out), 0 the bridge's timeout, -1 busy before the first write, -3 the link
 * failed (io->result and io->stage say how, b's failed fields which request). The
 * register sequence is the window's REPLAY_AFTER, encoded when it was prepared from the
 * same plan: the other arguments are the plan's, kept for the signature. */
int systole_udp_job(struct systole_udp_link *b, uint32_t status_offset, uint32_t busy_mask,
                    const uint32_t *offsets, const uint32_t *values, uint32_t count,
                    uint32_t ctrl_offset, uint32_t start, uint32_t done_mask, uint64_t timeout_ns,
                    const uint32_t *read_offsets, uint32_t read_count, uint32_t *read_values,
                    struct systole_udp_job_io *io)
{
    (void)status_offset, (void)busy_mask, (void)offsets, (void)values, (void)count;
    (void)ctrl_offset, (void)start, (void)done_mask, (void)timeout_ns, (void)read_offsets;
    if (io->requests == NULL)                       /* prepared with no compiled form */
        return job_failed(io, SYSTOLE_UDP_JOB_UNPREPARED, 0);
    if (io->a != NULL)
        for (uint32_t r = 0; r < io->m; r++)        /* the padding stays zero */
            memcpy(io->a_stage + (size_t)r * io->a_stride, io->a + (size_t)r * io->k, io->k);
    int result = systole_udp_window(b, io->requests, io->count);
    if (result != SYSTOLE_UDP_DONE)
        return job_failed(io, result, 0);
    /* Answered STALE: a newer request ran, and only right after this one, so it ran and
     * only its answer was lost (UdpLink.run_window): a read of C is made again as a plain
     * MEM_READ; the REPLAY's repeat would read its registers again, so it is an error. */
    uint64_t stale = b->overtaken_count;            /* a read made again starts a call of its own */
    for (uint64_t n = 0; n < stale; n++) {
        int64_t i = b->overtaken[n];
        struct systole_udp_request *q = &io->requests[i];
        if (q->command == io->mem_read_after) {
            struct systole_udp_request again = {.address = q->address, .into = q->into,
                                                .length = q->length, .into_bytes = q->into_bytes,
                                                .command = io->mem_read, .exact = 1};
            result = systole_udp_window(b, &again, 1);
            if (result != SYSTOLE_UDP_DONE) {
                b->failed = i;
                return job_failed(io, result, 1);
            }
        } else if ((uint32_t)i == io->replay) {
            b->failed = i;
            return job_failed(io, SYSTOLE_UDP_JOB_STALE, 0);
        }
    }
    const struct systole_udp_request *replay = &io->requests[io->replay];
    const uint8_t *answer = replay->into;
    if (replay->answered == 1) {
        if (answer[0] == io->busy)
            return -1;
        if (answer[0] == io->timeout)
            return 0;
    }
    if (replay->answered != 1 + 4 * (uint64_t)read_count || answer[0] != io->done)
        return job_failed(io, SYSTOLE_UDP_JOB_ANSWER, 0);
    for (uint32_t r = 0; r < read_count; r++) {   /* u32 little-endian, as the protocol's */
        const uint8_t *v = answer + 1 + 4 * (size_t)r;
        read_values[r] = (uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 24;
    }
    if (io->behind < io->c_bytes) {
        result = systole_udp_bulk(b, io->mem_read, 0, io->max_payload, io->c_address + io->behind,
                                  io->c_stage + io->behind, io->c_bytes - io->behind);
        if (result != SYSTOLE_UDP_DONE)
            return job_failed(io, result, 2);
    }
    if (io->c != NULL)
        for (uint32_t r = 0; r < io->m; r++)
            memcpy(io->c + (size_t)r * io->c_row_bytes, io->c_stage + (size_t)r * io->c_stride, io->c_row_bytes);
    return 1;
}
