#!/usr/bin/env bash
# make-fixtures.sh: the nfcapd files of this folder, made by the real tools
# (softflowd 1.1.0, nfcapd/nfdump 1.7.1; no root). softflowd reads
# egress/testdata/planted.pcap and exports NetFlow v5/v9/IPFIX over loopback
# to nfcapd, which writes one file per compression:
#
#   files/nfcapd.none  NetFlow v9,  uncompressed
#   files/nfcapd.lzo   NetFlow v5,  nfcapd -z (LZO)
#   files/nfcapd.lz4   IPFIX,       nfcapd -y (LZ4)
#   files/nfcapd.bz2   NetFlow v9,  nfcapd -j (bzip2)
#
# and csv/<name>.csv is `nfdump -r FILE -o csv` of each: the records the test
# compares cordon's reading with. Run from anywhere:
#   egress/nfcapd/testdata/make-fixtures.sh
set -euo pipefail
export TZ=UTC # nfdump prints local times
here=$(cd "$(dirname "$0")" && pwd)
pcap="$here/../../testdata/planted.pcap"
work=$(mktemp -d)
trap 'kill $(cat "$work"/nfcapd.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$here/files" "$here/csv"
cp "$pcap" "$work/p.pcap" # softflowd keeps the -r name in 16 bytes

run() { # name version nfcapd-flags...
	local name=$1 version=$2
	shift 2
	local out="$work/out-$name"
	mkdir -p "$out"
	local port
	port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	nfcapd -b 127.0.0.1 -p "$port" -w "$out" -t 3600 -P "$work/nfcapd.pid" -D "$@"
	sleep 1
	(cd "$work" && timeout 30 softflowd -d -r p.pcap -n "127.0.0.1:$port" -v "$version" -a -p sf.pid -c sf.ctl >/dev/null)
	sleep 1
	kill "$(cat "$work/nfcapd.pid")"
	while [[ -e "$work/nfcapd.pid" ]]; do sleep 0.2; done
	local f
	f=$(ls "$out"/nfcapd.2* | head -1)
	cp "$f" "$here/files/nfcapd.$name"
	nfdump -r "$here/files/nfcapd.$name" -o csv >"$here/csv/$name.csv"
}

run none 9
run lzo 5 -z
run lz4 10 -y
run bz2 9 -j
ls -l "$here/files" "$here/csv"
