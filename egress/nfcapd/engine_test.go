package nfcapd_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/egress/internal/enginetest"
	"github.com/cordon-vms/cordon/egress/nfcapd"
)

var policy = filepath.Join("..", "testdata", "policy.yml")

// TestEngineAgreement: the planted capture (egress/testdata/planted.pcap)
// through the packet path, and the nfcapd files softflowd and nfcapd made of
// it (NetFlow v5, v9, IPFIX) through Engine.HandleFlow, raise the same
// flow-visible alerts.
func TestEngineAgreement(t *testing.T) {
	pkt := &enginetest.Sink{}
	enginetest.RunCapture(t, enginetest.NewEngine(t, policy, pkt), filepath.Join("..", "testdata", "planted.pcap"))
	want := enginetest.Visible(pkt.Alerts())
	if len(want) < 5 {
		t.Fatalf("packet path raised only %v", want)
	}
	for _, name := range []string{"none", "lzo", "lz4", "bz2"} {
		t.Run(name, func(t *testing.T) {
			flows := &enginetest.Sink{}
			fe := enginetest.NewEngine(t, policy, flows)
			r := &nfcapd.Reader{}
			if err := r.Read(context.Background(), filepath.Join("testdata", "files", "nfcapd."+name), fe.HandleFlow); err != nil {
				t.Fatal(err)
			}
			if err := fe.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := enginetest.Visible(flows.Alerts())
			if !slices.Equal(got, want) {
				t.Errorf("nfcapd path:\n%s\npacket path:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
