package firmware

import (
	"bytes"
	"context"
	"testing"
)

func TestRegions(t *testing.T) {
	data := bytes.Join([][]byte{
		bytes.Repeat([]byte{0xff}, 300), // padding
		[]byte("boot code here"),        // unknown
		bytes.Repeat([]byte{0}, 100),    // too short for padding: unknown
		[]byte("more"),
		bytes.Repeat([]byte{0}, 1000), // padding
	}, nil)
	regs, err := regions(context.Background(), bytes.NewReader(data), 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	want := []Region{
		{Offset: 0, Size: 300, Padding: "0xff"},
		{Offset: 300, Size: 14 + 100 + 4},
		{Offset: 418, Size: 1000, Padding: "0x00"},
	}
	if len(regs) != len(want) {
		t.Fatalf("regions %+v", regs)
	}
	for i := range want {
		if regs[i].Offset != want[i].Offset || regs[i].Size != want[i].Size || regs[i].Padding != want[i].Padding {
			t.Errorf("region %d = %+v, want %+v", i, regs[i], want[i])
		}
	}
	if regs[1].Entropy <= 0 || regs[1].Entropy > 8 || regs[0].Entropy != 0 {
		t.Errorf("entropies %v %v", regs[0].Entropy, regs[1].Entropy)
	}
}

func TestMatcherAcrossBlocks(t *testing.T) {
	f := &Format{Name: "m", Magics: []Magic{{Bytes: []byte("MAGIC!")}, {Offset: 0x10, Bytes: []byte("AT16")}}}
	m := newMatcher([]*Format{f})
	data := make([]byte, 3*scanBlock)
	copy(data[scanBlock-3:], "MAGIC!")    // straddles the first block boundary
	copy(data[2*scanBlock+0x10:], "AT16") // magic at an offset: chunk starts 0x10 earlier
	copy(data[len(data)-6:], "MAGIC!")    // at the very end
	copy(data[4:], "AT16")                // would start before the file: dropped
	for _, workers := range []int{1, 2, 3, 8} {
		var last int64
		cands, _, err := m.find(context.Background(), bytes.NewReader(data), int64(len(data)), workers, func(n int64) {
			if n <= last {
				t.Errorf("progress went from %d to %d", last, n)
			}
			last = n
		})
		if err != nil {
			t.Fatal(err)
		}
		if last != int64(len(data)) {
			t.Errorf("progress ended at %d", last)
		}
		want := []int64{scanBlock - 3, 2 * scanBlock, int64(len(data) - 6)}
		if len(cands) != len(want) {
			t.Fatalf("%d workers: candidates %+v", workers, cands)
		}
		for i, c := range cands {
			if c.start != want[i] {
				t.Errorf("%d workers: candidate %d at %#x, want %#x", workers, i, c.start, want[i])
			}
		}
	}
}
