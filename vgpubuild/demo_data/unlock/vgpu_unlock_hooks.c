/*
 * vgpubuild demo: stand-in for the vgpu_unlock submodule's kernel hooks.
 * Written for vgpubuild's demo and tests; it does nothing.
 */
static void nv_demo_unlock_hooks_init(void)
{
}
