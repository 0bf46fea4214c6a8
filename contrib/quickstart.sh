#!/bin/bash
# README's first command: install what is missing, build, and run the main
# job on a demo store inside the working tree: init, snapshot a sample tree
# twice (the second time after a small change), list the stamps.
set -euo pipefail
cd "$(dirname "$0")/.."

contrib/install-deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

stamp=build/tools/stamp
demo=build/demo
rm -rf "$demo"
mkdir -p "$demo/data/db"
cp -a store tools README.md "$demo/data/"
sqlite3 "$demo/data/db/app.db" "PRAGMA journal_mode=WAL;
        CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
        INSERT INTO notes(body) SELECT printf('note %d: %s', i, hex(randomblob(64))) FROM n;" >/dev/null

echo "== stamp init $demo/store"
"$stamp" init "$demo/store"
echo "== stamp snapshot $demo/data"
"$stamp" --store "$demo/store" snapshot --tag demo "$demo/data"
sqlite3 "$demo/data/db/app.db" "UPDATE notes SET body = 'edited' WHERE id % 500 = 0;"
echo "== stamp snapshot $demo/data (after editing 40 rows)"
"$stamp" --store "$demo/store" snapshot --tag demo "$demo/data"
echo "== stamp list"
"$stamp" --store "$demo/store" list
echo
echo "Try: $stamp --store $demo/store show latest"
echo "     $stamp --store $demo/store cat latest README.md | head"
