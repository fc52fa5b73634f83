package rebuild

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/cordon-vms/cordon/proxy/internal/annexb"
)

// seiNames maps the SEI payload type names accepted in Config.KeepSEI to
// their numbers (H.264 Annex D and H.265 Annex D; the first 7 are shared).
var seiNames = map[string]int{
	"buffering_period":                     0,
	"pic_timing":                           1,
	"pan_scan_rect":                        2,
	"filler_payload":                       3,
	"user_data_registered":                 4,
	"user_data_unregistered":               5,
	"recovery_point":                       6,
	"dec_ref_pic_marking_repetition":       7,
	"spare_pic":                            8,
	"scene_info":                           9,
	"sub_seq_info":                         10,
	"full_frame_freeze":                    13,
	"full_frame_snapshot":                  15,
	"film_grain_characteristics":           19,
	"frame_packing_arrangement":            45,
	"display_orientation":                  47,
	"mastering_display_colour_volume":      137,
	"content_light_level_info":             144,
	"alternative_transfer_characteristics": 147,
	"active_parameter_sets":                129,
	"decoding_unit_info":                   130,
	"decoded_picture_hash":                 132,
	"time_code":                            136,
}

// SEINames returns the SEI payload type names Config.KeepSEI accepts, sorted.
func SEINames() []string {
	out := make([]string, 0, len(seiNames))
	for n := range seiNames {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// seiRule says which SEI messages survive: a payload type, and for
// user_data_unregistered optionally one UUID.
type seiRule struct {
	typ  int
	uuid []byte // nil: any
}

// parseKeepSEI parses Config.KeepSEI entries: a name from SEINames, a
// number ("5"), or "user_data_unregistered=<uuid>" to keep only the user
// data of one UUID (for example ONVIF signed video's).
func parseKeepSEI(names []string) ([]seiRule, error) {
	var rules []seiRule
	for _, n := range names {
		name, uuid, hasUUID := strings.Cut(strings.TrimSpace(n), "=")
		typ, ok := seiNames[name]
		if !ok {
			var v int
			if _, err := fmt.Sscanf(name, "%d", &v); err != nil || v < 0 || v > 1023 || fmt.Sprint(v) != name {
				return nil, fmt.Errorf("rebuild: keep_sei %q: unknown SEI payload type (known: %s, or a number)", n, strings.Join(SEINames(), ", "))
			}
			typ = v
		}
		r := seiRule{typ: typ}
		if hasUUID {
			if typ != 5 {
				return nil, fmt.Errorf("rebuild: keep_sei %q: a UUID only applies to user_data_unregistered", n)
			}
			b, err := hex.DecodeString(strings.ReplaceAll(uuid, "-", ""))
			if err != nil || len(b) != 16 {
				return nil, fmt.Errorf("rebuild: keep_sei %q: UUID must be 32 hex digits", n)
			}
			r.uuid = b
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// seiMessage is one SEI message inside a SEI NAL unit's RBSP.
type seiMessage struct {
	typ     int
	payload []byte
}

var errSEI = errors.New("malformed SEI")

// maxSEIMessages bounds the messages parsed from one SEI NAL unit.
const maxSEIMessages = 64

// parseSEI parses the SEI messages of a SEI NAL unit (H.264 Rec. 7.3.2.3,
// H.265 Rec. 7.3.5) whose header is hdrLen bytes long.
func parseSEI(nalu []byte, hdrLen int) ([]seiMessage, error) {
	if len(nalu) <= hdrLen {
		return nil, errSEI
	}
	rbsp := h264.EmulationPreventionRemove(nalu[hdrLen:])
	var msgs []seiMessage
	p := 0
	for {
		// more_rbsp_data: stop at the rbsp_trailing_bits (0x80 then zero bytes).
		if p >= len(rbsp) || (rbsp[p] == 0x80 && allZero(rbsp[p+1:])) {
			return msgs, nil
		}
		if len(msgs) == maxSEIMessages {
			return nil, errSEI
		}
		typ, ok := seiVarint(rbsp, &p)
		if !ok {
			return nil, errSEI
		}
		size, ok := seiVarint(rbsp, &p)
		if !ok || size > len(rbsp)-p {
			return nil, errSEI
		}
		msgs = append(msgs, seiMessage{typ: typ, payload: rbsp[p : p+size]})
		p += size
	}
}

// seiVarint reads an SEI payload type or size: 0xFF bytes add 255 each,
// the last byte is added as is.
func seiVarint(b []byte, p *int) (int, bool) {
	v := 0
	for {
		if *p >= len(b) || v > 1<<24 {
			return 0, false
		}
		c := b[*p]
		*p++
		v += int(c)
		if c != 0xff {
			return v, true
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// keep reports whether msg survives the rules.
func keepSEI(rules []seiRule, msg seiMessage) bool {
	for _, r := range rules {
		if r.typ != msg.typ {
			continue
		}
		if r.uuid == nil || (len(msg.payload) >= 16 && bytes.Equal(msg.payload[:16], r.uuid)) {
			return true
		}
	}
	return false
}

// marshalSEI builds a SEI NAL unit with header hdr holding msgs, with
// emulation prevention.
func marshalSEI(hdr []byte, msgs []seiMessage) []byte {
	var rbsp []byte
	for _, m := range msgs {
		rbsp = appendSEIVarint(rbsp, m.typ)
		rbsp = appendSEIVarint(rbsp, len(m.payload))
		rbsp = append(rbsp, m.payload...)
	}
	rbsp = append(rbsp, 0x80)
	out := append([]byte(nil), hdr...)
	return annexb.AppendEmulationPrevention(out, rbsp)
}

func appendSEIVarint(b []byte, v int) []byte {
	for v >= 255 {
		b = append(b, 0xff)
		v -= 255
	}
	return append(b, byte(v))
}

// filterSEI returns the SEI NAL unit reduced to the messages the rules keep
// (nil when none is kept), and the number of messages dropped.
func filterSEI(nalu []byte, hdrLen int, rules []seiRule) ([]byte, int, error) {
	msgs, err := parseSEI(nalu, hdrLen)
	if err != nil {
		return nil, 0, err
	}
	kept := msgs[:0:0]
	for _, m := range msgs {
		if keepSEI(rules, m) {
			kept = append(kept, m)
		}
	}
	if len(kept) == 0 {
		return nil, len(msgs), nil
	}
	return marshalSEI(nalu[:hdrLen], kept), len(msgs) - len(kept), nil
}
