# vcfgclone XML SRCDEV SRCSUB DSTDEV DSTSUB: after every <pgpu> of SRCDEV:SRCSUB (NVIDIA's
# subsystem vendor 0x10de), add a copy with DSTDEV:DSTSUB. A textual match on the attribute
# values, as the real one does with sed; a card that is not there is silently skipped.
vcfgclone() {
    echo "vcfgclone ${2#0x}:${3#0x} -> ${4#0x}:${5#0x}"
    awk -v sd="deviceId=\"$2\"" -v ss="subsystemId=\"$3\"" \
        -v nd="deviceId=\"$4\"" -v ns="subsystemId=\"$5\"" '
        /<pgpu[ >]/ { inblk = 1; blk = "" }
        inblk {
            blk = blk $0 "\n"
            if ($0 ~ /<\/pgpu>/) {
                inblk = 0
                printf "%s", blk
                if (index(blk, sd) && index(blk, ss) && index(blk, "subsystemVendorId=\"0x10de\"")) {
                    sub(sd, nd, blk)
                    sub(ss, ns, blk)
                    printf "%s", blk
                }
            }
            next
        }
        { print }
    ' "$1" > "$1.tmp" && mv "$1.tmp" "$1"
}

