/* async_server: a single-threaded epoll TLS server whose handshakes never wait for the cache.
 *
 *   async_server -p PORT -c CERT -k KEY -u CACHE_URL [-m async|blocking] [-t 1.2|1.3]
 *
 * Listens on 127.0.0.1:PORT and answers every HTTP/1.0 request with a tiny 200, then sends
 * close_notify and closes. Sessions are stateful (SSL_OP_NO_TICKET: TLS 1.2 resumes by
 * session ID, TLS 1.3 by stateful tickets), so every resumption is a lookup in the cache.
 *
 * With a redis:// cache a lookup is a network round trip. `-m blocking` (sesscache_attach)
 * makes it inside SSL_do_handshake, and this one thread, with every connection it serves,
 * waits for it. `-m async` (sesscache_attach_async, the default) does not wait:
 *
 *   1. the cache's ClientHello callback starts the lookup and suspends the handshake:
 *      SSL_do_handshake returns -1, SSL_get_error says SSL_ERROR_WANT_CLIENT_HELLO_CB;
 *   2. sesscache_lookup_fd(ssl) is an fd that becomes readable when the lookup is done:
 *      the loop waits for it in the same epoll set as the sockets, and serves others;
 *   3. when it is readable: remove it from the set, call SSL_do_handshake again.
 *
 * memory: and shm: caches (and redis l1= hits) answer at once and never suspend.
 * SIGINT or SIGTERM: frees everything and prints one line of counts:
 *   async_server: N connections, R resumed, S suspended, F failed */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sesscache.h"

static const char RESPONSE[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";

/* What an fd in the epoll set is; epoll's data.ptr points to one. */
typedef struct source {
    enum { LISTENER, SIGNALS, SOCKET, LOOKUP } kind;
    struct conn *conn; /* SOCKET, LOOKUP: whose */
} source;

typedef struct conn {
    int fd;
    SSL *ssl;
    enum { HANDSHAKE, READING, WRITING, CLOSING } state;
    int lookup_fd;     /* the cache's fd in the epoll set while the handshake waits, else -1 */
    source sock, lookup;
    char req[2048];    /* the request so far (NUL-terminated) */
    size_t len;
    int clean;         /* ended with our close_notify sent */
    struct conn *prev, *next; /* in `conns` while open, then in `closed` */
} conn;

/* What a connection waits for next. */
enum wait { PROGRESS, WANT_READ, WANT_WRITE, WANT_LOOKUP, DONE };

static int ep = -1;      /* the epoll set */
static conn *conns;      /* the open connections */
static conn *closed;     /* closed while handling this batch of events: freed after it */
static unsigned long n_conns, n_resumed, n_suspended, n_failed;

static enum wait wait_for(conn *c, int ret) {
    switch (SSL_get_error(c->ssl, ret)) {
    case SSL_ERROR_WANT_READ: return WANT_READ;
    case SSL_ERROR_WANT_WRITE: return WANT_WRITE;
    case SSL_ERROR_WANT_CLIENT_HELLO_CB: return WANT_LOOKUP; /* the cache's lookup runs */
    default: return DONE;                                     /* an error: close */
    }
}

/* One step of the connection's work. */
static enum wait step(conn *c) {
    int n;
    switch (c->state) {
    case HANDSHAKE:
        if ((n = SSL_do_handshake(c->ssl)) != 1)
            return wait_for(c, n);
        n_resumed += SSL_session_reused(c->ssl);
        c->state = READING;
        return PROGRESS;
    case READING: /* up to the blank line that ends the request's header */
        if ((n = SSL_read(c->ssl, c->req + c->len, (int)(sizeof c->req - 1 - c->len))) <= 0)
            return wait_for(c, n);
        c->len += (size_t)n;
        c->req[c->len] = '\0';
        if (strstr(c->req, "\r\n\r\n") != NULL)
            c->state = WRITING;
        else if (c->len == sizeof c->req - 1)
            return DONE; /* too long: not a request of ours */
        return PROGRESS;
    case WRITING:
        if ((n = SSL_write(c->ssl, RESPONSE, (int)sizeof RESPONSE - 1)) <= 0)
            return wait_for(c, n);
        c->state = CLOSING;
        return PROGRESS;
    case CLOSING: /* send our close_notify; the client's is not waited for */
        if ((n = SSL_shutdown(c->ssl)) < 0 && wait_for(c, n) == WANT_WRITE)
            return WANT_WRITE;
        c->clean = n >= 0;
        return DONE;
    }
    return DONE;
}

/* Adds fd to the epoll set or changes what it reports (op), with src as its data. */
static int watch(int fd, int op, uint32_t events, source *src) {
    struct epoll_event ev = {.events = events, .data.ptr = src};
    if (epoll_ctl(ep, op, fd, &ev) == 0)
        return 1;
    perror("async_server: epoll_ctl");
    return 0;
}

static void unwait_lookup(conn *c) {
    if (c->lookup_fd >= 0)
        epoll_ctl(ep, EPOLL_CTL_DEL, c->lookup_fd, NULL);
    c->lookup_fd = -1;
}

/* Ends a connection. Its struct is freed after the batch of events, which may name it again. */
static void conn_close(conn *c) {
    unwait_lookup(c); /* before SSL_free, which closes the cache's fd */
    SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);     /* also removes it from the epoll set */
    n_failed += !c->clean;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->next = closed;
    closed = c;
}

static void free_closed(void) {
    while (closed != NULL) {
        conn *c = closed;
        closed = c->next;
        free(c);
    }
}

/* Runs the connection as far as it goes without waiting, then waits for what it needs. */
static void advance(conn *c) {
    enum wait w;
    unwait_lookup(c); /* the cache's fd leaves the set before the next handshake call */
    while ((w = step(c)) == PROGRESS)
        continue;
    int ok = 1;
    switch (w) {
    case WANT_READ:
        ok = watch(c->fd, EPOLL_CTL_MOD, EPOLLIN, &c->sock);
        break;
    case WANT_WRITE:
        ok = watch(c->fd, EPOLL_CTL_MOD, EPOLLOUT, &c->sock);
        break;
    case WANT_LOOKUP:
        /* Wait on the cache's fd alone (the socket has nothing to say until we answer). */
        n_suspended++;
        c->lookup_fd = sesscache_lookup_fd(c->ssl);
        ok = c->lookup_fd >= 0 && watch(c->fd, EPOLL_CTL_MOD, 0, &c->sock) &&
             watch(c->lookup_fd, EPOLL_CTL_ADD, EPOLLIN, &c->lookup);
        if (!ok)
            c->lookup_fd = -1;
        break;
    default:
        ok = 0;
    }
    if (!ok)
        conn_close(c);
    ERR_clear_error(); /* a failed connection leaves nothing for the next one */
}

static void accept_all(int listener, SSL_CTX *ctx) {
    int fd;
    while ((fd = accept(listener, NULL, NULL)) >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        SSL *ssl = SSL_new(ctx);
        if (c != NULL) {
            *c = (conn){.fd = fd, .ssl = ssl, .lookup_fd = -1, .next = conns};
            c->sock = (source){SOCKET, c};
            c->lookup = (source){LOOKUP, c};
        }
        if (c == NULL || ssl == NULL || fcntl(fd, F_SETFL, O_NONBLOCK) != 0 || !SSL_set_fd(ssl, fd) ||
            !watch(fd, EPOLL_CTL_ADD, 0, &c->sock)) {
            free(c);
            SSL_free(ssl);
            close(fd);
            continue;
        }
        if (conns != NULL)
            conns->prev = c;
        conns = c;
        n_conns++;
        SSL_set_accept_state(ssl);
        advance(c);
    }
}

static SSL_CTX *server_ctx(const char *cert, const char *key, const char *version) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    int v = version == NULL ? 0 : strcmp(version, "1.2") == 0 ? TLS1_2_VERSION
                                : strcmp(version, "1.3") == 0 ? TLS1_3_VERSION : -1;
    static const unsigned char sid_ctx[] = "async_server";
    if (ctx == NULL || v < 0 || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        !SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1) ||
        (v > 0 && (!SSL_CTX_set_min_proto_version(ctx, v) || !SSL_CTX_set_max_proto_version(ctx, v)))) {
        fprintf(stderr, "async_server: cannot set up TLS (%s, %s, -t %s)\n", cert, key, version ? version : "-");
        ERR_print_errors_fp(stderr);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET); /* stateful sessions: the cache holds them */
    return ctx;
}

static int listen_on(int port) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0 ||
        fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
        perror("async_server: listen");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void usage(void) {
    fprintf(stderr, "usage: async_server -p PORT -c CERT -k KEY -u CACHE_URL [-m async|blocking] [-t 1.2|1.3]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *cert = NULL, *key = NULL, *url = NULL, *mode = "async", *version = NULL;
    int port = 0, opt;
    while ((opt = getopt(argc, argv, "p:c:k:u:m:t:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'u': url = optarg; break;
        case 'm': mode = optarg; break;
        case 't': version = optarg; break;
        default: usage();
        }
    }
    int async = strcmp(mode, "async") == 0;
    if (optind != argc || port <= 0 || port > 65535 || !cert || !key || !url || (!async && strcmp(mode, "blocking") != 0))
        usage();

    /* SIGINT and SIGTERM are read from a signalfd in the epoll set. Blocked before the cache
     * starts its threads, which inherit the mask: no thread of ours takes them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client gone before our close_notify */

    int rc = 1, listener = -1, sfd = -1;
    SSL_CTX *ctx = NULL;
    sesscache *cache = sesscache_open(url);
    if (cache == NULL) {
        fprintf(stderr, "async_server: cache '%s': %s\n", url, sesscache_last_error());
        return 1;
    }
    if ((ctx = server_ctx(cert, key, version)) == NULL)
        goto out;
    /* The one line that differs. `done` (NULL here) would be called on a library thread when a
     * lookup ends: for loops that wake up otherwise; this one waits on the fd. */
    if ((async ? sesscache_attach_async(cache, ctx, NULL, NULL) : sesscache_attach(cache, ctx)) != 1) {
        fprintf(stderr, "async_server: attach: %s\n", sesscache_last_error());
        goto out;
    }
    source listen_src = {LISTENER, NULL}, signal_src = {SIGNALS, NULL};
    if ((ep = epoll_create1(0)) < 0 || (sfd = signalfd(-1, &sigs, 0)) < 0 || (listener = listen_on(port)) < 0 ||
        !watch(listener, EPOLL_CTL_ADD, EPOLLIN, &listen_src) || !watch(sfd, EPOLL_CTL_ADD, EPOLLIN, &signal_src))
        goto out;
    printf("listening on %d (%s)\n", port, async ? "async" : "blocking");
    fflush(stdout);

    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0 && errno != EINTR) {
            perror("async_server: epoll_wait");
            goto out;
        }
        for (int i = 0; i < n; i++) {
            source *src = evs[i].data.ptr;
            if (src->conn != NULL && src->conn->ssl == NULL)
                continue; /* closed by an earlier event of this batch */
            switch (src->kind) {
            case LISTENER: accept_all(listener, ctx); break;
            case SIGNALS: rc = 0; goto out;
            case SOCKET:
                /* While its handshake waits for the cache the socket is watched for nothing:
                 * this is an error or a hang-up. */
                if (src->conn->lookup_fd >= 0)
                    conn_close(src->conn);
                else
                    advance(src->conn);
                break;
            case LOOKUP: advance(src->conn); break;
            }
        }
        free_closed();
    }
out:
    while (conns != NULL)
        conn_close(conns); /* handshakes still waiting for a lookup too */
    free_closed();
    if (listener >= 0)
        close(listener);
    if (sfd >= 0)
        close(sfd);
    if (ep >= 0)
        close(ep);
    SSL_CTX_free(ctx);
    sesscache_free(cache); /* after the context: the last reference frees the cache */
    fprintf(stderr, "async_server: %lu connections, %lu resumed, %lu suspended, %lu failed\n", n_conns, n_resumed,
            n_suspended, n_failed);
    return rc;
}
