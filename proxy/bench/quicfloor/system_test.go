package main

import (
	"slices"
	"testing"
)

func TestParseSystem(t *testing.T) {
	s, err := parseSystem("quicn+gro+sp1+sysmon")
	if err != nil {
		t.Fatal(err)
	}
	if !s.gro || !s.connPerFlow() || s.datagrams() || !s.isQUIC() {
		t.Fatalf("parsed %+v", s)
	}
	if !slices.Equal(s.sendEnv, []string{"GOMAXPROCS=1", "GODEBUG=schedtrace=2147483647"}) ||
		!slices.Equal(s.recvEnv, []string{"GODEBUG=schedtrace=2147483647"}) {
		t.Fatalf("env: send %q, recv %q", s.sendEnv, s.recvEnv)
	}
	for _, bad := range []string{"udp", "quic+fast", "tcp+gro", "tls+win"} {
		if _, err := parseSystem(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
