/* The second of two libraries samepc.c loads at the same address: a 0x208-byte frame. */
#define FRAME "0x208"
#include "samepc_lib.h"
