/* Signal 41 (the preload's default prof_signal). Mode "show" prints the disposition the
 * program sees at the start of main (sig41=SIG_DFL, SIG_IGN or handler), then raises 41: with
 * SIG_DFL the process dies of signal 41. Mode "own" installs its own handler for 41 first and
 * raises it: the handler must run (prints own_handler_ran=1) and the program exits 0. */
#define _GNU_SOURCE
#include <signal.h>

#include "robust.h"

static volatile sig_atomic_t ran;
static void own(int sig) {
    (void)sig;
    ran = 1;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "show";
    struct sigaction old;
    CHECK(sigaction(41, NULL, &old) == 0);
    if (!strcmp(mode, "show")) {
        printf("sig41=%s\n", old.sa_handler == SIG_DFL   ? "SIG_DFL"
                             : old.sa_handler == SIG_IGN ? "SIG_IGN"
                                                         : "handler");
        fflush(stdout);
        raise(41);
        printf("survived_raise=1\n");
        return 0;
    }
    CHECK(!strcmp(mode, "own"));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = own;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(41, &sa, NULL) == 0);
    raise(41);
    printf("own_handler_ran=%d\n", (int)ran);
    return ran ? 0 : 1;
}
