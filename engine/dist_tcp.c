// defines: dist_tcp, the ranks of a run meeting over TCP where MPI does not carry them: RANK/WORLD_SIZE launchers
// (torchrun's MASTER_ADDR/MASTER_PORT), srun without PMIx, a build without MPI. Rank 0 is the hub: each rank
// connects to it and says who it is (a DistHello); the hub answers with every rank's address, and each rank then
// connects to the next. Sums go round that ring (each rank sends 2(W-1)/W of the buffer, as NCCL's ring does);
// broadcasts, gathers and barriers go through the hub. A wait ends with an error naming the rank when its
// connection closes, or when nothing moves for the deadline.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dist_transport.h"
#include "util.h"

typedef struct {
    int rank, world;
    int *peer;  // the hub: peer[r] is rank r's connection; any other rank: peer[0] is the hub's
    int next, prev;  // the ring: to rank+1, from rank-1
    char file[4096];  // the hub's rendezvous file while it is there
    uint64_t launch_hash;
    char turned_away[160];  // the hub: the last hello of this launch it refused (said if the join times out)
} Tcp;

enum { SEGMENT = 1 << 20 };  // a ring step moves at most this many elements: bounded scratch however long the buffer

uint64_t dist_launch_hash(const char *launch) {  // FNV-1a
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)launch; *p; p++) h = (h ^ *p) * 1099511628211ull;
    return h;
}

// ---- the rendezvous messages: big-endian words and NUL-padded names ----

static void put32(unsigned char *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v; }
static uint32_t get32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put_name(unsigned char *p, const char *s) {
    memset(p, 0, DIST_HOST_MAX);
    memcpy(p, s, strnlen(s, DIST_HOST_MAX - 1));
}
// A name field: NUL-terminated within its width, printable.
static int get_name(const unsigned char *p, char *out, const char *what) {
    size_t n = strnlen((const char *)p, DIST_HOST_MAX);
    if (n == DIST_HOST_MAX) return ld_set_error("a rank's %s is not terminated", what), -1;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e) return ld_set_error("a rank's %s holds byte 0x%02x", what, p[i]), -1;
    memcpy(out, p, n + 1);
    return 0;
}

static const unsigned char k_magic[4] = {'L', 'D', 'R', '1'};

void dist_hello_encode(const DistHello *h, unsigned char out[DIST_HELLO_BYTES]) {
    memcpy(out, k_magic, 4);
    put32(out + 4, h->world), put32(out + 8, h->rank), put32(out + 12, h->ring_port), put32(out + 16, h->status);
    put32(out + 20, (uint32_t)(h->launch_hash >> 32)), put32(out + 24, (uint32_t)h->launch_hash);
    put_name(out + 28, h->host);
}

int dist_hello_decode(const unsigned char *in, size_t n, DistHello *h) {
    if (n != DIST_HELLO_BYTES || memcmp(in, k_magic, 4)) return ld_set_error("not a llamaduo rank's hello"), -1;
    h->world = get32(in + 4), h->rank = get32(in + 8), h->ring_port = get32(in + 12), h->status = get32(in + 16);
    h->launch_hash = (uint64_t)get32(in + 20) << 32 | get32(in + 24);
    if (h->world < 1 || h->world > 65536 || h->rank >= h->world || h->ring_port > 65535 || h->status > 1)
        return ld_set_error("a rank's hello says rank %u of %u, port %u, status %u", h->rank, h->world, h->ring_port, h->status), -1;
    return get_name(in + 28, h->host, "host name");
}

void dist_peer_encode(const DistPeer *p, unsigned char out[DIST_ENTRY_BYTES]) {
    put_name(out, p->host), put_name(out + DIST_HOST_MAX, p->addr);
    put32(out + 2 * DIST_HOST_MAX, p->ring_port);
}

int dist_peer_decode(const unsigned char *in, size_t n, DistPeer *p) {
    if (n != DIST_ENTRY_BYTES) return ld_set_error("a rank table entry of %zu bytes", n), -1;
    if (get_name(in, p->host, "host name")) return -1;
    if (in[DIST_HOST_MAX] == 0)
        p->addr[0] = 0;  // rank 0's: the address the rank reached the hub at
    else if (get_name(in + DIST_HOST_MAX, p->addr, "address"))
        return -1;
    p->ring_port = get32(in + 2 * DIST_HOST_MAX);
    if (p->ring_port < 1 || p->ring_port > 65535) return ld_set_error("a rank's ring port %u", p->ring_port), -1;
    return 0;
}

// "llamaduo-rendezvous 1\nlaunch ID\nworld N\nhost H\nport P\n", as rank 0 writes it.
int dist_rendezvous_file_parse(const char *text, const char *launch, int world, char host[256], char port[16]) {
    char got_launch[128] = "", got_host[256] = "", got_port[16] = "";
    int version = 0, got_world = 0, n = 0;
    if (sscanf(text, "llamaduo-rendezvous %d\nlaunch %127s\nworld %d\nhost %255s\nport %15s\n%n", &version, got_launch, &got_world,
               got_host, got_port, &n) != 5 ||
        version != 1 || !n)
        return ld_set_error("not a llamaduo rendezvous file"), -1;
    if (strcmp(got_launch, launch) || got_world != world) return 1;
    char *end;
    long p = strtol(got_port, &end, 10);
    if (*end || p < 1 || p > 65535) return ld_set_error("the rendezvous file's port is %s", got_port), -1;
    snprintf(host, 256, "%s", got_host), snprintf(port, 16, "%ld", p);
    return 0;
}

// ---- sockets ----

static int fail_errno(const char *what, const char *doing) {
    ld_set_error("%s: %s: %s", what, doing, strerror(errno));
    return -1;
}

static void tune(int fd) {
    int one = 1, idle = 60, every = 10, tries = 6;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // a sum of one loss waits on no timer
    // a node lost without a word (power, network) closes nothing: keepalives end the waits with no deadline
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &every, sizeof every);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &tries, sizeof tries);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
}

// Ranks that llamaduo's own launcher started (`--ranks N` with no mpirun) are all on this machine: they listen on
// the loopback address alone, which no other machine can reach. NULL: every address.
static const char *own_address(void) { return getenv("LLAMADUO_LAUNCHED") ? "127.0.0.1" : NULL; }

// A socket listening at `port` ("0": any free one) on own_address(), or on every address (IPv6 with IPv4 beside it
// where the machine has IPv6). The port it got goes to *bound. -1 with an error.
static int listen_on(const char *port, int *bound, const char *what) {
    struct addrinfo hints = {.ai_flags = AI_PASSIVE, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(own_address(), port, &hints, &res);
    if (rc) return ld_set_error("%s: port %s: %s", what, port, gai_strerror(rc)), -1;
    int fd = -1;
    for (int want6 = 1; want6 >= 0 && fd < 0; want6--)
        for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
            if ((a->ai_family == AF_INET6) != want6) continue;
            if ((fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0)) < 0) continue;
            int one = 1, zero = 0;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (want6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, 128)) close(fd), fd = -1;
        }
    freeaddrinfo(res);
    if (fd < 0) return fail_errno(what, "cannot listen on its port"), -1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

// One attempt to connect to host:port, each address given at most a few seconds before `deadline`: the
// connected socket, or -2 when nobody listens there yet or the name does not resolve yet (a cluster's DNS may
// lag the job; worth another try, the reason in the error).
static int connect_once(const char *host, const char *port, double deadline, const char *what) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) return ld_set_error("%s: %s: %s", what, host, gai_strerror(rc)), -2;
    ld_set_error("%s: nobody listens at %s:%s", what, host, port);
    int fd = -2;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        int s = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s < 0) continue;
        int up = connect(s, a->ai_addr, a->ai_addrlen) == 0;
        if (!up && errno == EINPROGRESS) {
            struct pollfd p = {s, POLLOUT, 0};
            double left = deadline - ld_time_s();
            if (left > 5) left = 5;  // an address that never answers does not hold up the next one
            int err = 0;
            socklen_t len = sizeof err;
            up = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0) == 1 && !getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) && !err;
        }
        if (!up) {
            close(s);
            continue;
        }
        tune(s), fd = s;
    }
    freeaddrinfo(res);
    return fd;
}

// The numeric address of the far end of fd (an IPv4 one without its IPv6 dress), for the ranks to reach it at.
static void peer_addr(int fd, char out[DIST_HOST_MAX]) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    out[0] = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) ||
        getnameinfo((struct sockaddr *)&ss, len, out, DIST_HOST_MAX, NULL, 0, NI_NUMERICHOST))
        snprintf(out, DIST_HOST_MAX, "localhost");
    if (!strncmp(out, "::ffff:", 7) && strchr(out, '.')) memmove(out, out + 7, strlen(out + 7) + 1);
}

// ---- moving bytes, with a deadline on progress ----

typedef struct {
    int fd, rank;  // the connection and the rank at its far end
    unsigned char *buf;
    size_t n, done;
    int sending;
} Transfer;

static int peer_gone(const Transfer *x, const char *what) {
    ld_set_error("%s: rank %d closed its connection: it has ended (its own error says why)", what, x->rank);
    return -1;
}

// Moves every transfer's bytes at once (a ring step sends and receives together, or two neighbours that both
// send first would wait on each other). Each wait lasts at most timeout_s without a byte moving (0: no limit);
// a connection that closes or fails ends it with an error naming its rank.
static int move_all(Transfer *x, int k, double timeout_s, const char *what) {
    struct pollfd p[k > 0 ? k : 1];
    double last = ld_time_s();
    for (;;) {
        int live = 0;
        for (int i = 0; i < k; i++)
            if (x[i].done < x[i].n) p[live].fd = x[i].fd, p[live].events = x[i].sending ? POLLOUT : POLLIN, p[live++].revents = 0;
        if (!live) return 0;
        double left = timeout_s > 0 ? last + timeout_s - ld_time_s() : 1;
        int rc = left > 0 ? poll(p, live, timeout_s > 0 ? (int)(left * 1000) + 1 : 1000) : 0;
        if (rc < 0 && errno != EINTR) return fail_errno(what, "poll");
        if (rc == 0 && timeout_s > 0 && ld_time_s() - last >= timeout_s) {
            for (int i = 0; i < k; i++)
                if (x[i].done < x[i].n) {
                    ld_set_error("%s waited %.0f s for rank %d (--dist-timeout): it has died or stopped answering", what, timeout_s,
                                 x[i].rank);
                    return -1;
                }
        }
        for (int i = 0, j = 0; i < k; i++) {
            if (x[i].done >= x[i].n) continue;
            short ev = p[j++].revents;
            if (!ev) continue;
            ssize_t got = x[i].sending ? send(x[i].fd, x[i].buf + x[i].done, x[i].n - x[i].done, MSG_NOSIGNAL)
                                       : recv(x[i].fd, x[i].buf + x[i].done, x[i].n - x[i].done, 0);
            if (got > 0) {
                x[i].done += (size_t)got, last = ld_time_s();
                continue;
            }
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (got == 0 || errno == ECONNRESET || errno == EPIPE) return peer_gone(&x[i], what);
            ld_set_error("%s: the connection to rank %d failed: %s", what, x[i].rank, strerror(errno));
            return -1;
        }
    }
}

static int move_one(int fd, int rank, void *buf, size_t n, int sending, double timeout_s, const char *what) {
    Transfer x = {fd, rank, buf, n, 0, sending};
    return move_all(&x, 1, timeout_s, what);
}

// ---- joining ----

// A stranger that connects and sends nothing is not waited on long: the ranks behind it are.
static double hello_wait(double timeout_s) { return timeout_s > 0 && timeout_s < 2 ? timeout_s : 2; }

// The hub's side of a hello on a fresh connection: 1 when it is a rank of this launch (h filled), 0 when it is
// not one (a stranger, another launch's rank, or one that disagrees: refused and closed, so another run sharing
// the port cannot break this one; the join's timeout then says what was refused).
static int hub_hello(Tcp *t, int fd, DistHello *h, double timeout_s) {
    unsigned char in[DIST_HELLO_BYTES];
    if (move_one(fd, -1, in, sizeof in, 0, hello_wait(timeout_s), "a rank's hello") || dist_hello_decode(in, sizeof in, h))
        return close(fd), 0;
    int ours = h->launch_hash == t->launch_hash && (int)h->world == t->world && h->rank > 0 && t->peer[h->rank] < 0;
    if (ours) return 1;
    if (h->launch_hash == t->launch_hash)
        snprintf(t->turned_away, sizeof t->turned_away, "%s says it is rank %u of %u (rank 0: %d ranks%s)", h->host, h->rank, h->world,
                 t->world, h->rank > 0 && h->rank < (uint32_t)t->world && t->peer[h->rank] >= 0 ? ", and that rank had joined" : "");
    DistHello no = {.world = (uint32_t)t->world, .status = 1, .launch_hash = t->launch_hash, .host = "hub"};
    unsigned char out[DIST_HELLO_BYTES];
    dist_hello_encode(&no, out);
    move_one(fd, (int)h->rank, out, sizeof out, 1, 1, "");
    close(fd);
    return 0;
}

// "2, 5, 7": the ranks that have not joined the hub.
static void missing_ranks(const Tcp *t, char *out, size_t cap) {
    size_t at = 0;
    out[0] = 0;
    for (int r = 1; r < t->world && at + 16 < cap; r++)
        if (t->peer[r] < 0) at += (size_t)snprintf(out + at, cap - at, "%s%d", at ? ", " : "", r);
}

// Rank 0's address for the others, atomically (written beside it, then renamed): a rank never reads half of it.
static int write_rendezvous(Tcp *t, const char *launch, int port) {
    char host[256], tmp[4200];
    if (own_address()) snprintf(host, sizeof host, "%s", own_address());
    else if (gethostname(host, sizeof host)) snprintf(host, sizeof host, "localhost");
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", t->file, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return ld_set_error("the rendezvous file %s: %s", tmp, strerror(errno)), -1;
    fprintf(f, "llamaduo-rendezvous 1\nlaunch %s\nworld %d\nhost %s\nport %d\n", launch, t->world, host, port);
    if (fclose(f) || rename(tmp, t->file)) return ld_set_error("the rendezvous file %s: %s", t->file, strerror(errno)), unlink(tmp), -1;
    return 0;
}

// Rank 0, listening on lfd (port): every other rank's hello, then each its table of every rank (host, address,
// ring port).
static int hub_join(Tcp *t, int lfd, int port, const DistRendezvous *rv, DistPeer *table, const DistHello *me, double timeout_s) {
    if (rv->file[0]) {
        snprintf(t->file, sizeof t->file, "%s", rv->file);
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", rv->file);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) *slash = 0;
        if ((slash && slash != dir && ld_mkdir_p(dir)) || write_rendezvous(t, rv->launch, port)) return t->file[0] = 0, close(lfd), -1;
    }
    double deadline = ld_time_s() + timeout_s;
    for (int joined = 1; joined < t->world;) {
        struct pollfd p = {lfd, POLLIN, 0};
        double left = deadline - ld_time_s();
        if (left <= 0) {
            char missing[256];
            missing_ranks(t, missing, sizeof missing);
            ld_set_error("rank 0 waited %.0f s (--dist-timeout) for the other ranks to join, and %d of %d came (missing: %s)%s%s",
                         timeout_s, joined - 1, t->world - 1, missing, t->turned_away[0] ? "; refused: " : "", t->turned_away);
            return close(lfd), -1;
        }
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {  // out of descriptors, say: not a reason to spin
            usleep(10000);
            continue;
        }
        tune(fd);
        DistHello h;
        if (!hub_hello(t, fd, &h, timeout_s)) continue;
        t->peer[h.rank] = fd, joined++;
        snprintf(table[h.rank].host, DIST_HOST_MAX, "%s", h.host);
        peer_addr(fd, table[h.rank].addr);
        table[h.rank].ring_port = h.ring_port;
    }
    close(lfd);
    if (t->file[0]) unlink(t->file), t->file[0] = 0;  // everyone is here: no later rank can read it stale
    table[0] = (DistPeer){.ring_port = me->ring_port};
    snprintf(table[0].host, DIST_HOST_MAX, "%s", me->host);
    size_t n = DIST_HELLO_BYTES + (size_t)t->world * DIST_ENTRY_BYTES;
    unsigned char *out = ld_xmalloc(n);
    dist_hello_encode(me, out);
    for (int r = 0; r < t->world; r++) dist_peer_encode(&table[r], out + DIST_HELLO_BYTES + (size_t)r * DIST_ENTRY_BYTES);
    int rc = 0;
    for (int r = 1; r < t->world && !rc; r++) rc = move_one(t->peer[r], r, out, n, 1, timeout_s, "sending the rank table");
    free(out);
    return rc;
}

// Where rank 0 listens: rv's host and port, or what rank 0 wrote in rv's file (read again until it is this
// launch's). 1 when found, 0 not yet, -1 with an error.
static int find_hub(const DistRendezvous *rv, int world, char host[256], char port[16]) {
    if (!rv->file[0]) return snprintf(host, 256, "%s", rv->host), snprintf(port, 16, "%s", rv->port), 1;
    size_t n;
    char *text = ld_read_file(rv->file, &n);
    if (!text) return 0;
    int rc = dist_rendezvous_file_parse(text, rv->launch, world, host, port);
    free(text);
    if (rc < 0) ld_set_error("%s: %s", rv->file, ld_last_error());
    return rc < 0 ? -1 : rc == 0;
}

// Any other rank: to the hub, its hello, and back the table. Retries until the deadline while rank 0 is not up
// yet (or only an earlier launch's file or hub is there).
static int rank_join(Tcp *t, const DistRendezvous *rv, DistPeer *table, const DistHello *me, char hub_host[256], double timeout_s) {
    double deadline = ld_time_s() + timeout_s;
    unsigned char out[DIST_HELLO_BYTES];
    dist_hello_encode(me, out);
    char port[16];
    for (;;) {
        int found = find_hub(rv, t->world, hub_host, port), fd = -2;
        if (found < 0) return -1;
        if (found) fd = connect_once(hub_host, port, deadline, "reaching rank 0");
        if (fd >= 0) {
            unsigned char back[DIST_HELLO_BYTES];
            DistHello h;
            if (!move_one(fd, 0, out, sizeof out, 1, timeout_s, "sending this rank's hello") &&
                !move_one(fd, 0, back, sizeof back, 0, timeout_s, "rank 0's answer") && !dist_hello_decode(back, sizeof back, &h) &&
                h.status == 0 && h.launch_hash == t->launch_hash && h.rank == 0) {
                t->peer[0] = fd;
                break;
            }
            close(fd);  // another launch's hub, or one that went away: look again
        }
        if (ld_time_s() > deadline) {
            if (rv->file[0])
                ld_set_error("rank %d found no rank 0 of this launch through %s within %.0f s (--dist-timeout)", t->rank, rv->file,
                             timeout_s);
            else {
                char why[300];
                snprintf(why, sizeof why, "%s", ld_last_error());
                ld_set_error("rank %d could not reach rank 0 at %s:%s within %.0f s (--dist-timeout; %s)", t->rank, rv->host, rv->port,
                             timeout_s, why);
            }
            return -1;
        }
        usleep(100000);
    }
    for (int r = 0; r < t->world; r++) {
        unsigned char e[DIST_ENTRY_BYTES];
        if (move_one(t->peer[0], 0, e, sizeof e, 0, timeout_s, "the rank table") || dist_peer_decode(e, sizeof e, &table[r])) return -1;
    }
    return 0;
}

// The ring: this rank connects to the next and takes the previous one's connection on its own listener.
static int ring_join(Tcp *t, int lfd, const DistPeer *table, const char *hub_host, const DistHello *me, double timeout_s) {
    int next = (t->rank + 1) % t->world, prev = (t->rank + t->world - 1) % t->world;
    double deadline = ld_time_s() + timeout_s;
    char port[16];
    snprintf(port, sizeof port, "%u", table[next].ring_port);
    // rank 0 is reached where this rank reached it; so is one the hub saw over loopback, which shares its machine
    // (the hub itself reaches that one over loopback as it is)
    const char *a = table[next].addr;
    int local_to_hub = !a[0] || !strncmp(a, "127.", 4) || !strcmp(a, "::1");
    const char *host = next == 0 || (local_to_hub && t->rank != 0) ? hub_host : a;
    for (t->next = -2; t->next < 0 && ld_time_s() < deadline;)
        if ((t->next = connect_once(host, port, deadline, "joining the ring")) < 0) usleep(100000);
    if (t->next < 0)
        return ld_set_error("rank %d could not reach rank %d at %s:%s within %.0f s", t->rank, next, host, port, timeout_s), -1;
    unsigned char out[DIST_HELLO_BYTES], in[DIST_HELLO_BYTES];
    dist_hello_encode(me, out);
    if (move_one(t->next, next, out, sizeof out, 1, timeout_s, "joining the ring")) return -1;
    while (t->prev < 0) {  // strangers that reach the listener are turned away
        struct pollfd p = {lfd, POLLIN, 0};
        double left = deadline - ld_time_s();
        if (left <= 0) return ld_set_error("rank %d waited %.0f s for rank %d to join the ring", t->rank, timeout_s, prev), -1;
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            usleep(10000);
            continue;
        }
        tune(fd);
        DistHello h;
        if (!move_one(fd, prev, in, sizeof in, 0, hello_wait(timeout_s), "joining the ring") && !dist_hello_decode(in, sizeof in, &h) &&
            (int)h.rank == prev && h.launch_hash == t->launch_hash)
            t->prev = fd;
        else
            close(fd);
    }
    return 0;
}

static void tcp_free(Tcp *t) {
    for (int r = 0; t->peer && r < t->world; r++)
        if (t->peer[r] >= 0) close(t->peer[r]);
    if (t->next >= 0) close(t->next);
    if (t->prev >= 0) close(t->prev);
    if (t->file[0]) unlink(t->file);
    free(t->peer), free(t);
}

void *dist_tcp_open(DistPlace *at, const DistRendezvous *rv, double timeout_s) {
    Tcp *t = ld_xcalloc(1, sizeof *t);
    t->rank = at->rank, t->world = at->world, t->next = t->prev = -1, t->launch_hash = dist_launch_hash(rv->launch);
    t->peer = ld_xmalloc((size_t)at->world * sizeof *t->peer);
    for (int r = 0; r < at->world; r++) t->peer[r] = -1;
    DistHello me = {.world = (uint32_t)at->world, .rank = (uint32_t)at->rank, .launch_hash = t->launch_hash};
    char name[256];
    if (gethostname(name, sizeof name)) snprintf(name, sizeof name, "localhost");
    name[sizeof name - 1] = 0;
    snprintf(me.host, sizeof me.host, "%.*s", DIST_HOST_MAX - 1, name);  // the machine's name, cut to the hello's width
    // the hub's port first (a given one), then the ring's (any free one), so the second cannot take the first
    int hub_port = 0, hub_fd = at->rank ? -2 : listen_on(rv->file[0] ? "0" : rv->port, &hub_port, "rank 0");
    int ring_port = 0, lfd = hub_fd == -1 ? -1 : listen_on("0", &ring_port, "the ring");
    DistPeer *table = ld_xcalloc((size_t)at->world, sizeof *table);
    char hub_host[256] = "";
    me.ring_port = (uint32_t)ring_port;
    int rc = lfd < 0         ? -1
             : at->rank == 0 ? hub_join(t, hub_fd, hub_port, rv, table, &me, timeout_s)
                             : rank_join(t, rv, table, &me, hub_host, timeout_s);
    if (lfd < 0 && hub_fd >= 0) close(hub_fd);
    if (!rc) rc = ring_join(t, lfd, table, hub_host, &me, timeout_s);
    if (lfd >= 0) close(lfd);
    if (!rc) {  // this machine's ranks, as MPI's shared-memory split would give them
        at->local_rank = at->local_world = 0;
        for (int r = 0; r < at->world; r++)
            if (!strcmp(table[r].host, table[at->rank].host)) at->local_rank += r < at->rank, at->local_world++;
    }
    free(table);
    if (rc) return tcp_free(t), NULL;
    return t;
}

// ---- the collectives ----

static void add_into(void *x, const void *y, size_t n, int f64) {
    if (f64)
        for (size_t i = 0; i < n; i++) ((double *)x)[i] += ((const double *)y)[i];
    else
        for (size_t i = 0; i < n; i++) ((float *)x)[i] += ((const float *)y)[i];
}

// One pass round the ring over x[n] cut into world chunks (dist_chunk), each moved in slices of at most SEGMENT
// elements so the scratch is bounded. Reducing (a reduce-scatter), each rank adds the slice its previous rank
// sends and passes the sum on, so after world-1 steps rank r holds chunk r summed over every rank; gathering (an
// all-gather), each rank passes on chunk r and the chunks it receives, so every rank ends with every chunk. Each
// chunk is summed once, in one order, and copied: every rank ends with the same bytes.
static int ring_pass(Tcp *t, char *x, size_t n, size_t size, int f64, int reduce, char *scratch, double timeout_s, const char *what) {
    int W = t->world, r = t->rank, prev = (r + W - 1) % W, next = (r + 1) % W;
    size_t most = (n + (size_t)W - 1) / (size_t)W, lo, hi;  // the longest chunk
    for (size_t off = 0; off < most; off += SEGMENT)
        for (int s = 0; s < W - 1; s++) {
            int out = ((reduce ? r - s - 1 : r - s) % W + W) % W, in = (out + W - 1) % W;
            size_t out_at, out_len, in_at, in_len;
            dist_chunk(n, W, out, &lo, &hi);
            out_at = lo + off, out_len = off < hi - lo ? (hi - lo - off < SEGMENT ? hi - lo - off : SEGMENT) : 0;
            dist_chunk(n, W, in, &lo, &hi);
            in_at = lo + off, in_len = off < hi - lo ? (hi - lo - off < SEGMENT ? hi - lo - off : SEGMENT) : 0;
            Transfer x2[2] = {{t->next, next, (unsigned char *)x + out_at * size, out_len * size, 0, 1},
                              {t->prev, prev, reduce ? (unsigned char *)scratch : (unsigned char *)x + in_at * size, in_len * size, 0, 0}};
            if (move_all(x2, 2, timeout_s, what)) return -1;
            if (reduce) add_into(x + in_at * size, scratch, in_len, f64);
        }
    return 0;
}

static int ring(Tcp *t, void *x, size_t n, int f64, int reduce, int gather, double timeout_s, const char *what) {
    size_t size = f64 ? sizeof(double) : sizeof(float);
    char *scratch = reduce ? ld_xmalloc((size_t)SEGMENT * size) : NULL;
    int rc = (reduce && ring_pass(t, x, n, size, f64, 1, scratch, timeout_s, what)) ||
             (gather && ring_pass(t, x, n, size, f64, 0, NULL, timeout_s, what));
    free(scratch);
    return rc ? -1 : 0;
}

static int tcp_sum(void *impl, void *x, size_t n, int f64, double timeout_s, const char *what) {
    return ring(impl, x, n, f64, 1, 1, timeout_s, what);
}
static int tcp_reduce_scatter(void *impl, float *x, size_t n, double timeout_s, const char *what) {
    return ring(impl, x, n, 0, 1, 0, timeout_s, what);
}
static int tcp_all_gather(void *impl, float *x, size_t n, double timeout_s, const char *what) {
    return ring(impl, x, n, 0, 0, 1, timeout_s, what);
}

static int tcp_bcast(void *impl, void *bytes, size_t n, double timeout_s, const char *what) {
    Tcp *t = impl;
    if (t->rank) return move_one(t->peer[0], 0, bytes, n, 0, timeout_s, what);
    for (int r = 1; r < t->world; r++)
        if (move_one(t->peer[r], r, bytes, n, 1, timeout_s, what)) return -1;
    return 0;
}

static int tcp_gather(void *impl, const void *bytes, size_t n, char **all, size_t *each, double timeout_s, const char *what) {
    Tcp *t = impl;
    unsigned char len[8];
    if (t->rank) {
        put32(len, (uint32_t)((uint64_t)n >> 32)), put32(len + 4, (uint32_t)n);
        return move_one(t->peer[0], 0, len, 8, 1, timeout_s, what) || move_one(t->peer[0], 0, (void *)bytes, n, 1, timeout_s, what) ? -1
                                                                                                                                    : 0;
    }
    size_t total = n, cap = n ? n : 1;
    char *out = ld_xmalloc(cap);
    memcpy(out, bytes, n), each[0] = n;
    for (int r = 1; r < t->world; r++) {
        if (move_one(t->peer[r], r, len, 8, 0, timeout_s, what)) return free(out), -1;
        uint64_t m = (uint64_t)get32(len) << 32 | get32(len + 4);
        if (m > ((uint64_t)1 << 34))
            return free(out), ld_set_error("%s: rank %d says it sends %llu bytes", what, r, (unsigned long long)m), -1;
        if (total + m > cap) cap = (total + m) * 2, out = ld_xrealloc(out, cap);
        if (move_one(t->peer[r], r, out + total, m, 0, timeout_s, what)) return free(out), -1;
        each[r] = m, total += m;
    }
    *all = out;
    return 0;
}

// Every rank tells the hub it is here; when all have, the hub tells them all. The hub watches every connection
// at once, so one that closes while another is still working ends the wait.
static int tcp_barrier(void *impl, double timeout_s, const char *what) {
    Tcp *t = impl;
    unsigned char here = 'b', go = 'B';
    if (t->rank) {
        unsigned char got;
        if (move_one(t->peer[0], 0, &here, 1, 1, timeout_s, what) || move_one(t->peer[0], 0, &got, 1, 0, timeout_s, what)) return -1;
        return got == go ? 0 : (ld_set_error("%s: rank 0 sent 0x%02x, not its go-ahead", what, got), -1);
    }
    int W = t->world;
    Transfer *x = ld_xcalloc((size_t)W, sizeof *x);
    unsigned char *got = ld_xcalloc((size_t)W, 1);
    for (int r = 1; r < W; r++) x[r - 1] = (Transfer){t->peer[r], r, &got[r], 1, 0, 0};
    int rc = move_all(x, W - 1, timeout_s, what);
    for (int r = 1; r < W && !rc; r++)
        if (got[r] != here) rc = (ld_set_error("%s: rank %d sent 0x%02x, not its arrival", what, r, got[r]), -1);
    for (int r = 1; r < W && !rc; r++) x[r - 1] = (Transfer){t->peer[r], r, &go, 1, 0, 1};
    if (!rc) rc = move_all(x, W - 1, timeout_s, what);
    free(x), free(got);
    return rc;
}

// Leaving: each connection is shut for writing and read until the far end shuts too, so no rank's last bytes are
// lost to a reset, and every rank leaves after the others arrived here (as MPI_Finalize does).
static void tcp_close(void *impl, double timeout_s) {
    Tcp *t = impl;
    int *fds = ld_xmalloc(((size_t)t->world + 2) * sizeof *fds), k = 0;
    for (int r = 0; r < t->world; r++)
        if (t->peer[r] >= 0) fds[k++] = t->peer[r];
    fds[k++] = t->next, fds[k++] = t->prev;
    for (int i = 0; i < k; i++) shutdown(fds[i], SHUT_WR);
    double deadline = ld_time_s() + timeout_s;
    for (int i = 0; i < k; i++)
        for (char c;;) {
            struct pollfd p = {fds[i], POLLIN, 0};
            double left = deadline - ld_time_s();
            if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0 || recv(fds[i], &c, 1, 0) <= 0) break;
        }
    free(fds);
    tcp_free(t);
}

static void tcp_abort(void *impl, int code) {
    tcp_free(impl);  // the others' waits see the connections close and end, naming this rank
    exit(code);
}

const DistTransport dist_tcp = {"TCP",      tcp_sum,     tcp_reduce_scatter, tcp_all_gather, tcp_bcast,
                                tcp_gather, tcp_barrier, tcp_close,          tcp_abort};
