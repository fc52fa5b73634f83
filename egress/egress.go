// Package egress watches what cameras send — packets from a pcap file or a live
// interface, and flow records from NetFlow/IPFIX exporters — and raises alerts
// on unexpected data transfer: vendor-cloud contact, unexpected destinations,
// DNS tunnels, beacons, bulk uploads, lateral movement and new destinations.
//
// The pipeline follows goflow2's split: sources (pcap, AF_PACKET, NetFlow)
// feed an Engine, which decodes, keeps a bounded flow table, classifies each
// flow against the Policy and hands it to the detectors, declared once each
// in the ordered list Detectors (kind, severity, docs, state); their Alerts
// go to sinks (JSON lines, syslog, webhook), called outside the engine lock
// with the context of the call that completed them.
package egress

import (
	"context"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Alert is one aggregated alert, as written (one JSON object per line) to
// stdout, files, syslog and webhooks. Repeats of the same camera, kind and
// destination within a window are aggregated into one Alert with Count > 1;
// a high or critical alert is sent at once, and only its repeats are
// aggregated (into one Alert with Repeat set).
//
// Besides its own fields it carries those Suricata EVE and Elastic ECS
// consumers look for (docs/egress-io.md maps them): timestamp, event_type,
// src_ip/src_port/dest_ip/dest_port of the flow that raised it (its first
// flow, for an aggregate), proto in upper case, flow_id, community_id and a
// numeric severity_id.
type Alert struct {
	Timestamp  time.Time `json:"timestamp"`   // RFC 3339: the first occurrence (FirstSeen)
	EventType  string    `json:"event_type"`  // "alert", as EVE
	Kind       string    `json:"kind"`        // the Kind of one of Detectors
	Severity   string    `json:"severity"`    // info, low, medium, high, critical
	SeverityID int       `json:"severity_id"` // 1 info, 2 low, 3 medium, 4 high, 5 critical (OCSF severity_id)
	Camera     string    `json:"camera"`      // camera name from the policy, or its address
	Src        string    `json:"src"`         // camera address (and port where relevant)
	Dst        string    `json:"dst"`         // destination address (and port where relevant)
	Domain     string    `json:"domain,omitempty"`
	Proto      string    `json:"proto,omitempty"` // TCP, UDP, ICMP, IPV6-ICMP, ... (upper case, as EVE)
	Port       uint16    `json:"port,omitempty"`  // destination port
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	Count      uint64    `json:"count"`
	Bytes      uint64    `json:"bytes"`
	Detail     string    `json:"detail"` // human-readable: what triggered the alert, with the values
	// The flow that raised it (its first one, for an aggregate).
	SrcIP       string `json:"src_ip,omitempty"`
	SrcPort     uint16 `json:"src_port,omitempty"`
	DestIP      string `json:"dest_ip,omitempty"`
	DestPort    uint16 `json:"dest_port,omitempty"`
	FlowID      uint64 `json:"flow_id,omitempty"`      // a hash of the flow's 5-tuple (63 bits)
	CommunityID string `json:"community_id,omitempty"` // Community ID v1 of the flow (not for ICMP)
	// Repeat marks the occurrences after a high or critical alert, which
	// is sent at once (its first occurrence): they are folded into one
	// alert at the end of the aggregation window, Count of them.
	Repeat bool `json:"repeat,omitempty"`
	// Destinations lists the destinations of a roll-up (scan: the most
	// contacted, with their flow counts; lateral: every target).
	Destinations []string `json:"destinations,omitempty"`
}

// AlertSink delivers alerts somewhere. Implementations must not lose an alert
// they accepted (the webhook sink spools to disk while its receiver is down).
type AlertSink interface {
	Send(ctx context.Context, a Alert) error
	Close() error
}

// FlowKey identifies a flow by value: a comparable, pointer-free 5-tuple usable
// as a map key (after tailscale's net/flowtrack).
type FlowKey struct {
	Proto    uint8 // IP protocol number (6 TCP, 17 UDP, 1 ICMP, ...)
	Src, Dst netip.AddrPort
}

// FlowRecord is a unidirectional flow summary, as exported by NetFlow v5/v9 and
// IPFIX (or synthesised from packets for comparison).
type FlowRecord struct {
	Key      FlowKey
	Start    time.Time
	End      time.Time
	Packets  uint64
	Bytes    uint64
	TCPFlags uint8      // OR of the TCP flags seen, when exported
	Exporter netip.Addr // the device that exported the record
}

// PacketSource yields raw link-layer packets (pcap/pcapng files, AF_PACKET).
type PacketSource interface {
	// ReadPacketData returns the next packet. The data may be reused by the next
	// call. It returns io.EOF at the end of a file.
	ReadPacketData() (data []byte, ci gopacket.CaptureInfo, err error)
	// LinkType is the link-layer type of the packets (Ethernet, raw IP, Linux SLL, ...).
	LinkType() layers.LinkType
	Close() error
}

// PacketLinkTyper is a PacketSource whose packets may each have their own
// link type: a pcapng file with interfaces of several link types (say an
// Ethernet mirror port and "any", Linux cooked capture). Run asks it for
// the link type of every packet.
type PacketLinkTyper interface {
	PacketLinkType(ci gopacket.CaptureInfo) layers.LinkType
}
