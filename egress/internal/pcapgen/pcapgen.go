package pcapgen

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Writer writes Ethernet/IPv4 packets to a pcap file. Each packet is stamped
// with Now, which then advances by Step.
type Writer struct {
	Now  time.Time
	Step time.Duration
	// Snap truncates the captured bytes of larger packets (the original
	// length stays in the record and in the IP header), keeping bulk
	// fixtures small. 0 keeps whole packets.
	Snap int

	// Sorted buffers the packets and writes them in time order on Flush, so
	// a scenario can be written block by block with overlapping times.
	Sorted bool

	w    *pcapgo.Writer
	recs []record
	buf  gopacket.SerializeBuffer
	pay  []byte
	N    int // packets written
	ipID uint16
}

// NewWriter writes the pcap file header to w.
func NewWriter(w io.Writer, start time.Time) (*Writer, error) {
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return nil, err
	}
	return &Writer{Now: start, Step: 100 * time.Microsecond, w: pw, buf: gopacket.NewSerializeBuffer()}, nil
}

func mac(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x02, 0x00, b[0], b[1], b[2], b[3]}
}

// payloadOf returns p, or n zero bytes when p is nil.
func (w *Writer) payloadOf(p []byte, n int) []byte {
	if p != nil {
		return p
	}
	if cap(w.pay) < n {
		w.pay = make([]byte, n)
	}
	return w.pay[:n]
}

// ARP writes a broadcast ARP request from sender for target (IPv4).
func (w *Writer) ARP(sender, target netip.Addr) error {
	eth := &layers.Ethernet{SrcMAC: mac(sender), DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: mac(sender), SourceProtAddress: sender.AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: target.AsSlice()}
	if err := gopacket.SerializeLayers(w.buf, gopacket.SerializeOptions{FixLengths: true}, eth, arp); err != nil {
		return err
	}
	return w.emit(w.buf.Bytes())
}

func (w *Writer) write(src, dst netip.Addr, l4 gopacket.SerializableLayer, proto layers.IPProtocol, payload []byte) error {
	w.ipID++
	eth := &layers.Ethernet{SrcMAC: mac(src), DstMAC: mac(dst), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: w.ipID, Flags: layers.IPv4DontFragment, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	switch t := l4.(type) {
	case *layers.TCP:
		_ = t.SetNetworkLayerForChecksum(ip)
	case *layers.UDP:
		_ = t.SetNetworkLayerForChecksum(ip)
	}
	if err := gopacket.SerializeLayers(w.buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, l4, gopacket.Payload(payload)); err != nil {
		return err
	}
	return w.emit(w.buf.Bytes())
}

// emit writes (or, when Sorted, buffers) one frame at w.Now.
func (w *Writer) emit(data []byte) error {
	ci := gopacket.CaptureInfo{Timestamp: w.Now, Length: len(data), CaptureLength: len(data)}
	if w.Snap > 0 && len(data) > w.Snap {
		data = data[:w.Snap]
		ci.CaptureLength = w.Snap
	}
	w.Now = w.Now.Add(w.Step)
	w.N++
	if w.Sorted {
		w.recs = append(w.recs, record{ci, append([]byte(nil), data...)})
		return nil
	}
	return w.w.WritePacket(ci, data)
}

type record struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// Flush writes the buffered packets of a Sorted writer in time order.
func (w *Writer) Flush() error {
	slices.SortStableFunc(w.recs, func(a, b record) int { return a.ci.Timestamp.Compare(b.ci.Timestamp) })
	for _, r := range w.recs {
		if err := w.w.WritePacket(r.ci, r.data); err != nil {
			return err
		}
	}
	w.recs = nil
	return nil
}

// UDP writes one datagram; a nil payload means n zero bytes.
func (w *Writer) UDP(src, dst netip.AddrPort, payload []byte, n int) error {
	u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	return w.write(src.Addr(), dst.Addr(), u, layers.IPProtocolUDP, w.payloadOf(payload, n))
}

// TCP flag sets.
const (
	SYN    = 1 << iota
	ACK    = 1 << iota
	FIN    = 1 << iota
	RST    = 1 << iota
	PSH    = 1 << iota
	SYNACK = SYN | ACK
)

// TCPSegment writes one TCP segment.
func (w *Writer) TCPSegment(src, dst netip.AddrPort, flags int, seq, ack uint32, payload []byte, n int) error {
	t := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ack, Window: 64240,
		SYN: flags&SYN != 0, ACK: flags&ACK != 0, FIN: flags&FIN != 0, RST: flags&RST != 0, PSH: flags&PSH != 0}
	return w.write(src.Addr(), dst.Addr(), t, layers.IPProtocolTCP, w.payloadOf(payload, n))
}

// Conn is a TCP connection being written.
type Conn struct {
	w          *Writer
	c, s       netip.AddrPort
	cseq, sseq uint32
	err        error
}

// Dial writes a three-way handshake from c to s.
func (w *Writer) Dial(c, s netip.AddrPort) *Conn {
	k := &Conn{w: w, c: c, s: s, cseq: 1000, sseq: 5000}
	k.seg(true, SYN, nil, 0)
	k.seg(false, SYNACK, nil, 0)
	k.seg(true, ACK, nil, 0)
	return k
}

func (k *Conn) seg(fromClient bool, flags int, p []byte, n int) {
	if k.err != nil {
		return
	}
	if p != nil {
		n = len(p)
	}
	if fromClient {
		k.err = k.w.TCPSegment(k.c, k.s, flags, k.cseq, k.sseq, p, n)
		k.cseq += uint32(n)
		if flags&(SYN|FIN) != 0 {
			k.cseq++
		}
	} else {
		k.err = k.w.TCPSegment(k.s, k.c, flags, k.sseq, k.cseq, p, n)
		k.sseq += uint32(n)
		if flags&(SYN|FIN) != 0 {
			k.sseq++
		}
	}
}

// Send writes data from the client (nil: n zero bytes), in segments of at most 1448 bytes.
func (k *Conn) Send(p []byte, n int) { k.send(true, p, n) }

// Reply writes data from the server.
func (k *Conn) Reply(p []byte, n int) { k.send(false, p, n) }

func (k *Conn) send(fromClient bool, p []byte, n int) {
	if p != nil {
		n = len(p)
	}
	for off := 0; off < n; off += 1448 {
		m := min(1448, n-off)
		var chunk []byte
		if p != nil {
			chunk = p[off : off+m]
		}
		k.seg(fromClient, ACK|PSH, chunk, m)
	}
}

// Close writes FIN from both sides.
func (k *Conn) Close() error {
	k.seg(true, FIN|ACK, nil, 0)
	k.seg(false, FIN|ACK, nil, 0)
	k.seg(true, ACK, nil, 0)
	return k.err
}

// Err returns the first write error.
func (k *Conn) Err() error { return k.err }

// DNSQuery builds a DNS query message for name.
func DNSQuery(id uint16, name string, qtype uint16) []byte {
	m := binary.BigEndian.AppendUint16(nil, id)
	m = append(m, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0)
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			m = append(m, byte(i-start))
			m = append(m, name[start:i]...)
			start = i + 1
		}
	}
	m = append(m, 0)
	m = binary.BigEndian.AppendUint16(m, qtype)
	return binary.BigEndian.AppendUint16(m, 1)
}

// DNSResponse builds a response to q with one A record.
func DNSResponse(q []byte, a netip.Addr) []byte {
	r := append([]byte(nil), q...)
	r[2], r[3] = 0x81, 0x80
	r[7] = 1 // ANCOUNT
	r = append(r, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4)
	return append(r, a.AsSlice()...)
}

// TLSClientHello returns the first TLS record(s) Go's TLS client sends for
// serverName (a real ClientHello; with its post-quantum key share it is
// larger than one TCP segment).
func TLSClientHello(serverName string) ([]byte, error) {
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	go func() {
		_ = tls.Client(c, &tls.Config{ServerName: serverName}).Handshake()
	}()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		return nil, fmt.Errorf("pcapgen: reading the ClientHello: %w", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		return nil, fmt.Errorf("pcapgen: reading the ClientHello: %w", err)
	}
	return append(hdr, body...), nil
}
