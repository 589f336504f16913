/* The C harness: real TLS 1.2 and TLS 1.3 handshakes through sesscache, linked before
 * -lssl. Every test makes its own contexts and caches; `make check` runs this binary as is,
 * under valgrind memcheck and as an AddressSanitizer build. SESSCACHE_TEST_QUICK=1 lowers
 * the iteration counts (for valgrind), never the set of tests. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "sesscache.h"
#include "tls_util.h"

static tu_identity id;
static int quick;

static sesscache_stats stats_of(const sesscache *c) {
    sesscache_stats s;
    memset(&s, 0xff, sizeof s);
    CHECK(sesscache_get_stats(c, &s, sizeof s) > 0);
    return s;
}

/* A server context with `cache` attached. */
static SSL_CTX *attached_server(sesscache *cache, int version) {
    SSL_CTX *ctx = tu_server_ctx(&id, version);
    if (ctx != NULL && sesscache_attach(cache, ctx) != 1) {
        fprintf(stderr, "attach: %s\n", sesscache_last_error());
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* One connection; returns 1 if the server resumed. The client's session goes to *out
 * (replacing and freeing what was there) when out is not NULL. */
static int conn(SSL_CTX *server, SSL_CTX *client, SSL_SESSION *resume, SSL_SESSION **out) {
    tu_conn_opts o = {.resume = resume};
    tu_conn_result r;
    CHECK(tu_connect(server, client, &o, &r));
    if (out != NULL) {
        SSL_SESSION_free(*out);
        *out = r.session;
    } else {
        SSL_SESSION_free(r.session);
    }
    return r.resumed;
}

/* ---- the explicit API ------------------------------------------------------------------ */

static void test_open_errors(void) {
    CHECK(sesscache_open(NULL) == NULL);
    CHECK(strstr(sesscache_last_error(), "NULL") != NULL);
    CHECK_EQ(sesscache_last_error_code(), SESSCACHE_ERR_ARGUMENT);
    CHECK(sesscache_open("memory:?capacity=banana") == NULL);
    CHECK(strstr(sesscache_last_error(), "capacity") != NULL);
    CHECK_EQ(sesscache_last_error_code(), SESSCACHE_ERR_URL);
    CHECK(sesscache_open("bogus://x") == NULL);
    CHECK(strstr(sesscache_last_error(), "bogus") != NULL);
    CHECK(sesscache_open("memory:?colour=blue") == NULL);
    CHECK(strstr(sesscache_last_error(), "colour") != NULL);
    CHECK(sesscache_open("memory:?max_bytes=12Q") == NULL);
    CHECK(strstr(sesscache_last_error(), "max_bytes") != NULL);
    sesscache *c = sesscache_open("memory:?capacity=10&max_bytes=1M&ttl=60&single_use=0&max_session_bytes=4K");
    CHECK(c != NULL);
    CHECK(strcmp(sesscache_last_error(), "") == 0);
    CHECK_EQ(sesscache_last_error_code(), SESSCACHE_OK);
    CHECK(sesscache_get_stats(c, NULL, sizeof(sesscache_stats)) == 0);
    CHECK_EQ(sesscache_last_error_code(), SESSCACHE_ERR_ARGUMENT);
    CHECK(sesscache_get_stats(NULL, NULL, sizeof(sesscache_stats)) == 0);
    CHECK(sesscache_attach(NULL, NULL) == 0);
    CHECK(sesscache_attach(c, NULL) == 0);
    CHECK(strstr(sesscache_last_error(), "NULL") != NULL);
    CHECK(sesscache_version() != NULL && strlen(sesscache_version()) > 0);
    sesscache_free(c);
    sesscache_free(NULL);
}

/* redis:// URLs: refused without a way to protect the sessions, with the password never in
 * a message; a key file others may read is a permission error. Nothing here connects (a
 * redis cache connects on first use), so no server is needed. */
static void test_redis_open_errors(void) {
    CHECK(sesscache_open("redis://127.0.0.1:1") == NULL);
    CHECK(strstr(sesscache_last_error(), "key_file") != NULL);
    CHECK_EQ(sesscache_last_error_code(), SESSCACHE_ERR_URL);
    CHECK(sesscache_open("redis://app:Sup3rS3cret@127.0.0.1:0?insecure_plaintext=1") == NULL);
    CHECK(strstr(sesscache_last_error(), "port") != NULL);
    CHECK(strstr(sesscache_last_error(), "Sup3rS3cret") == NULL);
    char path[] = "/tmp/sesscache-test-keys-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    static const char key[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    REQUIRE(write(fd, key, sizeof key - 1) == (ssize_t)(sizeof key - 1));
    close(fd);
    char url[256];
    snprintf(url, sizeof url, "redis://127.0.0.1:1?key_file=%s&timeout_ms=5", path);
    REQUIRE(chmod(path, 0644) == 0);
    CHECK(sesscache_open(url) == NULL);
    CHECK_EQ(sesscache_last_error_code(), SESSCACHE_ERR_PERMISSION);
    CHECK(strstr(sesscache_last_error(), "0644") != NULL);
    REQUIRE(chmod(path, 0600) == 0);
    sesscache *c = sesscache_open(url);
    /* Another handle on the same URL: another "host" (a handle's own writes that are still
     * queued are found by its own lookups; another's are not). */
    sesscache *other = sesscache_open(url);
    CHECK(c != NULL && other != NULL);
    if (c != NULL && other != NULL) {
        /* Nothing listens on port 1: a handshake still completes, the lookup misses. */
        tu_identity id;
        REQUIRE(tu_identity_make(&id));
        SSL_CTX *server = tu_server_ctx(&id, TLS1_2_VERSION), *client = tu_client_ctx(TLS1_2_VERSION);
        SSL_CTX *server2 = tu_server_ctx(&id, TLS1_2_VERSION);
        REQUIRE(server != NULL && client != NULL && server2 != NULL);
        REQUIRE(sesscache_attach(c, server) == 1 && sesscache_attach(other, server2) == 1);
        tu_conn_result full, again;
        tu_conn_opts o = {0};
        CHECK(tu_connect(server, client, &o, &full) && !full.resumed);
        o.resume = full.session;
        CHECK(tu_connect(server2, client, &o, &again) && !again.resumed);
        sesscache_stats st;
        CHECK(sesscache_get_stats(other, &st, sizeof st) == sizeof st);
        CHECK_EQ(st.lookups, 1);
        CHECK_EQ(st.hits, 0);
        CHECK(st.net_errors + st.timeouts + st.breaker_opens + st.queue_drops >= 1);
        SSL_SESSION_free(full.session);
        SSL_SESSION_free(again.session);
        SSL_CTX_free(server);
        SSL_CTX_free(server2);
        SSL_CTX_free(client);
        tu_identity_free(&id);
    }
    sesscache_free(c);
    sesscache_free(other);
    unlink(path);
}

static void test_attach_idempotent_and_exclusive(void) {
    sesscache *a = sesscache_open("memory:"), *b = sesscache_open("memory:");
    SSL_CTX *ctx = tu_server_ctx(&id, TLS1_2_VERSION);
    REQUIRE(a && b && ctx);
    CHECK(sesscache_attach(a, ctx) == 1);
    CHECK(sesscache_attach(a, ctx) == 1);
    CHECK(sesscache_attach(b, ctx) == 0);
    CHECK(strstr(sesscache_last_error(), "another") != NULL);
    CHECK_EQ(sesscache_last_error_code(), SESSCACHE_ERR_STATE);
    CHECK_EQ(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    /* The handle can go: the context keeps the cache alive (valgrind checks it is freed
     * with the context). */
    sesscache_free(a);
    SSL_CTX *client = tu_client_ctx(TLS1_2_VERSION);
    SSL_SESSION *s = NULL;
    CHECK(!conn(ctx, client, NULL, &s));
    CHECK(conn(ctx, client, s, NULL));
    SSL_SESSION_free(s);
    SSL_CTX_free(client);
    SSL_CTX_free(ctx);
    sesscache_free(b);
}

/* ---- resumption through the cache ------------------------------------------------------ */

/* A session made on context A resumes on context B: two contexts share only the cache, and
 * their internal caches are off, so it is our cache that resumed. */
static void two_contexts(int version, const char *url, int expect_second_resume) {
    sesscache *cache = sesscache_open(url);
    REQUIRE(cache != NULL);
    SSL_CTX *a = attached_server(cache, version), *b = attached_server(cache, version);
    SSL_CTX *client = tu_client_ctx(version);
    REQUIRE(a && b && client);
    SSL_SESSION *s = NULL;
    CHECK(!conn(a, client, NULL, &s));
    REQUIRE(s != NULL);
    SSL_SESSION *first = s;
    SSL_SESSION_up_ref(first);
    CHECK(conn(b, client, first, NULL));
    /* The same session (TLS 1.3: the same ticket) a second time. */
    CHECK_EQ(conn(a, client, first, NULL), expect_second_resume);
    CHECK_EQ(SSL_CTX_sess_number(a), 0);
    CHECK_EQ(SSL_CTX_sess_number(b), 0);
    sesscache_stats st = stats_of(cache);
    CHECK_EQ(st.hits, 1 + expect_second_resume);
    CHECK_EQ(st.lookups, 2);
    CHECK(st.stores >= 1);
    SSL_SESSION_free(first);
    SSL_SESSION_free(s);
    SSL_CTX_free(client);
    SSL_CTX_free(a);
    SSL_CTX_free(b);
    sesscache_free(cache);
}

static void test_tls12_two_contexts(void) { two_contexts(TLS1_2_VERSION, "memory:", 1); }
static void test_tls13_two_contexts_single_use(void) { two_contexts(TLS1_3_VERSION, "memory:", 0); }
static void test_tls13_two_contexts_reusable(void) {
    two_contexts(TLS1_3_VERSION, "memory:?single_use=0", 1);
}

/* TLS 1.3 after a resumption: the server issues a fresh ticket, which resumes in turn. */
static void test_tls13_ticket_chain(void) {
    sesscache *cache = sesscache_open("memory:");
    SSL_CTX *a = attached_server(cache, TLS1_3_VERSION), *client = tu_client_ctx(TLS1_3_VERSION);
    REQUIRE(cache && a && client);
    SSL_SESSION *s = NULL;
    CHECK(!conn(a, client, NULL, &s));
    for (int i = 0; i < 5; i++)
        CHECK(conn(a, client, s, &s));
    SSL_SESSION_free(s);
    SSL_CTX_free(client);
    SSL_CTX_free(a);
    sesscache_free(cache);
}

/* ---- the ready-made callbacks ---------------------------------------------------------- */

static SSL_CTX *ready_made_server(int version) {
    SSL_CTX *ctx = tu_server_ctx(&id, version);
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, sesscache_new_session_cb);
    SSL_CTX_sess_set_get_cb(ctx, sesscache_get_session_cb);
    SSL_CTX_sess_set_remove_cb(ctx, sesscache_remove_session_cb);
    return ctx;
}

/* With no cache attached, the ready-made callbacks share the process-wide default cache. */
static void test_ready_made_callbacks(void) {
    for (int version = TLS1_2_VERSION; version <= TLS1_3_VERSION; version++) {
        SSL_CTX *a = ready_made_server(version), *b = ready_made_server(version);
        SSL_CTX *client = tu_client_ctx(version);
        REQUIRE(a && b && client);
        CHECK(SSL_CTX_sess_get_new_cb(a) == sesscache_new_session_cb);
        CHECK(SSL_CTX_sess_get_get_cb(a) == sesscache_get_session_cb);
        CHECK(SSL_CTX_sess_get_remove_cb(a) == sesscache_remove_session_cb);
        SSL_SESSION *s = NULL;
        CHECK(!conn(a, client, NULL, &s));
        CHECK(conn(b, client, s, NULL));
        SSL_SESSION_free(s);
        SSL_CTX_free(client);
        SSL_CTX_free(a);
        SSL_CTX_free(b);
    }
}

/* Ready-made callbacks installed on an attached context use the attached cache, once. */
static void test_ready_made_on_attached_context(void) {
    sesscache *cache = sesscache_open("memory:");
    SSL_CTX *a = attached_server(cache, TLS1_2_VERSION), *client = tu_client_ctx(TLS1_2_VERSION);
    REQUIRE(cache && a && client);
    SSL_CTX_sess_set_new_cb(a, sesscache_new_session_cb);
    SSL_CTX_sess_set_get_cb(a, sesscache_get_session_cb);
    SSL_SESSION *s = NULL;
    CHECK(!conn(a, client, NULL, &s));
    CHECK(conn(a, client, s, NULL));
    sesscache_stats st = stats_of(cache);
    CHECK_EQ(st.stores, 1);
    CHECK_EQ(st.lookups, 1);
    CHECK_EQ(st.hits, 1);
    SSL_SESSION_free(s);
    SSL_CTX_free(client);
    SSL_CTX_free(a);
    sesscache_free(cache);
}

/* ---- the application's own callbacks on an attached context ---------------------------- */

static int app_new_calls, app_get_calls, app_remove_calls;
static SSL_SESSION *app_kept;
static int app_new_keep(SSL *ssl, SSL_SESSION *sess) {
    (void)ssl;
    app_new_calls++;
    SSL_SESSION_free(app_kept);
    app_kept = sess; /* returning 1: the app owns OpenSSL's extra reference */
    return 1;
}
static SSL_SESSION *app_get_null(SSL *ssl, const unsigned char *data, int len, int *copy) {
    (void)ssl, (void)data, (void)len, (void)copy;
    app_get_calls++;
    return NULL;
}
static void app_remove(SSL_CTX *ctx, SSL_SESSION *sess) {
    (void)ctx, (void)sess;
    app_remove_calls++;
}

static void test_app_callbacks_chain(void) {
    app_new_calls = app_get_calls = app_remove_calls = 0;
    sesscache *cache = sesscache_open("memory:");
    SSL_CTX *a = tu_server_ctx(&id, TLS1_2_VERSION), *client = tu_client_ctx(TLS1_2_VERSION);
    REQUIRE(cache && a && client);
    SSL_CTX_sess_set_new_cb(a, app_new_keep); /* before attaching */
    CHECK(sesscache_attach(cache, a) == 1);
    SSL_CTX_sess_set_get_cb(a, app_get_null); /* after attaching */
    SSL_CTX_sess_set_remove_cb(a, app_remove);
    /* The getters return what the application set, not our trampolines. */
    CHECK(SSL_CTX_sess_get_new_cb(a) == app_new_keep);
    CHECK(SSL_CTX_sess_get_get_cb(a) == app_get_null);
    CHECK(SSL_CTX_sess_get_remove_cb(a) == app_remove);
    SSL_SESSION *s = NULL;
    CHECK(!conn(a, client, NULL, &s));
    CHECK_EQ(app_new_calls, 1);
    CHECK(app_kept != NULL);
    CHECK(conn(a, client, s, NULL)); /* the app's get said NULL, the cache answered */
    CHECK_EQ(app_get_calls, 1);
    CHECK(SSL_CTX_remove_session(a, s) == 0); /* not in OpenSSL's internal cache... */
    CHECK_EQ(app_remove_calls, 1);            /* ...but both remove callbacks ran */
    CHECK(!conn(a, client, s, NULL));         /* so the cache forgot it */
    sesscache_stats st = stats_of(cache);
    CHECK_EQ(st.removes, 1);
    SSL_CTX_sess_set_new_cb(a, NULL);
    CHECK(SSL_CTX_sess_get_new_cb(a) == NULL);
    SSL_SESSION_free(app_kept);
    app_kept = NULL;
    SSL_SESSION_free(s);
    SSL_CTX_free(client);
    SSL_CTX_free(a);
    sesscache_free(cache);
}

/* Client connections pass through: the app's client callback runs, the cache stores nothing. */
static int client_new_calls;
static int client_new(SSL *ssl, SSL_SESSION *sess) {
    (void)sess;
    if (!SSL_is_server(ssl))
        client_new_calls++;
    return 0;
}

static void test_client_sessions_pass_through(void) {
    client_new_calls = 0;
    sesscache *cache = sesscache_open("memory:");
    SSL_CTX *server = tu_server_ctx(&id, TLS1_3_VERSION), *client = tu_client_ctx(TLS1_3_VERSION);
    REQUIRE(cache && server && client);
    CHECK(sesscache_attach(cache, client) == 1);
    SSL_CTX_set_session_cache_mode(client, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(client, client_new);
    SSL_SESSION *s = NULL;
    CHECK(!conn(server, client, NULL, &s));
    CHECK_EQ(client_new_calls, 2); /* two tickets by default */
    CHECK_EQ(stats_of(cache).stores, 0);
    SSL_SESSION_free(s);
    SSL_CTX_free(client);
    SSL_CTX_free(server);
    sesscache_free(cache);
}

/* Stateless TLS 1.3 tickets never come back through the cache: they are not stored. */
static void test_stateless_tickets_not_stored(void) {
    sesscache *cache = sesscache_open("memory:");
    SSL_CTX *a = attached_server(cache, TLS1_3_VERSION), *client = tu_client_ctx(TLS1_3_VERSION);
    REQUIRE(cache && a && client);
    SSL_CTX_clear_options(a, SSL_OP_NO_TICKET);
    SSL_SESSION *s = NULL;
    CHECK(!conn(a, client, NULL, &s));
    CHECK(conn(a, client, s, NULL)); /* OpenSSL resumes from the ticket itself */
    sesscache_stats st = stats_of(cache);
    CHECK_EQ(st.stores, 0);
    CHECK_EQ(st.entries, 0);
    CHECK_EQ(st.lookups, 0);
    SSL_SESSION_free(s);
    SSL_CTX_free(client);
    SSL_CTX_free(a);
    sesscache_free(cache);
}

/* ---- limits ---------------------------------------------------------------------------- */

static void test_expiry(void) {
    sesscache *cache = sesscache_open("memory:?ttl=1");
    SSL_CTX *a = attached_server(cache, TLS1_2_VERSION), *client = tu_client_ctx(TLS1_2_VERSION);
    REQUIRE(cache && a && client);
    SSL_SESSION *s = NULL;
    CHECK(!conn(a, client, NULL, &s));
    CHECK(conn(a, client, s, NULL));
    sleep(2);
    CHECK(!conn(a, client, s, NULL));
    sesscache_stats st = stats_of(cache);
    CHECK(st.expirations >= 1);
    SSL_SESSION_free(s);
    SSL_CTX_free(client);
    SSL_CTX_free(a);
    sesscache_free(cache);
}

/* OpenSSL's own session timeout bounds an entry too (the internal cache is off, so OpenSSL
 * would never expire anything itself). */
static void test_session_timeout_expires_entry(void) {
    sesscache *cache = sesscache_open("memory:");
    SSL_CTX *a = attached_server(cache, TLS1_3_VERSION), *client = tu_client_ctx(TLS1_3_VERSION);
    REQUIRE(cache && a && client);
    SSL_CTX_set_timeout(a, 1);
    SSL_SESSION *s = NULL;
    CHECK(!conn(a, client, NULL, &s));
    sleep(2);
    CHECK(!conn(a, client, s, NULL));
    SSL_SESSION_free(s);
    SSL_CTX_free(client);
    SSL_CTX_free(a);
    sesscache_free(cache);
}

static void test_eviction_at_capacity(void) {
    sesscache *cache = sesscache_open("memory:?capacity=2");
    SSL_CTX *a = attached_server(cache, TLS1_2_VERSION), *client = tu_client_ctx(TLS1_2_VERSION);
    REQUIRE(cache && a && client);
    SSL_SESSION *s[4] = {0};
    for (int i = 0; i < 4; i++)
        CHECK(!conn(a, client, NULL, &s[i]));
    sesscache_stats st = stats_of(cache);
    CHECK_EQ(st.entries, 2);
    CHECK_EQ(st.evictions, 2);
    CHECK(!conn(a, client, s[0], NULL)); /* evicted (and now re-stored by the full handshake) */
    CHECK(conn(a, client, s[3], NULL));  /* the newest survived */
    CHECK(stats_of(cache).entries <= 2);
    for (int i = 0; i < 4; i++)
        SSL_SESSION_free(s[i]);
    SSL_CTX_free(client);
    SSL_CTX_free(a);
    sesscache_free(cache);
}

static void test_oversized_session_rejected(void) {
    sesscache *cache = sesscache_open("memory:?max_session_bytes=64");
    SSL_CTX *a = attached_server(cache, TLS1_2_VERSION), *client = tu_client_ctx(TLS1_2_VERSION);
    REQUIRE(cache && a && client);
    SSL_SESSION *s = NULL;
    CHECK(!conn(a, client, NULL, &s));
    CHECK(!conn(a, client, s, NULL));
    sesscache_stats st = stats_of(cache);
    CHECK(st.rejected >= 1);
    CHECK_EQ(st.entries, 0);
    SSL_SESSION_free(s);
    SSL_CTX_free(client);
    SSL_CTX_free(a);
    sesscache_free(cache);
}

/* Session IDs of length 0, 33 and negative are refused and counted, whatever the bytes. */
static void test_bad_session_id_lengths(void) {
    sesscache *cache = sesscache_open("memory:");
    SSL_CTX *a = attached_server(cache, TLS1_2_VERSION);
    REQUIRE(cache && a);
    SSL *ssl = SSL_new(a);
    REQUIRE(ssl != NULL);
    SSL_set_accept_state(ssl);
    unsigned char data[64] = {1, 2, 3};
    int lens[] = {0, 33, -1, 64, -2147483647 - 1};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        int copy = 1;
        CHECK(sesscache_get_session_cb(ssl, data, lens[i], &copy) == NULL);
        CHECK_EQ(copy, 1);
    }
    int copy = 1;
    CHECK(sesscache_get_session_cb(ssl, NULL, 5, &copy) == NULL);
    CHECK(sesscache_get_session_cb(NULL, data, 5, &copy) == NULL);
    sesscache_stats st = stats_of(cache);
    CHECK_EQ(st.rejected, 6);
    CHECK_EQ(st.misses, 6);
    CHECK_EQ(st.hits, 0);
    SSL_free(ssl);
    SSL_CTX_free(a);
    sesscache_free(cache);
}

/* ---- SNI: the session context stays the original one ----------------------------------- */

static SSL_CTX *sni_target;
static int switch_ctx(SSL *ssl, int *alert, void *arg) {
    (void)alert, (void)arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name != NULL && strcmp(name, "other.test") == 0)
        CHECK(SSL_set_SSL_CTX(ssl, sni_target) == sni_target);
    return SSL_TLSEXT_ERR_OK;
}

static void sni_switch(int version) {
    sesscache *front = sesscache_open("memory:"), *other = sesscache_open("memory:");
    SSL_CTX *a = attached_server(front, version), *b = attached_server(other, version);
    SSL_CTX *client = tu_client_ctx(version);
    REQUIRE(front && other && a && b && client);
    SSL_CTX_set_tlsext_servername_callback(a, switch_ctx);
    sni_target = b;
    tu_conn_opts o = {.servername = "other.test"};
    tu_conn_result r;
    CHECK(tu_connect(a, client, &o, &r));
    CHECK(!r.resumed);
    /* OpenSSL ran the callbacks of the original context, so its cache has the session. */
    CHECK(stats_of(front).stores >= 1);
    CHECK_EQ(stats_of(other).stores, 0);
    o.resume = r.session;
    tu_conn_result r2;
    CHECK(tu_connect(a, client, &o, &r2));
    CHECK(r2.resumed);
    CHECK_EQ(stats_of(front).hits, 1);
    CHECK_EQ(stats_of(other).lookups, 0);
    SSL_SESSION_free(r.session);
    SSL_SESSION_free(r2.session);
    SSL_CTX_free(client);
    SSL_CTX_free(a);
    SSL_CTX_free(b);
    sesscache_free(front);
    sesscache_free(other);
}

static void test_sni_switch_tls12(void) { sni_switch(TLS1_2_VERSION); }
static void test_sni_switch_tls13(void) { sni_switch(TLS1_3_VERSION); }

/* ---- SNI: a session resumes only for the name it was made for ------------------------- */

/* Accepts every name, so that OpenSSL records it in the session. */
static int accept_name(SSL *ssl, int *alert, void *arg) {
    (void)ssl, (void)alert, (void)arg;
    return SSL_TLSEXT_ERR_OK;
}

/* One connection asking for `name` (NULL: none), offering `resume`; returns 1 if resumed.
 * The client's session goes to *out as in conn(). */
static int conn_named(SSL_CTX *server, SSL_CTX *client, const char *name, SSL_SESSION *resume,
                      SSL_SESSION **out) {
    tu_conn_opts o = {.resume = resume, .servername = name};
    tu_conn_result r;
    CHECK(tu_connect(server, client, &o, &r));
    if (out != NULL) {
        SSL_SESSION_free(*out);
        *out = r.session;
    } else {
        SSL_SESSION_free(r.session);
    }
    return r.resumed;
}

/* A session made for `made` (NULL: no name), offered for `asked`: whether it resumed. */
static int offered(SSL_CTX *server, SSL_CTX *client, const char *made, const char *asked) {
    SSL_SESSION *s = NULL;
    CHECK(!conn_named(server, client, made, NULL, &s));
    CHECK(s != NULL);
    if (s == NULL)
        return -1;
    int resumed = conn_named(server, client, asked, s, NULL);
    SSL_SESSION_free(s);
    return resumed;
}

/* Through the trampolines of an attached context (`ready_made` 0) or the ready-made
 * callbacks installed on it (1): cross-name resumption refused and counted, the same name
 * (any case, one trailing dot) resumed, a session without a name resumed; with
 * sni_check=0 every one resumes. Runs under valgrind and ASan too: a refused session's
 * reference is dropped exactly once. */
static void sni_names(int version, int ready_made) {
    for (int check_on = 1; check_on >= 0; check_on--) {
        sesscache *cache = sesscache_open(check_on ? "memory:" : "memory:?sni_check=0");
        SSL_CTX *a = attached_server(cache, version), *client = tu_client_ctx(version);
        REQUIRE(cache && a && client);
        SSL_CTX_set_tlsext_servername_callback(a, accept_name);
        if (ready_made) {
            SSL_CTX_sess_set_new_cb(a, sesscache_new_session_cb);
            SSL_CTX_sess_set_get_cb(a, sesscache_get_session_cb);
            SSL_CTX_sess_set_remove_cb(a, sesscache_remove_session_cb);
        }
        CHECK(offered(a, client, "a.test", "a.test"));
        CHECK(offered(a, client, "a.test", "A.TEST."));
        CHECK(offered(a, client, "a.test.", "a.test"));
        CHECK(offered(a, client, NULL, NULL));
        CHECK(offered(a, client, NULL, "a.test"));
        CHECK_EQ(stats_of(cache).sni_refused, 0);
        CHECK_EQ(offered(a, client, "a.test", "b.test"), !check_on);
        CHECK_EQ(offered(a, client, "a.test", NULL), !check_on);
        CHECK_EQ(offered(a, client, "a.test", "a.test.."), !check_on);
        sesscache_stats st = stats_of(cache);
        CHECK_EQ(st.sni_refused, check_on ? 3 : 0);
        CHECK_EQ(st.lookups, st.hits + st.misses);
        CHECK_EQ(st.hits, check_on ? 5 : 8);
        if (version == TLS1_3_VERSION) {
            /* A ticket issued on a resumed connection carries the original name. */
            SSL_SESSION *s = NULL;
            CHECK(!conn_named(a, client, "a.test", NULL, &s));
            CHECK(conn_named(a, client, "a.test", s, &s));
            CHECK(conn_named(a, client, "a.test", s, &s));
            CHECK_EQ(conn_named(a, client, "b.test", s, NULL), !check_on);
            SSL_SESSION_free(s);
        }
        SSL_CTX_free(client);
        SSL_CTX_free(a);
        sesscache_free(cache);
    }
}

static void test_sni_names_tls12(void) { sni_names(TLS1_2_VERSION, 0); }
static void test_sni_names_tls13(void) { sni_names(TLS1_3_VERSION, 0); }
static void test_sni_names_ready_made_tls12(void) { sni_names(TLS1_2_VERSION, 1); }
static void test_sni_names_ready_made_tls13(void) { sni_names(TLS1_3_VERSION, 1); }

/* ---- threads --------------------------------------------------------------------------- */

#define THREADS 8
struct worker {
    SSL_CTX *servers[2];
    int version;
    int iterations;
    int resumed;
    int failed;
};

static void *worker_main(void *arg) {
    struct worker *w = arg;
    SSL_CTX *client = tu_client_ctx(w->version);
    if (client == NULL) {
        w->failed++;
        return NULL;
    }
    for (int i = 0; i < w->iterations; i++) {
        tu_conn_result full, again;
        tu_conn_opts o = {0};
        if (!tu_connect(w->servers[i % 2], client, &o, &full)) {
            w->failed++;
            continue;
        }
        o.resume = full.session;
        /* Resume on the other context: only the shared cache can do it. */
        if (tu_connect(w->servers[(i + 1) % 2], client, &o, &again)) {
            w->resumed += again.resumed;
            SSL_SESSION_free(again.session);
        } else {
            w->failed++;
        }
        SSL_SESSION_free(full.session);
    }
    SSL_CTX_free(client);
    return NULL;
}

static void threads(int version) {
    sesscache *cache = sesscache_open("memory:");
    SSL_CTX *a = attached_server(cache, version), *b = attached_server(cache, version);
    REQUIRE(cache && a && b);
    struct worker w[THREADS];
    pthread_t t[THREADS];
    int iterations = quick ? 3 : 40;
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.servers = {a, b}, .version = version, .iterations = iterations};
        CHECK(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0);
    }
    int resumed = 0, failed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        resumed += w[i].resumed;
        failed += w[i].failed;
    }
    CHECK_EQ(failed, 0);
    CHECK_EQ(resumed, THREADS * iterations);
    sesscache_stats st = stats_of(cache);
    CHECK_EQ(st.hits, THREADS * iterations);
    CHECK_EQ(st.lookups, st.hits + st.misses);
    SSL_CTX_free(a);
    SSL_CTX_free(b);
    sesscache_free(cache);
}

static void test_threads_tls12(void) { threads(TLS1_2_VERSION); }
static void test_threads_tls13(void) { threads(TLS1_3_VERSION); }

/* The header's version macros name the library the program was built against; here they
 * are the same build, so they match sesscache_version(). */
static void test_version_macros(void) {
    char v[64];
    snprintf(v, sizeof v, "%d.%d.%d", SESSCACHE_VERSION_MAJOR, SESSCACHE_VERSION_MINOR, SESSCACHE_VERSION_PATCH);
    CHECK(strcmp(v, sesscache_version()) == 0);
    CHECK_EQ(SESSCACHE_VERSION_NUMBER,
             SESSCACHE_VERSION_MAJOR * 1000000 + SESSCACHE_VERSION_MINOR * 1000 + SESSCACHE_VERSION_PATCH);
}

/* ---- how connections end -------------------------------------------------------------- */

/* A full handshake over a BIO pair, then the client sends a record the server cannot decrypt:
 * the server fails with a fatal bad_record_mac alert, and OpenSSL removes the session. The
 * client's session goes to *out. Returns 1 if all went as described. */
static int handshake_then_fatal_alert(SSL_CTX *server_ctx, SSL_CTX *client_ctx, SSL_SESSION **out) {
    SSL *server = SSL_new(server_ctx), *client = SSL_new(client_ctx);
    BIO *sbio = NULL, *cbio = NULL;
    int ok = 0;
    if (server == NULL || client == NULL || BIO_new_bio_pair(&sbio, 0, &cbio, 0) != 1)
        goto done;
    SSL_set_bio(server, sbio, sbio);
    SSL_set_bio(client, cbio, cbio);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 100 && !(cdone && sdone); i++) {
        if (!cdone && (cdone = SSL_do_handshake(client)) != 1 &&
            SSL_get_error(client, cdone) != SSL_ERROR_WANT_READ)
            goto done;
        if (!sdone && (sdone = SSL_do_handshake(server)) != 1 &&
            SSL_get_error(server, sdone) != SSL_ERROR_WANT_READ)
            goto done;
        cdone = cdone == 1;
        sdone = sdone == 1;
    }
    unsigned char b;
    if (SSL_version(server) == TLS1_3_VERSION && SSL_read(client, &b, 1) > 0) /* the tickets */
        goto done;
    *out = SSL_get1_session(client);
    /* An application-data record of 32 bytes of garbage, written under the client's TLS
     * layer straight into the pipe to the server. */
    unsigned char record[5 + 32] = {0x17, 0x03, 0x03, 0x00, 0x20};
    memset(record + 5, 0x5a, 32);
    if (BIO_write(SSL_get_wbio(client), record, sizeof record) != (int)sizeof record)
        goto done;
    int r = SSL_read(server, &b, 1);
    ok = r <= 0 && SSL_get_error(server, r) == SSL_ERROR_SSL;
    ERR_clear_error();
done:
    SSL_free(client);
    SSL_free(server);
    return ok;
}

/* A server that ends a connection without close_notify leaves its session resumable (RFC
 * 5246; Python's ssl module and many servers never send it); one ended by a fatal alert does
 * not resume. */
static void connection_ends(int version) {
    sesscache *cache = sesscache_open("memory:");
    REQUIRE(cache != NULL);
    SSL_CTX *a = attached_server(cache, version), *b = attached_server(cache, version);
    SSL_CTX *client = tu_client_ctx(version);
    REQUIRE(a != NULL && b != NULL && client != NULL);
    tu_conn_opts unclean = {.no_shutdown = 1};
    tu_conn_result r;
    CHECK(tu_connect(a, client, &unclean, &r));
    CHECK(SSL_SESSION_is_resumable(r.session));
    CHECK_EQ(conn(b, client, r.session, NULL), 1);
    SSL_SESSION_free(r.session);
    SSL_SESSION *sess = NULL;
    CHECK(handshake_then_fatal_alert(a, client, &sess));
    CHECK(sess != NULL);
    if (sess != NULL)
        CHECK_EQ(conn(b, client, sess, NULL), 0);
    SSL_SESSION_free(sess);
    sesscache_stats st = stats_of(cache);
    CHECK_EQ(st.hits, 1);
    CHECK(st.removes >= 1);
    SSL_CTX_free(client);
    SSL_CTX_free(a);
    SSL_CTX_free(b);
    sesscache_free(cache);
}

static void test_connection_ends_tls12(void) { connection_ends(TLS1_2_VERSION); }
static void test_connection_ends_tls13(void) { connection_ends(TLS1_3_VERSION); }

int main(void) {
    quick = getenv("SESSCACHE_TEST_QUICK") != NULL;
    if (!tu_identity_make(&id))
        return 2;
    RUN(test_open_errors);
    RUN(test_redis_open_errors);
    RUN(test_version_macros);
    RUN(test_attach_idempotent_and_exclusive);
    RUN(test_tls12_two_contexts);
    RUN(test_tls13_two_contexts_single_use);
    RUN(test_tls13_two_contexts_reusable);
    RUN(test_tls13_ticket_chain);
    RUN(test_ready_made_callbacks);
    RUN(test_ready_made_on_attached_context);
    RUN(test_app_callbacks_chain);
    RUN(test_client_sessions_pass_through);
    RUN(test_stateless_tickets_not_stored);
    RUN(test_expiry);
    RUN(test_session_timeout_expires_entry);
    RUN(test_eviction_at_capacity);
    RUN(test_oversized_session_rejected);
    RUN(test_bad_session_id_lengths);
    RUN(test_sni_switch_tls12);
    RUN(test_sni_switch_tls13);
    RUN(test_sni_names_tls12);
    RUN(test_sni_names_tls13);
    RUN(test_sni_names_ready_made_tls12);
    RUN(test_sni_names_ready_made_tls13);
    RUN(test_threads_tls12);
    RUN(test_threads_tls13);
    RUN(test_connection_ends_tls12);
    RUN(test_connection_ends_tls13);
    tu_identity_free(&id);
    return check_summary("test_cache");
}
