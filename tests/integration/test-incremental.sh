#!/bin/bash
# One changed byte in a 100 MB file costs a few chunks, not the file.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

mkdir "$WORK/src"
head -c 100000000 /dev/urandom >"$WORK/src/big"
S="$WORK/store"
"$STAMP" init "$S" >/dev/null
"$STAMP" --store "$S" -q snapshot "$WORK/src" >/dev/null
printf 'X' | dd of="$WORK/src/big" bs=1 seek=54321987 conv=notrunc status=none
"$STAMP" --store "$S" --json -q snapshot "$WORK/src" >"$WORK/rec.json"
chunks=$(json_field "$WORK/rec.json" new_chunks)
bytes=$(json_field "$WORK/rec.json" new_bytes)
echo "one byte changed: $chunks new chunks, $bytes new bytes"
[ "$chunks" -le 3 ] || fail "$chunks new chunks for one changed byte"
[ "$bytes" -le 1000000 ] || fail "$bytes new bytes for one changed byte"
ST=$(json_field "$WORK/rec.json" stamp)
"$STAMP" --store "$S" cat "$ST" big | cmp - "$WORK/src/big" || fail "content differs"

# An insertion near the start shifts everything: content-defined chunking resyncs.
python3 - "$WORK/src/big" <<'PY'
import sys
p = sys.argv[1]
d = open(p, 'rb').read()
open(p, 'wb').write(d[:1000] + b'inserted' * 10 + d[1000:])
PY
"$STAMP" --store "$S" --json -q snapshot "$WORK/src" >"$WORK/rec.json"
chunks=$(json_field "$WORK/rec.json" new_chunks)
echo "80 bytes inserted: $chunks new chunks"
[ "$chunks" -le 4 ] || fail "$chunks new chunks after an insertion"
echo "incremental ok"
