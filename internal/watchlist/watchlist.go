// Package watchlist reads and writes cordon's watch-list files: the vendor
// cloud domains, addresses, ports and payload signatures that cameras are
// known to contact. The embedded default list seeds `cordon egress` and the
// endpoint classifier of `cordon inspect`; `cordon inspect --watchlist` writes
// the same format, so egress loads inspect's output as-is.
package watchlist

import (
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"

	"github.com/cordon-vms/cordon/internal/config"
	"go.yaml.in/yaml/v3"
)

//go:embed default.yml
var defaultYAML []byte

// Entry is one watch-list entry. Exactly one of Domain, IP, CIDR, or a
// port/payload signature (Proto with Port and/or PayloadPrefix) is set.
type Entry struct {
	// Domain is a registered domain; it matches itself and every name under it.
	Domain string `yaml:"domain,omitempty" json:"domain,omitempty"`
	// IP is one address.
	IP string `yaml:"ip,omitempty" json:"ip,omitempty"`
	// CIDR is an address range.
	CIDR string `yaml:"cidr,omitempty" json:"cidr,omitempty"`
	// Proto (tcp or udp) with Port and/or PayloadPrefix is a traffic signature.
	Proto string `yaml:"proto,omitempty" json:"proto,omitempty"`
	Port  uint16 `yaml:"port,omitempty" json:"port,omitempty"`
	// PayloadPrefix is the hex of the bytes a datagram or stream starts with.
	PayloadPrefix string `yaml:"payload_prefix,omitempty" json:"payload_prefix,omitempty"`
	// Framing is a datagram framing the payload must also have (with proto
	// udp): "pppp" is the PPPP/CS2 header, 0xF1, a message type and a
	// big-endian length equal to the rest of the datagram. Empty: none.
	Framing Framing `yaml:"framing,omitempty" json:"framing,omitempty"`
	// Vendor names who operates the endpoint (Hikvision, Dahua, ...), or "unknown".
	Vendor string `yaml:"vendor,omitempty" json:"vendor,omitempty"`
	// Note says why the entry is there (free text; inspect writes the files it was found in).
	Note string `yaml:"note,omitempty" json:"note,omitempty"`

	prefix  netip.Prefix
	payload []byte
}

// Framing names a datagram framing a payload signature also checks.
type Framing string

// FramingPPPP is the PPPP/CS2 P2P header: 0xF1, a message type, and the
// length of what follows the 4-byte header, big-endian.
const FramingPPPP Framing = "pppp"

// Validate reports an unknown framing.
func (f Framing) Validate() error {
	switch f {
	case "", FramingPPPP:
		return nil
	}
	return fmt.Errorf("framing %q: want pppp", string(f))
}

// matches reports whether a datagram whose payload starts with payload and
// is size bytes long on the wire (the capture may have kept fewer) has the
// framing.
func (f Framing) matches(payload []byte, size int) bool {
	switch f {
	case FramingPPPP:
		return len(payload) >= 4 && payload[0] == 0xf1 && int(payload[2])<<8|int(payload[3]) == size-4
	}
	return true
}

// File is the on-disk shape of a watch-list.
type File struct {
	Entries []Entry `yaml:"entries"`
}

// List is a validated watch-list, ready for matching.
type List struct {
	Entries []Entry
	domains map[string]int // registered domain (lower case) -> entry index
}

// Default returns the embedded vendor-cloud watch-list.
func Default() *List {
	l, err := Parse("default.yml", defaultYAML)
	if err != nil {
		panic("watchlist: embedded default list is invalid: " + err.Error())
	}
	return l
}

// Parse strictly decodes and validates a watch-list file.
func Parse(name string, data []byte) (*List, error) {
	var f File
	if err := config.Decode(name, data, &f); err != nil {
		return nil, err
	}
	l := &List{}
	var errs []error
	for i := range f.Entries {
		if err := l.add(f.Entries[i]); err != nil {
			errs = append(errs, fmt.Errorf("%s: entry %d: %w", name, i+1, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return l, nil
}

// Merge returns a list with the entries of l followed by those of other.
func (l *List) Merge(other *List) *List {
	out := &List{}
	for _, src := range []*List{l, other} {
		if src == nil {
			continue
		}
		for _, e := range src.Entries {
			_ = out.add(e) // already validated
		}
	}
	return out
}

func (l *List) add(e Entry) error {
	kinds := 0
	if e.Domain != "" {
		kinds++
		d := strings.TrimSuffix(strings.ToLower(strings.TrimPrefix(e.Domain, "*.")), ".")
		if !validDomain(d) {
			return fmt.Errorf("domain %q is not a valid domain name", e.Domain)
		}
		e.Domain = d
	}
	if e.IP != "" {
		kinds++
		a, err := netip.ParseAddr(e.IP)
		if err != nil {
			return fmt.Errorf("ip %q is not an IP address", e.IP)
		}
		e.prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if e.CIDR != "" {
		kinds++
		p, err := netip.ParsePrefix(e.CIDR)
		if err != nil {
			return fmt.Errorf("cidr %q is not an address range like 203.0.113.0/24", e.CIDR)
		}
		e.prefix = p.Masked()
	}
	if e.Port != 0 || e.PayloadPrefix != "" {
		kinds++
		switch e.Proto {
		case "tcp", "udp":
		default:
			return fmt.Errorf("proto %q: a port or payload signature needs proto tcp or udp", e.Proto)
		}
		if e.PayloadPrefix != "" {
			b, err := hex.DecodeString(e.PayloadPrefix)
			if err != nil || len(b) == 0 || len(b) > 64 {
				return fmt.Errorf("payload_prefix %q: want 1 to 64 bytes in hex, like f1", e.PayloadPrefix)
			}
			e.payload = b
		}
		if err := e.Framing.Validate(); err != nil {
			return err
		}
		if e.Framing != "" && (e.Proto != "udp" || e.PayloadPrefix == "") {
			return fmt.Errorf("framing %s applies to a payload_prefix with proto udp", e.Framing)
		}
	} else if e.Proto != "" {
		return fmt.Errorf("proto %q without port or payload_prefix matches nothing", e.Proto)
	} else if e.Framing != "" {
		return fmt.Errorf("framing %s applies to a payload_prefix with proto udp", e.Framing)
	}
	if kinds != 1 {
		return errors.New("set exactly one of domain, ip, cidr, or a proto with port/payload_prefix")
	}
	if e.Vendor == "" {
		e.Vendor = "unknown"
	}
	if e.Domain != "" {
		if l.domains == nil {
			l.domains = map[string]int{}
		}
		if _, dup := l.domains[e.Domain]; dup {
			return nil // first entry wins; duplicates are harmless
		}
		l.domains[e.Domain] = len(l.Entries)
	}
	l.Entries = append(l.Entries, e)
	return nil
}

func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// MatchDomain returns the entry whose domain is name or a parent of name.
func (l *List) MatchDomain(name string) (Entry, bool) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for name != "" {
		if i, ok := l.domains[name]; ok {
			return l.Entries[i], true
		}
		dot := strings.IndexByte(name, '.')
		if dot < 0 {
			break
		}
		name = name[dot+1:]
	}
	return Entry{}, false
}

// MatchAddr returns the first ip/cidr entry containing a.
func (l *List) MatchAddr(a netip.Addr) (Entry, bool) {
	a = a.Unmap()
	for i := range l.Entries { // by index: an Entry is ~200 bytes to copy
		if e := &l.Entries[i]; e.prefix.IsValid() && e.prefix.Contains(a) {
			return *e, true
		}
	}
	return Entry{}, false
}

// MatchTraffic returns the first port/payload signature matching a packet or
// flow of proto ("tcp"/"udp") to dstPort whose payload starts with payload
// (payload may be nil for flow records, which then match port-only entries).
// size is the payload's length on the wire, which a framing checks (the
// capture may have kept fewer bytes); 0 means len(payload).
func (l *List) MatchTraffic(proto string, dstPort uint16, payload []byte, size int) (Entry, bool) {
	if size <= 0 {
		size = len(payload)
	}
	for i := range l.Entries { // by index: an Entry is ~200 bytes to copy
		e := &l.Entries[i]
		if e.Proto == "" || e.Proto != proto {
			continue
		}
		if e.Port != 0 && e.Port != dstPort {
			continue
		}
		if e.payload != nil && (len(payload) < len(e.payload) || string(payload[:len(e.payload)]) != string(e.payload)) {
			continue
		}
		if !e.Framing.matches(payload, size) {
			continue
		}
		return *e, true
	}
	return Entry{}, false
}

// Write writes entries as a watch-list file that Parse reads back, sorted by
// kind and value so output is stable.
func Write(w io.Writer, header string, entries []Entry) error {
	es := append([]Entry(nil), entries...)
	sort.SliceStable(es, func(i, j int) bool { return sortKey(es[i]) < sortKey(es[j]) })
	if header != "" {
		for _, line := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
			if _, err := fmt.Fprintf(w, "# %s\n", line); err != nil {
				return err
			}
		}
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(File{Entries: es}); err != nil {
		return err
	}
	return enc.Close()
}

func sortKey(e Entry) string {
	switch {
	case e.Domain != "":
		return "1" + e.Domain
	case e.IP != "":
		return "2" + e.IP
	case e.CIDR != "":
		return "3" + e.CIDR
	}
	return fmt.Sprintf("4%s%05d%s", e.Proto, e.Port, e.PayloadPrefix)
}
