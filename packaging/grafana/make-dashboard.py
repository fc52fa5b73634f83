#!/usr/bin/env python3
"""Writes cordon.json, the Grafana dashboard, beside this script.

The panels are declared here (one line each) so the JSON stays consistent;
run it after editing and commit both. The Go test in cmd/cordon checks that
every metric the dashboard queries is one cordon exports.
"""
import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
CAM = SEL + ',camera=~"$camera"'

# (title, kind, unit, [(expr, legend)], width, height, description)
ROWS = [
    ("Cameras", [
        ("Cameras up", "stat", "none", [(f'sum(cordon_camera_up{{{SEL}}})', "up")], 4, 4,
         "Cameras whose session is playing."),
        ("Cameras not up", "stat", "none", [(f'count(cordon_camera_up{{{SEL}}} == 0) or vector(0)', "not up")], 4, 4,
         "Cameras connecting, down, idle (on demand) or refusing the credentials."),
        ("Readers", "stat", "none", [(f'sum(cordon_camera_readers{{{SEL}}})', "readers")], 4, 4,
         "Recorders and viewers attached, all cameras together."),
        ("Reader listeners", "stat", "none", [(f'min(cordon_reader_listener_up{{{SEL}}})', "{{listener}}")], 4, 4,
         "1 while every reader listener accepts connections."),
        ("Build", "stat", "none", [(f'cordon_build_info{{{SEL}}}', "{{version}}")], 8, 4,
         "The running version (cordon_build_info)."),
        ("Camera state", "state-timeline", "none", [(f'cordon_camera_up{{{CAM}}}', "{{camera}}")], 24, 8,
         "1 (up) or 0 per camera over time."),
        ("Incoming bitrate", "timeseries", "bps", [(f'cordon_camera_bitrate_bits_per_second{{{CAM}}}', "{{camera}}")], 12, 8,
         "Bits per second each camera sends to the proxy."),
        ("RTP packet loss", "timeseries", "percentunit", [(
            f'rate(cordon_camera_rtp_packets_lost_total{{{CAM}}}[5m]) / '
            f'(rate(cordon_camera_received_packets_total{{{CAM}}}[5m]) + rate(cordon_camera_rtp_packets_lost_total{{{CAM}}}[5m]))',
            "{{camera}}")], 12, 8, "Share of RTP packets lost between camera and proxy."),
        ("Reconnects", "timeseries", "none", [(f'increase(cordon_camera_reconnects_total{{{CAM}}}[15m])', "{{camera}}")], 12, 8,
         "Camera sessions that ended and were retried, per 15 minutes."),
        ("Jitter", "timeseries", "s", [(f'cordon_camera_rtp_jitter{{{CAM}}} / 90000', "{{camera}}")], 12, 8,
         "RFC 3550 interarrival jitter of the first track (90 kHz clock)."),
    ]),
    ("Readers and cleaning", [
        ("Readers per camera", "timeseries", "none", [(f'cordon_camera_readers{{{CAM}}}', "{{camera}}")], 12, 8, ""),
        ("Outgoing to readers", "timeseries", "bps", [(f'sum by (camera) (rate(cordon_reader_sent_bytes_total{{{CAM}}}[5m])) * 8', "{{camera}}")], 12, 8, ""),
        ("Reader drops", "timeseries", "pps", [(f'sum by (camera, remote) (rate(cordon_reader_dropped_packets_total{{{CAM}}}[5m]))', "{{camera}} → {{remote}}")], 12, 8,
         "Packets skipped for readers too slow to keep up (they skip to the next keyframe)."),
        ("Units dropped by the cleaner, by reason", "timeseries", "ops", [(f'sum by (reason) (rate(cordon_camera_dropped_units_total{{{CAM}}}[5m]))', "{{reason}}")], 12, 8,
         "What the stream rebuild removed (SEI, non-standard units, ...), by reason."),
        ("Frame delay (p50, p99)", "timeseries", "s", [
            (f'histogram_quantile(0.5, sum by (le) (rate(cordon_reader_frame_delay_seconds_bucket{{{SEL}}}[5m])))', "p50"),
            (f'histogram_quantile(0.99, sum by (le) (rate(cordon_reader_frame_delay_seconds_bucket{{{SEL}}}[5m])))', "p99")], 12, 8,
         "Time from a frame's last camera packet to its write to a TCP reader."),
        ("Refused and failed logins", "timeseries", "ops", [
            (f'sum by (reason) (rate(cordon_reader_refused_total{{{SEL}}}[5m]))', "refused: {{reason}}"),
            (f'rate(cordon_reader_auth_failures_total{{{SEL}}}[5m])', "failed logins")], 12, 8, ""),
    ]),
    ("Egress", [
        ("Egress alerts by kind", "timeseries", "none", [(f'sum by (kind) (increase(cordon_egress_alerts_total{{{SEL}}}[15m]))', "{{kind}}")], 12, 8,
         "Alerts raised per 15 minutes, by kind."),
        ("Egress input", "timeseries", "pps", [
            (f'rate(cordon_egress_packets_total{{{SEL}}}[5m])', "packets"),
            (f'rate(cordon_egress_flow_records_total{{{SEL}}}[5m])', "flow records"),
            (f'rate(cordon_egress_drops_total{{{SEL}}}[5m])', "malformed")], 12, 8, ""),
        ("Flow table", "timeseries", "none", [
            (f'cordon_egress_flows_active{{{SEL}}}', "active"),
            (f'increase(cordon_egress_flow_evictions_total{{{SEL}}}[15m])', "evicted / 15m")], 12, 8,
         "Flows tracked; evictions mean flows.max is too small."),
        ("Alerts not delivered", "timeseries", "none", [(f'increase(cordon_egress_alert_send_errors_total{{{SEL}}}[15m])', "send errors / 15m")], 12, 8,
         "Alerts a sink failed to take."),
    ]),
]

KINDS = {"stat": "stat", "timeseries": "timeseries", "state-timeline": "state-timeline"}


def panels():
    out, pid, y = [], 1, 0
    for row_title, items in ROWS:
        out.append({"type": "row", "title": row_title, "id": pid, "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        x, rowh = 0, 0
        for title, kind, unit, targets, w, h, desc in items:
            if x + w > 24:
                x, y, rowh = 0, y + rowh, 0
            out.append({
                "type": KINDS[kind], "title": title, "id": pid, "datasource": DS, "description": desc,
                "gridPos": {"h": h, "w": w, "x": x, "y": y},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {},
                "targets": [{"datasource": DS, "expr": e, "legendFormat": l, "refId": chr(ord("A") + i)}
                            for i, (e, l) in enumerate(targets)],
            })
            pid += 1
            x += w
            rowh = max(rowh, h)
        y += rowh
    return out


def var(name, query, multi=True):
    return {"name": name, "type": "query", "datasource": DS, "refresh": 2, "includeAll": True, "multi": multi,
            "current": {"text": "All", "value": "$__all"},
            "query": {"query": query, "refId": name}, "definition": query, "sort": 1}


dashboard = {
    "title": "Cordon",
    "uid": "cordon",
    "description": "Cordon camera proxy and egress watch (metrics from /metrics of cordon proxy and cordon egress).",
    "tags": ["cordon", "cameras"],
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "time": {"from": "now-6h", "to": "now"},
    "refresh": "30s",
    "timezone": "",
    "annotations": {"list": []},
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source",
         "current": {}, "hide": 0, "refresh": 1},
        var("instance", "label_values(cordon_build_info, instance)"),
        var("camera", 'label_values(cordon_camera_up{instance=~"$instance"}, camera)'),
    ]},
    "panels": panels(),
}

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cordon.json"), "w") as f:
    json.dump(dashboard, f, indent=2, ensure_ascii=False)
    f.write("\n")
