package inspect

import (
	"archive/zip"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testOSVFeed is a tiny offline OSV feed in the format of osv.dev's exports.
const testOSVFeed = `[
 {"id": "CVE-2017-3735", "summary": "OpenSSL IPAddressFamily one-byte overread",
  "database_specific": {"severity": "MODERATE"},
  "affected": [{"package": {"name": "openssl", "ecosystem": "Generic"},
   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0.2"}, {"fixed": "1.0.2m"}]}]}]},
 {"id": "OSV-TEST-FIXED", "summary": "fixed long ago",
  "affected": [{"package": {"name": "BusyBox"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.20.0"}]}]}]},
 {"id": "CVE-2016-2148", "summary": "BusyBox udhcpc heap overflow",
  "affected": [{"package": {"name": "busybox"}, "versions": ["1.24.1", "1.24.2"]}]},
 {"id": "CVE-2019-TEST", "affected": [{"package": {"name": "linux_kernel"},
  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "4.9"}, {"last_affected": "4.9.40"}]}]}]}
]`

func TestVulnDB(t *testing.T) {
	db, err := ParseVulnDB([]byte(testOSVFeed))
	if err != nil {
		t.Fatal(err)
	}
	if db.Len() != 4 {
		t.Fatalf("Len = %d", db.Len())
	}
	for _, tc := range []struct {
		name, version string
		want          []string
	}{
		{"openssl", "1.0.2k", []string{"CVE-2017-3735"}},
		{"openssl", "1.0.2m", nil},
		{"openssl", "1.0.1u", nil},
		{"busybox", "1.24.1", []string{"CVE-2016-2148"}},
		{"busybox", "1.19.4", []string{"OSV-TEST-FIXED"}},
		{"linux", "4.9.37", []string{"CVE-2019-TEST"}},
		{"linux", "4.9.41", nil},
		{"dropbear", "2019.78", nil},
	} {
		got := db.Match(tc.name, tc.version)
		var ids []string
		for _, v := range got {
			ids = append(ids, v.ID)
		}
		if len(ids) != len(tc.want) || len(ids) > 0 && ids[0] != tc.want[0] {
			t.Errorf("Match(%s, %s) = %v; want %v", tc.name, tc.version, ids, tc.want)
		}
	}
	if v := db.Match("openssl", "1.0.2k"); v[0].Fixed != "1.0.2m" || v[0].severity() != SeverityMedium {
		t.Errorf("fixed/severity = %+v", v[0])
	}
}

func TestParseVulnDBForms(t *testing.T) {
	for _, in := range []string{
		`{"vulns": [{"id": "A", "affected": [{"package": {"name": "x"}, "versions": ["1"]}]}]}`,
		`{"id": "A", "affected": [{"package": {"name": "x"}, "versions": ["1"]}]}`,
		"{\"id\": \"A\", \"affected\": [{\"package\": {\"name\": \"x\"}, \"versions\": [\"1\"]}]}\n{\"id\": \"B\"}\n",
	} {
		db, err := ParseVulnDB([]byte(in))
		if err != nil || len(db.Match("x", "1")) != 1 {
			t.Errorf("ParseVulnDB(%q): %v", in, err)
		}
	}
	for _, in := range []string{"", "[", `[{"summary": "no id"}]`, `{"id": 3}`} {
		if _, err := ParseVulnDB([]byte(in)); err == nil {
			t.Errorf("ParseVulnDB(%q) accepted bad input", in)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.0.2", "1.0.2a", -1}, {"1.0.2k", "1.0.2m", -1}, {"1.0.2k", "1.0.10", -1}, {"1.24.1", "1.24.1", 0},
		{"4.9.37", "4.9", 1}, {"2019.78", "2020.79", -1}, {"1.1.1w", "3.0.0", -1}, {"7.4p1", "7.4", 1},
	} {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%s, %s) = %d; want %d", tc.a, tc.b, got, tc.want)
		}
		if got := compareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("compareVersions(%s, %s) = %d; want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func FuzzParseVulnDB(f *testing.F) {
	f.Add([]byte(testOSVFeed))
	f.Add([]byte(`{"vulns": []}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		db, err := ParseVulnDB(data)
		if err != nil {
			return
		}
		for _, n := range []string{"openssl", "busybox", "linux", "x"} {
			db.Match(n, "1.0.2k")
		}
	})
}

// TestOSVArchiveAndFolder: OSV data as published (a folder of OSV JSON, and
// the same zipped like osv.dev's per-ecosystem all.zip) is matched by name
// for generic components and by package URL for dpkg ones; what cannot be
// matched says why.
func TestOSVArchiveAndFolder(t *testing.T) {
	dirDB, err := ParseVulnDir(os.DirFS("testdata/osv"))
	if err != nil {
		t.Fatal(err)
	}
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	err = fs.WalkDir(os.DirFS("testdata/osv"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(filepath.Join("testdata/osv", p))
		if err != nil {
			return err
		}
		w, err := zw.Create(p)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	})
	if err != nil || zw.Close() != nil {
		t.Fatal(err)
	}
	zipDB, err := ParseVulnZip(bytes.NewReader(zbuf.Bytes()), int64(zbuf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	for name, db := range map[string]*VulnDB{"folder": dirDB, "zip": zipDB} {
		if db.Len() != 3 {
			t.Fatalf("%s: %d entries", name, db.Len())
		}
		for _, tc := range []struct {
			c        Component
			ids, why string
		}{
			{Component{Name: "openssl", Version: "1.0.2k", PURL: "pkg:generic/openssl@1.0.2k"}, "OSV-TEST-openssl", ""},
			{Component{Name: "busybox", Version: "1.24.1", PURL: "pkg:generic/busybox@1.24.1"}, "OSV-TEST-busybox", ""},
			{Component{Name: "busybox", Version: "1.36.1", PURL: "pkg:generic/busybox@1.36.1"}, "", "1 OSV entries checked, none affects this version"},
			{Component{Name: "dropbear", Version: "2022.83-1", PURL: "pkg:deb/debian/dropbear@2022.83-1"}, "DSA-TEST-dropbear", ""},
			{Component{Name: "uhttpd", Version: "2021-03-21", PURL: "pkg:generic/uhttpd@2021-03-21"}, "", "not matched: no OSV entry names uhttpd"},
			{Component{Name: "curl", Version: "7.88.1", PURL: "pkg:deb/debian/curl@7.88.1"}, "", "not matched: no OSV entry for pkg:deb/debian/curl"},
			{Component{Name: "libssl", Version: "1.0.0", PURL: "pkg:generic/libssl@1.0.0", FoundBy: FoundSONAME}, "", "not matched: an ABI version (ELF SONAME), not a release"},
			{Component{Name: "busybox", PURL: "pkg:generic/busybox", FoundBy: FoundApplets}, "", "not matched: no version"},
		} {
			vs, why := db.MatchComponent(&tc.c)
			var ids []string
			for _, v := range vs {
				ids = append(ids, v.ID)
			}
			if strings.Join(ids, " ") != tc.ids || why != tc.why {
				t.Errorf("%s: %s@%s = %v %q; want %q %q", name, tc.c.Name, tc.c.Version, ids, why, tc.ids, tc.why)
			}
		}
	}
	if _, err := ParseVulnZip(bytes.NewReader([]byte("not a zip")), 9); err == nil {
		t.Error("a file that is no zip was accepted")
	}
}
