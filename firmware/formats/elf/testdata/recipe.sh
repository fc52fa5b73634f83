#!/bin/sh
# Builds the ELF fixtures with gcc from ipcam.c: a stripped dynamically linked
# executable and a relocatable object (whose extent ends with its section headers).
# Run from this directory: sh recipe.sh
set -eu
gcc -Os -s -o elf-exec.elf ipcam.c -Wl,--build-id=none
gcc -Os -c -o elf-object.o ipcam.c
