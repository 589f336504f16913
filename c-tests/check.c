#include "check.h"

int check_failures_in_test;
static int passed, failed;

void check_run(const char *name, check_test_fn fn) {
    check_failures_in_test = 0;
    fn();
    if (check_failures_in_test == 0) {
        passed++;
        printf("ok - %s\n", name);
    } else {
        failed++;
        printf("FAIL - %s\n", name);
    }
    fflush(stdout);
}

int check_summary(const char *suite) {
    printf("%s: %d passed, %d failed\n", suite, passed, failed);
    return failed == 0 ? 0 : 1;
}
