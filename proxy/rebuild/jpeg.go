package rebuild

import (
	"errors"
	"fmt"
	"sync"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmjpeg"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/jpeg"
	"github.com/pion/rtp"
)

// JPEG validation for MJPEG in rebuild mode.
//
// RTP/JPEG (RFC 2435) carries a baseline JPEG's entropy-coded data and
// describes the rest (size, sampling, quantization tables) in its own
// headers; the receiver writes the JPEG headers itself, with the standard
// Huffman tables. What a camera controls is therefore the header fields and
// the bytes after the headers, which should be the scan and nothing else.
// cleanJPEG checks the structure of a frame, SOI, DQT, SOF0, DHT, SOS, the
// entropy-coded scan, EOI, and keeps only those: APPn and COM segments,
// which can carry anything, are dropped and counted (jpeg_segment), and so
// is anything after EOI (jpeg_trailing). Anything else (a progressive or
// lossless frame, restart markers, a second scan, custom Huffman tables
// RTP/JPEG cannot carry, a truncated segment) refuses the frame.

// JPEG limits.
const (
	maxJPEGSize     = maxAUSize // bytes in one frame
	maxJPEGSegments = 64        // marker segments in one frame
	maxJPEGSide     = 2040      // RTP/JPEG's largest width and height
)

// jpegError is a JPEG frame that cannot cross, with the offset of the
// problem in the reassembled frame.
type jpegError struct {
	off int
	msg string
}

func (e *jpegError) Error() string { return fmt.Sprintf("rebuild: jpeg: offset %d: %s", e.off, e.msg) }

func jpegErr(off int, format string, a ...any) error {
	return &jpegError{off: off, msg: fmt.Sprintf(format, a...)}
}

// Markers cleanJPEG knows besides those of package jpeg.
const (
	markerAPP0 = 0xe0
	markerAPPF = 0xef
	markerRST0 = 0xd0
	markerRST7 = 0xd7
)

// huffTable is one DHT table: class<<4|id, 16 code counts, symbols.
type huffTable struct {
	key     byte
	counts  [16]byte
	symbols string
}

// parseDHT reads the tables of a DHT segment body.
func parseDHT(b []byte, off int) ([]huffTable, error) {
	var out []huffTable
	for len(b) > 0 {
		if len(b) < 17 {
			return nil, jpegErr(off, "DHT table header truncated")
		}
		h := huffTable{key: b[0]}
		if b[0]>>4 > 1 || b[0]&0x0f > 1 {
			return nil, jpegErr(off, "DHT table class/id 0x%02x", b[0])
		}
		n := 0
		for i := range 16 {
			h.counts[i] = b[1+i]
			n += int(b[1+i])
		}
		if n == 0 || n > 256 || len(b) < 17+n {
			return nil, jpegErr(off, "DHT table of %d symbols in %d bytes", n, len(b)-17)
		}
		h.symbols = string(b[17 : 17+n])
		out = append(out, h)
		b = b[17+n:]
		off += 17 + n
	}
	return out, nil
}

// standardHuffman is the set of Huffman tables an RTP/JPEG receiver uses
// (RFC 2435 appendix A), taken from what gortsplib's own decoder writes, so
// the two cannot disagree.
var standardHuffman = sync.OnceValue(func() map[byte]huffTable {
	d := &rtpmjpeg.Decoder{}
	_ = d.Init()
	// One 8x8 4:2:0 frame, quantization factor 50, an empty scan.
	img, err := d.Decode(&rtp.Packet{Header: rtp.Header{Marker: true}, Payload: []byte{0, 0, 0, 0, 1, 50, 1, 1, 0, 0}})
	if err != nil {
		panic("rebuild: gortsplib's RTP/JPEG decoder refused the reference frame: " + err.Error())
	}
	out := map[byte]huffTable{}
	for i := 2; i+4 <= len(img) && img[i] == 0xff && img[i+1] != jpeg.MarkerStartOfScan; {
		n := int(img[i+2])<<8 | int(img[i+3])
		if img[i+1] == jpeg.MarkerDefineHuffmanTable {
			ts, err := parseDHT(img[i+4:i+2+n], i+4)
			if err != nil {
				panic("rebuild: gortsplib's reference DHT: " + err.Error())
			}
			for _, t := range ts {
				out[t.key] = t
			}
		}
		i += 2 + n
	}
	if len(out) != 4 {
		panic(fmt.Sprintf("rebuild: gortsplib's reference frame has %d Huffman tables", len(out)))
	}
	return out
})

// jpegInfo is what cleanJPEG learnt about a frame.
type jpegInfo struct{ width, height int }

// cleanJPEG validates a baseline JPEG and returns it with only SOI, DQT,
// SOF0, DHT, SOS, the scan and EOI. Dropped segments are counted in c.
func cleanJPEG(b []byte, c *Counters) ([]byte, jpegInfo, error) {
	if len(b) > maxJPEGSize {
		return nil, jpegInfo{}, jpegErr(0, "frame of %d bytes is larger than %d", len(b), maxJPEGSize)
	}
	if len(b) < 4 || b[0] != 0xff || b[1] != jpeg.MarkerStartOfImage {
		return nil, jpegInfo{}, jpegErr(0, "no SOI")
	}
	j := &jpegCleaner{b: b, i: 2, sofAt: -1, huffman: map[byte]bool{}}
	j.out = make([]byte, 0, len(b))
	j.out = append(j.out, b[:2]...)
	for {
		m, end, err := j.readSegment()
		if err != nil {
			return nil, j.info, err
		}
		body := b[min(j.i+4, end):end]
		if m == jpeg.MarkerStartOfScan {
			if err := j.startScan(body, end); err != nil {
				return nil, j.info, err
			}
			return finishScan(b, end, j.out, j.dropped, c, j.info)
		}
		if err := j.headerSegment(m, body, end); err != nil {
			return nil, j.info, err
		}
		j.i = end
	}
}

// jpegCleaner is cleanJPEG's state while it walks the header segments.
type jpegCleaner struct {
	b   []byte
	i   int    // where the current segment starts in b
	out []byte // the frame kept so far

	qtables  [4]bool
	table0   []byte // quantization table 0
	sofAt    int    // where SOF0 starts in out, or -1
	tq       []byte // quantization tables the frame components use
	sawSOF   bool
	huffman  map[byte]bool
	segments int
	dropped  [][2]int // APPn/COM (start, end) seen before the scan, counted once the frame is good
	info     jpegInfo
}

// readSegment returns the marker at i and its segment's end.
func (j *jpegCleaner) readSegment() (byte, int, error) {
	b := j.b
	for j.i+1 < len(b) && b[j.i] == 0xff && b[j.i+1] == 0xff {
		j.i++ // fill bytes
	}
	i := j.i
	if i+2 > len(b) || b[i] != 0xff {
		return 0, 0, jpegErr(i, "marker expected")
	}
	m := b[i+1]
	if m == jpeg.MarkerEndOfImage {
		return m, i + 2, nil
	}
	if m == jpeg.MarkerStartOfImage || m == 0x01 || (m >= markerRST0 && m <= markerRST7) || m == 0x00 {
		return 0, 0, jpegErr(i, "unexpected marker 0x%02x", m)
	}
	if i+4 > len(b) {
		return 0, 0, jpegErr(i, "segment 0x%02x truncated", m)
	}
	n := int(b[i+2])<<8 | int(b[i+3])
	if n < 2 || i+2+n > len(b) {
		return 0, 0, jpegErr(i, "segment 0x%02x of %d bytes runs past the frame (%d bytes)", m, n, len(b))
	}
	if j.segments++; j.segments > maxJPEGSegments {
		return 0, 0, jpegErr(i, "more than %d segments", maxJPEGSegments)
	}
	return m, i + 2 + n, nil
}

// headerSegment checks one segment before the scan (marker m, body, ending
// at end), and keeps it, drops it, or refuses the frame.
func (j *jpegCleaner) headerSegment(m byte, body []byte, end int) error {
	i := j.i
	switch {
	case m == jpeg.MarkerEndOfImage:
		return jpegErr(i, "EOI before the scan")
	case m >= markerAPP0 && m <= markerAPPF, m == jpeg.MarkerComment:
		j.dropped = append(j.dropped, [2]int{i, end})
		return nil
	case m == jpeg.MarkerDefineQuantizationTable:
		return j.quantization(body, end)
	case m == jpeg.MarkerDefineHuffmanTable:
		return j.huffmanTables(body, end)
	case m == jpeg.MarkerStartOfFrame1: // SOF0, baseline
		return j.frame(body, end)
	case m >= 0xc1 && m <= 0xcf && m != jpeg.MarkerDefineHuffmanTable && m != 0xc8 && m != 0xcc:
		return jpegErr(i, "SOF%d: only baseline (SOF0) frames cross", m-0xc0)
	case m == jpeg.MarkerDefineRestartInterval:
		return jpegErr(i, "DRI: restart intervals are not supported")
	default:
		return jpegErr(i, "marker 0x%02x is not allowed", m)
	}
}

// quantization checks and keeps a DQT segment.
func (j *jpegCleaner) quantization(body []byte, end int) error {
	var dqt jpeg.DefineQuantizationTable
	if err := dqt.Unmarshal(body); err != nil {
		return jpegErr(j.i, "DQT: %v", err)
	}
	for _, t := range dqt.Tables {
		if t.ID > 1 {
			return jpegErr(j.i, "DQT table id %d (RTP/JPEG carries tables 0 and 1)", t.ID)
		}
		j.qtables[t.ID] = true
		if t.ID == 0 {
			j.table0 = t.Data
		}
	}
	j.out = append(j.out, j.b[j.i:end]...)
	return nil
}

// huffmanTables checks that a DHT segment holds only the standard tables
// RTP/JPEG receivers use, and keeps it.
func (j *jpegCleaner) huffmanTables(body []byte, end int) error {
	ts, err := parseDHT(body, j.i+4)
	if err != nil {
		return err
	}
	std := standardHuffman()
	for _, t := range ts {
		if s, ok := std[t.key]; !ok || s != t {
			return jpegErr(j.i, "DHT table 0x%02x is not the standard one RTP/JPEG receivers use", t.key)
		}
		j.huffman[t.key] = true
	}
	j.out = append(j.out, j.b[j.i:end]...)
	return nil
}

// frame checks and keeps the SOF0 segment, noting the size and the
// components' quantization tables.
func (j *jpegCleaner) frame(body []byte, end int) error {
	if j.sawSOF {
		return jpegErr(j.i, "second SOF")
	}
	var sof jpeg.StartOfFrame1
	if err := sof.Unmarshal(body); err != nil {
		return jpegErr(j.i, "SOF0: %v", err)
	}
	if sof.Width <= 0 || sof.Height <= 0 || sof.Width > maxJPEGSide || sof.Height > maxJPEGSide ||
		sof.Width%8 != 0 || sof.Height%8 != 0 {
		return jpegErr(j.i, "SOF0: %dx%d (RTP/JPEG needs multiples of 8 up to %d)", sof.Width, sof.Height, maxJPEGSide)
	}
	j.tq = []byte{body[8], body[11], body[14]}
	j.info, j.sawSOF = jpegInfo{sof.Width, sof.Height}, true
	j.sofAt = len(j.out)
	j.out = append(j.out, j.b[j.i:end]...)
	return nil
}

// startScan checks the SOS segment against the frame's tables and keeps it.
func (j *jpegCleaner) startScan(body []byte, end int) error {
	if err := checkSOS(body, j.i, j.sawSOF, j.tq, j.qtables, j.huffman); err != nil {
		return err
	}
	if !j.qtables[1] {
		// One table for all three components (ffmpeg writes that):
		// RTP/JPEG types 0 and 1 carry a luma and a chroma table,
		// and receivers (ffmpeg's) refuse a single one, so the
		// chroma components get a copy of table 0 as table 1.
		j.out = append(j.out, 0xff, jpeg.MarkerDefineQuantizationTable, 0, 67, 1)
		j.out = append(j.out, j.table0...)
		j.out[j.sofAt+4+11], j.out[j.sofAt+4+14] = 1, 1
	}
	j.out = append(j.out, j.b[j.i:end]...)
	return nil
}

// checkSOS checks the scan header against the frame's tables.
func checkSOS(body []byte, off int, sawSOF bool, tq []byte, qtables [4]bool, huffman map[byte]bool) error {
	if !sawSOF {
		return jpegErr(off, "SOS before SOF0")
	}
	if err := (jpeg.StartOfScan{}).Unmarshal(body); err != nil {
		return jpegErr(off, "SOS: %v", err)
	}
	if !qtables[0] {
		return jpegErr(off, "quantization table 0 (luma) is not defined")
	}
	for _, q := range tq {
		if q > 1 || !qtables[q] {
			return jpegErr(off, "quantization table %d is not defined", q)
		}
	}
	if body[0] != 3 || body[7] != 0 || body[8] != 63 || body[9] != 0 {
		return jpegErr(off, "SOS: not a baseline scan of 3 components")
	}
	for k := range 3 {
		td, ta := body[2+2*k]>>4, body[2+2*k]&0x0f
		if !huffman[td] || !huffman[0x10|ta] {
			return jpegErr(off, "SOS: Huffman tables %d/%d are not defined", td, ta)
		}
	}
	return nil
}

// finishScan copies the entropy-coded data from i up to EOI, dropping
// APPn/COM segments between the scan and EOI and anything after EOI.
func finishScan(b []byte, i int, out []byte, dropped [][2]int, c *Counters, info jpegInfo) ([]byte, jpegInfo, error) {
	start := i
	for {
		if i+1 >= len(b) {
			return nil, info, jpegErr(i, "no EOI")
		}
		if b[i] != 0xff {
			i++
			continue
		}
		m := b[i+1]
		if m == 0x00 || m == 0xff {
			i++ // stuffed byte, or a fill byte before a marker
			continue
		}
		if m >= markerRST0 && m <= markerRST7 {
			return nil, info, jpegErr(i, "restart marker without DRI")
		}
		break
	}
	if i == start {
		return nil, info, jpegErr(i, "empty scan")
	}
	out = append(out, b[start:i]...)
	segments := 0
	for {
		for i+1 < len(b) && b[i] == 0xff && b[i+1] == 0xff {
			i++
		}
		if i+2 > len(b) || b[i] != 0xff {
			return nil, info, jpegErr(i, "marker expected after the scan")
		}
		m := b[i+1]
		if m == jpeg.MarkerEndOfImage {
			break
		}
		if !(m >= markerAPP0 && m <= markerAPPF) && m != jpeg.MarkerComment {
			return nil, info, jpegErr(i, "marker 0x%02x after the scan (only one baseline scan crosses)", m)
		}
		if i+4 > len(b) {
			return nil, info, jpegErr(i, "segment 0x%02x truncated", m)
		}
		n := int(b[i+2])<<8 | int(b[i+3])
		if n < 2 || i+2+n > len(b) {
			return nil, info, jpegErr(i, "segment 0x%02x of %d bytes runs past the frame (%d bytes)", m, n, len(b))
		}
		if segments++; segments > maxJPEGSegments {
			return nil, info, jpegErr(i, "more than %d segments after the scan", maxJPEGSegments)
		}
		dropped = append(dropped, [2]int{i, i + 2 + n})
		i += 2 + n
	}
	out = append(out, 0xff, jpeg.MarkerEndOfImage)
	for _, d := range dropped {
		c.Drop("jpeg_segment", d[1]-d[0])
	}
	if rest := len(b) - (i + 2); rest > 0 {
		c.Drop("jpeg_trailing", rest)
	}
	return out, info, nil
}

var errJPEGHeader = errors.New("rebuild: malformed RTP/JPEG header")

// mjpegHeader checks the RFC 2435 main header of an RTP/JPEG payload and
// returns its fragment offset. Types 0 and 1 (4:2:2 and 4:2:0 without
// restart markers) and quantization factors 1 to 99 or dynamic tables
// (128 to 255) cross.
func mjpegHeader(p []byte) (uint32, error) {
	if len(p) < 8 {
		return 0, errJPEGHeader
	}
	off := uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3])
	typ, q, w, h := p[4], p[5], p[6], p[7]
	if typ > 1 || q == 0 || (q > 99 && q < 128) || w == 0 || h == 0 {
		return off, errJPEGHeader
	}
	return off, nil
}
