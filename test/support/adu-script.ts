/**
 * The test devices' install script, in ADU's `microsoft/script:1` conventions, shared by the agent's
 * integration tests and the end-to-end tests. `--state <dir>` is where it leaves its side effects:
 * every call in `calls.log`, an `installed-<criteria><component>` mark per install (which
 * is-installed answers 900 for), and `<criteria><component>.pid` (written before the call is
 * logged, so a test that saw the call can read the pid). `--sleep <s>` makes the install slow;
 * `--fail-on install` makes it fail with extended code 42.
 */
export const aduTestScript = `#!/bin/sh
action="$1"; shift
while [ $# -gt 0 ]; do
  case "$1" in
    --result-file) result="$2"; shift;;
    --installed-criteria) criteria="$2"; shift;;
    --state) state="$2"; shift;;
    --component) comp="$2"; shift;;
    --fail-on) failon="$2"; shift;;
    --sleep) sleepfor="$2"; shift;;
  esac
  shift
done
echo $$ > "$state/$criteria$comp.pid"
echo "$action $criteria $comp" >> "$state/calls.log"
erc=0
case "$action" in
  --action-is-installed) if [ -f "$state/installed-$criteria$comp" ]; then code=900; else code=901; fi;;
  --action-download) code=500;;
  --action-install)
    if [ -n "$sleepfor" ]; then sleep "$sleepfor"; fi
    if [ "$failon" = install ]; then code=0; erc=42; else echo "$criteria $comp" > "$state/installed-$criteria$comp"; code=600; fi;;
  --action-apply) code=700;;
  --action-cancel) code=800;;
  *) code=0; erc=1;;
esac
printf '{"resultCode":%s,"extendedResultCode":%s,"resultDetails":"%s"}' "$code" "$erc" "$action" > "$result"
`;
