#!/usr/bin/python3
"""A real RTSP camera for the proxy's interop tests: GStreamer's RTSP server
(python3-gi + gir1.2-gst-rtsp-server-1.0) serving videotestsrc encoded by
x264enc (or x265enc, or jpegenc for MJPEG; h264-bframes: with two B-frames
between references) on loopback, optionally behind Basic authentication.

usage: gstcam.py PORT PATH [USER PASS] [CODEC[+AUDIO][:KEYINT]]
CODEC: h264 (default), h265, mjpeg, h264-bframes.
AUDIO (aac or pcmu) adds a live audio track (noise, so that no two packets are
alike); KEYINT is the keyframe
interval in frames (default 25, one second).
Prints "READY <port>" once listening. PORT 0 picks a free port.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, path = sys.argv[1], sys.argv[2]
user = password = None
codec = "h264"
keyint = 25
rest = sys.argv[3:]
if len(rest) >= 2:
    user, password = rest[0], rest[1]
    rest = rest[2:]
if rest:
    codec = rest[0]
codec, _, ki = codec.partition(":")
if ki:
    keyint = int(ki)
codec, _, audio = codec.partition("+")

enc = {
    "h264": f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={keyint} bitrate=500 ! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": f"x265enc tune=zerolatency speed-preset=ultrafast key-int-max={keyint} bitrate=500 ! rtph265pay name=pay0 pt=96 config-interval=-1",
    "mjpeg": "videoconvert ! video/x-raw,format=I420 ! jpegenc quality=50 ! rtpjpegpay name=pay0 pt=26",
    # main profile; tune=zerolatency would turn B-frames off
    "h264-bframes": f"x264enc speed-preset=superfast key-int-max={keyint} bitrate=500 bframes=2 b-adapt=false ! "
    + "video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=-1",
}[codec]
audio_src = "audiotestsrc is-live=true wave=white-noise volume=0.1 ! audioconvert ! audioresample ! "
if audio:
    enc += " " + audio_src + {
        "aac": "audio/x-raw,rate=48000,channels=1 ! avenc_aac ! aacparse ! rtpmp4gpay name=pay1 pt=97",
        "pcmu": "audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 pt=0",
    }[audio]

server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 ! " + enc + " )"
)
factory.set_shared(True)
if user:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    perms = GstRtspServer.RTSPPermissions()
    perms.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
    perms.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
    factory.set_permissions(perms)
server.get_mount_points().add_factory("/" + path, factory)
server.attach(None)
print("READY", server.get_bound_port(), flush=True)
GLib.MainLoop().run()
