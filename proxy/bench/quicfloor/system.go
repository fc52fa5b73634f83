package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/quic-go/quic-go"
)

// system is one way of moving the flows, with its variants.
type system struct {
	name string
	base string // tcp, tls, quic, quicn, dgram, dgramn
	gro  bool   // receiver reads with UDP_GRO
	win  bool   // large windows from the start
	mtu  bool   // 1452-byte packets from the start, no PMTUD

	sendEnv, recvEnv []string
}

func parseSystem(name string) (system, error) {
	parts := strings.Split(name, "+")
	s := system{name: name, base: parts[0]}
	switch s.base {
	case "tcp", "tls", "quic", "quicn", "dgram", "dgramn":
	default:
		return s, fmt.Errorf("system %q: unknown base %q", name, s.base)
	}
	both := func(kv string) {
		s.sendEnv = append(s.sendEnv, kv)
		s.recvEnv = append(s.recvEnv, kv)
	}
	for _, v := range parts[1:] {
		switch v {
		case "gro":
			s.gro = true
		case "win":
			s.win = true
		case "mtu":
			s.mtu = true
		case "nogso":
			both("QUIC_GO_DISABLE_GSO=1")
		case "p1":
			both("GOMAXPROCS=1")
		case "sp1":
			s.sendEnv = append(s.sendEnv, "GOMAXPROCS=1")
		case "rp1":
			s.recvEnv = append(s.recvEnv, "GOMAXPROCS=1")
		case "gc400":
			both("GOGC=400")
		case "sysmon":
			both("GODEBUG=schedtrace=2147483647")
		default:
			return s, fmt.Errorf("system %q: unknown variant %q", name, v)
		}
	}
	if !s.isQUIC() && (s.gro || s.win || s.mtu) {
		return s, fmt.Errorf("system %q: gro, win and mtu are QUIC variants", name)
	}
	return s, nil
}

func (s system) isQUIC() bool { return s.base != "tcp" && s.base != "tls" }

func (s system) datagrams() bool { return s.base == "dgram" || s.base == "dgramn" }

// connPerFlow reports whether each flow has its own QUIC connection.
func (s system) connPerFlow() bool { return s.base == "quicn" || s.base == "dgramn" }

// quicConfig is the trunk's (trunkQUICConfig) with the system's variants.
func (s system) quicConfig() *quic.Config {
	c := &quic.Config{
		HandshakeIdleTimeout: 30 * time.Second,
		MaxIdleTimeout:       30 * time.Second,
		KeepAlivePeriod:      10 * time.Second,
		MaxIncomingStreams:   4096,
		EnableDatagrams:      true,
	}
	if s.win {
		c.InitialStreamReceiveWindow = 16 << 20
		c.MaxStreamReceiveWindow = 16 << 20
		c.InitialConnectionReceiveWindow = 24 << 20
		c.MaxConnectionReceiveWindow = 24 << 20
	}
	if s.mtu {
		c.InitialPacketSize = 1452
		c.DisablePathMTUDiscovery = true
	}
	return c
}
