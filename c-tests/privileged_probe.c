/* A small server program for c-tests/privileged_check.sh, linked with libsesscache ahead
 * of libssl: it makes a server context (which opens the preload cache when SESSCACHE_URL is
 * honoured), and, given a URL, opens it with sesscache_open and prints what the library
 * said. Exits normally, so that the statistics line (SESSCACHE_STATS) is written at exit if
 * it is honoured. Prints "probe: done" last. */
#include <openssl/ssl.h>
#include <stdio.h>

#include "sesscache.h"

int main(int argc, char **argv) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        fprintf(stderr, "probe: SSL_CTX_new failed\n");
        return 1;
    }
    if (argc > 1) {
        sesscache *c = sesscache_open(argv[1]);
        if (c == NULL)
            printf("probe: open failed: %s\n", sesscache_last_error());
        else
            printf("probe: opened\n");
        sesscache_free(c);
    }
    SSL_CTX_free(ctx);
    printf("probe: done\n");
    return 0;
}
