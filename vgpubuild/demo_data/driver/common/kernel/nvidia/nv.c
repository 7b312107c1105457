/*
 * vgpubuild demo driver @VERSION@ (@FLAVOUR@): module entry point (stand-in).
 * Not NVIDIA code: a few lines in the layout of a driver source tree.
 */
#include "nv-linux.h"

#define NV_DEMO_VERSION "@VERSION@"

static int nv_demo_init(void)
{
    return 0;
}

MODULE_LICENSE("NVIDIA");
