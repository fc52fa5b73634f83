package inspect

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/csv"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"
)

// How a component was found (Component.FoundBy), and the confidence each
// method gives (Component.Confidence).
const (
	FoundVersionString = "version string"     // a banner in a binary: "BusyBox v1.24.1"
	FoundFileName      = "file name"          // libuClibc-0.9.33.2.so, lib/modules/4.9.37/
	FoundOpkg          = "opkg status"        // usr/lib/opkg/status, *.control (also ipkg)
	FoundDpkg          = "dpkg status"        // var/lib/dpkg/status
	FoundBuildroot     = "buildroot manifest" // legal-info/manifest.csv
	FoundBuildrootConf = "buildroot .config"  // BR2_ version settings and the header
	FoundSONAME        = "ELF SONAME"         // a library's DT_SONAME (its ABI version)
	FoundNeeded        = "ELF DT_NEEDED"      // a library a binary needs (ABI version)
	FoundVermagic      = "module vermagic"    // vermagic= in a kernel module's .modinfo
	FoundComment       = "ELF .comment"       // "GCC: (Buildroot 2019.02) 6.5.0"
	FoundUImage        = "uImage header"      // the image name of a uImage/FIT in report.json
	FoundApplets       = "busybox applet links"
)

// Confidences.
const (
	ConfidenceHigh   = "high"   // a package database or a kernel module's own vermagic
	ConfidenceMedium = "medium" // a version banner, a file name, a compiler note, a uImage name
	ConfidenceLow    = "low"    // an ABI version (SONAME, DT_NEEDED) or no version at all
)

var confidenceRank = map[string]int{ConfidenceLow: 0, ConfidenceMedium: 1, ConfidenceHigh: 2}

// better reports whether a should replace b for the same name and version:
// a higher confidence, then the smaller path (stable reports).
func better(a, b *Component) bool {
	ra, rb := confidenceRank[a.Confidence], confidenceRank[b.Confidence]
	return ra > rb || ra == rb && a.Path < b.Path
}

// addComponent records comp, keeping the best of equal name and version.
func (c *collector) addComponent(comp Component) {
	k := componentIndexKey(comp.Name, comp.Version)
	c.mu.Lock()
	defer c.mu.Unlock()
	if have, ok := c.components[k]; !ok || better(&comp, have) {
		if ok && len(have.Applets) > 0 && len(comp.Applets) == 0 {
			comp.Applets = have.Applets
		}
		c.components[k] = &comp
	}
}

// sourcedComponent is newComponent with its method, confidence and path.
func sourcedComponent(name, version, cpe, purlType, foundBy, confidence, p string) Component {
	comp := newComponent(name, version, cpe)
	if purlType != "" {
		comp.PURL = purlType + name
		if version != "" {
			comp.PURL += "@" + version
		}
	}
	comp.FoundBy, comp.Confidence, comp.Path = foundBy, confidence, p
	return comp
}

const maxPackages = 20000 // entries read from one package database

// checkPackageDB parses the package databases embedded Linux systems carry.
func (c *collector) checkPackageDB(f *fileView) {
	lp := strings.ToLower(f.path)
	base := path.Base(lp)
	switch {
	case strings.HasSuffix(lp, "opkg/status") || strings.HasSuffix(lp, "ipkg/status") ||
		(strings.Contains(lp, "opkg/") || strings.Contains(lp, "ipkg/")) && strings.HasSuffix(base, ".control"):
		c.controlStanzas(f, FoundOpkg, "") // purl has no opkg type: pkg:generic
	case strings.HasSuffix(lp, "dpkg/status"):
		c.controlStanzas(f, FoundDpkg, "pkg:deb/debian/")
	case base == "manifest.csv" && strings.Contains(lp, "legal-info"):
		c.buildrootManifest(f)
	case base == ".config" || base == "buildroot.config" || base == "defconfig":
		c.buildrootConfig(f)
	}
}

// controlStanzas reads Debian-style control stanzas (Package:, Version:,
// Status:) of dpkg and opkg; packages whose Status says not-installed or
// deinstall are skipped.
func (c *collector) controlStanzas(f *fileView, foundBy, purlType string) {
	if !isText(f.data) {
		return
	}
	var name, version, status string
	n := 0
	flush := func() {
		if name != "" && version != "" && n < maxPackages && !strings.Contains(status, "not-installed") &&
			!strings.HasPrefix(status, "deinstall") && !strings.HasPrefix(status, "purge") {
			n++
			c.addComponent(sourcedComponent(strings.ToLower(name), version, cpeFor(name), purlType, foundBy, ConfidenceHigh, f.path))
		}
		name, version, status = "", "", ""
	}
	sc := bufio.NewScanner(bytes.NewReader(f.data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.TrimSpace(l) == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.HasPrefix(l, " ") {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "package":
			name = v
		case "version":
			version = v
		case "status":
			status = v
		}
	}
	flush()
}

// buildrootManifest reads Buildroot's legal-info/manifest.csv: "PACKAGE",
// "VERSION", "LICENSE", ...
func (c *collector) buildrootManifest(f *fileView) {
	r := csv.NewReader(bytes.NewReader(f.data))
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	head, err := r.Read()
	if err != nil {
		return
	}
	pi, vi := -1, -1
	for i, h := range head {
		switch strings.ToUpper(strings.TrimSpace(h)) {
		case "PACKAGE":
			pi = i
		case "VERSION":
			vi = i
		}
	}
	if pi < 0 || vi < 0 {
		return
	}
	for n := 0; n < maxPackages; n++ {
		rec, err := r.Read()
		if err == io.EOF {
			return
		}
		if err != nil || len(rec) <= max(pi, vi) {
			continue
		}
		name, version := strings.ToLower(strings.TrimSpace(rec[pi])), strings.TrimSpace(rec[vi])
		if name == "" || version == "" {
			continue
		}
		c.addComponent(sourcedComponent(name, version, cpeFor(name), "", FoundBuildroot, ConfidenceHigh, f.path))
	}
}

var (
	buildrootHeaderRE = regexp.MustCompile(`(?m)^# Buildroot (\d{4}\.\d{2}(?:\.\d+)?)\S* Configuration`)
	brKernelRE        = regexp.MustCompile(`(?m)^BR2_LINUX_KERNEL_(?:CUSTOM_)?VERSION(?:_VALUE)?="(\d+\.\d+(?:\.\d+)?)"`)
)

// buildrootConfig reads a Buildroot .config: the Buildroot release from
// its header and the kernel version it builds. Package selections carry no
// version and are not listed.
func (c *collector) buildrootConfig(f *fileView) {
	if !isText(f.data) || !bytes.Contains(f.data, []byte("BR2_")) {
		return
	}
	if m := buildrootHeaderRE.FindSubmatch(f.data); m != nil {
		c.addComponent(sourcedComponent("buildroot", string(m[1]), "buildroot:buildroot", "", FoundBuildrootConf, ConfidenceHigh, f.path))
	}
	if m := brKernelRE.FindSubmatch(f.data); m != nil {
		c.addComponent(sourcedComponent("linux", string(m[1]), "linux:linux_kernel", "", FoundBuildrootConf, ConfidenceMedium, f.path))
	}
}

// cpeFor returns the CPE vendor:product of a package name when inspect
// knows it, else name:name.
func cpeFor(name string) string {
	n := strings.ToLower(name)
	for _, p := range componentPatterns {
		if p.name == n {
			return p.cpe
		}
	}
	switch n {
	case "libopenssl", "openssl3", "libssl":
		return "openssl:openssl"
	case "libcurl":
		return "haxx:curl"
	case "linux", "kernel":
		return "linux:linux_kernel"
	}
	return n + ":" + n
}

var (
	sonameRE   = regexp.MustCompile(`^(lib[A-Za-z0-9_+-]+?)(?:-\d[\d.]*)?\.so\.(\d+(?:\.\d+)*)$`)
	vermagicRE = regexp.MustCompile(`^(\d+\.\d+(?:\.\d+)?)`)
	gccRE      = regexp.MustCompile(`^GCC: \(([^)]*)\) (\d+\.\d+(?:\.\d+)?)`)
	brToolRE   = regexp.MustCompile(`Buildroot (\d{4}\.\d{2}(?:\.\d+)?)`)
)

// elfComponents reads what an ELF says of its components: its SONAME and
// DT_NEEDED libraries (ABI versions, low confidence), a kernel module's
// vermagic, and the compiler in .comment.
func (c *collector) elfComponents(p string, f *elf.File) {
	lib := func(soname, foundBy string) {
		m := sonameRE.FindStringSubmatch(soname)
		if m == nil {
			return
		}
		comp := sourcedComponent(m[1], m[2], m[1]+":"+m[1], "", foundBy, ConfidenceLow, p)
		comp.CPE = "" // an ABI version is no release: no CPE to match
		c.addComponent(comp)
	}
	if v, err := f.DynString(elf.DT_SONAME); err == nil {
		for _, s := range v {
			lib(s, FoundSONAME)
		}
	}
	if v, err := f.DynString(elf.DT_NEEDED); err == nil {
		for i, s := range v {
			if i >= 64 {
				break
			}
			lib(s, FoundNeeded)
		}
	}
	if s := f.Section(".modinfo"); s != nil && s.Size < 1<<20 {
		if data, err := s.Data(); err == nil {
			for _, kv := range bytes.Split(data, []byte{0}) {
				if v, ok := bytes.CutPrefix(kv, []byte("vermagic=")); ok {
					if m := vermagicRE.FindSubmatch(v); m != nil {
						comp := sourcedComponent("linux", string(m[1]), "linux:linux_kernel", "", FoundVermagic, ConfidenceHigh, p)
						comp.Note = "vermagic " + string(bytes.TrimSpace(v))
						c.addComponent(comp)
					}
				}
			}
		}
	}
	if s := f.Section(".comment"); s != nil && s.Size < 64<<10 {
		if data, err := s.Data(); err == nil {
			for _, l := range bytes.Split(data, []byte{0}) {
				m := gccRE.FindSubmatch(l)
				if m == nil {
					continue
				}
				comp := sourcedComponent("gcc", string(m[2]), "gnu:gcc", "", FoundComment, ConfidenceMedium, p)
				comp.Note = "compiled by " + string(l)
				c.addComponent(comp)
				if b := brToolRE.FindSubmatch(m[1]); b != nil {
					c.addComponent(sourcedComponent("buildroot", string(b[1]), "buildroot:buildroot", "", FoundComment, ConfidenceMedium, p))
				}
			}
		}
	}
}

// maxApplets bounds the applet names kept.
const maxApplets = 512

// addApplet records a link to busybox: the applets it provides (telnetd,
// httpd, ftpd ...) tell which services the image can start.
func (c *collector) addApplet(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.applets) < maxApplets {
		c.applets[name] = true
	}
}

// appletComponents attaches the applets to the busybox component (or adds
// one without version when no banner was found).
func (c *collector) appletComponents() {
	if len(c.applets) == 0 {
		return
	}
	names := make([]string, 0, len(c.applets))
	for n := range c.applets {
		names = append(names, n)
	}
	sort.Strings(names)
	found := false
	for _, comp := range c.components {
		if comp.Name == "busybox" {
			comp.Applets = names
			found = true
		}
	}
	if !found {
		comp := sourcedComponent("busybox", "", "busybox:busybox", "", FoundApplets, ConfidenceLow, "")
		comp.PURL, comp.CPE = "pkg:generic/busybox", ""
		comp.Applets = names
		c.components[componentIndexKey("busybox", "")] = &comp
	}
}

// isBusyboxLink reports whether a link target names busybox.
func isBusyboxLink(target string) bool {
	b := path.Base(target)
	return b == "busybox" || b == "busybox.nosuid" || b == "busybox.suid"
}

var uimageKernelRE = regexp.MustCompile(`Linux-(\d+\.\d+(?:\.\d+)?)`)

// chunkComponents reads the kernel version from the image names of the
// uImage and FIT chunks of report.json ("Linux-4.9.37").
func (c *collector) chunkComponents(cs []*chunkInfo) {
	walkChunks(cs, func(ch *chunkInfo) {
		if ch.Format != "uimage" && ch.Format != "fit" {
			return
		}
		if m := uimageKernelRE.FindStringSubmatch(ch.Desc); m != nil {
			comp := sourcedComponent("linux", m[1], "linux:linux_kernel", "", FoundUImage, ConfidenceMedium, "")
			comp.Note = ch.where()
			c.addComponent(comp)
		}
	})
}
