// Package annexb splits H.264/H.265 Annex-B byte streams (whole clips, not
// single access units: mediacommon's AnnexB.Unmarshal bounds the NAL count
// per access unit) into NAL units.
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
