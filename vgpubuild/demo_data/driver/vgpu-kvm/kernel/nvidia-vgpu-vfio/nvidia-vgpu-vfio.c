/*
 * vgpubuild demo driver @VERSION@ (vgpu-kvm): mediated device glue (stand-in).
 */
#include "nvidia-vgpu-vfio.h"

int nv_vgpu_demo_probe(void)
{
    return 0;
}
