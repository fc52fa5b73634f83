#!/usr/bin/python3
"""Writes a Hikvision digicap.dav following the public SWKH layout.

usage: gen.py OUT.dav NAME=FILE...      SWKH package of the given files
       gen.py --03kh OUT.dav            an 03KH-style package: readable first words, the rest
                                        deterministic pseudo-random bytes standing in for AES output
The first header_len bytes are XOR-obfuscated: plain[i] = enc[i] ^ key[(i + (i >> 4)) & 15].
"""
import hashlib, struct, sys

KEY = bytes.fromhex('BACDBCFED6CADDD3BAB9A3ABBFCBB5BE')

def xor(b):
    return bytes(c ^ KEY[(i + (i >> 4)) & 15] for i, c in enumerate(b))

def swkh(out, files):
    n = len(files)
    header_len = 0x40 + 44 * n
    body, entries, off = b'', b'', header_len
    for name, data in files:
        entries += struct.pack('<32sIII', name.encode(), off, len(data), sum(data) & 0xffffffff)
        body += data
        off += len(data)
    fixed = struct.pack('<4sIIIIII', b'SWKH', 0, header_len, n, 1, 2, 1)
    fixed += b'V5.5.0 build 170725'.ljust(0x40 - len(fixed), b'\0')
    hdr = bytearray(fixed + entries)
    struct.pack_into('<I', hdr, 4, sum(hdr[12:]) & 0xffffffff)
    open(out, 'wb').write(xor(bytes(hdr)) + body)

def kh03(out):
    n, header_len = 3, 0x40 + 44 * 3
    words = struct.pack('<4sIII', b'03KH', 0x1234, header_len, n)
    stream, seed = b'', b'cordon-03kh'
    while len(stream) < 4096:
        seed = hashlib.sha256(seed).digest()
        stream += seed
    open(out, 'wb').write(xor(words + stream[:header_len - 16]) + stream[header_len:4096])

if sys.argv[1] == '--03kh':
    kh03(sys.argv[2])
else:
    files = []
    for arg in sys.argv[2:]:
        name, path = arg.split('=', 1)
        files.append((name, open(path, 'rb').read()))
    swkh(sys.argv[1], files)
