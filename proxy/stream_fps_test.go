package proxy

import (
	"math"
	"testing"
)

func TestFPSMeter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ts    []uint32 // one window's video packet timestamps
		clock uint32
		want  float64
	}{
		{"25 fps, 2 packets a frame", []uint32{0, 0, 3600, 3600, 7200, 10800, 14400}, 90000, 25},
		{"30 fps across wrap", []uint32{math.MaxUint32 - 2999, 0x0, 2999}, 90000, 30},
		{"B-frames out of order", []uint32{0, 10800, 3600, 7200, 21600, 14400, 18000}, 90000, 25},
		{"one packet: no rate", []uint32{5}, 90000, 0},
		{"nothing", nil, 90000, 0},
		{"absurd", []uint32{0, 1}, 90000, 0},
	} {
		var m fpsMeter
		for _, ts := range tc.ts {
			m.observe(ts, tc.clock)
		}
		m.sample()
		if got := m.value(); math.Abs(got-tc.want) > 0.01 {
			t.Errorf("%s: %.3f fps, want %.3f", tc.name, got, tc.want)
		}
	}
	// The next window continues from the last timestamp; no packets: 0.
	var m fpsMeter
	for i := range uint32(26) {
		m.observe(i*3600, 90000)
	}
	m.sample()
	for i := uint32(26); i < 36; i++ {
		m.observe(i*3600, 90000)
	}
	m.sample()
	if got := m.value(); got != 25 {
		t.Errorf("second window %.2f fps, want 25", got)
	}
	m.sample()
	if got := m.value(); got != 0 {
		t.Errorf("empty window %.2f fps, want 0", got)
	}
}
