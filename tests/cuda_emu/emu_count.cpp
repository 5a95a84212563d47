// The emulator's traffic counter (emu_count.h): device memory from one reserved region, pages protected while a
// kernel runs, and a fault handler that marks each page's first read and first write.
#include "emu_count.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "emu_internal.h"

namespace emu {

static const size_t PAGE = 4096;
static const size_t REGION = (size_t)1 << 38;  // address space only (MAP_NORESERVE): pages are real once touched
enum { MARK_READ = 1, MARK_WRITTEN = 2 };

static char *g_base;
static size_t g_top;  // bytes handed out, a whole number of pages (freed blocks are not reused: kc_alloc caches)
static std::unordered_map<void *, size_t> g_sizes;
static std::vector<uint16_t> g_page_bytes;  // bytes of each page that belong to a live allocation
static std::vector<uint8_t> g_mark;  // this launch's MARK_* per page
static std::vector<size_t> g_touched;  // the pages this launch marked (reserved before it starts: no allocation in the handler)
static volatile sig_atomic_t g_protected;

struct Row {
    long launches = 0;
    double read = 0, written = 0;
};
static std::map<std::string, Row> g_rows;

bool count_on() { return g_base != NULL; }

bool count_owns(const void *p) { return g_base && (const char *)p >= g_base && (const char *)p < g_base + g_top; }

// A read fault marks the page read and opens it for reading; a write fault marks it written and opens it fully.
// Any other fault is a real one: the default action, on the faulting instruction again.
static void on_fault(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    char *a = (char *)si->si_addr;
    if (!g_protected || !count_owns(a)) {
        signal(SIGSEGV, SIG_DFL);
        return;
    }
    size_t page = (size_t)(a - g_base) / PAGE;
    int write = (((ucontext_t *)ctx)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
    if (!g_mark[page]) g_touched.push_back(page);
    g_mark[page] |= write ? MARK_WRITTEN : MARK_READ;
    mprotect(g_base + page * PAGE, PAGE, g_mark[page] & MARK_WRITTEN ? PROT_READ | PROT_WRITE : PROT_READ);
}

void *count_alloc(size_t bytes) {
    size_t pages = (bytes + PAGE - 1) / PAGE;
    if (pages == 0) pages = 1;
    if (g_top + pages * PAGE > REGION) return NULL;
    char *p = g_base + g_top;
    g_top += pages * PAGE;
    g_page_bytes.resize(g_top / PAGE), g_mark.resize(g_top / PAGE);
    for (size_t i = 0; i < pages; i++) {
        size_t left = bytes > i * PAGE ? bytes - i * PAGE : 0;
        g_page_bytes[(size_t)(p - g_base) / PAGE + i] = (uint16_t)(left < PAGE ? left : PAGE);
    }
    g_sizes[p] = bytes;
    return p;
}

void count_free(void *p) {
    auto it = g_sizes.find(p);
    if (it == g_sizes.end()) return;
    size_t pages = (it->second + PAGE - 1) / PAGE, first = (size_t)((char *)p - g_base) / PAGE;
    for (size_t i = 0; i < pages; i++) g_page_bytes[first + i] = 0;
    madvise(p, pages ? pages * PAGE : PAGE, MADV_DONTNEED);  // gives the memory back; the addresses stay taken
    g_sizes.erase(it);
}

void count_kernel_begin() {
    if (!g_base || !g_top) return;
    g_touched.clear();
    g_touched.reserve(g_top / PAGE);
    g_protected = 1;
    mprotect(g_base, g_top, PROT_NONE);
}

void count_kernel_end(const char *name) {
    if (!g_base) return;
    Row &r = g_rows[name];
    r.launches++;
    if (!g_top) return;
    g_protected = 0;
    mprotect(g_base, g_top, PROT_READ | PROT_WRITE);
    for (size_t page : g_touched) {
        if (g_mark[page] & MARK_READ) r.read += g_page_bytes[page];
        if (g_mark[page] & MARK_WRITTEN) r.written += g_page_bytes[page];
        g_mark[page] = 0;
    }
}

void count_add(const char *name, double read, double written) {
    if (!g_base) return;
    Row &r = g_rows[name];
    r.launches++, r.read += read, r.written += written;
}

}  // namespace emu

extern "C" int emu_count_enable(void) {
#if defined(__x86_64__) && defined(__linux__)
    if (emu::g_base) return 0;
    void *p = mmap(NULL, emu::REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        perror("emu_count_enable: reserving the device region");
        return -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = emu::on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL)) {
        perror("emu_count_enable: sigaction");
        munmap(p, emu::REGION);
        return -1;
    }
    emu::g_base = (char *)p;
    return 0;
#else
    fprintf(stderr, "emu_count_enable: the traffic counter needs x86-64 Linux (page faults tell reads from writes)\n");
    return -1;
#endif
}

extern "C" void emu_count_reset(void) { emu::g_rows.clear(); }

extern "C" int emu_count_rows(EmuCount *rows, int max) {
    std::vector<EmuCount> all;
    for (auto &kv : emu::g_rows) all.push_back(EmuCount{kv.first.c_str(), kv.second.launches, kv.second.read, kv.second.written});
    std::stable_sort(all.begin(), all.end(), [](const EmuCount &a, const EmuCount &b) { return a.read + a.written > b.read + b.written; });
    for (int i = 0; i < max && i < (int)all.size(); i++) rows[i] = all[i];
    return (int)all.size();
}
