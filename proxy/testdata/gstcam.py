#!/usr/bin/python3
"""A real RTSP camera for the proxy's interop tests: GStreamer's RTSP server
(python3-gi + gir1.2-gst-rtsp-server-1.0) serving videotestsrc encoded by
x264enc (or x265enc, or jpegenc for MJPEG; with B-frames; with an AAC or
G.711 u-law track from audiotestsrc) on loopback, optionally behind Basic
authentication.

usage: gstcam.py PORT PATH [USER PASS] [CODEC]
CODEC: h264 (default), h265, mjpeg, h264-bframes, h264+aac, h264+pcmu.
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
rest = sys.argv[3:]
if len(rest) >= 2:
    user, password = rest[0], rest[1]
    rest = rest[2:]
if rest:
    codec = rest[0]

h264 = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=500 ! rtph264pay name=pay0 pt=96 config-interval=-1"
audio = "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! "
enc = {
    "h264": h264,
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=500 ! rtph265pay name=pay0 pt=96 config-interval=-1",
    "mjpeg": "videoconvert ! video/x-raw,format=I420 ! jpegenc quality=50 ! rtpjpegpay name=pay0 pt=26",
    # Two B-frames between references (main profile; zerolatency would turn them off).
    "h264-bframes": "x264enc speed-preset=superfast key-int-max=25 bitrate=500 bframes=2 b-adapt=false ! "
    + "video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=-1",
    # With an audio track: AAC (RFC 3640 mpeg4-generic) or G.711 u-law.
    "h264+aac": h264 + " " + audio + "avenc_aac ! rtpmp4gpay name=pay1 pt=97",
    "h264+pcmu": h264 + " " + audio + "audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 pt=0",
}[codec]

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
