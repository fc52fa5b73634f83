#!/usr/bin/python3
"""Writes a Broadcom TRX container (no Debian package ships a TRX tool).

usage: gen.py VERSION OUT PART...
Layout as in OpenWrt's firmware-utils trx.c: little-endian header
  magic "HDR0", len, crc32, flags (u16), version (u16), offsets[3 or 4]
partitions aligned to 4 bytes, crc32 over [12, len) without the final inversion.
"""
import struct, sys, zlib

version, out, parts = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
nofs = 3 if version == 1 else 4
hlen = 16 + 4 * nofs
body, offsets = b'', []
for p in parts:
    data = open(p, 'rb').read()
    offsets.append(hlen + len(body))
    body += data + b'\0' * (-len(data) % 4)
offsets += [0] * (nofs - len(offsets))
total = hlen + len(body)
rest = struct.pack('<HH' + 'I' * nofs, 0, version, *offsets) + body
crc = (zlib.crc32(rest) ^ 0xffffffff) & 0xffffffff
open(out, 'wb').write(struct.pack('<4sII', b'HDR0', total, crc) + rest)
