/* Open-loop HTTP load at a constant rate, for bench/open_loop.py (`make bench` compiles it with cc).

   Request i is due at start + i / rate and is written at that moment on an idle keep-alive connection (a new
   one when all are busy, up to MAX_CONNECTIONS; beyond that it waits, and the wait counts). Its latency runs
   from the moment it was due to the end of its response, so a stall of the server shows as latency of every
   request that fell due meanwhile, not as fewer requests (wrk's closed loop hides it that way). wrk2 does the
   same but is not packaged for Debian; a Python client could not keep the schedule on these two cores.

   Usage: open_loop HOST PORT RATE REQUESTS_FILE
   REQUESTS_FILE: one "path<TAB>body" per line (bench/compare.py's pool). Every line is sent once.
   Prints one line: sent=N errors=N late=N p50_us=N p99_us=N max_us=N  (late: written > 1 ms after due). */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 64
#define BUFFER 65536
#define RESPONSE_TIMEOUT_NS 10000000000LL

typedef struct {
    int fd;
    int busy;        /* a request is in flight */
    long request;    /* its index */
    char in[BUFFER];
    size_t have;
} Connection;

static char **requests;
static size_t *lengths;
static long count;
static long long *due, *latency;
static struct sockaddr_in address;
static Connection connections[MAX_CONNECTIONS];
static int opened;
static int epoll_fd;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void load(const char *path, const char *host) {
    FILE *file = fopen(path, "r");
    if (!file) { perror(path); exit(2); }
    size_t capacity = 1024;
    requests = malloc(capacity * sizeof *requests);
    lengths = malloc(capacity * sizeof *lengths);
    char *line = NULL;
    size_t size = 0;
    ssize_t read;
    while ((read = getline(&line, &size, file)) > 0) {
        if (line[read - 1] == '\n') line[--read] = 0;
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = 0;
        const char *body = tab + 1;
        size_t body_length = strlen(body);
        if (count == (long)capacity) {
            capacity *= 2;
            requests = realloc(requests, capacity * sizeof *requests);
            lengths = realloc(lengths, capacity * sizeof *lengths);
        }
        int length = asprintf(&requests[count],
            "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/xml\r\nContent-Length: %zu\r\n\r\n%s",
            line, host, body_length, body);
        lengths[count++] = (size_t)length;
    }
    free(line);
    fclose(file);
}

static Connection *connect_one(void) {
    Connection *c = NULL;
    for (int i = 0; i < opened && !c; i++)
        if (connections[i].fd < 0) c = &connections[i]; /* closed by the server: open it again */
    if (!c) {
        if (opened == MAX_CONNECTIONS) return NULL;
        c = &connections[opened++];
    }
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&address, sizeof address) < 0) { perror("connect"); exit(2); }
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c->fd, &event);
    c->busy = 0;
    c->have = 0;
    return c;
}

static int send_on(Connection *c, long request) {
    size_t sent = 0;
    while (sent < lengths[request]) {
        ssize_t n = write(c->fd, requests[request] + sent, lengths[request] - sent);
        if (n < 0) {
            if (errno == EAGAIN) continue; /* loopback: the socket buffer drains at once */
            return -1;
        }
        sent += (size_t)n;
    }
    c->busy = 1;
    c->request = request;
    c->have = 0;
    return 0;
}

/* -1 incomplete, else the status; a complete response is consumed. `*closing`: the server will close the
   connection after it (nginx does after keepalive_requests), so nothing more may be written on it. */
static int complete_response(Connection *c, int *closing) {
    char *end = memmem(c->in, c->have, "\r\n\r\n", 4);
    if (!end) return -1;
    size_t head = (size_t)(end - c->in) + 4;
    char *length_at = strcasestr(c->in, "\r\ncontent-length:");
    size_t body = length_at && length_at < end ? strtoul(length_at + 17, NULL, 10) : 0;
    if (c->have < head + body) return -1;
    int status = atoi(c->in + 9);
    char *close_at = strcasestr(c->in, "\r\nconnection: close");
    *closing = close_at && close_at < end;
    memmove(c->in, c->in + head + body, c->have - head - body);
    c->have -= head + body;
    return status;
}

static int compare(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: open_loop HOST PORT RATE REQUESTS_FILE\n"); return 2; }
    char host[128];
    snprintf(host, sizeof host, "%s:%s", argv[1], argv[2]);
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &address.sin_addr);
    double rate = atof(argv[3]);
    load(argv[4], host);
    if (count == 0 || rate <= 0) { fprintf(stderr, "nothing to send\n"); return 2; }
    due = malloc(count * sizeof *due);
    latency = malloc(count * sizeof *latency);
    epoll_fd = epoll_create1(0);

    long long start = now_ns() + 10000000LL;
    for (long i = 0; i < count; i++) due[i] = start + (long long)(i * 1e9 / rate);
    long next = 0, done = 0, errors = 0, late = 0, waiting_from = 0; /* requests [waiting_from, next) wait */
    struct epoll_event events[MAX_CONNECTIONS];
    while (done < count) {
        long long now = now_ns();
        while (next < count && due[next] <= now) next++;
        /* Write every due request that has a connection. */
        while (waiting_from < next) {
            Connection *idle = NULL;
            for (int i = 0; i < opened && !idle; i++)
                if (connections[i].fd >= 0 && !connections[i].busy) idle = &connections[i];
            if (!idle) idle = connect_one();
            if (!idle) break;
            if (now_ns() - due[waiting_from] > 1000000LL) late++;
            if (send_on(idle, waiting_from) < 0) { errors++; done++; latency[waiting_from] = 0; }
            waiting_from++;
        }
        long long wait = 100000000LL;
        if (next < count) {
            wait = due[next] - now_ns();
            if (wait < 0) wait = 0;
        }
        struct timespec timeout = {.tv_sec = wait / 1000000000LL, .tv_nsec = wait % 1000000000LL};
        if (now_ns() - start > (long long)(count / rate * 1e9) + RESPONSE_TIMEOUT_NS) {
            errors += count - done; /* responses that never came */
            break;
        }
        /* epoll_pwait2: a timeout in ns (epoll_wait's whole milliseconds would send in bursts) */
        int ready = epoll_pwait2(epoll_fd, events, MAX_CONNECTIONS, &timeout, NULL);
        for (int e = 0; e < ready; e++) {
            Connection *c = events[e].data.ptr;
            ssize_t n = read(c->fd, c->in + c->have, BUFFER - c->have);
            if (n <= 0) {
                if (n < 0 && errno == EAGAIN) continue;
                /* nginx closes a keep-alive connection after its keepalive_requests, once answered */
                if (c->busy) { errors++; done++; latency[c->request] = now_ns() - due[c->request]; }
                epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                c->busy = 0;
                continue;
            }
            c->have += (size_t)n;
            int status, closing = 0;
            while (c->busy && (status = complete_response(c, &closing)) >= 0) {
                latency[c->request] = now_ns() - due[c->request];
                if (status != 200) errors++;
                c->busy = 0;
                done++;
            }
            if (closing) {
                epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
            }
        }
    }
    qsort(latency, done, sizeof *latency, compare);
    printf("sent=%ld errors=%ld late=%ld p50_us=%lld p99_us=%lld max_us=%lld\n", count, errors, late,
           latency[(long)(done * 0.50)] / 1000, latency[(long)(done * 0.99)] / 1000, latency[done - 1] / 1000);
    return 0;
}
