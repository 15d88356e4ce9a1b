/* The first of two libraries samepc.c loads at the same address: a 0x18-byte frame. */
#define FRAME "0x18"
#include "samepc_lib.h"
