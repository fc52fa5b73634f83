// Package annexb handles H.264/H.265 byte-stream details shared by camsim
// and rebuild: splitting Annex-B streams (whole clips, not single access
// units: mediacommon's AnnexB.Unmarshal bounds the NAL count per access
// unit) into NAL units, and emulation prevention (mediacommon only removes it).
package annexb

// Split splits a byte stream at 3- and 4-byte start codes. Bytes before the
// first start code are ignored; the returned NAL units share b's memory.
func Split(b []byte) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i+2 < len(b); {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				end := i
				if end > start && b[end-1] == 0 {
					end--
				}
				out = append(out, b[start:end])
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 && start < len(b) {
		out = append(out, b[start:])
	}
	return out
}

// AppendEmulationPrevention appends rbsp to b, inserting an
// emulation_prevention_three_byte after two zero bytes followed by a byte <= 3.
func AppendEmulationPrevention(b, rbsp []byte) []byte {
	zeros := 0
	for _, c := range rbsp {
		if zeros >= 2 && c <= 3 {
			b = append(b, 3)
			zeros = 0
		}
		b = append(b, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return b
}
