/* sesscache_stats can grow without breaking programs: this program is compiled against
 * headers whose sesscache_stats has fewer fields than the library's (an older header) and
 * more (a newer one), with -DHEADER_FIELDS=N naming how many it has. It checks that the
 * library fills exactly the fields the program knows, never writes past the struct, gives
 * the right figures, and zeroes fields it does not keep. Prints "stats-abi: N passed, M
 * failed". */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "sesscache.h"
#include "tls_util.h"

#if !defined(HEADER_FIELDS) || !defined(LIBRARY_FIELDS)
#error "compile with -DHEADER_FIELDS=<fields of sesscache_stats in this header> -DLIBRARY_FIELDS=<in the library's>"
#endif

static void test_the_struct_this_header_knows(void) {
    struct {
        sesscache_stats s;
        uint64_t guard[4];
    } out;
    memset(&out, 0xA5, sizeof out);
    CHECK_EQ(sizeof out.s, HEADER_FIELDS * sizeof(uint64_t));

    tu_identity id;
    REQUIRE(tu_identity_make(&id));
    sesscache *cache = sesscache_open("memory:");
    REQUIRE(cache != NULL);
    SSL_CTX *server = tu_server_ctx(&id, TLS1_2_VERSION), *client = tu_client_ctx(TLS1_2_VERSION);
    REQUIRE(server != NULL && client != NULL && sesscache_attach(cache, server) == 1);
    tu_conn_opts o = {0};
    tu_conn_result full, again;
    REQUIRE(tu_connect(server, client, &o, &full));
    o.resume = full.session;
    REQUIRE(tu_connect(server, client, &o, &again));
    CHECK(again.resumed);

    size_t filled = sesscache_get_stats(cache, &out.s, sizeof out.s);
    /* The fields of the library this test links (its own header's count). */
    size_t library = LIBRARY_FIELDS * sizeof(uint64_t);
    CHECK_EQ(filled, sizeof out.s < library ? sizeof out.s : library);
    CHECK_EQ(out.s.lookups, 1);
    CHECK_EQ(out.s.hits, 1);
    CHECK_EQ(out.s.stores, 1);
    for (int i = 0; i < 4; i++)
        CHECK(out.guard[i] == 0xA5A5A5A5A5A5A5A5ULL); /* nothing written past the struct */
    /* Fields the library does not keep (a newer header's) read 0. */
    const uint64_t *f = (const uint64_t *)&out.s;
    for (size_t i = filled / sizeof(uint64_t); i < HEADER_FIELDS; i++)
        CHECK_EQ(f[i], 0);
    /* A size that is no sesscache_stats is refused with a message. */
    CHECK_EQ(sesscache_get_stats(cache, &out.s, 3), 0);
    CHECK(strstr(sesscache_last_error(), "out_size") != NULL);
    printf("    # header with %d fields: the library filled %zu bytes of %zu\n", HEADER_FIELDS, filled,
           sizeof out.s);

    SSL_SESSION_free(full.session);
    SSL_SESSION_free(again.session);
    SSL_CTX_free(server);
    SSL_CTX_free(client);
    sesscache_free(cache);
    tu_identity_free(&id);
}

int main(void) {
    RUN(test_the_struct_this_header_knows);
    return check_summary("stats-abi");
}
