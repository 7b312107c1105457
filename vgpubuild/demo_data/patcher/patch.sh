#!/bin/bash
# vgpubuild demo patcher: a stand-in for vGPU-Unlock-patcher's patch.sh, written for
# vgpubuild's demo release and tests. Same command line, inputs and outputs as the real one
# (see README.md); the work it does on the demo driver is small and our own.

BASEDIR=$(dirname "$0")

GNRL="NVIDIA-Linux-x86_64-@GENERAL_VERSION@"
VGPU="NVIDIA-Linux-x86_64-@HOST_VERSION@-vgpu-kvm"
GRID="NVIDIA-Linux-x86_64-@GUEST_VERSION@-grid"
WSYS="NVIDIA-Windows-x86_64-@WINDOWS_VERSION@"

NVOSS=false
DBGNVOSS=false
REMAP_P2V=false
KLOGT=true
TESTSIGN=true
SETUP_TESTSIGN=false
SPOOF_DEVID=false
REPACK=false
NVGPLOPTPATCH=false
FORCEUSENVGPL=false
TDMABUFEXPORT=false
ENVYPROBES=false
DO_LIBS=true

die() {
    echo "$@"
    exit 1
}

@VCFGCLONE@
@REMAP_FUNCTION@while [ $# -gt 0 ] && [ "${1:0:2}" = "--" ]; do
    case "$1" in
@OPTIONS@        --no-klogtrace) KLOGT=false ;;
        --no-libs-patch) DO_LIBS=false ;;
        --no-testsign) TESTSIGN=false ;;
        --create-cert) SETUP_TESTSIGN=true ;;
        --spoof-devid) SPOOF_DEVID=true ;;
        --repack) REPACK=true ;;
        --force-nvidia-gpl-I-know-it-is-wrong) NVGPLOPTPATCH=true ;;
        --enable-nvidia-gpl-for-experimenting) FORCEUSENVGPL=true ;;
        --test-dmabuf-export) TDMABUFEXPORT=true ;;
        --envy-probes) ENVYPROBES=true ;;
        *) echo "Unknown option $1" ;;
    esac
    shift
done

DO_VGPU=false
DO_GRID=false
DO_GNRL=false
DO_MRGD=false
DO_UNLK=true
SWITCH_GRID_TO_GNRL=false
if [ ! -e "${GNRL}.run" ] && [ -e "${GRID}.run" ]; then
    SWITCH_GRID_TO_GNRL=true
fi

case "$1" in
@VGPU_TARGETS@    grid)
        DO_GRID=true
        DO_GNRL=true
        DO_UNLK=false
        SOURCE="${GRID}"
        ;;
    general)
        DO_GRID=true
        DO_GNRL=true
        DO_UNLK=false
        $SWITCH_GRID_TO_GNRL || GRID="${GNRL}"
        SOURCE="${GNRL}"
        ;;
    wsys)
        SOURCE="${WSYS}"
        NV_WIN_DRV_INSTALLER=$(ls -1 "${WSYS#NVIDIA-Windows-x86_64-}"*[-_]win*[-_]64bit*.exe 2>/dev/null | head -n 1)
        [ -e "$NV_WIN_DRV_INSTALLER" ] || die "nvidia windows driver installer ${WSYS} not found"
        which 7z >/dev/null || die "install p7zip for 7z"
        which msexpand >/dev/null || die "install mscompress for msexpand"
        which osslsigncode >/dev/null || die "install osslsigncode"
        which gcc >/dev/null || die "gcc is needed to build the signature patch tool"
        die "the vgpubuild demo patcher has no windows driver to patch"
        ;;
    grid-merge)
        DO_VGPU=true
        DO_GRID=true
        DO_MRGD=true
        SOURCE="${GRID}-vgpu-kvm"
        ;;
    general-merge)
        DO_VGPU=true
        DO_GRID=true
        DO_MRGD=true
        if $SWITCH_GRID_TO_GNRL; then
            echo "WARNING: did not find general driver, trying to create it from grid one"
        else
            GRID="${GNRL}"
        fi
        SOURCE="${GNRL}-merged-vgpu-kvm"
        ;;
@MERGE_TARGETS@    vcfg)
        shift
        [ $# -eq 5 ] && [ -e "$1" ] || die "Usage: $0 vcfg xmlfile devid subdevid cdevid csubdevid"
        vcfgclone "$@"
        exit $?
        ;;
@UTILITIES@    *)
        die "Usage: $0 [options] <@USAGE@>"
        ;;
esac
[ -n "${TARGET}" ] || TARGET="${SOURCE}-patched"

extract() {
    local tdir="${2:-${1%.run}}"
    [ -e "${1}" ] || die "package ${1} not found"
    if [ -d "${tdir}" ]; then
        echo "WARNING: skipping extract of ${1} as it seems already extracted in ${tdir}"
        return 0
    fi
    sh "${1}" --extract-only --target "${tdir}" || die "extracting ${1} failed"
    chmod -R u+w "${tdir}"
}

applypatch() {
    echo "applypatch ${2} ${3}"
    patch -d "${1}" -p1 --no-backup-if-mismatch -f ${3} < "$BASEDIR/patches/${2}"
}

# Like the real one: a failure on kernel/ is reported and ignored, one on kernel-open/ dies.
applypatchx() {
    applypatch "$@"
    if patch -d "${1}/kernel-open" -p2 --dry-run -f < "$BASEDIR/patches/${2}" > /dev/null; then
        patch -d "${1}/kernel-open" -p2 --no-backup-if-mismatch -f < "$BASEDIR/patches/${2}" > /dev/null
    else
        die "ERROR: patch ${2} NOT APPLIED to kernel-open!"
    fi
}

$DO_VGPU && extract "${VGPU}.run"
if $DO_GRID; then
    if $SWITCH_GRID_TO_GNRL && [ "$1" != grid ]; then
        extract "${GRID}.run" "${GNRL}"
        GRID="${GNRL}"
    else
        extract "${GRID}.run"
    fi
fi

if $DO_MRGD; then
    echo "about to create merged driver"
    rm -rf "${SOURCE}"
    mkdir "${SOURCE}"
    cp -a "${VGPU}/." "${SOURCE}"
    cp -a "${GRID}/." "${SOURCE}"
    cp -a "${VGPU}/vgpuConfig.xml" "${VGPU}/.manifest" "${SOURCE}"
    sed -e '/^# VGX_KVM_BUILD/aVGX_KVM_BUILD=1' -i "${SOURCE}/kernel/conftest.sh" "${SOURCE}/kernel-open/conftest.sh"
fi

rm -rf "${TARGET}"
cp -a "${SOURCE}" "${TARGET}"

if $DO_GNRL; then
    grep -q '^GRID_BUILD=1' "${TARGET}/kernel/conftest.sh" \
        || sed -e '/^# GRID_BUILD/aGRID_BUILD=1' -i "${TARGET}/kernel/conftest.sh"
fi

if $DO_UNLK; then
    echo "applying vgpu_unlock hooks"
    [ -e "$BASEDIR/unlock/vgpu_unlock_hooks.c" ] \
        || die "unlock/ is empty: fetch the submodule (git submodule update --init)"
    mkdir -p "${TARGET}/kernel/unlock"
    cp "$BASEDIR/unlock/kern.ld" "${TARGET}/kernel/nvidia/"
    cp "$BASEDIR/unlock/vgpu_unlock_hooks.c" "${TARGET}/kernel/unlock/"
    echo 'ldflags-y += -T $(src)/nvidia/kern.ld' >> "${TARGET}/kernel/nvidia/nvidia.Kbuild"
    applypatchx "${TARGET}" setup-vup-hooks.patch
    applypatch "${TARGET}" demo-init-hooks.patch
fi

if $NVGPLOPTPATCH; then
    echo "switching the module license to GPL"
    sed -e 's/^MODULE_LICENSE("NVIDIA");/MODULE_LICENSE("Dual MIT\/GPL");/' \
        -i "${TARGET}/kernel/nvidia/nv.c" "${TARGET}/kernel-open/nvidia/nv.c"
fi
$FORCEUSENVGPL && echo 'NVIDIA_CFLAGS += -DNV_DEMO_GPL_EXPERIMENT' >> "${TARGET}/kernel/nvidia/nvidia.Kbuild"
$SPOOF_DEVID && {
    which gcc >/dev/null || die "gcc is needed to build the device id shim"
    gcc --version >/dev/null || die "gcc does not run"
    echo 'NVIDIA_CFLAGS += -DSPOOF_ID' >> "${TARGET}/kernel/nvidia/nvidia.Kbuild"
}
$SETUP_TESTSIGN && {
    which makecert >/dev/null || die "install makecert (mono) to create a test certificate"
    die "the vgpubuild demo patcher signs nothing"
}

if $DO_VGPU; then
    applypatch "${TARGET}" demo-vcfg.patch
@CONFIG_STEPS@
fi

if $REPACK; then
    SRC_RUN="${VGPU}.run"
    $DO_VGPU || SRC_RUN="${GRID}.run"
    [ -e "${SRC_RUN}" ] || SRC_RUN="${GNRL}.run"
    skip=$(sed -n -e 's/^skip=//p' "${SRC_RUN}" | head -n 1)
    compress=$(sed -n -e 's/^compress=//p' "${SRC_RUN}" | head -n 1)
    echo "about to create ${TARGET}.run file"
    {
        head -n $((skip - 1)) "${SRC_RUN}" | sed \
            -e "s/^label=.*/label='NVIDIA Accelerated Graphics Driver for Linux-x86_64 ${TARGET#NVIDIA-Linux-x86_64-}'/" \
            -e "s/^targetdir=.*/targetdir=${TARGET}/"
        (cd "${TARGET}" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort \
            | tar --no-recursion --numeric-owner --owner=0 --group=0 --mtime=@0 -T - -cf -) \
            | "${compress:-xz}" -c
    } > "${TARGET}.run" || die "repack failed"
fi

echo "patched driver is in ${TARGET}"
