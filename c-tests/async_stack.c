/* async_stack.so: how deep OpenSSL's async jobs' stacks go, for c-tests/haproxy_async.sh.
 *
 * OpenSSL runs a handshake in SSL_MODE_ASYNC inside an ASYNC_JOB, on a fibre stack of its
 * own: 32 KiB from OPENSSL_malloc on OpenSSL 3.0 (crypto/async/arch/async_posix.c), no guard
 * page, so an overflow corrupts the heap silently. Every session callback of such a
 * handshake, sesscache's included, runs on it.
 *
 * Preloaded (LD_PRELOAD=async_stack.so:libsesscache.so), it interposes glibc's makecontext,
 * which OpenSSL calls once per new fibre: it fills the stack with a pattern first, and at
 * exit (an atexit handler registered after OpenSSL's own, so it runs before OpenSSL frees
 * the stacks) writes to $ASYNC_STACK_OUT one line
 *     async_stack fibres N size BYTES deepest BYTES
 * "deepest": the most bytes of one stack ever written (from its top down to the lowest byte
 * that no longer holds the pattern). Build: cc -shared -fPIC -O2 async_stack.c -ldl. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#define MAX_FIBRES 4096
#define PATTERN 0xA5

static struct { unsigned char *sp; size_t size; } fibres[MAX_FIBRES];
static int nfibres;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void report(void)
{
    const char *path = getenv("ASYNC_STACK_OUT");
    size_t deepest = 0, size = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nfibres; i++) {
        size_t low = 0;
        while (low < fibres[i].size && fibres[i].sp[low] == PATTERN)
            low++;
        if (fibres[i].size - low > deepest)
            deepest = fibres[i].size - low;
        size = fibres[i].size;
    }
    FILE *f = path != NULL ? fopen(path, "a") : NULL;
    if (f != NULL) {
        fprintf(f, "async_stack fibres %d size %zu deepest %zu\n", nfibres, size, deepest);
        fclose(f);
    }
    pthread_mutex_unlock(&lock);
}

/* glibc declares makecontext with (void (*)(void), int, ...): OpenSSL passes no argument. */
void makecontext(ucontext_t *ucp, void (*func)(void), int argc, ...)
{
    static void (*real)(ucontext_t *, void (*)(void), int, ...);
    (void)argc;
    if (real == NULL)
        real = (void (*)(ucontext_t *, void (*)(void), int, ...))dlsym(RTLD_NEXT, "makecontext");
    pthread_mutex_lock(&lock);
    if (nfibres == 0)
        atexit(report);
    if (nfibres < MAX_FIBRES && ucp->uc_stack.ss_sp != NULL) {
        memset(ucp->uc_stack.ss_sp, PATTERN, ucp->uc_stack.ss_size);
        fibres[nfibres].sp = ucp->uc_stack.ss_sp;
        fibres[nfibres].size = ucp->uc_stack.ss_size;
        nfibres++;
    }
    pthread_mutex_unlock(&lock);
    real(ucp, func, 0);
}
