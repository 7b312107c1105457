# remap-p2v XML: rename each "GRID P40-x" type to "GRID V40-x" with the ids of the matching
# V100D type (0x1DB6/0x124A when there is none).
remap_p2v() {
    echo "remapping P40 profiles to V100D ..."
    awk '
        BEGIN {
            split("12Q:16Q 24Q:32Q 12A:16A 24A:32A 12C:16C 24C:32C", pairs, " ")
            for (i in pairs) { split(pairs[i], kv, ":"); bigger[kv[1]] = kv[2] }
        }
        function attr(line, name,    m) {
            if (match(line, name "=\"[^\"]*\"")) return substr(line, RSTART + length(name) + 2, RLENGTH - length(name) - 3)
            return ""
        }
        FNR == NR {
            if (match($0, /name="GRID V100D-[^"]*"/)) vname = substr($0, RSTART + 17, RLENGTH - 18)
            else if (vname != "" && $0 ~ /<devId /) {
                vdev[vname] = attr($0, "deviceId"); vsub[vname] = attr($0, "subsystemId"); vname = ""
            }
            next
        }
        match($0, /name="GRID P40-[^"]*"/) {
            suffix = substr($0, RSTART + 15, RLENGTH - 16)
            want = (suffix in bigger) ? bigger[suffix] : suffix
            dev = (want in vdev) ? vdev[want] : "0x1DB6"
            sub_id = (want in vsub) ? vsub[want] : "0x124A"
            sub(/name="GRID P40-/, "name=\"GRID V40-")
            print "        P40-" suffix " -> V40-" suffix " <- V100D-" want > "/dev/stderr"
            remap = 1
            print
            next
        }
        remap && /<devId / {
            sub(/deviceId="[^"]*"/, "deviceId=\"" dev "\"")
            sub(/subsystemId="[^"]*"/, "subsystemId=\"" sub_id "\"")
            remap = 0
        }
        { print }
    ' "$1" "$1" > "$1.tmp" && mv "$1.tmp" "$1"
    echo "... done"
}

