/* fork + exec: the exec'd program inherits no descriptor of the profiler. With "fds" as argv[1]
 * this program lists the descriptors above 2 that it inherited. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int list_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 2;
    printf("inherited=");
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd > 2 && fd != dirfd(d)) printf("%d ", fd);
    }
    printf("\n");
    closedir(d);
    return 0;
}

static pid_t spawn(char *const argv[]) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    if (status != 0) printf("status of %s: %d\n", argv[0], status);
    return pid;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "fds") == 0) return list_fds();
    /* Allocate enough that an interval dump (if configured) has opened and closed files. */
    for (int i = 0; i < 64; i++) free(malloc(128 * 1024));
    char *true_argv[] = {"/bin/true", NULL};
    pid_t t = spawn(true_argv);
    char *fds_argv[] = {argv[0], "fds", NULL};
    pid_t f = spawn(fds_argv);
    printf("true_pid=%d\nfds_pid=%d\n", (int)t, (int)f);
    return 0;
}
