#!/bin/sh
# Recipe for the clips embedded in camsim (run from this directory: ./make-clips.sh).
# Each clip is 2 s of ffmpeg's testsrc2 pattern at 25 fps with a 1 s GOP (keyframe every
# 25 frames, an IDR/IRAP repeating SPS/PPS(/VPS)), no B-frames (decode order = display
# order), one access unit delimiter per frame (camsim splits frames on it) and no SEI
# (x264/x265 write their settings into SEI; a simulated camera should not). Raw Annex-B.
set -eu
enc() { # codec size rate out
	codec=$1 size=$2 rate=$3 out=$4
	if [ "$codec" = h264 ]; then
		cv="-c:v libx264 -profile:v main -preset veryfast -tune zerolatency -x264-params keyint=25:min-keyint=25:scenecut=0:bframes=0:aud=1"
		bsf="filter_units=remove_types=6"
		fmt=h264
	else
		cv="-c:v libx265 -preset veryfast -tune zerolatency -x265-params keyint=25:min-keyint=25:scenecut=0:bframes=0:aud=1:repeat-headers=1:info=0:log-level=error"
		bsf="filter_units=remove_types=39|40"
		fmt=hevc
	fi
	ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=$size:rate=25:duration=2" \
		-pix_fmt yuv420p $cv -b:v "$rate" -maxrate "$rate" -bufsize "$rate" -bsf:v "$bsf" -f "$fmt" "$out"
}
for codec in h264 h265; do
	enc $codec 640x360 100k $codec-640x360.$codec
	enc $codec 1280x720 150k $codec-1280x720.$codec
	enc $codec 1920x1080 200k $codec-1920x1080.$codec
done
ls -l *.h264 *.h265
