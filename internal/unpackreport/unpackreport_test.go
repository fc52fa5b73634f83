package unpackreport

import "testing"

func TestGapString(t *testing.T) {
	for _, tc := range []struct {
		g    Gap
		want string
	}{
		{Gap{Offset: 0x40, Size: 100, Format: "gzip", Status: GapFailed, Reason: "unexpected EOF"}, "image@0x40: gzip (100 bytes) failed: unexpected EOF"},
		{Gap{File: "a.extract/x", Offset: 0, Format: "cramfs", Status: GapIdentified, Reason: "no extractor"}, "a.extract/x@0x0: cramfs identified, not extracted: no extractor"},
	} {
		if got := tc.g.String(); got != tc.want {
			t.Errorf("%q, want %q", got, tc.want)
		}
	}
}
