// The GPU paths stop at their first failure (CUDA emulator only, label emu: it can make any one kernel launch,
// or every cudaMalloc from the Nth on, fail). For every launch of a forward pass and of a training step, and for
// every allocation of building the GPU model and the trainer, the failure injected there gives one error naming
// what failed, a clean return (-1, NaN or NULL), and not one kernel launched after it.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forward_gpu.h"
#include "lora.h"
#include "model.h"
#include "safetensors.h"
#include "test_util.h"
#include "train_gpu.h"
#include "util.h"

void emu_inject_faults(long fail_launch, long fail_malloc);  // tests/cuda_emu/emu.cpp
long emu_launches(void);
long emu_mallocs(void);
long emu_launches_after_fault(void);

static int g_tok[9] = {5, 17, 40, 3, 99, 120, 7, 8, 200}, g_slot[9], g_pos[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};

static void check_forward(const Model *m) {
    GpuModel *g = gpu_model_new(m, 2, 32, LD_F32);
    CHECK(g != NULL, "gpu_model_new: %s", ld_last_error());
    if (!g) return;
    float *out = malloc(sizeof(float) * 9 * (size_t)m->cfg.vocab);
    emu_inject_faults(0, 0);
    CHECK(gpu_model_forward(g, g_tok, g_slot, g_pos, 9, NULL, out) == 0, "clean forward: %s", ld_last_error());
    long launches = emu_launches(), bad = 0;
    for (long k = 1; k <= launches; k++) {
        emu_inject_faults(k, 0);
        int rc = gpu_model_forward(g, g_tok, g_slot, g_pos, 9, NULL, out);
        bad += rc != -1 || !strstr(ld_last_error(), "GPU forward pass") || !strstr(ld_last_error(), "launch failure") ||
               emu_launches_after_fault() != 0;
        if (rc != -1 || emu_launches_after_fault())
            fprintf(stderr, "forward, launch %ld of %ld failed: rc %d, %ld launches after it, '%s'\n", k, launches, rc,
                    emu_launches_after_fault(), ld_last_error());
    }
    printf("forward pass: a failure injected at each of its %ld launches stops it there (%ld did not)\n", launches, bad);
    CHECK(bad == 0, "%ld injected launch failures were not stopped cleanly", bad);
    emu_inject_faults(0, 0);
    free(out);
    gpu_model_free(g);
}

// gpu_model_new in a child process with device memory running out at its kth allocation (0: never): the
// child's exit status says whether it failed cleanly (0), and k = 0 reports the allocation count. A child
// starts with an empty allocator cache (the parent has allocated nothing yet), so every allocation is real.
static long model_new_in_child(const Model *m, long k) {
    int fd[2];
    if (pipe(fd)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        emu_inject_faults(0, k);
        GpuModel *g = gpu_model_new(m, 2, 32, LD_F32);
        long mallocs = emu_mallocs();
        int clean = k ? g == NULL && strstr(ld_last_error(), "memory") && emu_launches_after_fault() == 0 : g != NULL;
        if (!clean)
            fprintf(stderr, "out of memory at allocation %ld: model %p, %ld launches after, '%s'\n", k, (void *)g,
                    emu_launches_after_fault(), ld_last_error());
        if (write(fd[1], &mallocs, sizeof mallocs) != sizeof mallocs) _exit(3);
        _exit(clean ? 0 : 1);
    }
    close(fd[1]);
    long mallocs = -1;
    if (read(fd[0], &mallocs, sizeof mallocs) != sizeof mallocs) mallocs = -1;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? mallocs : -1;  // -1: not clean, or it crashed
}

static void check_model_alloc(const Model *m) {
    long mallocs = model_new_in_child(m, 0), bad = 0;
    CHECK(mallocs > 0, "a clean gpu_model_new in a child process failed");
    for (long k = 1; k <= mallocs; k++) bad += model_new_in_child(m, k) < 0;
    printf("GPU model: out of memory at each of its %ld allocations gives NULL and an error (%ld did not)\n", mallocs, bad);
    CHECK(bad == 0, "%ld injected allocation failures were not stopped cleanly", bad);
}

static int *ints(const SafeTensors *st, const char *name, int *n) {
    const TensorRef *t = st_find(st, name);
    *n = (int)ld_tensor_numel(t);
    int *v = ld_xmalloc(sizeof(int) * (size_t)*n);
    memcpy(v, t->data, sizeof(int) * (size_t)*n);
    return v;
}

static void check_training(const Model *m) {
    SafeTensors st;
    CHECK(st_open(LD_FIXTURES "/train/llama.safetensors", &st) == 0, "%s", ld_last_error());
    int nt, ng, np, ns;
    TrainBatch b = {ints(&st, "tokens", &nt), ints(&st, "targets", &ng), ints(&st, "positions", &np), ints(&st, "starts", &ns), 0, 0};
    b.T = nt, b.n_records = ns;
    Lora *lora = lora_new(&m->cfg, 4, 8.0f, 0, (1u << LT_COUNT) - 1);
    GpuTrainer *g = gpu_trainer_new(m, lora, LD_F32);
    CHECK(g != NULL, "gpu_trainer_new: %s", ld_last_error());
    int counted;
    emu_inject_faults(0, 0);
    CHECK(!isnan(gpu_trainer_loss_and_grad(g, &b, &counted, 1, 7)), "clean step: %s", ld_last_error());
    long launches = emu_launches(), bad = 0;
    for (long k = 1; g && k <= launches; k++) {
        emu_inject_faults(k, 0);
        float loss = gpu_trainer_loss_and_grad(g, &b, &counted, 1, 7);
        int ok = isnan(loss) && strstr(ld_last_error(), "GPU training step") && emu_launches_after_fault() == 0;
        bad += !ok;
        if (!ok)
            fprintf(stderr, "training, launch %ld of %ld failed: loss %g, %ld launches after it, '%s'\n", k, launches, loss,
                    emu_launches_after_fault(), ld_last_error());
    }
    emu_inject_faults(0, 0);
    printf("training step: a failure injected at each of its %ld launches stops it there (%ld did not)\n", launches, bad);
    CHECK(bad == 0, "%ld injected launch failures in training were not stopped cleanly", bad);
    gpu_trainer_free(g);
    lora_free(lora);
    free((void *)b.tokens), free((void *)b.targets), free((void *)b.positions), free((void *)b.starts);
    st_close(&st);
}

int main(void) {
    Model *m = model_load(LD_FIXTURES "/tiny/llama");
    CHECK(m != NULL, "%s", ld_last_error());
    if (!m) return test_finish("test_gpu_faults");
    check_model_alloc(m);  // first: before this process holds any device memory
    check_forward(m);
    check_training(m);
    model_free(m);
    return test_finish("test_gpu_faults");
}
