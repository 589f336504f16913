/* Asynchronous lookups (issue 23) against a real Redis, which c-tests/async_check.sh starts:
 * SESSCACHE_TEST_REDIS_PORT names its port. Over in-memory BIO pairs, one thread:
 * - sesscache_attach_async: a handshake that offers a session kept only in Redis is
 *   suspended (SSL_ERROR_WANT_CLIENT_HELLO_CB), its descriptor becomes readable, the
 *   completion callback runs once, and the handshake resumes; with Redis paused, other
 *   handshakes of the same thread complete while the lookup waits;
 * - a connection freed, or a cache and context freed, while the lookup is in flight: no
 *   leak, no crash, no callback after SSL_free (run under ASan and valgrind too);
 * - the program's own ClientHello callback runs once per ClientHello, and its own RETRY is
 *   told apart (sesscache_lookup_fd returns -1);
 * - memory: never suspends; TLS 1.3 tickets still resume once;
 * - SSL_MODE_ASYNC: the get callback pauses the OpenSSL async job (SSL_ERROR_WANT_ASYNC),
 *   one descriptor is registered with the job's wait context, and the handshake resumes;
 * - after a HelloRetryRequest, a single-use TLS 1.3 ticket asked for again by the second
 *   ClientHello still resumes (memory:, and redis:// in the three modes), and a new
 *   handshake on the same SSL (SSL_clear) does not get it again. */
#include "check.h"
#include "sesscache.h"
#include "tls_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static tu_identity id;
static int redis_port;
static char url[256];

static void sleep_ms(long ms) {
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Sends one inline command to Redis and returns its reply's first line in buf (or "" when
 * Redis does not answer within 3 s). */
static const char *redis(const char *cmd, char *buf, size_t cap) {
    buf[0] = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)redis_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return buf;
    }
    char line[256];
    int n = snprintf(line, sizeof line, "%s\r\n", cmd);
    if (write(fd, line, (size_t)n) == n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 3000) == 1) {
            ssize_t r = read(fd, buf, cap - 1);
            buf[r > 0 ? r : 0] = 0;
            char *eol = strstr(buf, "\r\n");
            if (eol != NULL)
                *eol = 0;
        }
    }
    close(fd);
    return buf;
}

/* Waits until Redis holds the entry the client's session resumes from (the writer thread
 * sends stores within milliseconds): the key is the prefix and the hex of the session ID
 * (TLS 1.2) or of the stateful ticket, which is the server's session ID (TLS 1.3). */
static int wait_stored(const SSL_SESSION *sess) {
    const unsigned char *idb = NULL;
    size_t n = 0;
    if (SSL_SESSION_get_protocol_version(sess) == TLS1_3_VERSION) {
        SSL_SESSION_get0_ticket(sess, &idb, &n);
    } else {
        unsigned int len = 0;
        idb = SSL_SESSION_get_id(sess, &len);
        n = len;
    }
    if (idb == NULL || n == 0 || n > 32)
        return 0;
    char cmd[128] = "EXISTS sesscache:";
    for (size_t i = 0; i < n; i++)
        snprintf(cmd + strlen(cmd), 3, "%02x", idb[i]);
    for (long long end = now_ms() + 3000; now_ms() < end;) {
        char b[64];
        if (strcmp(redis(cmd, b, sizeof b), ":1") == 0)
            return 1;
        sleep_ms(2);
    }
    return 0;
}

static void flush_redis(void) {
    char b[64];
    CHECK(strcmp(redis("FLUSHALL", b, sizeof b), "+OK") == 0);
}

static atomic_int done_calls;
static SSL *done_ssl;

static void on_done(SSL *ssl, void *arg) {
    CHECK(arg == &done_calls);
    done_ssl = ssl;
    atomic_fetch_add(&done_calls, 1);
}

/* A server context with `cache` attached asynchronously (or not, with async 0). */
static SSL_CTX *server(sesscache *cache, int version, int async) {
    SSL_CTX *ctx = tu_server_ctx(&id, version);
    if (ctx == NULL)
        return NULL;
    int ok = async ? sesscache_attach_async(cache, ctx, on_done, &done_calls) : sesscache_attach(cache, ctx);
    if (ok != 1) {
        fprintf(stderr, "attach: %s\n", sesscache_last_error());
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* One connection over a BIO pair, driven step by step so that the test sees suspensions. */
typedef struct pair {
    SSL *s, *c;
    int sdone, cdone;
} pair;

static int pair_open(pair *p, SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *resume) {
    memset(p, 0, sizeof *p);
    p->s = SSL_new(sctx);
    p->c = SSL_new(cctx);
    BIO *sb = NULL, *cb = NULL;
    if (p->s == NULL || p->c == NULL || BIO_new_bio_pair(&sb, 0, &cb, 0) != 1)
        return 0;
    SSL_set_bio(p->s, sb, sb);
    SSL_set_bio(p->c, cb, cb);
    SSL_set_accept_state(p->s);
    SSL_set_connect_state(p->c);
    return resume == NULL || SSL_set_session(p->c, resume) == 1;
}

/* Advances both ends until both are done or the server needs something other than bytes:
 * returns the server's SSL_get_error (SSL_ERROR_NONE when the handshake completed on both
 * sides), or -1 on a failure. */
static int pair_run(pair *p) {
    for (int i = 0; i < 100; i++) {
        if (!p->cdone) {
            int r = SSL_do_handshake(p->c);
            if (r == 1)
                p->cdone = 1;
            else if (SSL_get_error(p->c, r) != SSL_ERROR_WANT_READ)
                return -1;
        }
        if (!p->sdone) {
            int r = SSL_do_handshake(p->s);
            if (r == 1) {
                p->sdone = 1;
            } else {
                int e = SSL_get_error(p->s, r);
                if (e != SSL_ERROR_WANT_READ)
                    return e;
            }
        }
        if (p->sdone && p->cdone)
            return SSL_ERROR_NONE;
    }
    return -1;
}

/* Finishes a completed pair: the client reads its TLS 1.3 tickets; returns its session. */
static SSL_SESSION *pair_close(pair *p) {
    SSL_SESSION *sess = NULL;
    if (p->sdone && p->cdone) {
        if (SSL_version(p->s) == TLS1_3_VERSION) {
            unsigned char b;
            (void)SSL_read(p->c, &b, 1);
        }
        sess = SSL_get1_session(p->c);
        SSL_shutdown(p->c);
        SSL_shutdown(p->s);
    }
    SSL_free(p->c);
    SSL_free(p->s);
    ERR_clear_error();
    return sess;
}

/* Ends the client of a completed pair (reads its TLS 1.3 tickets, closes cleanly, frees it)
 * and returns its session; the server is shut down cleanly and kept for SSL_clear. */
static SSL_SESSION *pair_close_client_only(pair *p) {
    unsigned char b;
    (void)SSL_read(p->c, &b, 1);
    SSL_SESSION *sess = SSL_get1_session(p->c);
    SSL_shutdown(p->c);
    SSL_shutdown(p->s);
    SSL_free(p->c);
    p->c = NULL;
    ERR_clear_error();
    return sess;
}

/* A new client and a new BIO pair for the kept (cleared) server. */
static int pair_reopen(pair *p, SSL_CTX *cctx, SSL_SESSION *resume) {
    p->c = SSL_new(cctx);
    p->sdone = p->cdone = 0;
    BIO *sb = NULL, *cb = NULL;
    if (p->c == NULL || BIO_new_bio_pair(&sb, 0, &cb, 0) != 1)
        return 0;
    SSL_set_bio(p->s, sb, sb);
    SSL_set_bio(p->c, cb, cb);
    SSL_set_accept_state(p->s);
    SSL_set_connect_state(p->c);
    return resume == NULL || SSL_set_session(p->c, resume) == 1;
}

static int readable(int fd, int ms) {
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    return poll(&pf, 1, ms) == 1 && (pf.revents & POLLIN);
}

/* A session made through `writer` (another cache on the same Redis: another process's view,
 * so that the lookup below has to ask Redis), kept by the client. */
static SSL_SESSION *session_in_redis(int version, SSL_CTX *cctx) {
    sesscache *writer = sesscache_open(url);
    if (writer == NULL)
        return NULL;
    SSL_CTX *w = server(writer, version, 0);
    pair p;
    SSL_SESSION *sess = NULL;
    if (w != NULL && pair_open(&p, w, cctx, NULL) && pair_run(&p) == SSL_ERROR_NONE)
        sess = pair_close(&p);
    else
        tu_print_errors("session_in_redis");
    CHECK(sess != NULL);
    CHECK(sess != NULL && wait_stored(sess));
    SSL_CTX_free(w);
    sesscache_free(writer);
    return sess;
}

/* What most tests start from: an empty Redis, a cache on it, a server context attached to
 * it (mode 0: sesscache_attach; 1: sesscache_attach_async; 2: sesscache_attach and
 * SSL_MODE_ASYNC), a client context, and a session that only Redis holds. */
typedef struct fixture {
    sesscache *cache;
    SSL_CTX *sctx, *cctx;
    SSL_SESSION *sess;
} fixture;

static int fixture_open(fixture *f, int version, int mode) {
    memset(f, 0, sizeof *f);
    flush_redis();
    if ((f->cache = sesscache_open(url)) == NULL)
        return 0;
    f->sctx = server(f->cache, version, mode == 1);
    f->cctx = tu_client_ctx(version);
    if (f->sctx == NULL || f->cctx == NULL)
        return 0;
    if (mode == 2)
        SSL_CTX_set_mode(f->sctx, SSL_MODE_ASYNC);
    f->sess = session_in_redis(version, f->cctx);
    return f->sess != NULL;
}

/* Frees what the fixture still holds (fields set to NULL were freed by the test). */
static void fixture_close(fixture *f) {
    SSL_SESSION_free(f->sess);
    SSL_CTX_free(f->sctx);
    SSL_CTX_free(f->cctx);
    sesscache_free(f->cache);
}

/* Runs a pair to its end, waiting whenever the handshake is suspended for the cache's
 * descriptor (or the async job's): the server's last SSL_get_error. */
static int pair_finish(pair *p) {
    int e = pair_run(p);
    for (int i = 0; i < 8 && (e == SSL_ERROR_WANT_CLIENT_HELLO_CB || e == SSL_ERROR_WANT_ASYNC); i++) {
        int fd = -1;
        if (e == SSL_ERROR_WANT_CLIENT_HELLO_CB) {
            fd = sesscache_lookup_fd(p->s);
        } else {
            size_t n = 1;
            OSSL_ASYNC_FD afd = -1;
            if (SSL_get_all_async_fds(p->s, &afd, &n) == 1 && n == 1)
                fd = afd;
        }
        CHECK(fd >= 0 && readable(fd, 3000));
        e = pair_run(p);
    }
    return e;
}

/* The whole protocol, for one version: suspended, readable, callback, resumed; the ticket
 * (TLS 1.3) or ID (1.2) resumed through the lookup's result without a second lookup. */
static void resume_async(int version) {
    fixture f;
    REQUIRE(fixture_open(&f, version, 1));
    atomic_store(&done_calls, 0);
    pair p;
    REQUIRE(pair_open(&p, f.sctx, f.cctx, f.sess));
    CHECK_EQ(pair_run(&p), SSL_ERROR_WANT_CLIENT_HELLO_CB);
    int fd = sesscache_lookup_fd(p.s);
    CHECK(fd >= 0);
    CHECK_EQ(sesscache_lookup_fd(p.s), fd);
    CHECK(readable(fd, 2000));
    for (long long end = now_ms() + 2000; atomic_load(&done_calls) == 0 && now_ms() < end;)
        sleep_ms(1);
    CHECK_EQ(atomic_load(&done_calls), 1);
    CHECK(done_ssl == p.s);
    CHECK_EQ(pair_run(&p), SSL_ERROR_NONE);
    CHECK(SSL_session_reused(p.s));
    CHECK_EQ(sesscache_lookup_fd(p.s), -1);
    SSL_SESSION *next = pair_close(&p);
    sesscache_stats st;
    CHECK(sesscache_get_stats(f.cache, &st, sizeof st) > 0);
    CHECK_EQ(st.lookups, 1);
    CHECK_EQ(st.hits, 1);
    if (version == TLS1_3_VERSION) {
        /* The ticket was taken: offered again, it resumes no more (and the lookup of a
         * missing ticket is a miss that suspended too). */
        pair q;
        REQUIRE(pair_open(&q, f.sctx, f.cctx, f.sess));
        CHECK_EQ(pair_finish(&q), SSL_ERROR_NONE);
        CHECK(!SSL_session_reused(q.s));
        SSL_SESSION_free(pair_close(&q));
    }
    SSL_SESSION_free(next);
    fixture_close(&f);
}

static void test_resume_async_tls12(void) { resume_async(TLS1_2_VERSION); }
static void test_resume_async_tls13(void) { resume_async(TLS1_3_VERSION); }

/* With Redis paused, a suspended lookup waits while other handshakes of this thread run to
 * completion; then the lookup finishes and its handshake resumes. */
static void test_other_handshakes_go_on_while_redis_is_paused(void) {
    fixture f;
    REQUIRE(fixture_open(&f, TLS1_2_VERSION, 1));
    char b[64];
    CHECK(strcmp(redis("CLIENT PAUSE 700 ALL", b, sizeof b), "+OK") == 0);
    long long t0 = now_ms();
    pair p;
    REQUIRE(pair_open(&p, f.sctx, f.cctx, f.sess));
    CHECK_EQ(pair_run(&p), SSL_ERROR_WANT_CLIENT_HELLO_CB);
    int fd = sesscache_lookup_fd(p.s);
    CHECK(fd >= 0);
    CHECK(!readable(fd, 100));
    /* Calling the handshake early only suspends it again. */
    CHECK_EQ(pair_run(&p), SSL_ERROR_WANT_CLIENT_HELLO_CB);
    CHECK_EQ(sesscache_lookup_fd(p.s), fd);
    int others = 0;
    for (int i = 0; i < 5; i++) {
        pair q;
        REQUIRE(pair_open(&q, f.sctx, f.cctx, NULL));
        others += pair_run(&q) == SSL_ERROR_NONE;
        SSL_SESSION_free(pair_close(&q));
    }
    long long others_ms = now_ms() - t0;
    CHECK_EQ(others, 5);
    CHECK(others_ms < 500);
    CHECK(!readable(fd, 0));
    CHECK(readable(fd, 3000));
    long long waited = now_ms() - t0;
    CHECK(waited >= 500);
    CHECK_EQ(pair_run(&p), SSL_ERROR_NONE);
    CHECK(SSL_session_reused(p.s));
    fprintf(stderr, "    5 full handshakes in %lld ms while the lookup waited %lld ms\n", others_ms, waited);
    SSL_SESSION_free(pair_close(&p));
    fixture_close(&f);
}

/* A connection freed while its lookup is in flight: the lookup's result is dropped and the
 * callback never comes; freeing the cache and its context too, the worker's reference
 * keeps the cache until the lookup ends. ASan and valgrind see no leak. */
static void freed_while_pending(int free_cache_too) {
    fixture f;
    REQUIRE(fixture_open(&f, TLS1_2_VERSION, 1));
    char b[64];
    CHECK(strcmp(redis("CLIENT PAUSE 300 ALL", b, sizeof b), "+OK") == 0);
    atomic_store(&done_calls, 0);
    pair p;
    REQUIRE(pair_open(&p, f.sctx, f.cctx, f.sess));
    CHECK_EQ(pair_run(&p), SSL_ERROR_WANT_CLIENT_HELLO_CB);
    CHECK(sesscache_lookup_fd(p.s) >= 0);
    SSL_free(p.s);
    SSL_free(p.c);
    if (free_cache_too) {
        SSL_CTX_free(f.sctx);
        f.sctx = NULL;
        sesscache_free(f.cache);
        f.cache = NULL;
    }
    /* The lookup ends after the pause: nothing is told, nothing is left. */
    sleep_ms(600);
    CHECK_EQ(atomic_load(&done_calls), 0);
    if (f.cache != NULL) {
        /* The cache still works, and the session, not delivered, is still in Redis. */
        pair q;
        REQUIRE(pair_open(&q, f.sctx, f.cctx, f.sess));
        CHECK_EQ(pair_finish(&q), SSL_ERROR_NONE);
        CHECK(SSL_session_reused(q.s));
        SSL_SESSION_free(pair_close(&q));
    }
    ERR_clear_error();
    fixture_close(&f);
}

static void test_connection_freed_while_pending(void) { freed_while_pending(0); }
static void test_cache_freed_while_pending(void) { freed_while_pending(1); }

/* The cache's handle and the context freed while the connection waits: the connection
 * keeps them, and its handshake still resumes. */
static void test_cache_closed_while_pending_still_resumes(void) {
    fixture f;
    REQUIRE(fixture_open(&f, TLS1_3_VERSION, 1));
    char b[64];
    CHECK(strcmp(redis("CLIENT PAUSE 200 ALL", b, sizeof b), "+OK") == 0);
    pair p;
    REQUIRE(pair_open(&p, f.sctx, f.cctx, f.sess));
    CHECK_EQ(pair_run(&p), SSL_ERROR_WANT_CLIENT_HELLO_CB);
    int fd = sesscache_lookup_fd(p.s);
    sesscache_free(f.cache);
    f.cache = NULL;
    SSL_CTX_free(f.sctx);
    f.sctx = NULL;
    CHECK(readable(fd, 2000));
    CHECK_EQ(pair_run(&p), SSL_ERROR_NONE);
    CHECK(SSL_session_reused(p.s));
    SSL_SESSION_free(pair_close(&p));
    fixture_close(&f);
}

/* A ClientHello callback of the program's own, set before attaching: it runs once per
 * ClientHello, even when the cache suspended the handshake; its own RETRY comes first and
 * is told apart by sesscache_lookup_fd() == -1. */
static atomic_int app_calls, app_retries_left;
static int app_hello(SSL *ssl, int *al, void *arg) {
    (void)ssl;
    (void)al;
    CHECK(arg == &app_calls);
    atomic_fetch_add(&app_calls, 1);
    if (atomic_load(&app_retries_left) > 0) {
        atomic_fetch_sub(&app_retries_left, 1);
        return SSL_CLIENT_HELLO_RETRY;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

static void test_program_hello_callback_chained(void) {
    flush_redis();
    sesscache *cache = sesscache_open(url);
    REQUIRE(cache != NULL);
    SSL_CTX *sctx = tu_server_ctx(&id, TLS1_2_VERSION), *cctx = tu_client_ctx(TLS1_2_VERSION);
    REQUIRE(sctx != NULL && cctx != NULL);
    SSL_CTX_set_client_hello_cb(sctx, app_hello, &app_calls);
    REQUIRE(sesscache_attach_async(cache, sctx, NULL, NULL) == 1);
    /* Attaching again: the same callback is fine, another one is refused. */
    CHECK_EQ(sesscache_attach_async(cache, sctx, NULL, NULL), 1);
    CHECK_EQ(sesscache_attach_async(cache, sctx, on_done, &done_calls), 0);
    CHECK_EQ(sesscache_last_error_code(), SESSCACHE_ERR_STATE);
    SSL_SESSION *sess = session_in_redis(TLS1_2_VERSION, cctx);
    REQUIRE(sess != NULL);
    atomic_store(&app_calls, 0);
    atomic_store(&app_retries_left, 1);
    pair p;
    REQUIRE(pair_open(&p, sctx, cctx, sess));
    CHECK_EQ(pair_run(&p), SSL_ERROR_WANT_CLIENT_HELLO_CB);
    CHECK_EQ(sesscache_lookup_fd(p.s), -1);
    CHECK_EQ(atomic_load(&app_calls), 1);
    CHECK_EQ(pair_run(&p), SSL_ERROR_WANT_CLIENT_HELLO_CB);
    CHECK_EQ(atomic_load(&app_calls), 2);
    int fd = sesscache_lookup_fd(p.s);
    CHECK(fd >= 0);
    CHECK(readable(fd, 2000));
    CHECK_EQ(pair_run(&p), SSL_ERROR_NONE);
    CHECK(SSL_session_reused(p.s));
    CHECK_EQ(atomic_load(&app_calls), 2);
    SSL_SESSION_free(pair_close(&p));
    /* Set after attaching, it replaces the one before, and still runs first. */
    SSL_CTX_set_client_hello_cb(sctx, NULL, NULL);
    atomic_store(&app_calls, 0);
    pair q;
    REQUIRE(pair_open(&q, sctx, cctx, NULL));
    CHECK_EQ(pair_run(&q), SSL_ERROR_NONE);
    CHECK_EQ(atomic_load(&app_calls), 0);
    SSL_SESSION_free(pair_close(&q));
    SSL_SESSION_free(sess);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    sesscache_free(cache);
}

/* memory: answers at once: never suspended, in either version. */
static void test_memory_never_suspends(void) {
    sesscache *cache = sesscache_open("memory:");
    REQUIRE(cache != NULL);
    for (int v = 0; v < 2; v++) {
        int version = v ? TLS1_3_VERSION : TLS1_2_VERSION;
        SSL_CTX *sctx = server(cache, version, 1), *cctx = tu_client_ctx(version);
        REQUIRE(sctx != NULL && cctx != NULL);
        pair p;
        REQUIRE(pair_open(&p, sctx, cctx, NULL));
        CHECK_EQ(pair_run(&p), SSL_ERROR_NONE);
        SSL_SESSION *sess = pair_close(&p);
        REQUIRE(sess != NULL);
        REQUIRE(pair_open(&p, sctx, cctx, sess));
        CHECK_EQ(pair_run(&p), SSL_ERROR_NONE);
        CHECK(SSL_session_reused(p.s));
        SSL_SESSION_free(pair_close(&p));
        SSL_SESSION_free(sess);
        SSL_CTX_free(sctx);
        SSL_CTX_free(cctx);
    }
    sesscache_free(cache);
}

/* SSL_MODE_ASYNC, attached without the asynchronous mode: the handshake runs in an OpenSSL
 * async job, whose get callback pauses for the Redis lookup. */
static void job_mode(int version) {
    fixture f;
    REQUIRE(fixture_open(&f, version, 2));
    char b[64];
    CHECK(strcmp(redis("CLIENT PAUSE 200 ALL", b, sizeof b), "+OK") == 0);
    pair p;
    REQUIRE(pair_open(&p, f.sctx, f.cctx, f.sess));
    CHECK_EQ(pair_run(&p), SSL_ERROR_WANT_ASYNC);
    size_t n = 0;
    CHECK(SSL_get_all_async_fds(p.s, NULL, &n) == 1);
    CHECK_EQ(n, 1);
    OSSL_ASYNC_FD fd = -1;
    CHECK(SSL_get_all_async_fds(p.s, &fd, &n) == 1);
    CHECK(!readable(fd, 50));
    /* Resumed early: paused again. */
    CHECK_EQ(pair_run(&p), SSL_ERROR_WANT_ASYNC);
    CHECK(readable(fd, 2000));
    CHECK_EQ(pair_run(&p), SSL_ERROR_NONE);
    CHECK(SSL_session_reused(p.s));
    CHECK(!readable(fd, 0));
    SSL_SESSION_free(pair_close(&p));
    fixture_close(&f);
}

static void test_async_job_tls12(void) { job_mode(TLS1_2_VERSION); }
static void test_async_job_tls13(void) { job_mode(TLS1_3_VERSION); }

/* After a HelloRetryRequest the client offers its ticket again in a second ClientHello, and
 * OpenSSL asks the get callback for it again: the handshake resumes (as with OpenSSL's own
 * cache), though the ticket is single-use; a new handshake on the same SSL (SSL_clear)
 * offering it once more does not resume. For a cache attached as it is (memory:, and
 * redis:// blocking), asynchronously (redis://), and in an async job (redis://). */
static void after_hello_retry(const char *cache_url, int mode) {
    if (strncmp(cache_url, "redis", 5) == 0)
        flush_redis();
    sesscache *cache = sesscache_open(cache_url);
    REQUIRE(cache != NULL);
    SSL_CTX *sctx = server(cache, TLS1_3_VERSION, mode == 1), *cctx = tu_client_ctx(TLS1_3_VERSION);
    REQUIRE(sctx != NULL && cctx != NULL);
    if (mode == 2)
        SSL_CTX_set_mode(sctx, SSL_MODE_ASYNC);
    SSL_SESSION *sess = NULL;
    if (strncmp(cache_url, "redis", 5) == 0) {
        sess = session_in_redis(TLS1_3_VERSION, cctx);
    } else {
        pair f;
        REQUIRE(pair_open(&f, sctx, cctx, NULL));
        CHECK_EQ(pair_run(&f), SSL_ERROR_NONE);
        sess = pair_close(&f);
    }
    REQUIRE(sess != NULL);
    /* The server takes P-256 only; the client's first key share is X25519: a HelloRetryRequest. */
    REQUIRE(SSL_CTX_set1_groups_list(sctx, "P-256") == 1);
    REQUIRE(SSL_CTX_set1_groups_list(cctx, "X25519:P-256") == 1);
    sesscache_stats before, after;
    CHECK(sesscache_get_stats(cache, &before, sizeof before) > 0);
    pair p;
    REQUIRE(pair_open(&p, sctx, cctx, sess));
    int e = pair_finish(&p);
    CHECK_EQ(e, SSL_ERROR_NONE);
    CHECK(SSL_session_reused(p.s));
    CHECK(SSL_session_reused(p.c));
    CHECK(sesscache_get_stats(cache, &after, sizeof after) > 0);
    CHECK_EQ(after.lookups - before.lookups, 2);
    CHECK_EQ(after.hits - before.hits, 2);
    /* The same SSL, cleared for a new connection, offered the ticket again: not resumed. */
    SSL_SESSION_free(pair_close_client_only(&p));
    REQUIRE(SSL_clear(p.s) == 1);
    REQUIRE(pair_reopen(&p, cctx, sess));
    CHECK_EQ(pair_finish(&p), SSL_ERROR_NONE);
    CHECK(!SSL_session_reused(p.s));
    SSL_SESSION_free(pair_close(&p));
    SSL_SESSION_free(sess);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    sesscache_free(cache);
}

static void test_hello_retry_memory(void) { after_hello_retry("memory:", 0); }
static void test_hello_retry_redis_blocking(void) { after_hello_retry(url, 0); }
static void test_hello_retry_redis_async(void) { after_hello_retry(url, 1); }
static void test_hello_retry_redis_job(void) { after_hello_retry(url, 2); }

int main(void) {
    const char *port = getenv("SESSCACHE_TEST_REDIS_PORT");
    if (port == NULL || atoi(port) <= 0) {
        fprintf(stderr, "test_async: SESSCACHE_TEST_REDIS_PORT is not set (c-tests/async_check.sh starts Redis)\n");
        printf("test_async: 0 passed, 1 failed\n");
        return 1;
    }
    redis_port = atoi(port);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d?insecure_plaintext=1&timeout_ms=3000", redis_port);
    if (!tu_identity_make(&id))
        return 1;
    RUN(test_resume_async_tls12);
    RUN(test_resume_async_tls13);
    RUN(test_other_handshakes_go_on_while_redis_is_paused);
    RUN(test_connection_freed_while_pending);
    RUN(test_cache_freed_while_pending);
    RUN(test_cache_closed_while_pending_still_resumes);
    RUN(test_program_hello_callback_chained);
    RUN(test_memory_never_suspends);
    RUN(test_async_job_tls12);
    RUN(test_async_job_tls13);
    RUN(test_hello_retry_memory);
    RUN(test_hello_retry_redis_blocking);
    RUN(test_hello_retry_redis_async);
    RUN(test_hello_retry_redis_job);
    tu_identity_free(&id);
    return check_summary("test_async");
}
