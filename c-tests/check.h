/* A minimal test framework: CHECK records a failure and continues; each test is a function
 * run by RUN; main returns non-zero and prints "N passed, M failed" at the end. */
#ifndef SESSCACHE_CHECK_H
#define SESSCACHE_CHECK_H

#include <stdio.h>

extern int check_failures_in_test;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "    FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
            check_failures_in_test++;                                               \
        }                                                                           \
    } while (0)

#define CHECK_EQ(a, b)                                                              \
    do {                                                                            \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);             \
        if (check_a_ != check_b_) {                                                 \
            fprintf(stderr, "    FAILED %s:%d: %s == %s (%lld != %lld)\n", __FILE__, \
                    __LINE__, #a, #b, check_a_, check_b_);                          \
            check_failures_in_test++;                                               \
        }                                                                           \
    } while (0)

/* Stops the current test (after recording a failure) when a precondition fails. */
#define REQUIRE(cond)                                                               \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "    FAILED %s:%d: %s (test stopped)\n", __FILE__,      \
                    __LINE__, #cond);                                               \
            check_failures_in_test++;                                               \
            return;                                                                 \
        }                                                                           \
    } while (0)

typedef void (*check_test_fn)(void);

/* Runs one test, printing "ok - name" or "FAIL - name". */
void check_run(const char *name, check_test_fn fn);
/* Prints the closing "N passed, M failed" line; returns the exit status. */
int check_summary(const char *suite);

#define RUN(fn) check_run(#fn, fn)

#endif
