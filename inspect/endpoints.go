package inspect

import (
	"bytes"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"

	"github.com/cordon-vms/cordon/internal/watchlist"
	"golang.org/x/net/publicsuffix"
)

// Endpoint is a URL, domain or IP address found in the tree.
type Endpoint struct {
	Value string `json:"value"`
	// Kind is url, domain or ip.
	Kind string `json:"kind"`
	// Vendor is the watch-list vendor the endpoint belongs to, or empty.
	Vendor string `json:"vendor"`
	// Scope is vendor-cloud (on the watch-list), public, or private (RFC 1918,
	// loopback, link-local, multicast and other non-routable addresses).
	Scope string   `json:"scope"`
	Paths []string `json:"paths"`
}

// Endpoint scopes.
const (
	ScopeVendor  = "vendor-cloud"
	ScopePublic  = "public"
	ScopePrivate = "private"
)

const (
	maxEndpointPaths     = 20
	maxEndpointsPerFile  = 500
	maxEndpointValueSize = 512
)

var (
	urlRE    = regexp.MustCompile(`(?i)\b(?:https?|ftps?|tftp|rtsps?|rtmp|mqtts?|wss?|sftp)://[^\s"'<>\\^{}|` + "`" + `]{3,}`)
	ipRE     = regexp.MustCompile(`\b(?:\d{1,3}\.){3}\d{1,3}\b`)
	domainRE = regexp.MustCompile(`(?i)\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,12}\b`)
)

// Bare domain names in strings are accepted only when (see hostShape):
//   - the top-level domain is in hostTLDs (all in the ICANN section of the
//     public suffix list, golang.org/x/net/publicsuffix, which also gives
//     the registrable label: vendor in vendor.com.cn);
//   - the name is all lower case (or all upper case), and has a label before
//     its public suffix of at least 3 characters (2 for com, net, org and cn:
//     qq.com; 5 for a bare name under a two-letter country code, where most
//     random matches fall: vendor.de but not qtx.ke), holding a vowel (a letter
//     under com, net, org and cn);
//   - it stands alone in its string: at the start or after a space, quote,
//     '=', ':', ',', '(', '<', '[' or '{', and at the end or before one of
//     those, ';', ')', '>', ']', '}' or a final '.' (not before '/': a bare
//     host/path is a Go module or a file path; endpoints have a scheme).
// URLs (a scheme and "://") accept any host whose top-level domain is real.
// Together they keep random bytes from reading as names: 100 MiB of random
// data yields none (TestRandomDataNoEndpoints and docs/inspect.md).

// hostTLDs are the top-level domains accepted for bare names: the legacy
// generic ones and the country codes firmware endpoints use, checked against
// the ICANN section of the public suffix list at start-up. Left out on
// purpose, because most of their bare matches in binaries are file names or
// dotted identifiers (measured on Debian's /usr/bin and
// /usr/lib/x86_64-linux-gnu): .so .sh .pl .py .md .rs .in .cc .mk .ac .am
// .ai .id .pl .ph .at .no .ch .se .fi .dk .cz .be .co .top .ar .mx .tr .ca
// .me .it .us .fr .es .ir .info .site .app .dev .online and
// the new generic TLDs (.link .network .target ...). URLs accept any ICANN
// TLD.
var hostTLDs = map[string]bool{}

func init() {
	for _, t := range strings.Fields(`com net org biz io cn de uk ru jp kr tw hk eu nl au br tv xyz
		cloud vn th my sg ua kz gov edu mil asia tech`) {
		if !realTLD(t) {
			panic("inspect: " + t + " is not an ICANN top-level domain")
		}
		hostTLDs[t] = true
	}
}

// shortSLDSuffixes accept a 2-character label before them (qq.com, hp.com).
var shortSLDSuffixes = map[string]bool{"com": true, "net": true, "org": true, "cn": true, "com.cn": true}

// realTLD reports whether tld (lower case) is in the ICANN section of the
// public suffix list.
func realTLD(tld string) bool {
	if tld == "" {
		return false
	}
	_, icann := publicsuffix.PublicSuffix("x." + tld)
	return icann
}

// hostShape reports whether d (lower case, dotted labels) has the label
// structure of a host name rather than of a file name, key or noise.
func hostShape(d string) bool {
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return false
	}
	tld := labels[len(labels)-1]
	if !hostTLDs[tld] {
		return false
	}
	ps, _ := publicsuffix.PublicSuffix(d)
	if len(ps) >= len(d) {
		return false // only a public suffix: "co.uk"
	}
	rest := strings.TrimSuffix(d[:len(d)-len(ps)], ".")
	sld := rest[strings.LastIndexByte(rest, '.')+1:]
	switch {
	case shortSLDSuffixes[ps]:
		return len(sld) >= 2 && strings.ContainsAny(sld, "abcdefghijklmnopqrstuvwxyz")
	case len(ps) == 2 && len(labels) == 2:
		// A bare name under a two-letter country code: most random
		// matches are of this shape (a third of all two-letter pairs are
		// country codes), so it needs a longer label.
		if len(sld) < 5 {
			return false
		}
	case len(sld) < 3:
		return false
	}
	return strings.ContainsAny(sld, "aeiouy")
}

// oneCase reports whether the letters of s are all lower case or all upper
// case.
func oneCase(s []byte) bool {
	var lower, upper bool
	for _, b := range s {
		lower = lower || b >= 'a' && b <= 'z'
		upper = upper || b >= 'A' && b <= 'Z'
	}
	return !(lower && upper)
}

// hostBefore and hostAfter are the bytes that may stand next to a bare name.
func hostBefore(b byte) bool { return strings.IndexByte(" \t\"'=:,(<[{", b) >= 0 }
func hostAfter(b byte) bool  { return strings.IndexByte(" \t\"'=:,;)>]}", b) >= 0 }

// reverseDNSRoots start Java/D-Bus style reverse-DNS identifiers.
var reverseDNSRoots = map[string]bool{"com": true, "org": true, "net": true, "io": true, "edu": true, "gov": true}

// noiseDomains are registered domains that appear in firmware as schema,
// licence, documentation or protocol-name strings, not as endpoints.
var noiseDomains = map[string]bool{}

func init() {
	for _, d := range strings.Fields(`example.com example.net example.org w3.org xmlsoap.org xml.org purl.org
		ietf.org iana.org rfc-editor.org gnu.org fsf.org apache.org openssl.org busybox.net kernel.org
		uclibc.org uclibc-ng.org musl-libc.org mozilla.org json-schema.org microsoft.com adobe.com
		creativecommons.org opensource.org freedesktop.org gnome.org python.org perl.org cpan.org onvif.org
		tempuri.org openssh.com libssh.org ucc.asn.au haxx.se zlib.net gnutls.org sqlite.org lighttpd.net
		boa.org openwrt.org denx.de infradead.org sourceware.org gcc.gnu.org oasis-open.org w3c.org
		xmpp.org jabber.org php.net github.io localhost.localdomain`) {
		noiseDomains[d] = true
	}
}

func isNoiseDomain(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".local") || strings.HasSuffix(host, ".localdomain") ||
		strings.HasSuffix(host, ".example") || strings.HasSuffix(host, ".test") || strings.HasSuffix(host, ".invalid") {
		return true
	}
	for h := host; h != ""; {
		if noiseDomains[h] {
			return true
		}
		dot := strings.IndexByte(h, '.')
		if dot < 0 {
			break
		}
		h = h[dot+1:]
	}
	return false
}

// checkEndpoints finds URLs, bare domains and IPv4 addresses in one string.
func (sc *stringChecks) checkEndpoints(s []byte) {
	if bytes.IndexByte(s, '.') < 0 {
		return
	}
	var urls [][]int // spans of URLs: their hosts are not added again as bare names or addresses
	if bytes.Contains(s, []byte("://")) {
		urls = urlRE.FindAllIndex(s, 8)
		for _, loc := range urls {
			sc.addURL(string(s[loc[0]:loc[1]]))
		}
	}
	if len(urls) == 0 && hasTLD(s) {
		for _, loc := range domainRE.FindAllIndex(s, 8) {
			if !standsAlone(s, loc[0], loc[1]) {
				continue // part of a path, an e-mail address, an identifier or a longer token
			}
			sc.addDomain(string(s[loc[0]:loc[1]]))
		}
	}
	if !hasDottedDigits(s) {
		return
	}
	for _, loc := range ipRE.FindAllIndex(s, 8) {
		if loc[0] > 0 && (s[loc[0]-1] == '.' || s[loc[0]-1] == 'v' || s[loc[0]-1] == 'V' || s[loc[0]-1] == '-') {
			continue // part of a longer dotted number or a version
		}
		if loc[1]+1 < len(s) && s[loc[1]] == '.' && s[loc[1]+1] >= '0' && s[loc[1]+1] <= '9' {
			continue
		}
		inURL := false
		for _, u := range urls {
			inURL = inURL || loc[0] >= u[0] && loc[1] <= u[1]
		}
		if inURL {
			continue
		}
		sc.addIP(string(s[loc[0]:loc[1]]))
	}
}

// standsAlone reports whether s[i:j] is delimited as a bare name.
func standsAlone(s []byte, i, j int) bool {
	if i > 0 && !hostBefore(s[i-1]) {
		return false
	}
	if j < len(s) && !hostAfter(s[j]) && !(s[j] == '.' && (j+1 == len(s) || s[j+1] == ' ')) {
		return false
	}
	return oneCase(s[i:j])
}

// hasTLD reports whether s has a dot followed by 2 to 12 letters and a word
// boundary: a cheap filter before the domain regexp.
func hasTLD(s []byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '.' {
			continue
		}
		j := i + 1
		for j < len(s) && j-i <= 12 && (s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z') {
			j++
		}
		if j-i < 3 || j-i > 13 || j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '_') {
			continue
		}
		return true
	}
	return false
}

// hasDottedDigits reports whether s has a digit, a dot and a digit: a cheap
// filter before the IPv4 regexp.
func hasDottedDigits(s []byte) bool {
	for i := 1; i+1 < len(s); i++ {
		if s[i] == '.' && s[i-1] >= '0' && s[i-1] <= '9' && s[i+1] >= '0' && s[i+1] <= '9' {
			return true
		}
	}
	return false
}

func (sc *stringChecks) put(e Endpoint) {
	if sc.endpoints == nil {
		sc.endpoints = map[string]Endpoint{}
	}
	if len(sc.endpoints) >= maxEndpointsPerFile || len(e.Value) > maxEndpointValueSize {
		return
	}
	sc.endpoints[e.Value] = e
}

func (sc *stringChecks) addURL(raw string) {
	raw = strings.TrimRight(raw, ".,;:)]'\"")
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return
	}
	host := u.Hostname()
	if pw, ok := u.User.Password(); ok && !placeholder(pw) && pw != "" {
		sc.addFinding(Finding{Rule: RuleURLCredential, Severity: SeverityMedium, Path: sc.path,
			Evidence: fmt.Sprintf("%s://%s:%s@%s", u.Scheme, u.User.Username(), pw, u.Host)})
	}
	if a, err := netip.ParseAddr(host); err == nil {
		scope, vendor := classifyAddr(sc.c.o.Watchlist, a)
		sc.put(Endpoint{Value: raw, Kind: "url", Vendor: vendor, Scope: scope})
		return
	}
	if !plausibleHost(host) || !realTLD(strings.ToLower(host[strings.LastIndexByte(host, '.')+1:])) || isNoiseDomain(host) {
		return
	}
	scope, vendor := classifyDomain(sc.c.o.Watchlist, host)
	sc.put(Endpoint{Value: raw, Kind: "url", Vendor: vendor, Scope: scope})
}

func (sc *stringChecks) addDomain(d string) {
	d = strings.ToLower(d)
	if !hostShape(d) {
		return
	}
	labels := strings.Split(d, ".")
	if reverseDNSRoots[labels[0]] {
		return // reverse-DNS identifiers: com.vendor.app, org.freedesktop.DBus
	}
	if c := labels[0][0]; c >= '0' && c <= '9' && strings.HasPrefix(labels[0][1:], "www") {
		return // "0www.example.net": a DER length byte before a name in an embedded certificate
	}
	if isNoiseDomain(d) {
		return
	}
	scope, vendor := classifyDomain(sc.c.o.Watchlist, d)
	sc.put(Endpoint{Value: d, Kind: "domain", Vendor: vendor, Scope: scope})
}

func (sc *stringChecks) addIP(s string) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return
	}
	scope, vendor := classifyAddr(sc.c.o.Watchlist, a)
	if vendor == "" && versionLike(a) {
		return
	}
	sc.put(Endpoint{Value: a.String(), Kind: "ip", Vendor: vendor, Scope: scope})
}

// wellKnownResolvers are public DNS resolvers that firmware hard-codes; they
// would otherwise look like version numbers.
var wellKnownResolvers = map[string]bool{"8.8.8.8": true, "8.8.4.4": true, "1.1.1.1": true, "1.0.0.1": true,
	"9.9.9.9": true, "4.2.2.1": true, "4.2.2.2": true}

// versionLike reports dotted numbers that are more likely versions than
// addresses: 2.6.36.4, 1.2.3.4, object identifiers, 0.x.y.z and masks.
func versionLike(a netip.Addr) bool {
	if wellKnownResolvers[a.String()] {
		return false
	}
	b := a.As4()
	if b[0] == 0 || b[0] == 255 {
		return true
	}
	if b[0] <= 2 && b[1] < 40 {
		return true // an ASN.1 object identifier: 1.3.101.110, 2.5.4.3
	}
	return b[0] < 10 && b[1] < 32 && b[2] < 100 && b[3] < 100
}

func plausibleHost(h string) bool {
	if !strings.Contains(h, ".") || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

func classifyDomain(wl *watchlist.List, host string) (scope, vendor string) {
	if e, ok := wl.MatchDomain(host); ok {
		return ScopeVendor, e.Vendor
	}
	return ScopePublic, ""
}

func classifyAddr(wl *watchlist.List, a netip.Addr) (scope, vendor string) {
	if e, ok := wl.MatchAddr(a); ok {
		return ScopeVendor, e.Vendor
	}
	if !publicAddr(a) {
		return ScopePrivate, ""
	}
	return ScopePublic, ""
}

var nonPublic = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
		"203.0.113.0/24", "224.0.0.0/3", "::1/128", "fc00::/7", "fe80::/10", "2001:db8::/32"} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// publicAddr reports whether a is a routable unicast address outside the
// private, shared, documentation and multicast ranges.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// endpointFindings turns an aggregated endpoint into its finding, if any.
func (c *collector) endpointFindings(e *Endpoint) {
	first := ""
	if len(e.Paths) > 0 {
		first = e.Paths[0]
	}
	detail := ""
	if len(e.Paths) > 1 {
		detail = fmt.Sprintf("also in %d other file(s)", len(e.Paths)-1)
	}
	switch {
	case e.Scope == ScopeVendor:
		c.findings = append(c.findings, Finding{Rule: RuleVendorCloud, Severity: SeverityMedium, Path: first,
			Evidence: fmt.Sprintf("%s %s (%s)", e.Kind, e.Value, e.Vendor), Detail: detail})
	case e.Kind == "ip" && e.Scope == ScopePublic:
		c.findings = append(c.findings, Finding{Rule: RuleHardcodedIP, Severity: SeverityLow, Path: first,
			Evidence: e.Value, Detail: detail})
	}
}

// WatchlistEntries turns the report's endpoints into egress watch-list
// entries: every vendor-cloud or public host and address (private addresses
// are left out), noting the files they were found in.
func (r *Report) WatchlistEntries() []watchlist.Entry {
	seen := map[string]bool{}
	var out []watchlist.Entry
	for _, e := range r.Endpoints {
		if e.Scope == ScopePrivate {
			continue
		}
		host := e.Value
		if e.Kind == "url" {
			u, err := url.Parse(e.Value)
			if err != nil {
				continue
			}
			host = u.Hostname()
		}
		we := watchlist.Entry{Vendor: e.Vendor, Note: "found by cordon inspect in " + strings.Join(e.Paths, ", ")}
		if a, err := netip.ParseAddr(host); err == nil {
			if !publicAddr(a) {
				continue
			}
			we.IP = a.String()
		} else {
			we.Domain = strings.ToLower(host)
		}
		key := we.IP + we.Domain
		if seen[key] {
			continue
		}
		seen[key] = true
		if we.Vendor == "" {
			we.Vendor = "unknown"
		}
		out = append(out, we)
	}
	return out
}
