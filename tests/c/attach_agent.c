// A JVMTI agent for the attach tests, without jni.h: Agent_OnAttach(JavaVM*, char*, void*)
// writes its options into the file they name ("<path>") and returns AGENT_RC. Built with
// -DNOT_AGENT it exports no Agent_OnAttach (a library the JVM must refuse as an agent).
#include <stdio.h>

#ifndef NOT_AGENT
#ifndef AGENT_RC
#define AGENT_RC 0
#endif
__attribute__((visibility("default"))) int Agent_OnAttach(void *vm, char *options, void *reserved) {
    (void)vm;
    (void)reserved;
    if (options != NULL && options[0] == '/') {
        FILE *f = fopen(options, "w");
        if (f != NULL) {
            fprintf(f, "attached rc=%d\n", AGENT_RC);
            fclose(f);
        }
    }
    return AGENT_RC;
}
#else
__attribute__((visibility("default"))) int not_an_agent(void) { return 1; }
#endif
