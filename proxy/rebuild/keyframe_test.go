package rebuild

import "testing"

// isKeyPayload is the one keyframe detector (the proxy uses Process's key
// index); it is exercised with real packetizers in the rebuild and proxy
// tests, and this table covers the aggregation and fragmentation cases.
var keyCases = []struct {
	name  string
	codec videoCodec
	p     []byte
	want  bool
}{
	{"h264 idr", codecH264, []byte{0x65, 0x88}, true},
	{"h264 sps", codecH264, []byte{0x67, 0x42}, true},
	{"h264 p slice", codecH264, []byte{0x41, 0x9a}, false},
	{"h264 stap-a sps", codecH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
	{"h264 stap-a sei only", codecH264, []byte{0x78, 0x00, 0x02, 0x06, 0x05}, false},
	{"h264 stap-a aud first", codecH264, []byte{0x78, 0x00, 0x02, 0x09, 0xf0, 0x00, 0x02, 0x67, 0x42}, true},
	{"h264 stap-a truncated", codecH264, []byte{0x78, 0x00, 0x09, 0x67}, false},
	{"h264 stap-a short", codecH264, []byte{0x78, 0x00}, false},
	{"h264 fu-a idr start", codecH264, []byte{0x7c, 0x85, 0x00}, true},
	{"h264 fu-a idr middle", codecH264, []byte{0x7c, 0x05, 0x00}, false},
	{"h264 empty", codecH264, nil, false},
	{"h265 idr_w_radl", codecH265, []byte{19 << 1, 0x01, 0xaf}, true},
	{"h265 trail", codecH265, []byte{1 << 1, 0x01, 0xaf}, false},
	{"h265 ap vps", codecH265, []byte{48 << 1, 0x01, 0x00, 0x02, 32 << 1, 0x01}, true},
	{"h265 ap aud first", codecH265, []byte{48 << 1, 0x01, 0x00, 0x03, 35 << 1, 0x01, 0x50, 0x00, 0x02, 33 << 1, 0x01}, true},
	{"h265 ap truncated", codecH265, []byte{48 << 1, 0x01, 0x00, 0x09, 32 << 1, 0x01}, false},
	{"h265 fu cra start", codecH265, []byte{49 << 1, 0x01, 0x80 | 21}, true},
	{"h265 fu cra end", codecH265, []byte{49 << 1, 0x01, 0x40 | 21}, false},
	{"h265 short", codecH265, []byte{19 << 1}, false},
}

func TestIsKeyPayload(t *testing.T) {
	for _, tc := range keyCases {
		if got := isKeyPayload(tc.codec, tc.p); got != tc.want {
			t.Errorf("%s: isKeyPayload = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzIsKeyPayload(f *testing.F) {
	for _, tc := range keyCases {
		f.Add(tc.codec == codecH265, tc.p)
	}
	f.Fuzz(func(t *testing.T, h265 bool, p []byte) {
		c := codecH264
		if h265 {
			c = codecH265
		}
		isKeyPayload(c, p)
	})
}
