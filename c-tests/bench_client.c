/* bench_client: a load generator of resuming TLS clients, for c-tests/bench_servers.sh.
 *
 *   bench_client --port P [--clients N] [--seconds S] [--tls1_2|--tls1_3] [--full]
 *                [--path PATH] [--max-fail PERCENT]
 *
 * N threads (default 8). Each first makes one full handshake to 127.0.0.1:P and keeps the
 * session it got; then, once every thread has its session, all of them for S seconds
 * (default 5) connect again and again, each connection offering the thread's latest session
 * (TLS 1.2: the session ID it got; TLS 1.3: the newest ticket it received). With --full no
 * session is ever offered (full handshakes only).
 *
 * Every connection does the same work, as a browser fetching one small page would: TCP
 * connect, handshake, `GET PATH HTTP/1.0` (Host: localhost; PATH default /), read the answer to the end (the
 * server closes after it; TLS 1.3 tickets come before the answer, so reading it is also how
 * the client receives them), check that it is a 200, then close_notify and close. What is
 * measured is therefore what a server sees from resuming clients: connections completed per
 * second, with the server's session cache on the path of each one.
 *
 * Prints one line:
 *   conns_per_s R resumed_fraction F ok N resumed N failed N seconds T clients N proto P mode M
 * where ok counts the connections completed in the timed phase, resumed those of them that
 * SSL_session_reused says resumed, failed every connection that did not complete (TCP,
 * handshake, I/O, or an answer that was not a 200): never ignored. The first failures are
 * described on stderr. Exits 1 when more than --max-fail percent (default 1) of the
 * connections failed or none completed, 2 on a usage error.
 *
 * Built against the system OpenSSL (no sesscache): it is the client side of the benchmark,
 * and the library under test is preloaded into the servers only. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* How many failures are described on stderr, over all threads (the rest are counted). */
#define MAX_REPORTED 5
/* A server that stops answering must not hang the benchmark: per-socket I/O timeout. */
#define IO_TIMEOUT_S 10

struct config {
    int port;
    int clients;
    double seconds;
    int version; /* TLS1_2_VERSION or TLS1_3_VERSION */
    int full;
    double max_fail_pct;
    char request[512]; /* the HTTP request, made once from --path */
    int request_len;
};

/* Shared by every thread. `deadline` is written by the main thread between the two
 * barriers (every client has its first session; then they all start), which order it for
 * the threads; `reported` is atomic; the rest is read-only while the threads run. */
struct shared {
    const struct config *cfg;
    SSL_CTX *ctx;
    pthread_barrier_t ready, go;
    struct timespec deadline;
    atomic_int reported;
};

struct worker {
    struct shared *sh;
    pthread_t thread;
    SSL_SESSION *session; /* the latest resumable session this client got (owned) */
    long ok, resumed, failed;
    struct timespec finished;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double ts_s(const struct timespec *t) { return (double)t->tv_sec + (double)t->tv_nsec / 1e9; }

/* Describes a failure on stderr (the first MAX_REPORTED of the run) with OpenSSL's error
 * queue; always clears the queue, so a later connection does not inherit it. */
static void report(struct shared *sh, const char *what, int err) {
    if (atomic_fetch_add(&sh->reported, 1) < MAX_REPORTED) {
        /* One line, written by one stdio call: threads' lines do not interleave. */
        char line[1024], buf[256];
        unsigned long e;
        size_t n = (size_t)snprintf(line, sizeof line, "bench_client: %s", what);
        if (err != 0 && n < sizeof line && strerror_r(err, buf, sizeof buf) == 0)
            n += (size_t)snprintf(line + n, sizeof line - n, " (%s)", buf);
        while ((e = ERR_get_error()) != 0 && n < sizeof line) {
            ERR_error_string_n(e, buf, sizeof buf);
            n += (size_t)snprintf(line + n, sizeof line - n, ": %s", buf);
        }
        fprintf(stderr, "%s\n", line);
    }
    ERR_clear_error();
}

static int tcp_connect(int port) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    struct timeval tv = {IO_TIMEOUT_S, 0};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* The errno worth reporting after an SSL call returned `ret`: only a system call's failure
 * has one (a TLS alert or a protocol error does not: OpenSSL's queue says what it was). */
static int ssl_errno(SSL *ssl, int ret) {
    int e = errno;
    return SSL_get_error(ssl, ret) == SSL_ERROR_SYSCALL ? e : 0;
}

/* One connection, offering w->session unless --full. On success counts it (and whether it
 * resumed) and keeps the connection's session as the thread's latest; returns 1. On failure
 * counts it, says why (rate-limited) and returns 0; the thread's session stays as it was. */
static int one_connection(struct worker *w, int timed) {
    struct shared *sh = w->sh;
    const char *what = NULL;
    int err = 0, ok = 0;
    SSL *ssl = NULL;
    int fd = tcp_connect(sh->cfg->port);
    if (fd < 0) {
        what = "connect";
        err = errno;
        goto done;
    }
    ssl = SSL_new(sh->ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, fd) || !SSL_set_tlsext_host_name(ssl, "localhost")) {
        what = "SSL_new";
        goto done;
    }
    if (!sh->cfg->full && w->session != NULL && !SSL_set_session(ssl, w->session)) {
        what = "SSL_set_session";
        goto done;
    }
    errno = 0;
    int ret = SSL_connect(ssl);
    if (ret != 1) {
        what = "handshake";
        err = ssl_errno(ssl, ret);
        goto done;
    }
    const int len = sh->cfg->request_len;
    ret = SSL_write(ssl, sh->cfg->request, len);
    if (ret != len) {
        what = "writing the request";
        err = ssl_errno(ssl, ret);
        goto done;
    }
    /* The answer, to the end: its first bytes are kept to check the status line. */
    char head[16], buf[4096];
    size_t have = 0;
    for (;;) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n > 0) {
            size_t take = (size_t)n < sizeof head - have ? (size_t)n : sizeof head - have;
            memcpy(head + have, buf, take);
            have += take;
            continue;
        }
        int e = errno;
        if (SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN)
            break; /* close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
        what = "reading the answer";
        errno = e;
        err = ssl_errno(ssl, n);
        goto done;
    }
    /* "HTTP/1.1 200 OK" or "HTTP/1.0 200 OK" */
    if (have < 12 || memcmp(head, "HTTP/1.", 7) != 0 || memcmp(head + 8, " 200", 4) != 0) {
        what = "the answer is not an HTTP 200";
        goto done;
    }
    /* Our close_notify (the server may already have closed: no error is possible here that
     * matters). It also marks the connection as ended cleanly, so OpenSSL keeps its session
     * resumable. */
    (void)SSL_shutdown(ssl);
    ok = 1;
    if (timed) {
        w->ok++;
        if (SSL_session_reused(ssl))
            w->resumed++;
    }
    /* TLS 1.3: the newest ticket the client received; TLS 1.2: the session (the same one
     * again when it resumed). */
    SSL_SESSION *s = SSL_get1_session(ssl);
    if (s != NULL && SSL_SESSION_is_resumable(s)) {
        SSL_SESSION_free(w->session);
        w->session = s;
    } else {
        SSL_SESSION_free(s);
    }
done:
    if (!ok) {
        if (timed)
            w->failed++;
        report(sh, what != NULL ? what : "connection", err);
    }
    ERR_clear_error();
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    return ok;
}

static void *run(void *arg) {
    struct worker *w = arg;
    struct shared *sh = w->sh;
    /* The first session: one full handshake, untimed (a failure here is counted too). */
    if (!one_connection(w, 0))
        w->failed++;
    pthread_barrier_wait(&sh->ready);
    pthread_barrier_wait(&sh->go);
    double deadline = ts_s(&sh->deadline);
    while (now_s() < deadline)
        one_connection(w, 1);
    clock_gettime(CLOCK_MONOTONIC, &w->finished);
    return NULL;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_client --port P [--clients N] [--seconds S] [--tls1_2|--tls1_3] "
                    "[--full] [--path PATH] [--max-fail PERCENT]\n");
    exit(2);
}

static double num_arg(int argc, char **argv, int *i) {
    if (*i + 1 >= argc)
        usage();
    char *end;
    double v = strtod(argv[++*i], &end);
    if (*end != '\0' || end == argv[*i])
        usage();
    return v;
}

int main(int argc, char **argv) {
    struct config cfg = {0, 8, 5.0, TLS1_2_VERSION, 0, 1.0, "", 0};
    const char *path = "/";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0)
            cfg.port = (int)num_arg(argc, argv, &i);
        else if (strcmp(argv[i], "--clients") == 0)
            cfg.clients = (int)num_arg(argc, argv, &i);
        else if (strcmp(argv[i], "--seconds") == 0)
            cfg.seconds = num_arg(argc, argv, &i);
        else if (strcmp(argv[i], "--max-fail") == 0)
            cfg.max_fail_pct = num_arg(argc, argv, &i);
        else if (strcmp(argv[i], "--path") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--tls1_2") == 0)
            cfg.version = TLS1_2_VERSION;
        else if (strcmp(argv[i], "--tls1_3") == 0)
            cfg.version = TLS1_3_VERSION;
        else if (strcmp(argv[i], "--full") == 0)
            cfg.full = 1;
        else
            usage();
    }
    if (cfg.port <= 0 || cfg.port > 65535 || cfg.clients < 1 || cfg.clients > 1024 || !(cfg.seconds > 0) ||
        cfg.max_fail_pct < 0 || path[0] != '/' || strpbrk(path, " \r\n") != NULL)
        usage();
    int n = snprintf(cfg.request, sizeof cfg.request, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    if (n < 0 || (size_t)n >= sizeof cfg.request)
        usage();
    cfg.request_len = n;

    /* A server that closed first makes our close_notify a write to a closed socket. */
    signal(SIGPIPE, SIG_IGN);

    struct shared sh;
    memset(&sh, 0, sizeof sh);
    sh.cfg = &cfg;
    atomic_init(&sh.reported, 0);
    sh.ctx = SSL_CTX_new(TLS_client_method());
    if (sh.ctx == NULL || !SSL_CTX_set_min_proto_version(sh.ctx, cfg.version) ||
        !SSL_CTX_set_max_proto_version(sh.ctx, cfg.version)) {
        report(&sh, "SSL_CTX_new", 0);
        SSL_CTX_free(sh.ctx);
        return 1;
    }
    SSL_CTX_set_verify(sh.ctx, SSL_VERIFY_NONE, NULL); /* a self-signed test certificate */
    /* The servers close after their answer, some without close_notify: that is the end of
     * the answer, not an error. */
    SSL_CTX_set_options(sh.ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Sessions are kept by each thread itself (SSL_get1_session), not in the context. */
    SSL_CTX_set_session_cache_mode(sh.ctx, SSL_SESS_CACHE_OFF);

    struct worker *ws = calloc((size_t)cfg.clients, sizeof *ws);
    if (ws == NULL || pthread_barrier_init(&sh.ready, NULL, (unsigned)cfg.clients + 1) != 0 ||
        pthread_barrier_init(&sh.go, NULL, (unsigned)cfg.clients + 1) != 0) {
        fprintf(stderr, "bench_client: out of memory\n");
        free(ws);
        SSL_CTX_free(sh.ctx);
        return 1;
    }
    int started = 0;
    for (; started < cfg.clients; started++) {
        ws[started].sh = &sh;
        if (pthread_create(&ws[started].thread, NULL, run, &ws[started]) != 0)
            break;
    }
    if (started < cfg.clients) {
        /* The barrier counts every thread: without them all it would never open. */
        fprintf(stderr, "bench_client: could only start %d of %d threads\n", started, cfg.clients);
        _exit(1);
    }
    /* The timed phase starts when every client has its first session. */
    pthread_barrier_wait(&sh.ready);
    double t0 = now_s();
    double end = t0 + cfg.seconds;
    sh.deadline.tv_sec = (time_t)end;
    sh.deadline.tv_nsec = (long)((end - (double)(time_t)end) * 1e9);
    pthread_barrier_wait(&sh.go);

    long ok = 0, resumed = 0, failed = 0;
    double last = t0;
    for (int i = 0; i < cfg.clients; i++) {
        pthread_join(ws[i].thread, NULL);
        ok += ws[i].ok;
        resumed += ws[i].resumed;
        failed += ws[i].failed;
        if (ts_s(&ws[i].finished) > last)
            last = ts_s(&ws[i].finished);
        SSL_SESSION_free(ws[i].session);
    }
    pthread_barrier_destroy(&sh.ready);
    pthread_barrier_destroy(&sh.go);
    free(ws);
    SSL_CTX_free(sh.ctx);

    double elapsed = last - t0;
    double rate = elapsed > 0 ? (double)ok / elapsed : 0;
    printf("conns_per_s %.1f resumed_fraction %.4f ok %ld resumed %ld failed %ld seconds %.3f clients %d proto %s "
           "mode %s\n",
           rate, ok > 0 ? (double)resumed / (double)ok : 0.0, ok, resumed, failed, elapsed, cfg.clients,
           cfg.version == TLS1_3_VERSION ? "tls13" : "tls12", cfg.full ? "full" : "resume");
    fflush(stdout);
    if (ok == 0) {
        fprintf(stderr, "bench_client: no connection completed\n");
        return 1;
    }
    if ((double)failed * 100.0 > cfg.max_fail_pct * (double)(ok + failed)) {
        fprintf(stderr, "bench_client: %ld of %ld connections failed (more than %.1f%%)\n", failed, ok + failed,
                cfg.max_fail_pct);
        return 1;
    }
    return 0;
}
