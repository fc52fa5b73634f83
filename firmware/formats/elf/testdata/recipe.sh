#!/bin/sh
# Builds the ELF fixtures with gcc from ipcam.c: a stripped dynamically linked
# executable, a relocatable object (whose extent ends with its section headers),
# and that object with a gzip member added as a section by objcopy, as kernels
# carry their initramfs (the engine must find and extract data embedded inside
# a carved ELF, not only what follows it).
# Run from this directory: sh recipe.sh
set -eu
gcc -Os -s -o elf-exec.elf ipcam.c -Wl,--build-id=none
gcc -Os -c -o elf-object.o ipcam.c
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '# embedded in .initrd by objcopy\nroot::0:0:root:/root:/bin/sh\nadmin:x:1000:1000::/home/admin:/bin/sh\n' >"$tmp/passwd"
gzip -9 -n -c "$tmp/passwd" >"$tmp/initrd.gz"
objcopy --add-section .initrd="$tmp/initrd.gz" --set-section-flags .initrd=alloc,load,readonly,data \
	elf-object.o elf-embedded-gzip.o
