#!/usr/bin/python3
"""A GStreamer RTSP reader for the proxy's interop tests: rtspsrc (over TCP or
UDP) with every stream it offers decoded by decodebin, for SECONDS after the
first RTP packet (python3-gi).

usage: gstread.py URL tcp|udp SECONDS
Prints one JSON object: {"streams": [{"media", "encoding", "rtp" (packets),
"lost" (sequence numbers never seen, after the jitter buffer), "late"
(packets older than the one before), "decoded" (buffers out of the decoder)}],
"errors": [...]}.
"""
import json
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtp", "1.0")
from gi.repository import GLib, Gst, GstRtp  # noqa: E402

Gst.init(None)
url, proto, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])

pipeline = Gst.Pipeline.new("reader")
src = Gst.ElementFactory.make("rtspsrc")
src.set_property("location", url)
src.set_property("protocols", {"tcp": "tcp", "udp": "udp"}[proto])
src.set_property("latency", 200)
pipeline.add(src)
streams = []
errors = []
loop = GLib.MainLoop()
started = [False]


def stop():
    loop.quit()
    return False


def on_rtp(pad, info, st):
    buf = info.get_buffer()
    ok, rtp = GstRtp.RTPBuffer.map(buf, Gst.MapFlags.READ)
    if ok:
        seq = rtp.get_seq()
        rtp.unmap()
        st["rtp"] += 1
        if st["next"] is not None:
            d = (seq - st["next"]) & 0xFFFF
            if d >= 0x8000:
                st["late"] += 1
                return Gst.PadProbeReturn.OK
            st["lost"] += d
        st["next"] = (seq + 1) & 0xFFFF
        if not started[0]:
            started[0] = True
            GLib.timeout_add(int(seconds * 1000), stop)
    return Gst.PadProbeReturn.OK


def on_decoded(pad, info, st):
    st["decoded"] += 1
    return Gst.PadProbeReturn.OK


def on_decoded_pad(dec, pad, st):
    sink = Gst.ElementFactory.make("fakesink")
    sink.set_property("sync", False)
    pipeline.add(sink)
    sink.sync_state_with_parent()
    pad.link(sink.get_static_pad("sink"))
    pad.add_probe(Gst.PadProbeType.BUFFER, on_decoded, st)


def on_pad(_, pad):
    s = pad.get_current_caps().get_structure(0)
    st = {"media": s.get_string("media"), "encoding": s.get_string("encoding-name"),
          "rtp": 0, "lost": 0, "late": 0, "decoded": 0, "next": None}
    streams.append(st)
    pad.add_probe(Gst.PadProbeType.BUFFER, on_rtp, st)
    dec = Gst.ElementFactory.make("decodebin")
    dec.connect("pad-added", on_decoded_pad, st)
    pipeline.add(dec)
    dec.sync_state_with_parent()
    pad.link(dec.get_static_pad("sink"))


def on_message(_, msg):
    if msg.type == Gst.MessageType.ERROR:
        err, _ = msg.parse_error()
        errors.append(err.message)
        loop.quit()
    elif msg.type == Gst.MessageType.EOS:
        loop.quit()


src.connect("pad-added", on_pad)
bus = pipeline.get_bus()
bus.add_signal_watch()
bus.connect("message", on_message)
GLib.timeout_add(int((seconds + 15) * 1000), stop)  # no packet at all
pipeline.set_state(Gst.State.PLAYING)
loop.run()
pipeline.set_state(Gst.State.NULL)
for st in streams:
    del st["next"]
print(json.dumps({"streams": streams, "errors": errors}), flush=True)
