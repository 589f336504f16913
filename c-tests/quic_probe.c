/*
 * QUIC connections (OpenSSL 3.5 and later) with the library around: a QUIC server (listener,
 * SSL_accept_connection) on a UDP socket on loopback in one thread, a QUIC client in the
 * main thread, one process. Run by c-tests/compat.sh for the versions that have QUIC
 * servers, without the library, with it preloaded (SESSCACHE_URL unset, memory:, shm:) and
 * linked with the explicit API.
 *
 *   quic_probe [attach|callbacks]
 *
 * The client makes 8 connections, each offering the session of the one before (the newest
 * ticket, waited for), each started once the server is done with the one before; the server
 * echoes one message on each and ends the even ones cleanly (SSL_shutdown, not waited for)
 * and the odd ones by SSL_free alone (which makes OpenSSL remove the session). Prints:
 *   handshakes 8/8
 *   echoed 8/8
 *   resumed R/7
 * R varies from run to run with OpenSSL's own QUIC resumption alone (0 to 7 seen in single
 * runs; 121 of 140 over 20 runs of 3.6.3 without the library, 117 preloaded unconfigured and
 * 117 with memory:), so callers compare it only in sum. With
 * `attach` (built with -DWITH_SESSCACHE, linked with the library), first sesscache_attach on
 * the QUIC server context, which must refuse it with a message (on stderr):
 *   attach: refused
 * With `callbacks` (built the same way), the library's ready-made callbacks installed on the
 * QUIC server context by the program itself:
 *   callbacks: installed
 * QUIC_PROBE_DEBUG=1: each connection's outcome on stderr.
 * A hang (a lock taken twice) is caught by the caller's timeout; a crash by its exit status.
 */
#include <openssl/err.h>
#include <openssl/quic.h>
#include <openssl/ssl.h>

#if OPENSSL_VERSION_NUMBER < 0x30500000L
#error "QUIC servers need OpenSSL 3.5 or later"
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef WITH_SESSCACHE
#include "sesscache.h"
#endif

#define CONNECTIONS 8

static const unsigned char alpn[] = {5, 'p', 'r', 'o', 'b', 'e'};

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto((unsigned char **)out, outlen, alpn, sizeof(alpn), in, inlen) ==
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static void die(const char *what)
{
    fprintf(stderr, "quic_probe: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(2);
}

struct server {
    SSL *listener;
    int echoed;
    sem_t done; /* posted when a connection is freed: the client's next one starts after */
};

static void *serve(void *arg)
{
    struct server *srv = arg;
    for (int i = 0; i < CONNECTIONS; i++) {
        SSL *conn = SSL_accept_connection(srv->listener, 0);
        if (conn == NULL)
            die("SSL_accept_connection failed");
        char buf[64];
        size_t n = 0, written = 0;
        if (SSL_read_ex(conn, buf, sizeof(buf), &n) == 1 && SSL_write_ex(conn, buf, n, &written) == 1 &&
            written == n)
            srv->echoed++;
        SSL_stream_conclude(conn, 0);
        if (i % 2 == 0) {
            /* A clean end: the close is started, not waited for. */
            SSL_shutdown_ex(conn, SSL_SHUTDOWN_FLAG_NO_BLOCK, NULL, 0);
        }
        /* Otherwise freed without SSL_shutdown: OpenSSL removes the session. */
        SSL_free(conn);
        sem_post(&srv->done);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int attach = argc > 1 && strcmp(argv[1], "attach") == 0;
    int callbacks = argc > 1 && strcmp(argv[1], "callbacks") == 0;
    const char *cert = getenv("QUIC_PROBE_CERT"), *key = getenv("QUIC_PROBE_KEY");
    if (cert == NULL || key == NULL)
        die("QUIC_PROBE_CERT and QUIC_PROBE_KEY name the server's certificate and key");

    SSL_CTX *sctx = SSL_CTX_new(OSSL_QUIC_server_method());
    if (sctx == NULL || SSL_CTX_use_certificate_chain_file(sctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(sctx, key, SSL_FILETYPE_PEM) != 1)
        die("server context");
    SSL_CTX_set_alpn_select_cb(sctx, select_alpn, NULL);

    if (callbacks) {
#ifdef WITH_SESSCACHE
        /* The ready-made callbacks, installed by the program itself: they must leave QUIC
         * connections alone (OpenSSL holds the QUIC lock while it calls them). */
        SSL_CTX_sess_set_new_cb(sctx, sesscache_new_session_cb);
        SSL_CTX_sess_set_get_cb(sctx, sesscache_get_session_cb);
        SSL_CTX_sess_set_remove_cb(sctx, sesscache_remove_session_cb);
        printf("callbacks: installed\n");
#else
        die("built without WITH_SESSCACHE");
#endif
    }
    if (attach) {
#ifdef WITH_SESSCACHE
        sesscache *cache = sesscache_open("memory:");
        if (cache == NULL)
            die("sesscache_open");
        if (sesscache_attach(cache, sctx) == 1) {
            printf("attach: accepted\n");
        } else {
            const char *why = sesscache_last_error();
            printf("attach: refused\n");
            fprintf(stderr, "quic_probe: sesscache_attach: %s\n", why ? why : "(no message)");
        }
        sesscache_free(cache);
#else
        die("built without WITH_SESSCACHE");
#endif
    }

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t salen = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &salen) != 0)
        die("UDP socket");

    struct server srv = {0};
    if (sem_init(&srv.done, 0, 0) != 0)
        die("sem_init");
    srv.listener = SSL_new_listener(sctx, 0);
    if (srv.listener == NULL || SSL_set_fd(srv.listener, fd) != 1 || SSL_listen(srv.listener) != 1)
        die("listener");
    pthread_t thread;
    if (pthread_create(&thread, NULL, serve, &srv) != 0)
        die("pthread_create");

    SSL_CTX *cctx = SSL_CTX_new(OSSL_QUIC_client_method());
    if (cctx == NULL)
        die("client context");
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);

    BIO_ADDR *peer = BIO_ADDR_new();
    if (peer == NULL ||
        BIO_ADDR_rawmake(peer, AF_INET, &sa.sin_addr, sizeof(sa.sin_addr), sa.sin_port) != 1)
        die("peer address");

    SSL_SESSION *session = NULL;
    int handshakes = 0, resumed = 0;
    for (int i = 0; i < CONNECTIONS; i++) {
        int cfd = socket(AF_INET, SOCK_DGRAM, 0);
        if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
            die("client socket");
        SSL *c = SSL_new(cctx);
        if (c == NULL || SSL_set_fd(c, cfd) != 1 || SSL_set1_initial_peer_addr(c, peer) != 1 ||
            SSL_set_alpn_protos(c, alpn, sizeof(alpn)) != 0 ||
            SSL_set_tlsext_host_name(c, "localhost") != 1)
            die("client connection");
        if (session != NULL)
            SSL_set_session(c, session);
        if (SSL_connect(c) == 1) {
            handshakes++;
            if (i > 0 && SSL_session_reused(c))
                resumed++;
            if (getenv("QUIC_PROBE_DEBUG"))
                fprintf(stderr, "conn %d: %s\n", i, SSL_session_reused(c) ? "resumed" : "full");
            char msg[] = "ping", buf[64];
            size_t n = 0, written = 0;
            if (SSL_write_ex(c, msg, sizeof(msg), &written) == 1)
                SSL_stream_conclude(c, 0);
            while (SSL_read_ex(c, buf, sizeof(buf), &n) == 1)
                ;
            /* The ticket may come after the echo: wait for it (2 s at most). */
            for (int w = 0; w < 2000; w++) {
                SSL_SESSION_free(session);
                session = SSL_get1_session(c);
                if (session != NULL && SSL_SESSION_is_resumable(session))
                    break;
                SSL_handle_events(c);
                nanosleep(&(struct timespec){0, 1000000}, NULL);
            }
            SSL_shutdown_ex(c, SSL_SHUTDOWN_FLAG_NO_BLOCK, NULL, 0);
        } else {
            ERR_print_errors_fp(stderr);
        }
        SSL_free(c);
        close(cfd);
        while (sem_wait(&srv.done) != 0)
            ;
    }
    pthread_join(thread, NULL);
    printf("handshakes %d/%d\n", handshakes, CONNECTIONS);
    printf("echoed %d/%d\n", srv.echoed, CONNECTIONS);
    printf("resumed %d/%d\n", resumed, CONNECTIONS - 1);

    SSL_SESSION_free(session);
    BIO_ADDR_free(peer);
    SSL_free(srv.listener);
    close(fd);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    return 0;
}
