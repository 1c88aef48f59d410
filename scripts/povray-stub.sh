#!/bin/bash
# A stand-in for povray in benchmarks (HTTPOV_POVRAY): parses the few options httpov passes, writes the PNG
# povray would for each frame (+O<dir>/frame + frame number padded to the digits of +KFF) and sleeps a fixed
# time per frame. scripts/bench.py copies it and sets SLEEP below; it runs inside httpov's bubblewrap sandbox,
# which shows it its interpreter (bash) and nothing else of /usr or the environment, so everything it needs is in
# this file: it sleeps by waiting on a pipe no one writes to (bash builtins only; there is no `sleep` in there).
SLEEP=0
out="" sf="" ef="" kfi=1 kff=1
for a in "$@"; do
  case "$a" in
    +O*) out="${a#+O}" ;;
    +SF*) sf="${a#+SF}" ;;
    +EF*) ef="${a#+EF}" ;;
    +KFI*) kfi="${a#+KFI}" ;;
    +KFF*) kff="${a#+KFF}" ;;
  esac
done
[ -n "$out" ] || { echo "stub povray: no +O option" >&2; exit 2; }
[ -n "$sf" ] || sf=$kfi
[ -n "$ef" ] || ef=$kff
pause() {  # sleep $SLEEP seconds with builtins: a read that times out on an idle coprocess's pipe
  [ "$SLEEP" = 0 ] && return
  coproc idle { read -r _; }
  read -r -t "$SLEEP" -u "${idle[0]}" _
  kill "$idle_PID" 2>/dev/null
}
png() {  # a 1x1 RGB PNG, written by the shell's own printf: no process per frame
  printf '\211\120\116\107\015\012\032\012\000\000\000\015\111\110\104\122\000\000\000\001\000\000\000\001\010\002\000\000\000\220\167\123\336\000\000\000\014\111\104\101\124\170\234\143\370\337\300\000\000\004\001\001\200\305\052\030\135\000\000\000\000\111\105\116\104\256\102\140\202' > "$1"
}
if [ "$kff" -le "$kfi" ]; then
  pause
  png "$out.png"
  echo "stub povray: 1 frame"
  exit 0
fi
digits=${#kff}
f=$sf
while [ "$f" -le "$ef" ]; do
  pause
  png "$(printf "%s%0${digits}d.png" "$out" "$f")"
  f=$((f + 1))
done
echo "stub povray: frames $sf-$ef"
