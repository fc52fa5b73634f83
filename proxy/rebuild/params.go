package rebuild

import (
	"errors"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/bits"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

// ErrInvalidParameters is wrapped by the errors of parameter sets (SPS, PPS,
// VPS) that fail validation: the camera's stream cannot be rebuilt safely.
var ErrInvalidParameters = errors.New("rebuild: invalid parameter set")

// Limits on what a parameter set may declare. Nothing a camera sends needs
// more; a decoder given more is being attacked or misled.
const (
	maxDimension   = 8192     // pixels, width or height
	maxPixels      = 35651584 // H.264 level 6.2 MaxFS / H.265 level 6.2 MaxLumaPs
	maxParamSize   = 4096     // bytes in one SPS/PPS/VPS
	maxRefFrames   = 16
	maxSliceGroups = 8
)

func paramErr(kind string, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidParameters, kind, fmt.Sprintf(format, args...))
}

var h264Levels = map[uint8]bool{9: true, 10: true, 11: true, 12: true, 13: true, 20: true, 21: true, 22: true,
	30: true, 31: true, 32: true, 40: true, 41: true, 42: true, 50: true, 51: true, 52: true, 60: true, 61: true, 62: true}

var h264Profiles = map[uint8]bool{66: true, 77: true, 88: true, 100: true, 110: true, 122: true, 244: true,
	44: true, 83: true, 86: true, 118: true, 128: true, 138: true, 139: true, 134: true, 135: true}

// videoInfo is what validation learned from an SPS.
type videoInfo struct{ width, height int }

// validateH264SPS parses and bounds-checks an H.264 SPS.
func validateH264SPS(b []byte) (videoInfo, error) {
	if len(b) > maxParamSize {
		return videoInfo{}, paramErr("H.264 SPS", "%d bytes", len(b))
	}
	if len(b) < 4 || b[0]&0x80 != 0 {
		return videoInfo{}, paramErr("H.264 SPS", "truncated or forbidden bit set")
	}
	var s h264.SPS
	if err := unmarshalSafe(func() error { return s.Unmarshal(b) }); err != nil {
		return videoInfo{}, paramErr("H.264 SPS", "%v", err)
	}
	if !h264Profiles[s.ProfileIdc] {
		return videoInfo{}, paramErr("H.264 SPS", "unknown profile_idc %d", s.ProfileIdc)
	}
	if !h264Levels[s.LevelIdc] {
		return videoInfo{}, paramErr("H.264 SPS", "unknown level_idc %d", s.LevelIdc)
	}
	if s.ID > 31 || s.ChromaFormatIdc > 3 || s.BitDepthLumaMinus8 > 6 || s.BitDepthChromaMinus8 > 6 {
		return videoInfo{}, paramErr("H.264 SPS", "id/chroma/bit depth out of range")
	}
	if s.Log2MaxFrameNumMinus4 > 12 || s.PicOrderCntType > 2 || s.Log2MaxPicOrderCntLsbMinus4 > 12 {
		return videoInfo{}, paramErr("H.264 SPS", "frame_num/POC fields out of range")
	}
	if s.MaxNumRefFrames > maxRefFrames || len(s.OffsetForRefFrames) > 255 {
		return videoInfo{}, paramErr("H.264 SPS", "%d reference frames", s.MaxNumRefFrames)
	}
	mbW, mbH := uint64(s.PicWidthInMbsMinus1)+1, uint64(s.PicHeightInMapUnitsMinus1)+1
	if !s.FrameMbsOnlyFlag {
		mbH *= 2
	}
	if mbW*16 > maxDimension || mbH*16 > maxDimension || mbW*mbH*256 > maxPixels {
		return videoInfo{}, paramErr("H.264 SPS", "coded size %dx%d is absurd", mbW*16, mbH*16)
	}
	w, h := s.Width(), s.Height()
	if w < 16 || h < 16 || w > int(mbW*16) || h > int(mbH*16) {
		return videoInfo{}, paramErr("H.264 SPS", "cropped size %dx%d is absurd", w, h)
	}
	return videoInfo{w, h}, nil
}

// validateH264PPS parses the head of an H.264 PPS (Rec. 7.3.2.2) and
// bounds-checks it; mediacommon has no H.264 PPS parser.
func validateH264PPS(b []byte) error {
	if len(b) > maxParamSize {
		return paramErr("H.264 PPS", "%d bytes", len(b))
	}
	if len(b) < 2 || b[0]&0x80 != 0 {
		return paramErr("H.264 PPS", "truncated or forbidden bit set")
	}
	buf := h264.EmulationPreventionRemove(b[1:])
	pos := 0
	ue := func(field string, max uint32) (uint32, error) {
		v, err := bits.ReadGolombUnsigned(buf, &pos)
		if err != nil {
			return 0, paramErr("H.264 PPS", "%s: %v", field, err)
		}
		if v > max {
			return 0, paramErr("H.264 PPS", "%s %d > %d", field, v, max)
		}
		return v, nil
	}
	if _, err := ue("pic_parameter_set_id", 255); err != nil {
		return err
	}
	if _, err := ue("seq_parameter_set_id", 31); err != nil {
		return err
	}
	if _, err := bits.ReadBits(buf, &pos, 2); err != nil { // entropy_coding_mode_flag, bottom_field_pic_order_in_frame_present_flag
		return paramErr("H.264 PPS", "truncated")
	}
	groups, err := ue("num_slice_groups_minus1", maxSliceGroups-1)
	if err != nil {
		return err
	}
	if groups > 0 {
		return nil // slice group maps (FMO, baseline only): the bound above is the check
	}
	if _, err := ue("num_ref_idx_l0_default_active_minus1", 31); err != nil {
		return err
	}
	if _, err := ue("num_ref_idx_l1_default_active_minus1", 31); err != nil {
		return err
	}
	if _, err := bits.ReadBits(buf, &pos, 1); err != nil { // weighted_pred_flag
		return paramErr("H.264 PPS", "truncated")
	}
	if v, err := bits.ReadBits(buf, &pos, 2); err != nil || v > 2 {
		return paramErr("H.264 PPS", "weighted_bipred_idc invalid")
	}
	for _, f := range []struct {
		name     string
		min, max int32
	}{{"pic_init_qp_minus26", -26, 25}, {"pic_init_qs_minus26", -26, 25}, {"chroma_qp_index_offset", -12, 12}} {
		v, err := bits.ReadGolombSigned(buf, &pos)
		if err != nil || v < f.min || v > f.max {
			return paramErr("H.264 PPS", "%s invalid", f.name)
		}
	}
	return nil
}

var h265Levels = map[uint8]bool{30: true, 60: true, 63: true, 90: true, 93: true, 120: true, 123: true,
	150: true, 153: true, 156: true, 180: true, 183: true, 186: true}

// validateH265SPS parses and bounds-checks an H.265 SPS.
func validateH265SPS(b []byte) (videoInfo, error) {
	if len(b) > maxParamSize {
		return videoInfo{}, paramErr("H.265 SPS", "%d bytes", len(b))
	}
	if len(b) < 4 || b[0]&0x80 != 0 {
		return videoInfo{}, paramErr("H.265 SPS", "truncated or forbidden bit set")
	}
	var s h265.SPS
	if err := unmarshalSafe(func() error { return s.Unmarshal(b) }); err != nil {
		return videoInfo{}, paramErr("H.265 SPS", "%v", err)
	}
	ptl := s.ProfileTierLevel
	if ptl.GeneralProfileIdc > 11 || ptl.GeneralProfileSpace != 0 {
		return videoInfo{}, paramErr("H.265 SPS", "unknown profile %d (space %d)", ptl.GeneralProfileIdc, ptl.GeneralProfileSpace)
	}
	if !h265Levels[ptl.GeneralLevelIdc] {
		return videoInfo{}, paramErr("H.265 SPS", "unknown level_idc %d", ptl.GeneralLevelIdc)
	}
	if s.ID > 15 || s.ChromaFormatIdc > 3 || s.BitDepthLumaMinus8 > 8 || s.BitDepthChromaMinus8 > 8 || s.Log2MaxPicOrderCntLsbMinus4 > 12 {
		return videoInfo{}, paramErr("H.265 SPS", "id/chroma/bit depth/POC out of range")
	}
	return h265SPSSize(&s)
}

// h265SPSSize checks an H.265 SPS's picture sizes and buffering and
// returns the cropped size.
func h265SPSSize(s *h265.SPS) (videoInfo, error) {
	pw, ph := uint64(s.PicWidthInLumaSamples), uint64(s.PicHeightInLumaSamples)
	if pw < 16 || ph < 16 || pw > maxDimension || ph > maxDimension || pw*ph > maxPixels {
		return videoInfo{}, paramErr("H.265 SPS", "coded size %dx%d is absurd", pw, ph)
	}
	if s.ChromaFormatIdc == 0 && s.ConformanceWindow != nil {
		return videoInfo{}, paramErr("H.265 SPS", "conformance window on monochrome")
	}
	w, h := s.Width(), s.Height()
	if w < 16 || h < 16 || w > int(pw) || h > int(ph) {
		return videoInfo{}, paramErr("H.265 SPS", "cropped size %dx%d is absurd", w, h)
	}
	for _, v := range s.MaxDecPicBufferingMinus1 {
		if v > maxRefFrames {
			return videoInfo{}, paramErr("H.265 SPS", "decoded picture buffer of %d", v+1)
		}
	}
	return videoInfo{w, h}, nil
}

// validateH265PPS parses and bounds-checks an H.265 PPS.
func validateH265PPS(b []byte) error {
	if len(b) > maxParamSize {
		return paramErr("H.265 PPS", "%d bytes", len(b))
	}
	if len(b) < 3 || b[0]&0x80 != 0 {
		return paramErr("H.265 PPS", "truncated or forbidden bit set")
	}
	var p h265.PPS
	if err := unmarshalSafe(func() error { return p.Unmarshal(b) }); err != nil {
		return paramErr("H.265 PPS", "%v", err)
	}
	if p.ID > 63 || p.SPSID > 15 {
		return paramErr("H.265 PPS", "pps id %d / sps id %d out of range", p.ID, p.SPSID)
	}
	return nil
}

// validateH265VPS checks the fixed head of an H.265 VPS (Rec. 7.3.2.1);
// mediacommon has no VPS parser.
func validateH265VPS(b []byte) error {
	if len(b) > maxParamSize {
		return paramErr("H.265 VPS", "%d bytes", len(b))
	}
	if len(b) < 6 || b[0]&0x80 != 0 {
		return paramErr("H.265 VPS", "truncated or forbidden bit set")
	}
	buf := h264.EmulationPreventionRemove(b[2:])
	if len(buf) < 4 {
		return paramErr("H.265 VPS", "truncated")
	}
	// vps_video_parameter_set_id(4) vps_base_layer_internal_flag(1)
	// vps_base_layer_available_flag(1) vps_max_layers_minus1(6)
	// vps_max_sub_layers_minus1(3) vps_temporal_id_nesting_flag(1)
	// vps_reserved_0xffff_16bits(16)
	maxSubLayers := (buf[1] >> 1) & 0x07
	if maxSubLayers > 6 {
		return paramErr("H.265 VPS", "vps_max_sub_layers_minus1 %d > 6", maxSubLayers)
	}
	if buf[2] != 0xff || buf[3] != 0xff {
		return paramErr("H.265 VPS", "vps_reserved_0xffff_16bits is %02x%02x", buf[2], buf[3])
	}
	return nil
}

// unmarshalSafe runs a third-party parser and turns a panic on hostile
// input into an error: a camera must never crash the proxy.
func unmarshalSafe(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parser panic: %v", r)
		}
	}()
	return f()
}
