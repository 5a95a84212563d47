// libFuzzer: what a stranger can send a rank joining a TCP run, and what a rendezvous file can hold (the hello,
// an entry of the rank table, the file's text); what is accepted must hold what the readers promise and survive
// being written again.
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist_transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    DistHello h, again;
    memset(&h, 0, sizeof h), memset(&again, 0, sizeof again);  // compared whole: the names' padding too
    unsigned char buf[DIST_HELLO_BYTES > DIST_ENTRY_BYTES ? DIST_HELLO_BYTES : DIST_ENTRY_BYTES];
    if (dist_hello_decode(data, size < DIST_HELLO_BYTES ? size : DIST_HELLO_BYTES, &h) == 0) {
        assert(h.world >= 1 && h.rank < h.world && h.ring_port <= 65535 && strlen(h.host) < DIST_HOST_MAX);
        dist_hello_encode(&h, buf);
        assert(dist_hello_decode(buf, DIST_HELLO_BYTES, &again) == 0 && !memcmp(&h, &again, sizeof h));
    }
    DistPeer p, p2;
    if (dist_peer_decode(data, size < DIST_ENTRY_BYTES ? size : DIST_ENTRY_BYTES, &p) == 0) {
        assert(p.ring_port >= 1 && p.ring_port <= 65535 && strlen(p.host) < DIST_HOST_MAX && strlen(p.addr) < DIST_HOST_MAX);
        dist_peer_encode(&p, buf);
        assert(dist_peer_decode(buf, DIST_ENTRY_BYTES, &p2) == 0 && !strcmp(p.host, p2.host) && !strcmp(p.addr, p2.addr));
    }
    char *text = malloc(size + 1), host[256], port[16];
    memcpy(text, data, size);
    text[size] = 0;
    if (dist_rendezvous_file_parse(text, "user:fuzz", 2, host, port) == 0) {
        long n = strtol(port, NULL, 10);
        assert(n >= 1 && n <= 65535 && host[0]);
    }
    free(text);
    return 0;
}
