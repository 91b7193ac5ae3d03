#!/usr/bin/env bash
# make demo: a throwaway federation PKI with three jurisdictions, a broker on
# loopback, and two national nodes exchanging an MLA request and its reply.
# Prints a transcript, stops everything it started, exits 0 on success.
set -euo pipefail
BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
TOP=$(cd "$(dirname "$0")/../.." && pwd)
PKI_TOOL="$TOP/deploy/pki/liaison-pki"
DEMO="$BUILD/demo"
PKI="$DEMO/pki"
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# Waits (up to 10 s) until FILE contains TEXT.
wait_for() {
    local file=$1 text=$2
    for _ in $(seq 1 200); do
        grep -q -- "$text" "$file" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "demo: timed out waiting for '$text' in $file" >&2
    return 1
}

rm -rf "$DEMO"
mkdir -p "$DEMO" "$DEMO/clients"

say "1. A federation PKI: root, three jurisdictions, the hub, four nodes"
run "$PKI_TOOL" -d "$PKI" root --cn "Demo Federation Root" >/dev/null
for cc in FR DE IT; do run "$PKI_TOOL" -d "$PKI" jurisdiction "$cc" >/dev/null; done
run "$PKI_TOOL" -d "$PKI" hub-ca >/dev/null
run "$PKI_TOOL" -d "$PKI" broker hub --dns localhost --ip 127.0.0.1 >/dev/null
run "$PKI_TOOL" -d "$PKI" node FR fr-pn --org "Police nationale" >/dev/null
run "$PKI_TOOL" -d "$PKI" node DE de-bka --org "Bundeskriminalamt" >/dev/null
run "$PKI_TOOL" -d "$PKI" node IT it-ps --org "Polizia di Stato" >/dev/null
run "$PKI_TOOL" -d "$PKI" node FR fr-gn --org "Gendarmerie nationale" >/dev/null

say "2. The broker, on a free loopback port, under the sample routing policy"
run "$BUILD/liaisond" check-rules "$TOP/deploy/liaison.rules"
cat > "$DEMO/liaisond.cfg" <<CFG
liaisond
    endpoint = tcp://127.0.0.1:*
    state_dir = $DEMO/state
    rules = $TOP/deploy/liaison.rules
    tls
        cert = $PKI/broker/hub.pem
        key = $PKI/broker/hub.key
        ca = $PKI/root/ca.pem
        crl_dir = $PKI/crl
CFG
"$BUILD/liaisond" -c "$DEMO/liaisond.cfg" 2> "$DEMO/liaisond.log" &
broker=$!
pids+=("$broker")
wait_for "$DEMO/liaisond.log" "event=ready"
ENDPOINT=$(cat "$DEMO/state/ready")
echo "liaisond (pid $broker) listening on $ENDPOINT"

export LIAISON_ENDPOINT=$ENDPOINT LIAISON_CA=$PKI/root/ca.pem LIAISON_HUB_CA=$PKI/hub/ca.pem
as_node() {  # as_node NODE COMMAND...: run the CLI with that node's identity
    local node=$1; shift
    LIAISON_CERT=$PKI/nodes/$node/node.pem LIAISON_KEY=$PKI/nodes/$node/node.key \
        LIAISON_STATE_DIR=$DEMO/clients/$node "$BUILD/liaison" "$@"
}

say "3. The BKA (de-bka) waits for requests"
as_node de-bka recv --count 1 --wait-ms 15000 > "$DEMO/de-bka.out" 2>&1 &
pids+=($!)
bka=$!
wait_for "$DEMO/liaisond.log" "event=receiver node=de-bka"
echo "de-bka is the receiver for its node"

say "4. The Police nationale (fr-pn) sends an urgent MLA request to the BKA"
printf '$ liaison send --to de-bka --type mla-request --priority urgent --basis eio ...\n'
as_node fr-pn send --to de-bka --type mla-request --priority urgent --tlp amber \
    --handling h2 --basis eio --case-ref FR-2026-0042 --deadline 3d \
    --body "Request for subscriber data of +49 151 0000 0000 (fraud ring, case FR-2026-0042)"
wait "$bka"
echo; echo "-- what de-bka received:"
cat "$DEMO/de-bka.out"
REQ=$(sed -n 's/^message \([0-9a-f]\{32\}\) from.*/\1/p' "$DEMO/de-bka.out")

say "5. The BKA replies; the Police nationale receives the reply"
as_node fr-pn recv --count 1 --wait-ms 15000 > "$DEMO/fr-pn.out" 2>&1 &
pids+=($!)
pn=$!
wait_for "$DEMO/liaisond.log" "event=receiver node=fr-pn"
printf '$ liaison send --to fr-pn --type mla-reply --reply-to %s ...\n' "$REQ"
as_node de-bka send --to fr-pn --type mla-reply --reply-to "$REQ" --tlp amber --handling h2 \
    --basis eio --case-ref DE-2026-77 --body "Executed: subscriber data attached under H2."
wait "$pn"
echo; echo "-- what fr-pn received:"
cat "$DEMO/fr-pn.out"
echo
printf '$ liaison trail %s --verify-dir pki/nodes   (as fr-pn)\n' "$REQ"
as_node fr-pn trail "$REQ" --verify-dir "$PKI/nodes"
echo "-- the reply stopped the 3-day clock: fr-pn has no open deadline"
as_node fr-pn deadlines

say "6. The routing policy: what a case lead to the group eu stands for"
printf '$ liaison resolve --to eu --type case-lead --tlp green --basis eu-2023-977\n'
as_node it-ps resolve --to eu --type case-lead --tlp green --basis eu-2023-977 || true
printf '\n$ liaisond explain --rules deploy/liaison.rules --from it-ps --to fr-gn --type case-lead\n'
"$BUILD/liaisond" explain --rules "$TOP/deploy/liaison.rules" --from it-ps --to fr-gn \
    --type case-lead --tlp green || true

say "7. A case lead without a legal basis is refused by the policy, with the rule"
set +e
as_node it-ps send --to fr-gn --type case-lead --tlp green --body "IBAN IT60 X054 2811 1010 0000 0123 456"
rc=$?
echo "(exit code $rc: 3 means refused for some recipient)"
echo
echo "-- the same under the EU information-exchange directive: allowed; fr-gn is offline,"
echo "   so it waits in fr-gn's mailbox at the broker"
as_node it-ps send --to fr-gn --type case-lead --tlp green --basis eu-2023-977 \
    --body "IBAN IT60 X054 2811 1010 0000 0123 456"
rc=$?
set -e
echo "(exit code $rc)"
echo
echo '$ liaison mailbox   (as fr-gn, when it comes online)'
as_node fr-gn mailbox
echo '$ liaison recv --count 1   (as fr-gn)'
as_node fr-gn recv --count 1 --wait-ms 15000

say "8. The broker's log, one line per event"
kill -TERM "$broker"
wait "$broker"
status=$?
cat "$DEMO/liaisond.log"
echo
echo "liaisond stopped with exit code $status; demo complete (files in $DEMO)"
exit "$status"
