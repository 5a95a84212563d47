// `--ranks N` / `--gpus N` without a launcher: this process becomes `mpirun -np N <itself> <its arguments>`.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist.h"
#include "util.h"

static int on_path(const char *prog) {
    const char *path = getenv("PATH");
    char *copy = ld_xstrdup(path ? path : "/usr/bin:/bin"), *save = NULL, buf[PATH_MAX];
    int found = 0;
    for (char *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        snprintf(buf, sizeof buf, "%s/%s", dir, prog);
        found = access(buf, X_OK) == 0;
    }
    free(copy);
    return found;
}

int dist_launch(int ranks, char *const *args) {
    if (!on_path("mpirun")) {
        ld_set_error("%d ranks are started with mpirun, which is not installed (Debian: openmpi-bin)", ranks);
        return -1;
    }
    char exe[PATH_MAX], np[16];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        ld_set_error("cannot find this program's own path to start its ranks");
        return -1;
    }
    exe[n] = 0;
    snprintf(np, sizeof np, "%d", ranks);
    int argc = 0;
    while (args[argc]) argc++;
    const char **av = ld_xcalloc((size_t)argc + 12, sizeof *av);
    int k = 0;
    av[k++] = "mpirun", av[k++] = "-np", av[k++] = np;
    av[k++] = "--bind-to", av[k++] = "none";  // each rank sizes its own thread pool (cores / ranks on the machine)
    av[k++] = "--oversubscribe";  // more ranks than cores is slow, not wrong (a test of two ranks on one core)
    if (geteuid() == 0) av[k++] = "--allow-run-as-root";
    av[k++] = exe;
    for (int i = 0; i < argc; i++) av[k++] = args[i];
    fflush(NULL);
    execvp("mpirun", (char *const *)av);
    ld_set_error("cannot start mpirun");
    free(av);
    return -1;
}
