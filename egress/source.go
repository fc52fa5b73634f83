package egress

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/klauspost/compress/zstd"
)

// maxSnaplen bounds the snap length of a pcap file, and so its largest
// record (tcpdump's maximum is 262144).
const maxSnaplen = 16 << 20

// maxZstdWindow bounds the memory a zstd-compressed capture may ask for.
const maxZstdWindow = 64 << 20

// OpenFile opens a capture file for reading: pcap or pcapng, optionally
// compressed with gzip or zstd (recognised by their magic bytes, whatever
// the file is called). "-" reads standard input (stdin). Memory stays
// bounded: packets are read one at a time and reused. An uncompressed pcap
// file is mapped into memory and read as it was when opened (what is
// appended later is not read); Engine.Run turns the fault of reading such a
// file truncated meanwhile into an error, other readers of the source
// crash on it.
func OpenFile(path string, stdin io.Reader) (PacketSource, error) {
	var rc io.ReadCloser
	if path == "-" {
		rc = io.NopCloser(stdin)
		path = "standard input"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("egress: %w", err)
		}
		if st, err := f.Stat(); err == nil && st.IsDir() {
			f.Close()
			return nil, fmt.Errorf("egress: %s is a directory: give a capture file (pcap or pcapng, optionally .gz or .zst)", path)
		}
		if src := openMapped(path, f); src != nil {
			return src, nil
		}
		rc = f
	}
	src, err := openStream(path, rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return src, nil
}

func openStream(name string, rc io.ReadCloser) (PacketSource, error) {
	br := bufio.NewReaderSize(rc, 1<<20)
	magic, _ := br.Peek(4)
	closers := []io.Closer{rc}
	var r io.Reader = br
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("egress: %s: gzip: %w", name, err)
		}
		closers = append(closers, zr)
		r = bufio.NewReaderSize(zr, 1<<20)
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderMaxMemory(maxZstdWindow), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("egress: %s: zstd: %w", name, err)
		}
		closers = append(closers, closerFunc(func() error { zr.Close(); return nil }))
		r = bufio.NewReaderSize(zr, 1<<20)
	}
	inner := r.(*bufio.Reader)
	magic, err := inner.Peek(4)
	switch {
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return nil, fmt.Errorf("egress: %s: the zstd stream needs a window larger than the %d MiB limit (compress with zstd --long=26 or less)", name, maxZstdWindow>>20)
	case err != nil && !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("egress: %s: %w", name, err)
	case err != nil:
		return nil, fmt.Errorf("egress: %s: too short to be a capture file (%d bytes)", name, len(magic))
	}
	cr := &countingReader{r: inner}
	s := &fileSource{closers: closers, name: name, cr: cr}
	switch {
	case magic[0] == 0x0a && magic[1] == 0x0d && magic[2] == 0x0d && magic[3] == 0x0a:
		// WantMixedLinkType: every interface's packets, each with its own
		// link type (without it pcapgo skips, uncounted, the packets of
		// interfaces whose link type differs from the first one's).
		// pcapgo reads through this bufio.Reader (it keeps one of 4 KiB or
		// more), so the bytes it consumed are known exactly.
		nbr := bufio.NewReader(cr)
		ng, err := pcapgo.NewNgReader(nbr, pcapgo.NgReaderOptions{SkipUnknownVersion: true, WantMixedLinkType: true})
		if err != nil {
			return nil, fmt.Errorf("egress: %s: pcapng: %w", name, err)
		}
		s.pos = func() int64 { return cr.n - int64(nbr.Buffered()) }
		if ng.NInterfaces() > 0 {
			if ifc, err := ng.Interface(0); err == nil {
				s.lt = ifc.LinkType
			}
		}
		s.read = func() ([]byte, gopacket.CaptureInfo, error) {
			s.at = s.pos() // where the blocks of this packet start
			return ng.ZeroCopyReadPacketData()
		}
		return &ngSource{s}, nil
	case isPcapMagic(magic):
		if err := s.readPcap(inner); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("egress: %s is not a pcap or pcapng capture (magic %x; gzip and zstd compression are recognised)", name, magic)
	}
	return s, nil
}

// openMapped reads an uncompressed pcap file mapped into memory (see
// memReader); nil, the file left as it was, for any other file or when it
// cannot be mapped. Run turns a fault on the mapping (the file truncated
// while it is read) into an error.
func openMapped(name string, f *os.File) *fileSource {
	b := mapFile(f)
	if b == nil {
		return nil
	}
	s := &fileSource{name: name, cr: &countingReader{},
		closers: []io.Closer{f, closerFunc(func() error { return unmapFile(b) })}}
	if len(b) < 4 || !isPcapMagic(b[:4]) || s.readPcap(&memReader{b: b, release: releaseMapped, chunk: releaseChunk}) != nil {
		_ = unmapFile(b) // read as a stream: it says what is wrong
		return nil
	}
	return s
}

// readPcap makes s read classic pcap records from br.
func (s *fileSource) readPcap(br recordBuffer) error {
	pr, err := newPcapReader(br)
	if err != nil {
		return fmt.Errorf("egress: %s: pcap: %w", s.name, err)
	}
	// Records are accepted up to the snap length: refuse absurd ones
	// so one record cannot claim gigabytes.
	if pr.snaplen > maxSnaplen {
		return fmt.Errorf("egress: %s: pcap snap length %d is implausible (limit %d)", s.name, pr.snaplen, maxSnaplen)
	}
	s.read, s.lt, s.pos = pr.next, pr.lt, func() int64 { return pr.n }
	if pr.mem != nil {
		s.read, s.pr = pr.nextMem, pr
	}
	return nil
}

func isPcapMagic(m []byte) bool {
	switch string(m) {
	case "\xa1\xb2\xc3\xd4", "\xd4\xc3\xb2\xa1", "\xa1\xb2\x3c\x4d", "\x4d\x3c\xb2\xa1":
		return true
	}
	return false
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

type fileSource struct {
	read    func() ([]byte, gopacket.CaptureInfo, error)
	lt      layers.LinkType
	closers []io.Closer
	name    string
	cr      *countingReader
	pos     func() int64 // bytes consumed, when cr does not count them
	at      int64        // pcapng: where the blocks of the packet being read start
	packets uint64
	pr      *pcapReader // what reads it when it is in memory (openMapped): called directly
}

// TruncatedError is a capture that ends in the middle of a packet (a
// capture cut short, or a file still being written). The packets before
// it were read.
type TruncatedError struct {
	File    string
	Offset  int64 // bytes of the (decompressed) capture read when it ended
	Packets uint64
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("egress: %s: capture truncated at byte %d, inside the packet after the %d read (the packets before it were analysed)", e.File, e.Offset, e.Packets)
}

func (s *fileSource) ReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	var (
		data []byte
		ci   gopacket.CaptureInfo
		err  error
	)
	if s.pr != nil {
		data, ci, err = s.pr.nextMem()
	} else {
		data, ci, err = s.read()
	}
	if err != nil {
		return nil, ci, s.readError(err)
	}
	s.packets++
	return data, ci, nil
}

// readMapped is ReadPacketData for a mapped file (s.pr is set) without
// the CaptureInfo: the packet's time in Unix nanoseconds is all
// Engine.runBatch needs.
func (s *fileSource) readMapped() ([]byte, int64, error) {
	data, ts, _, _, err := s.pr.recordMem()
	if err != nil {
		return nil, 0, s.readError(err)
	}
	s.packets++
	return data, ts, nil
}

// ReadError is a record of a capture file that cannot be read (a length
// over the snap length, a pcapng block that is not valid). The packets
// before it were read.
type ReadError struct {
	File    string
	Offset  int64 // where the record starts in the (decompressed) capture
	Packets uint64
	Err     error
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("egress: %s: record at byte %d (after %d packets): %v", e.File, e.Offset, e.Packets, e.Err)
}

func (e *ReadError) Unwrap() error { return e.Err }

// readError turns a record cut short into a TruncatedError, and a record
// that cannot be read into a ReadError.
func (s *fileSource) readError(err error) error {
	if errors.Is(err, io.EOF) {
		return err
	}
	off := s.cr.n
	if s.pos != nil {
		off = s.pos()
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		if s.at > 0 { // pcapng: pcapgo read the whole block
			off = s.at
		}
		return &ReadError{File: s.name, Offset: off, Packets: s.packets, Err: err}
	}
	return &TruncatedError{File: s.name, Offset: off, Packets: s.packets}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (s *fileSource) LinkType() layers.LinkType { return s.lt }

func (s *fileSource) sourceName() string { return s.name }

// ngSource reads pcapng, whose interfaces may each have a link type.
type ngSource struct{ *fileSource }

// PacketLinkType returns the link type of the interface that captured the
// packet (pcapgo puts it in AncillaryData[0]).
func (s *ngSource) PacketLinkType(ci gopacket.CaptureInfo) layers.LinkType {
	if len(ci.AncillaryData) > 0 {
		if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
			s.lt = lt
		}
	}
	return s.lt
}

var _ PacketLinkTyper = (*ngSource)(nil)

func (s *fileSource) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i].Close())
	}
	return errors.Join(errs...)
}

var _ PacketSource = (*fileSource)(nil)
