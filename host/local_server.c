#define _GNU_SOURCE
#include "local_server.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

static size_t discard(void *p, size_t s, size_t n, void *u) {
    (void)p, (void)u;
    return s * n;
}

static int http_ok(const char *url) {
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 2L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    long code = 0;
    int ok = curl_easy_perform(c) == CURLE_OK && curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200;
    curl_easy_cleanup(c);
    return ok;
}

// The last lines of a log, to stderr: why a child that wrote only to its log failed.
static void print_tail(const char *path, int lines) {
    size_t n;
    char *t = ld_read_file(path, &n);
    if (!t) return;
    size_t start = n && t[n - 1] == '\n' ? n - 1 : n;  // the last newline ends the last line
    for (int k = 0; start > 0 && !(t[start - 1] == '\n' && ++k == lines); start--) {}
    fprintf(stderr, "%s%s", t + start, n && t[n - 1] != '\n' ? "\n" : "");
    free(t);
}

int local_server_start(const char *self_exe, char *const argv[], int port, const char *log_path, double wait_s, LocalServer *out) {
    out->pid = -1, out->port = port;
    snprintf(out->base_url, sizeof out->base_url, "http://127.0.0.1:%d/v1", port);
    char health[80];
    snprintf(health, sizeof health, "http://127.0.0.1:%d/health", port);
    if (http_ok(health)) {
        ld_set_error("port %d is already in use: give the local server a free one", port);
        return -1;
    }
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);  // appended across restarts
    if (fd < 0) {
        ld_set_error("%s: cannot write the local server's log: %s", log_path, strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) {
        close(fd);
        ld_set_error("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        sigset_t none;  // a parent that takes its signals with sigwait has them blocked; the server must get them
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
        execv(self_exe, argv);
        fprintf(stderr, "cannot start %s: %s\n", self_exe, strerror(errno));
        _exit(127);
    }
    close(fd);
    out->pid = pid;
    for (double t0 = ld_time_s(); !http_ok(health);) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            out->pid = -1;
            print_tail(log_path, 5);
            ld_set_error("the local server (llamaduo serve) exited while starting; its last lines are above (all of it: %s)", log_path);
            return -1;
        }
        if (ld_time_s() - t0 > wait_s) {
            local_server_stop(out);
            ld_set_error("the local server (llamaduo serve) did not answer within %.0f s (its log: %s)", wait_s, log_path);
            return -1;
        }
        usleep(100 * 1000);
    }
    return 0;
}

// SIGTERM lets it finish what is in flight; one still there after 60 s (hung while loading, say) is killed.
void local_server_stop(LocalServer *s) {
    if (s->pid <= 0) return;
    kill(s->pid, SIGTERM);
    int status;
    for (double t0 = ld_time_s(); waitpid(s->pid, &status, WNOHANG) == 0; usleep(50 * 1000))
        if (ld_time_s() - t0 > 60) {
            kill(s->pid, SIGKILL);
            while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {}
            break;
        }
    s->pid = -1;
}

int local_server_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    int port = fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &n) ? ntohs(a.sin_port) : -1;
    if (fd >= 0) close(fd);
    return port;
}
