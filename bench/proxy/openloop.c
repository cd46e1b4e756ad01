/*
 * A bounded open-loop HTTP/1.1 load generator (the part of wrk2 the benchmarks need).
 *
 * Requests are due on a fixed schedule (request i at start + i / rate); each is sent on a
 * free keep-alive connection as soon as it is due (or when a connection frees up), and its
 * latency counts from its due time, so queueing is never hidden (no coordinated omission).
 * One thread, epoll, nanosecond waits (epoll_pwait2): at 15,000 req/s it needs a fraction of
 * a core, where the asyncio client in openloop.py needs about one, which on a 2-core machine
 * is taken from the server being measured.
 *
 * usage: openloop HOST PORT PATH RATE SECONDS CONNECTIONS
 * stdout: one latency per line in microseconds (completed requests only)
 * stderr: "sent N completed N errors N"
 * Bounded: stops at SECONDS + 10 s whatever happens. Answers must carry Content-Length.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536

struct conn {
    int fd;
    int busy;
    double due;        /* due time of the request in flight */
    size_t have;       /* bytes of the current answer read so far */
    long need;         /* total bytes of the answer once the head is parsed, else -1 */
    char buf[BUF];
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int connect_to(const char *host, int port, int epfd, struct conn *c) {
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { close(fd); return -1; }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) { close(fd); return -1; }
    c->fd = fd; c->busy = 0; c->have = 0; c->need = -1;
    return 0;
}

/* Parse the head once it is complete: total length of head + body, or -2 if unusable. */
static long answer_length(const char *buf, size_t have) {
    const char *end = memmem(buf, have, "\r\n\r\n", 4);
    if (!end) return -1;
    size_t head = (size_t)(end - buf) + 4;
    const char *p = buf;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (!eol) break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            return (long)head + strtol(p + 15, NULL, 10);
        p = eol + 2;
    }
    return -2;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT PATH RATE SECONDS CONNECTIONS\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    const char *path = argv[3];
    double rate = atof(argv[4]), seconds = atof(argv[5]);
    int nconn = atoi(argv[6]);
    if (rate <= 0 || seconds <= 0 || nconn <= 0 || nconn > 4096) {
        fprintf(stderr, "openloop: RATE, SECONDS and CONNECTIONS (1..4096) must be positive\n");
        return 2;
    }
    char request[1024];
    int reqlen = snprintf(request, sizeof request,
                          "GET %s HTTP/1.1\r\nHost: %s:%d\r\nX-User-Id: bench\r\n\r\n",
                          path, host, port);
    long total = (long)(rate * seconds);
    double *lat = malloc(sizeof(double) * (size_t)(total > 0 ? total : 1));
    struct conn *conns = calloc((size_t)nconn, sizeof *conns);
    int *idle = malloc(sizeof(int) * (size_t)nconn);
    int epfd = epoll_create1(0);
    if (!lat || !conns || !idle || epfd < 0) { perror("openloop"); return 1; }
    int nidle = 0;
    for (int i = 0; i < nconn; i++) {
        if (connect_to(host, port, epfd, &conns[i]) < 0) {
            fprintf(stderr, "openloop: cannot connect to %s:%d: %s\n", host, port,
                    strerror(errno));
            return 1;
        }
        idle[nidle++] = i;
    }
    long sent = 0, done = 0, errors = 0;
    double start = now() + 0.05, deadline = start + seconds + 10.0;
    struct epoll_event events[256];
    while (done + errors < total) {
        double t = now();
        if (t > deadline) break;
        /* send every due request that has a free connection */
        while (sent < total && nidle > 0 && start + sent / rate <= t) {
            struct conn *c = &conns[idle[--nidle]];
            c->busy = 1; c->due = start + sent / rate; c->have = 0; c->need = -1;
            if (write(c->fd, request, (size_t)reqlen) != reqlen) {
                errors++;
                close(c->fd);
                if (connect_to(host, port, epfd, c) < 0) return 1;
                idle[nidle++] = (int)(c - conns);
            }
            sent++;
        }
        /* wait for answers, or until the next request is due */
        struct timespec wait = {0, 0}, *waitp = NULL;
        if (sent < total && nidle > 0) {
            double dt = start + sent / rate - now();
            if (dt < 0) dt = 0;
            wait.tv_sec = (time_t)dt;
            wait.tv_nsec = (long)((dt - (double)wait.tv_sec) * 1e9);
            waitp = &wait;
        } else {
            wait.tv_sec = 1;
            waitp = &wait;
        }
        int n = epoll_pwait2(epfd, events, 256, waitp, NULL);
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_pwait2"); return 1; }
        for (int k = 0; k < n; k++) {
            struct conn *c = events[k].data.ptr;
            ssize_t r = read(c->fd, c->buf + c->have, BUF - c->have);
            if (r <= 0 || !c->busy) {
                if (c->busy) errors++;
                close(c->fd);
                if (connect_to(host, port, epfd, c) < 0) return 1;
                idle[nidle++] = (int)(c - conns);
                continue;
            }
            c->have += (size_t)r;
            if (c->need == -1) c->need = answer_length(c->buf, c->have);
            if (c->need == -2 || (c->need > 0 && c->need > BUF)) {
                /* no length, or larger than the buffer: count as an error, reconnect */
                errors++;
                close(c->fd);
                if (connect_to(host, port, epfd, c) < 0) return 1;
                idle[nidle++] = (int)(c - conns);
                continue;
            }
            if (c->need > 0 && (long)c->have >= c->need) {
                lat[done++] = (now() - c->due) * 1e6;
                c->busy = 0;
                idle[nidle++] = (int)(c - conns);
            }
        }
    }
    for (long i = 0; i < done; i++) printf("%.1f\n", lat[i]);
    fprintf(stderr, "sent %ld completed %ld errors %ld\n", sent, done, errors);
    for (int i = 0; i < nconn; i++) close(conns[i].fd);
    return 0;
}
