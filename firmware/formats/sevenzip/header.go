package sevenzip

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// The library allocates its file table from the count in the header before
// checking it against anything (FuzzSevenZip ran it out of memory), so the
// header is walked here first, far enough to read that count and to tell an
// encrypted header. Only what the walk needs is parsed.

// Property IDs of the 7z header.
const (
	idEnd              = 0x00
	idHeader           = 0x01
	idArchiveProps     = 0x02
	idAdditionalStream = 0x03
	idMainStreams      = 0x04
	idFilesInfo        = 0x05
	idPackInfo         = 0x06
	idUnpackInfo       = 0x07
	idSubStreamsInfo   = 0x08
	idSize             = 0x09
	idCRC              = 0x0a
	idFolder           = 0x0b
	idCodersUnpackSize = 0x0c
	idNumUnpackStream  = 0x0d
	idEncodedHeader    = 0x17
)

// maxFiles bounds the entries of an archive we hand to the library.
const maxFiles = 1 << 20

// maxCount bounds any other count read from a header.
const maxCount = 1 << 16

var (
	errEncrypted   = errors.New("7z: header is encrypted")
	errUnsupported = errors.New("7z: header coder not supported by the pre-check")
	errHeader      = errors.New("7z: malformed header")
)

type hreader struct{ *bufio.Reader }

func (r hreader) num() (uint64, error) {
	first, err := r.ReadByte()
	if err != nil {
		return 0, errHeader
	}
	mask := byte(0x80)
	var v uint64
	for i := range 8 {
		if first&mask == 0 {
			hi := uint64(first) & (uint64(mask) - 1)
			return v | hi<<(8*i), nil
		}
		b, err := r.ReadByte()
		if err != nil {
			return 0, errHeader
		}
		v |= uint64(b) << (8 * i)
		mask >>= 1
	}
	return v, nil
}

func (r hreader) count(limit uint64) (uint64, error) {
	v, err := r.num()
	if err != nil || v > limit {
		return 0, errHeader
	}
	return v, nil
}

func (r hreader) skip(n uint64) error {
	if n > 1<<30 {
		return errHeader
	}
	_, err := r.Discard(int(n))
	if err != nil {
		return errHeader
	}
	return nil
}

func (r hreader) expect(id byte) error {
	b, err := r.ReadByte()
	if err != nil || b != id {
		return errHeader
	}
	return nil
}

// digests skips a digest list of n items and reports which were defined.
func (r hreader) digests(n uint64) ([]bool, error) {
	if n > maxFiles {
		return nil, errHeader
	}
	all, err := r.ReadByte()
	if err != nil {
		return nil, errHeader
	}
	defined := make([]bool, n)
	count := uint64(0)
	var b byte
	for i := range n {
		if all == 0 && i%8 == 0 {
			if b, err = r.ReadByte(); err != nil {
				return nil, errHeader
			}
		}
		if all != 0 || b&(0x80>>(i%8)) != 0 {
			defined[i] = true
			count++
		}
	}
	return defined, r.skip(4 * count)
}

type coderInfo struct {
	id    []byte
	props []byte
}

type streams struct {
	packPos    uint64
	packSizes  []uint64
	folders    [][]coderInfo
	unpackSize []uint64 // per folder, its last output stream's size (single-coder folders)
	folderCRC  []bool
}

func (r hreader) streamsInfo() (*streams, error) {
	s := &streams{}
	for {
		id, err := r.ReadByte()
		if err != nil {
			return nil, errHeader
		}
		switch id {
		case idEnd:
			return s, nil
		case idPackInfo:
			err = r.packInfo(s)
		case idUnpackInfo:
			err = r.unpackInfo(s)
		case idSubStreamsInfo:
			err = r.subStreams(s)
		default:
			return nil, errHeader
		}
		if err != nil {
			return nil, err
		}
	}
}

// packInfo reads the PackInfo property: where the packed streams start and
// their sizes (their CRCs are skipped).
func (r hreader) packInfo(s *streams) error {
	var err error
	if s.packPos, err = r.num(); err != nil {
		return err
	}
	n, err := r.count(maxCount)
	if err != nil {
		return err
	}
	for {
		pid, err := r.ReadByte()
		if err != nil {
			return errHeader
		}
		if pid == idEnd {
			return nil
		}
		switch pid {
		case idSize:
			for range n {
				v, err := r.num()
				if err != nil {
					return err
				}
				s.packSizes = append(s.packSizes, v)
			}
		case idCRC:
			if _, err := r.digests(n); err != nil {
				return err
			}
		default:
			return errHeader
		}
	}
}

// unpackInfo reads the UnpackInfo property: the folders, the size of each
// one's last output stream, and which folders have a CRC.
func (r hreader) unpackInfo(s *streams) error {
	if err := r.expect(idFolder); err != nil {
		return err
	}
	nf, err := r.count(maxCount)
	if err != nil {
		return err
	}
	if err := r.expect(0); err != nil { // not external
		return err
	}
	outs := make([]uint64, 0, nf)
	for range nf {
		coders, out, err := r.folder()
		if err != nil {
			return err
		}
		s.folders = append(s.folders, coders)
		outs = append(outs, out)
	}
	if err := r.expect(idCodersUnpackSize); err != nil {
		return err
	}
	for _, o := range outs {
		var last uint64
		for range o {
			if last, err = r.num(); err != nil {
				return err
			}
		}
		s.unpackSize = append(s.unpackSize, last)
	}
	for {
		pid, err := r.ReadByte()
		if err != nil {
			return errHeader
		}
		if pid == idEnd {
			return nil
		}
		if pid != idCRC {
			return errHeader
		}
		if s.folderCRC, err = r.digests(nf); err != nil {
			return err
		}
	}
}

// folder reads one folder's coders and returns them with its total output
// stream count.
func (r hreader) folder() ([]coderInfo, uint64, error) {
	n, err := r.count(64)
	if err != nil || n == 0 {
		return nil, 0, errHeader
	}
	var coders []coderInfo
	var totalIn, totalOut uint64
	for range n {
		flag, err := r.ReadByte()
		if err != nil {
			return nil, 0, errHeader
		}
		c := coderInfo{id: make([]byte, flag&0x0f)}
		if _, err := io.ReadFull(r, c.id); err != nil {
			return nil, 0, errHeader
		}
		in, out := uint64(1), uint64(1)
		if flag&0x10 != 0 {
			if in, err = r.count(64); err != nil {
				return nil, 0, err
			}
			if out, err = r.count(64); err != nil {
				return nil, 0, err
			}
		}
		if flag&0x20 != 0 {
			ps, err := r.count(1 << 16)
			if err != nil {
				return nil, 0, err
			}
			c.props = make([]byte, ps)
			if _, err := io.ReadFull(r, c.props); err != nil {
				return nil, 0, errHeader
			}
		}
		totalIn += in
		totalOut += out
		coders = append(coders, c)
	}
	if totalOut == 0 {
		return nil, 0, errHeader
	}
	for range totalOut - 1 { // bind pairs
		if _, err := r.num(); err != nil {
			return nil, 0, err
		}
		if _, err := r.num(); err != nil {
			return nil, 0, err
		}
	}
	if packed := totalIn - (totalOut - 1); packed > 1 && totalIn >= totalOut-1 {
		for range packed {
			if _, err := r.num(); err != nil {
				return nil, 0, err
			}
		}
	}
	return coders, totalOut, nil
}

// checkHeader walks the next header of the archive in src (starting at
// offset 32+nextOff, nextSize bytes) and returns the number of files it
// declares, errEncrypted for an encrypted header, or errUnsupported when the
// header is packed by coders the walk cannot decode.
func checkHeader(src io.ReaderAt, size int64, nextOff, nextSize uint64) (uint64, error) {
	if nextSize == 0 {
		return 0, nil
	}
	if nextOff > uint64(size) || nextSize > uint64(size) || int64(nextOff) > size-sigSize || int64(nextSize) > size-sigSize-int64(nextOff) {
		return 0, errHeader
	}
	r := hreader{bufio.NewReader(io.NewSectionReader(src, sigSize+int64(nextOff), int64(nextSize)))}
	for depth := 0; ; depth++ {
		id, err := r.ReadByte()
		if err != nil {
			return 0, errHeader
		}
		switch id {
		case idHeader:
			return r.filesCount()
		case idEncodedHeader:
			if depth > 2 {
				return 0, errHeader
			}
			if r, err = r.encodedHeader(src, size); err != nil {
				return 0, err
			}
		default:
			return 0, errHeader
		}
	}
}

// encodedHeader reads the streams of an encoded header and returns a reader
// of the header they decode to. Only a single-coder folder (LZMA, LZMA2 or
// copy) is supported; an AES coder means the header is encrypted.
func (r hreader) encodedHeader(src io.ReaderAt, size int64) (hreader, error) {
	s, err := r.streamsInfo()
	if err != nil {
		return hreader{}, err
	}
	if len(s.folders) != 1 || len(s.packSizes) < 1 || len(s.unpackSize) != 1 {
		return hreader{}, errUnsupported
	}
	for _, c := range s.folders[0] {
		if bytes.Equal(c.id, []byte{0x06, 0xf1, 0x07, 0x01}) {
			return hreader{}, errEncrypted
		}
	}
	if len(s.folders[0]) != 1 || s.unpackSize[0] > maxHeader {
		return hreader{}, errUnsupported
	}
	pos := sigSize + int64(s.packPos)
	if s.packPos > uint64(size) || int64(s.packSizes[0]) < 0 || pos+int64(s.packSizes[0]) > size {
		return hreader{}, errHeader
	}
	c := s.folders[0][0]
	in := io.NopCloser(io.NewSectionReader(src, pos, int64(s.packSizes[0])))
	var dec io.ReadCloser
	switch {
	case bytes.Equal(c.id, []byte{0x03, 0x01, 0x01}):
		dec, err = newLZMA(c.props, s.unpackSize[0], []io.ReadCloser{in})
	case bytes.Equal(c.id, []byte{0x21}):
		dec, err = newLZMA2(c.props, s.unpackSize[0], []io.ReadCloser{in})
	case bytes.Equal(c.id, []byte{0x00}):
		dec = in
	default:
		return hreader{}, errUnsupported
	}
	if err != nil {
		return hreader{}, err
	}
	return hreader{bufio.NewReader(io.LimitReader(dec, int64(s.unpackSize[0])))}, nil
}

// filesCount walks a plain header up to the file count.
func (r hreader) filesCount() (uint64, error) {
	for {
		id, err := r.ReadByte()
		if err != nil {
			return 0, errHeader
		}
		switch id {
		case idEnd:
			return 0, nil
		case idArchiveProps:
			for {
				t, err := r.ReadByte()
				if err != nil {
					return 0, errHeader
				}
				if t == 0 {
					break
				}
				n, err := r.num()
				if err != nil {
					return 0, err
				}
				if err := r.skip(n); err != nil {
					return 0, err
				}
			}
		case idAdditionalStream, idMainStreams:
			if _, err := r.streamsInfo(); err != nil {
				return 0, err
			}
		case idFilesInfo:
			return r.num()
		default:
			return 0, errHeader
		}
	}
}

// subStreams skips a SubStreamsInfo, whose layout depends on the folders.
func (r hreader) subStreams(s *streams) error {
	nf := len(s.folders)
	num := make([]uint64, nf)
	for i := range num {
		num[i] = 1
	}
	var total uint64
	for {
		id, err := r.ReadByte()
		if err != nil {
			return errHeader
		}
		switch id {
		case idEnd:
			return nil
		case idNumUnpackStream:
			total = 0
			for i := range num {
				if num[i], err = r.count(maxFiles); err != nil {
					return err
				}
				total += num[i]
				if total > maxFiles {
					return errHeader
				}
			}
		case idSize:
			for _, n := range num {
				for j := uint64(1); j < n; j++ {
					if _, err := r.num(); err != nil {
						return err
					}
				}
			}
		case idCRC:
			var unknown uint64
			for i, n := range num {
				if n != 1 || i >= len(s.folderCRC) || !s.folderCRC[i] {
					unknown += n
				}
			}
			if _, err := r.digests(unknown); err != nil {
				return err
			}
		default:
			return errHeader
		}
	}
}
