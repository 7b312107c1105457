/*
 * vgpubuild demo driver @VERSION@: operating-system glue (stand-in).
 */
#include "nv-misc.h"
#include "nv-time.h"

int os_demo_delay(unsigned int ms)
{
    return (int)ms;
}
