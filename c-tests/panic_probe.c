/* The explicit API under injected panics (c-tests/panic_check.sh, with the library built
 * with the fault-injection feature and SESSCACHE_FAULT naming the sites): each call prints
 * what it returned and what sesscache_last_error() says, then a session is removed from
 * the attached context (OpenSSL calls the cache's remove callback), and the program
 * carries on to its last line, "probe: done". */
#include <openssl/ssl.h>
#include <stdio.h>

#include "sesscache.h"

int main(void) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return 1;
    sesscache *cache = sesscache_open("memory:");
    printf("open: %s: %s\n", cache ? "ok" : "NULL", sesscache_last_error());
    if (cache == NULL) {
        /* open was made to fail: the rest with a cache opened before the fault site. */
        SSL_CTX_free(ctx);
        printf("probe: done\n");
        return 0;
    }
    int attached = sesscache_attach(cache, ctx);
    printf("attach: %d: %s\n", attached, sesscache_last_error());
    sesscache_stats st;
    size_t n = sesscache_get_stats(cache, &st, sizeof st);
    printf("stats: %zu: %s\n", n, sesscache_last_error());
    /* OpenSSL calls the remove callback (ours, on an attached context) for any session. */
    SSL_SESSION *sess = SSL_SESSION_new();
    static const unsigned char id[32] = {1, 2, 3};
    if (sess == NULL || SSL_SESSION_set1_id(sess, id, sizeof id) != 1)
        return 1;
    SSL_CTX_remove_session(ctx, sess);
    printf("remove: returned\n");
    SSL_SESSION_free(sess);
    sesscache_free(cache);
    SSL_CTX_free(ctx);
    printf("probe: done\n");
    return 0;
}
