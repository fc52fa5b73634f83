#!/bin/sh
# Builds dtb.dtb from camera.dts with the device tree compiler (dtc).
# Run from this directory: sh recipe.sh
set -eu
dtc -I dts -O dtb -o dtb.dtb camera.dts
