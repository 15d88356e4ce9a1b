/* One of two libraries (samepc_a.c, samepc_b.c) whose lib_alloc has the same code layout and
 * different frames: the same return address after its call to malloc, a 0x208-byte frame here
 * and a 0x18-byte one in the other. Loaded one after the other at the same address by
 * samepc.c, so that an unwinder that kept the first one's rules would walk the second wrongly.
 * Written in assembly so that the layout cannot drift between the two. */
__asm__(".text\n"
        ".globl lib_alloc\n"
        ".type lib_alloc, @function\n"
        "lib_alloc:\n"
        ".cfi_startproc\n"
        /* sub $0x208, %rsp with a 32-bit immediate, so both variants have the same length */
        ".byte 0x48, 0x81, 0xec\n"
        ".long 0x208\n"
        ".cfi_adjust_cfa_offset 0x208\n"
        "call malloc@PLT\n"
        /* add $0x208, %rsp */
        ".byte 0x48, 0x81, 0xc4\n"
        ".long 0x208\n"
        ".cfi_adjust_cfa_offset -0x208\n"
        "ret\n"
        ".cfi_endproc\n"
        ".size lib_alloc, . - lib_alloc\n");
