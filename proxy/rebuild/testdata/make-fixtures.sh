#!/bin/sh
# Recipe for rebuild's test fixtures (run from this directory: ./make-fixtures.sh).
# sei.h264: 2 s of testsrc2 at 25 fps, 320x240, 1 s GOP, with x264's own SEI
# (its settings, user_data_unregistered, first frame) and, via h264_metadata,
# an SEI user_data_unregistered message carrying "cordon-leak-test" in every
# keyframe: the hidden data rebuild mode must remove.
set -eu
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=320x240:rate=25:duration=2" \
	-pix_fmt yuv420p -c:v libx264 -profile:v main -preset veryfast \
	-x264-params keyint=25:min-keyint=25:scenecut=0:bframes=0 -b:v 150k \
	-bsf:v "h264_metadata=sei_user_data=086f3693b7b34f2c965321492feee5b8+cordon-leak-test" \
	-f h264 sei.h264
ls -l sei.h264
# frames.mjpeg: 1 s of testsrc2 at 5 fps, 64x48, 4:2:0, as ffmpeg's MJPEG
# encoder writes it (JFIF APP0 segment, standard Huffman tables so the
# frames can cross RTP/JPEG): the camera frames of the MJPEG tests.
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=64x48:rate=5:duration=1" \
	-pix_fmt yuvj420p -c:v mjpeg -huffman default -q:v 8 -fflags +bitexact -flags +bitexact \
	-f mjpeg frames.mjpeg
ls -l frames.mjpeg
