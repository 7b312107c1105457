# vcfgclone XML SRCDEV SRCSUB DSTDEV DSTSUB: a <pgpu> that already is DSTDEV:DSTSUB (vendor
# 0x10de) is disabled (its subsystemVendorId becomes 0x9999); after every <pgpu> of
# SRCDEV:SRCSUB a copy with DSTDEV:DSTSUB is added. Textual matches, as the real one makes.
vcfgclone() {
    echo "vcfgclone ${2#0x}:${3#0x} -> ${4#0x}:${5#0x}"
    awk -v sd="deviceId=\"$2\"" -v ss="subsystemId=\"$3\"" \
        -v nd="deviceId=\"$4\"" -v ns="subsystemId=\"$5\"" -v off="0x9999" '
        /<pgpu[ >]/ { inblk = 1; blk = "" }
        inblk {
            blk = blk $0 "\n"
            if ($0 ~ /<\/pgpu>/) {
                inblk = 0
                nvidia = index(blk, "subsystemVendorId=\"0x10de\"")
                if (nvidia && index(blk, nd) && index(blk, ns)) {
                    sub("subsystemVendorId=\"0x10de\"", "subsystemVendorId=\"" off "\"", blk)
                    printf "%s", blk
                    next
                }
                printf "%s", blk
                if (nvidia && index(blk, sd) && index(blk, ss)) {
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

