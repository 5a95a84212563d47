// defines: a `llamaduo serve` child process that the loop (service.local) or the proxy (its student) starts: on a
// port, its output in a log file, waited for until /health answers, stopped with SIGTERM. It dies with its parent
// (a kill -9 of the parent takes it along).
#pragma once
#include <sys/types.h>

typedef struct {
    pid_t pid;  // -1: not running
    int port;
    char base_url[64];  // http://127.0.0.1:PORT/v1
} LocalServer;

// Starts self_exe with argv (argv[0] "llamaduo", then "serve", ...; the caller puts --port PORT in it) and waits
// up to wait_s for it to answer. -1 with an error: the port already taken, the child exiting while it started
// (its log's last lines go to stderr), or no answer in time.
int local_server_start(const char *self_exe, char *const argv[], int port, const char *log_path, double wait_s, LocalServer *out);
void local_server_stop(LocalServer *s);
int local_server_free_port(void);  // a port nothing listens on now, or -1
