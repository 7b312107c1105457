#!/bin/sh
# vgpubuild demo driver @VERSION@: build configuration probe (stand-in).
# GRID_BUILD
# VGX_KVM_BUILD
echo "conftest: nothing to probe in the demo driver"
