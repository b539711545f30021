/*
 * A responder as fast as the host can ask: host.perf.ethernet measures UdpLink's own CPU
 * per job with it, where the Python bridge model (tests/udp_board.py, ~50 us a datagram)
 * would make the host wait, and pay a wake-up, for every answer.
 *
 * systole_udp_playback() answers each datagram arriving on `fd` with the next of `count`
 * recorded answers (cyclically): the bridge model's own answers to the same requests,
 * recorded by the caller on a first run. Each is sent with the request's seq and its
 * CRC made anew (the protocol's CRC-16: firmware/udp_bulk.c's systole_crc16, passed in
 * through the caller's table). It keeps no memory and checks nothing but the command: a
 * request whose command is not the recorded answer's ends the call with its index, so
 * a host that asks something else than what was recorded is never answered wrongly. A
 * datagram of one byte ends the call (the caller's stop).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define RESPONSE_HEAD 7
#define MAX_DATAGRAM 65536

static uint16_t crc_step(const uint16_t *table, const uint8_t *data, size_t n, uint16_t crc)
{
    for (size_t i = 0; i < n; i++)
        crc = (uint16_t)((crc << 8) ^ table[(uint8_t)((crc >> 8) ^ data[i])]);
    return crc;
}

/* 0: stopped; k > 0: request k - 1 was not the recorded answer's command; -1: a socket error. */
int64_t systole_udp_playback(int32_t fd, const uint8_t *answers, const uint64_t *offsets, uint64_t count,
                             const uint16_t *crc_table, uint64_t *answered)
{
    static uint8_t in[MAX_DATAGRAM], out[MAX_DATAGRAM];
    struct sockaddr_storage peer;
    for (uint64_t k = 0;; k++) {
        socklen_t peer_len = sizeof peer;
        ssize_t size = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&peer, &peer_len);
        if (size < 0)
            return -1;
        if (size == 1)
            return 0;
        const uint8_t *answer = answers + offsets[k % count];
        size_t length = (size_t)(offsets[k % count + 1] - offsets[k % count]);
        if (size < 4 || in[1] != answer[1])
            return (int64_t)k + 1;
        memcpy(out, answer, length);
        out[2] = in[2];
        out[3] = in[3];
        uint16_t crc = crc_step(crc_table, out + 1, length - 3, 0xFFFF);
        out[length - 2] = (uint8_t)crc;
        out[length - 1] = (uint8_t)(crc >> 8);
        if (sendto(fd, out, length, 0, (struct sockaddr *)&peer, peer_len) < 0)
            return -1;
        (*answered)++;
    }
}
