/* The body of samepc_a.c and samepc_b.c: lib_alloc(size) calls malloc behind a FRAME-byte
 * stack frame. Both libraries have the same code layout, so the return address after the call
 * to malloc is the same offset in each; only the frame (and its unwind rule) differs. Written
 * in assembly so that the layout cannot drift between the two. */
__asm__(".text\n"
        ".globl lib_alloc\n"
        ".type lib_alloc, @function\n"
        "lib_alloc:\n"
        ".cfi_startproc\n"
        /* sub $FRAME, %rsp with a 32-bit immediate, so every frame size has the same length */
        ".byte 0x48, 0x81, 0xec\n"
        ".long " FRAME "\n"
        ".cfi_adjust_cfa_offset " FRAME "\n"
        "call malloc@PLT\n"
        /* add $FRAME, %rsp */
        ".byte 0x48, 0x81, 0xc4\n"
        ".long " FRAME "\n"
        ".cfi_adjust_cfa_offset -" FRAME "\n"
        "ret\n"
        ".cfi_endproc\n"
        ".size lib_alloc, . - lib_alloc\n");
