#!/bin/sh
# Recipe for camsim's clips. Run from this directory with no argument to remake
# the embedded ladder (./make-clips.sh), or with "CODEC WxH RATE OUT" to make one
# clip (cordon bench runs it that way, embedded in cordon, to fill its clip cache).
#
# Each clip is real encoded video at its bit rate, with no filler data: 2 s of
# ffmpeg's testsrc2 pattern at 25 fps with temporal noise added (so that every
# frame carries detail the encoder must spend bits on, as a camera's sensor noise
# does), encoded with libx264 (Main) or libx265 (Main) in average-bit-rate mode
# with a 1 s VBV buffer. One GOP of 2 s (a keyframe every 50 frames, as cameras
# use; an IDR/IRAP repeating SPS/PPS(/VPS)), no B-frames (decode order = display
# order), one access unit delimiter per frame (camsim splits frames on it and
# sends it, as many cameras do) and no SEI (x264/x265 write their settings into
# SEI; a camera does not). Raw Annex-B. The embedded clips are named
# <codec>-<W>x<H>.<codec> (one per size, 500k, 2M and 4M); cordon names those it
# makes <codec>-<W>x<H>-<rate>.<codec>.
set -eu
enc() { # codec size rate out
	codec=$1 size=$2 rate=$3 out=$4
	case $codec in
	h264)
		cv="-c:v libx264 -profile:v main -preset veryfast -x264-params keyint=50:min-keyint=50:scenecut=0:bframes=0:aud=1:nal-hrd=none"
		bsf="filter_units=remove_types=6"
		fmt=h264
		;;
	h265)
		cv="-c:v libx265 -profile:v main -preset veryfast -x265-params keyint=50:min-keyint=50:scenecut=0:bframes=0:aud=1:repeat-headers=1:info=0:log-level=error"
		bsf="filter_units=remove_types=39|40"
		fmt=hevc
		;;
	*)
		echo "make-clips.sh: codec $codec: want h264 or h265" >&2
		exit 2
		;;
	esac
	# shellcheck disable=SC2086 # $cv is a list of options
	ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=$size:rate=25:duration=2" \
		-vf "noise=alls=16:allf=t" -pix_fmt yuv420p $cv -b:v "$rate" -maxrate "$rate" -bufsize "$rate" \
		-bsf:v "$bsf" -f "$fmt" "$out"
}
if [ $# -eq 4 ]; then
	enc "$@"
	exit 0
fi
if [ $# -ne 0 ]; then
	echo "usage: make-clips.sh [CODEC WxH RATE OUT]" >&2
	exit 2
fi
rm -f ./*.h264 ./*.h265
for codec in h264 h265; do
	enc $codec 640x360 500k $codec-640x360.$codec
	enc $codec 1280x720 2M $codec-1280x720.$codec
	enc $codec 1920x1080 4M $codec-1920x1080.$codec
done
ls -l ./*.h264 ./*.h265
