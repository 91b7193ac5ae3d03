#!/usr/bin/env bash
# make-test-pki.sh DIR: build the PKI the Liaison test suite uses, in DIR.
#
# DIR is wiped and recreated (it must be empty, absent, or an earlier test
# PKI). Good certificates come from deploy/pki/liaison-pki; the "bad" ones,
# which the tool refuses to make, are minted with `openssl ca -config` on the
# CAs' own openssl.cnf.
#
#   root/ hub/ jur/{FR,DE,IT,ES}/     the CAs (see deploy/README.md)
#   broker/hub.{key,pem}              broker, DNS:localhost, IP:127.0.0.1
#   nodes/ID/{node.key,node.pem,cert.pem}
#                                     fr-pn fr-gn de-bka it-ps es-cnp
#   bad/foreign/                      fr-rogue under a separate "Rogue Root"
#                                     (whose FR CA has the real FR CA's name);
#                                     pki/ is that rogue PKI, root.pem its root
#   bad/expired/                      fr-expired, valid 2020-01-01..2021-01-01
#   bad/revoked/                      fr-revoked, revoked (listed in crl/FR)
#   bad/c-mismatch/                   C=DE, O=BKA, CN=de-fake from the FR CA
#                                     (breaks the FR name constraint)
#   bad/cn-mismatch/                  C=FR, O=PN, CN=de-bka from the FR CA
#   bad/fr-server/{server.key,server.pem}
#                                     serverAuth cert CN=hub, SAN localhost +
#                                     127.0.0.1, from the FR CA (whose EKU
#                                     forbids serverAuth)
#   bad/node-as-broker/{server.key,server.pem}
#                                     copy of nodes/fr-gn, offered as a server
#   crl/{root,hub,FR,DE,IT,ES}.crl.pem
#
# Each bad/<name>/ holds node.key, node.pem (leaf + issuing CA) and cert.pem
# (leaf only), unless noted.
#
# Environment: LIAISON_PKI (path of liaison-pki), OPENSSL.
set -euo pipefail
umask 077

PROG=${0##*/}
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
PKI_TOOL=${LIAISON_PKI:-$HERE/../../deploy/pki/liaison-pki}
OPENSSL=${OPENSSL:-openssl}
MARKER=.liaison-test-pki

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
    printf 'Usage: %s DIR\nBuild the Liaison test PKI in DIR (wiped and recreated).\n' "$PROG" >&2
    [[ $# -eq 1 ]] && exit 0
    exit 2
fi
DIR=$1

[[ -x $PKI_TOOL ]] || die "liaison-pki not found at $PKI_TOOL (set LIAISON_PKI)"
command -v "$OPENSSL" >/dev/null 2>&1 || die "openssl not found (apt-get install openssl)"

# Wipe DIR, but only if it is ours.
case $DIR in
    '' | / | . | ..) die "refusing to use '$DIR' as the test PKI directory" ;;
esac
if [[ -e $DIR ]]; then
    [[ -d $DIR ]] || die "'$DIR' exists and is not a directory"
    if [[ ! -e $DIR/$MARKER ]] && [[ -n $(ls -A -- "$DIR") ]]; then
        die "'$DIR' is not empty and was not made by $PROG; remove it yourself or choose another DIR"
    fi
    rm -rf -- "$DIR"
fi
mkdir -p -- "$DIR"
DIR=$(cd -- "$DIR" && pwd -P)
: >"$DIR/$MARKER"

pki() {
    "$PKI_TOOL" -d "$DIR" "$@" >/dev/null
}

# ssl ARGS...: openssl, quiet unless it fails.
ssl() {
    local out
    if ! out=$("$OPENSSL" "$@" 2>&1); then
        printf '%s\n' "$out" >&2
        die "openssl $1 failed"
    fi
}

# mint CA EXT SUBJ OUTDIR BASE [openssl ca options...]
#   CA is a CA directory (containing openssl.cnf and ca.pem). Writes
#   OUTDIR/BASE.key, OUTDIR/BASE.pem (leaf + CA) and OUTDIR/cert.pem (leaf).
mint() {
    local ca=$1 ext=$2 subj=$3 out=$4 base=$5
    shift 5
    mkdir -p -- "$out"
    ssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -pkeyopt ec_param_enc:named_curve -out "$out/$base.key"
    ssl req -new -config "$ca/openssl.cnf" -utf8 -key "$out/$base.key" \
        -subj "$subj" -out "$out/req.csr"
    ssl ca -config "$ca/openssl.cnf" -batch -notext -extensions "$ext" \
        -in "$out/req.csr" -out "$out/cert.pem" "$@"
    rm -f -- "$out/req.csr"
    cat "$out/cert.pem" "$ca/ca.pem" >"$out/$base.pem"
}

# The federation.
pki root --cn "Liaison Test Root CA"
pki jurisdiction FR --org "Ministère de l'Intérieur"
pki jurisdiction DE --org "Bundesministerium des Innern"
pki jurisdiction IT --org "Ministero dell'Interno"
pki jurisdiction ES --org "Ministerio del Interior"
pki hub-ca
pki broker hub --dns localhost --ip 127.0.0.1
pki node FR fr-pn --org "Police nationale"
pki node FR fr-gn --org "Gendarmerie nationale"
pki node DE de-bka --org "BKA"
pki node IT it-ps --org "Polizia di Stato"
pki node ES es-cnp --org "Policía Nacional"

FR=$DIR/jur/FR
BAD=$DIR/bad
mkdir -p -- "$BAD"

# foreign: a whole other federation whose FR CA bears the real FR CA's name.
ROGUE=$BAD/foreign/pki
"$PKI_TOOL" -d "$ROGUE" root --cn "Rogue Root" >/dev/null
"$PKI_TOOL" -d "$ROGUE" jurisdiction FR --org "Ministère de l'Intérieur" >/dev/null
"$PKI_TOOL" -d "$ROGUE" node FR fr-rogue --org "Police nationale" >/dev/null
cp -- "$ROGUE/nodes/fr-rogue/node.key" "$ROGUE/nodes/fr-rogue/node.pem" \
    "$ROGUE/nodes/fr-rogue/cert.pem" "$BAD/foreign/"
cp -- "$ROGUE/root/ca.pem" "$BAD/foreign/root.pem"

# expired: long past its notAfter.
mint "$FR" node_ext "/C=FR/O=Police nationale/CN=fr-expired" "$BAD/expired" node \
    -startdate 20200101000000Z -enddate 20210101000000Z

# revoked: issued normally, then revoked.
pki node FR fr-revoked --org "Police nationale"
mv -- "$DIR/nodes/fr-revoked" "$BAD/revoked"
pki revoke "$BAD/revoked/cert.pem" --reason keyCompromise

# c-mismatch: a German subject from the French CA (name constraint C=FR).
mint "$FR" node_ext "/C=DE/O=BKA/CN=de-fake" "$BAD/c-mismatch" node -days 365

# cn-mismatch: French subject, but a German node id.
mint "$FR" node_ext "/C=FR/O=PN/CN=de-bka" "$BAD/cn-mismatch" node -days 365

# fr-server: the FR CA trying to impersonate the hub.
LIAISON_SAN="DNS:localhost,IP:127.0.0.1" \
    mint "$FR" server_ext "/C=FR/O=Police nationale/CN=hub" "$BAD/fr-server" server -days 365

# node-as-broker: a valid node certificate offered as the broker's.
mkdir -p -- "$BAD/node-as-broker"
cp -- "$DIR/nodes/fr-gn/node.key" "$BAD/node-as-broker/server.key"
cp -- "$DIR/nodes/fr-gn/node.pem" "$BAD/node-as-broker/server.pem"
cp -- "$DIR/nodes/fr-gn/cert.pem" "$BAD/node-as-broker/cert.pem"

# Every CRL, after the revocation.
pki crl

echo "test PKI ready in $DIR"
