#!/usr/bin/python3
"""A test camera: GStreamer's RTSP server serving an H.264 Annex-B file.

usage: gst-rtsp-camera.py PORT FILE.h264
Serves rtsp://127.0.0.1:PORT/cam (shared media, plays the file once per
client at 25 fps) and prints "ready" when listening. Used by rebuild's tests
as a real, independent RTSP peer.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, path = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( filesrc location=%s ! h264parse ! video/x-h264,framerate=25/1 ! "
    "rtph264pay name=pay0 pt=96 config-interval=0 )" % path
)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit("cannot listen on port " + port)
print("ready", flush=True)
GLib.MainLoop().run()
