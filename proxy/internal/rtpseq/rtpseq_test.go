package rtpseq

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/pion/rtp"
)

func TestRoundTrip(t *testing.T) {
	in := []*rtp.Packet{
		{Header: rtp.Header{SequenceNumber: 10, Timestamp: 5}, Payload: []byte{1, 2}},
		{Header: rtp.Header{SequenceNumber: 11, Timestamp: 5, Marker: true}, Payload: []byte{3}},
		{Header: rtp.Header{SequenceNumber: 13, Timestamp: 9}, Payload: nil},
	}
	out := Decode(Encode(in), 96)
	if len(out) != 3 {
		t.Fatalf("%d packets", len(out))
	}
	wantSeq := []uint16{FirstSeq, FirstSeq + 1, FirstSeq + 3}
	wantTS := []uint32{FirstTimestamp, FirstTimestamp, FirstTimestamp + 3000}
	for i, p := range out {
		if p.SequenceNumber != wantSeq[i] || p.Timestamp != wantTS[i] || p.Marker != in[i].Marker ||
			!bytes.Equal(p.Payload, in[i].Payload) || p.PayloadType != 96 {
			t.Errorf("packet %d: %+v %x", i, p.Header, p.Payload)
		}
	}
}

func TestReorderAndClockStep(t *testing.T) {
	b := []byte{0, 0, 0, 0, 0, FlagReorder | FlagTSBack, 0, 0, 0}
	out := Decode(b, 96)
	first := uint32(FirstTimestamp)
	if out[1].SequenceNumber != FirstSeq+1-3 || out[1].Timestamp != first-3000 || out[2].SequenceNumber != FirstSeq+1 {
		t.Fatalf("%+v %+v %+v", out[0].Header, out[1].Header, out[2].Header)
	}
}

func TestReadCorpus(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("go test fuzz v1\n[]byte(\"\\x00\\x01A\")\n"), 0o644)
	got, err := ReadCorpus(dir)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], []byte{0, 1, 'A'}) {
		t.Fatalf("%q %v", got, err)
	}
	os.WriteFile(filepath.Join(dir, "b"), []byte("go test fuzz v1\nstring(\"x\")\n"), 0o644)
	if _, err := ReadCorpus(dir); err == nil {
		t.Fatal("a string corpus file was accepted")
	}
}
