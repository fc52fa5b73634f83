package inspect

import (
	"bytes"
	"path"
	"regexp"
	"strings"
)

// Component is a piece of software found in the tree.
type Component struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Path is the file the version was read from (the first in path order).
	Path string `json:"path"`
	PURL string `json:"purl"`
	CPE  string `json:"cpe"`
	// FoundBy says how it was found (FoundVersionString, FoundOpkg, ...);
	// when several ways found it, the most confident one.
	FoundBy string `json:"found_by"`
	// Confidence is high, medium or low (see packages.go).
	Confidence string `json:"confidence"`
	// Note adds what the source said (vermagic, compiler string).
	Note string `json:"note,omitempty"`
	// Applets are the busybox applets linked in the tree.
	Applets []string `json:"applets,omitempty"`
	Vulns   []Vuln   `json:"vulns,omitempty"`
	// VulnNote says, when --vulns was given, why no vulnerability could
	// be matched (no version, no OSV package of that name, ...).
	VulnNote string `json:"vuln_note,omitempty"`
}

// componentPattern recognises one component in a string. The first
// submatch is the version.
type componentPattern struct {
	name string
	cpe  string // vendor:product of the CPE 2.3 name
	kind string // CycloneDX component type: library, application, operating-system, firmware
	hint string // a literal the string must contain, to skip the regexp cheaply
	re   *regexp.Regexp
}

var componentPatterns = []componentPattern{
	{name: "busybox", cpe: "busybox:busybox", kind: "application", hint: "BusyBox v",
		re: regexp.MustCompile(`BusyBox v(\d+\.\d+(?:\.\d+)?)`)},
	{name: "openssl", cpe: "openssl:openssl", kind: "library", hint: "OpenSSL ",
		re: regexp.MustCompile(`^OpenSSL (\d+\.\d+\.\d+[a-z]{0,2})(?:-[a-z]+)?\s+\d{1,2} [A-Z][a-z]{2} \d{4}`)},
	{name: "linux", cpe: "linux:linux_kernel", kind: "operating-system", hint: "Linux version ",
		re: regexp.MustCompile(`Linux version (\d+\.\d+(?:\.\d+)?)[^ ]* \(`)},
	{name: "dropbear", cpe: "dropbear_ssh_project:dropbear_ssh", kind: "application", hint: "ropbear",
		re: regexp.MustCompile(`(?:SSH-2\.0-dropbear_|Dropbear (?:SSH )?(?:multi-purpose )?v(?:ersion )?)(20\d\d\.\d+)`)},
	{name: "openssh", cpe: "openbsd:openssh", kind: "application", hint: "OpenSSH_",
		re: regexp.MustCompile(`^OpenSSH_(\d+\.\d+(?:p\d+)?)`)},
	{name: "lighttpd", cpe: "lighttpd:lighttpd", kind: "application", hint: "lighttpd/",
		re: regexp.MustCompile(`\blighttpd/(\d+\.\d+\.\d+)`)},
	{name: "boa", cpe: "boa:boa", kind: "application", hint: "Boa/",
		re: regexp.MustCompile(`\bBoa/(\d+\.\d+\.\d+(?:rc\d+)?)`)},
	{name: "goahead", cpe: "embedthis:goahead", kind: "application", hint: "GoAhead",
		re: regexp.MustCompile(`GoAhead(?:-http|-Webs|/)?[ /]?(\d+\.\d+\.\d+)`)},
	{name: "thttpd", cpe: "acme:thttpd", kind: "application", hint: "thttpd/",
		re: regexp.MustCompile(`\bthttpd/(\d+\.\d+[a-z]?)`)},
	{name: "uclibc", cpe: "uclibc:uclibc", kind: "library", hint: "uClibc",
		re: regexp.MustCompile(`uClibc(?:-ng)? (\d+\.\d+\.\d+(?:\.\d+)?)`)},
	{name: "glibc", cpe: "gnu:glibc", kind: "library", hint: "GNU C Library",
		re: regexp.MustCompile(`GNU C Library [^\n]*?(?:release|stable) (?:release )?version (\d+\.\d+(?:\.\d+)?)`)},
	{name: "curl", cpe: "haxx:curl", kind: "application", hint: "curl/",
		re: regexp.MustCompile(`\b(?:lib)?curl/(\d+\.\d+\.\d+)`)},
	{name: "zlib", cpe: "zlib:zlib", kind: "library", hint: "flate ",
		re: regexp.MustCompile(`\b(?:de|in)flate (\d+\.\d+\.\d+(?:\.\d+)?) Copyright`)},
	{name: "u-boot", cpe: "denx:u-boot", kind: "firmware", hint: "U-Boot ",
		re: regexp.MustCompile(`U-Boot (20\d\d\.\d\d(?:\.\d+)?)`)},
	{name: "dnsmasq", cpe: "thekelleys:dnsmasq", kind: "application", hint: "dnsmasq-",
		re: regexp.MustCompile(`\bdnsmasq-(\d+\.\d+)`)},
	{name: "hostapd", cpe: "w1.fi:hostapd", kind: "application", hint: "hostapd v",
		re: regexp.MustCompile(`\bhostapd v(\d+\.\d+(?:\.\d+)?)`)},
	{name: "wpa_supplicant", cpe: "w1.fi:wpa_supplicant", kind: "application", hint: "wpa_supplicant v",
		re: regexp.MustCompile(`\bwpa_supplicant v(\d+\.\d+(?:\.\d+)?)`)},
	{name: "live555", cpe: "live555:streaming_media", kind: "library", hint: "LIVE555 Streaming Media v",
		re: regexp.MustCompile(`LIVE555 Streaming Media v(20\d\d\.\d\d\.\d\d)`)},
	{name: "mbedtls", cpe: "arm:mbed_tls", kind: "library", hint: "mbed TLS ",
		re: regexp.MustCompile(`\bmbed TLS (\d+\.\d+\.\d+)`)},
	{name: "libupnp", cpe: "pupnp_project:pupnp", kind: "library", hint: "Portable SDK for UPnP devices/",
		re: regexp.MustCompile(`Portable SDK for UPnP devices/(\d+\.\d+\.\d+)`)},
	{name: "miniupnpd", cpe: "miniupnp_project:miniupnpd", kind: "application", hint: "MiniUPnPd/",
		re: regexp.MustCompile(`\bMiniUPnPd/(\d+\.\d+(?:\.\d+)?)`)},
	{name: "ntp", cpe: "ntp:ntp", kind: "application", hint: "ntpd ",
		re: regexp.MustCompile(`\bntpd (\d+\.\d+\.\d+(?:p\d+)?)`)},
}

// pathPatterns recognise components from file names in the tree.
var pathPatterns = []struct {
	name, cpe, kind string
	re              *regexp.Regexp
}{
	{"uclibc", "uclibc:uclibc", "library", regexp.MustCompile(`^(?:libuClibc|ld-uClibc)-(\d+\.\d+\.\d+(?:\.\d+)?)\.so$`)},
	{"glibc", "gnu:glibc", "library", regexp.MustCompile(`^(?:libc|ld)-(\d+\.\d+)\.so$`)},
	{"linux", "linux:linux_kernel", "operating-system", regexp.MustCompile(`(?:^|/)lib/modules/(\d+\.\d+\.\d+)[^/]*/`)},
}

func componentIndexKey(name, version string) string { return name + "@" + version }

func newComponent(name, version, cpe string) Component {
	return Component{
		Name:    name,
		Version: version,
		PURL:    "pkg:generic/" + name + "@" + version,
		CPE:     "cpe:2.3:" + cpePart(name) + ":" + cpe + ":" + cpeEscape(version) + ":*:*:*:*:*:*:*",
	}
}

func cpePart(name string) string {
	switch name {
	case "linux":
		return "o"
	case "u-boot":
		return "o"
	}
	return "a"
}

func cpeEscape(v string) string {
	var b strings.Builder
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// componentKind returns the CycloneDX type of a component name.
func componentKind(name string) string {
	for _, p := range componentPatterns {
		if p.name == name {
			return p.kind
		}
	}
	for _, p := range pathPatterns {
		if p.name == name {
			return p.kind
		}
	}
	return "library"
}

func (sc *stringChecks) checkComponents(s []byte) {
	for i := range componentPatterns {
		p := &componentPatterns[i]
		if !bytes.Contains(s, []byte(p.hint)) {
			continue
		}
		m := p.re.FindSubmatch(s)
		if m == nil {
			continue
		}
		if sc.components == nil {
			sc.components = map[string]Component{}
		}
		v := string(m[1])
		comp := newComponent(p.name, v, p.cpe)
		comp.FoundBy, comp.Confidence = FoundVersionString, ConfidenceMedium
		sc.components[componentIndexKey(p.name, v)] = comp
	}
}

// componentsFromPath recognises libraries and kernel modules by file name.
func (c *collector) componentsFromPath(p string) {
	for _, pp := range pathPatterns {
		target := path.Base(p)
		if pp.name == "linux" {
			target = p
		}
		m := pp.re.FindStringSubmatch(target)
		if m == nil {
			continue
		}
		comp := newComponent(pp.name, m[1], pp.cpe)
		comp.Path = p
		comp.FoundBy, comp.Confidence = FoundFileName, ConfidenceMedium
		if pp.name == "linux" {
			comp.Path = p[:strings.Index(p, "lib/modules/")+len("lib/modules/")+len(m[1])]
		}
		c.addComponent(comp)
	}
}
