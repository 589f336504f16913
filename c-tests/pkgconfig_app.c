/* Built by the harness against an installed prefix with
 *   cc pkgconfig_app.c $(pkg-config --cflags --libs sesscache)
 * to check that installation, the pkg-config file and the header work together. */
#include <openssl/ssl.h>
#include <sesscache.h>
#include <stdio.h>

int main(void) {
    sesscache *cache = sesscache_open("memory:?capacity=1000");
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (cache == NULL || ctx == NULL || sesscache_attach(cache, ctx) != 1) {
        fprintf(stderr, "failed: %s\n", sesscache_last_error());
        return 1;
    }
    sesscache_free(cache); /* the context keeps it alive */
    int ok = SSL_CTX_get_session_cache_mode(ctx) == (SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_free(ctx);
    printf("sesscache %s: %s\n", sesscache_version(), ok ? "attached" : "NOT attached");
    return ok ? 0 : 1;
}
