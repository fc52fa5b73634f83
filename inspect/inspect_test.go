package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/cordon-vms/cordon/internal/watchlist"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

func runFixture(t *testing.T, dir string, o Options) *Report {
	t.Helper()
	o.Logger = testutil.Logger(t)
	r, err := Run(context.Background(), dir, os.DirFS(dir), o)
	if err != nil {
		t.Fatalf("Run(%s): %v", dir, err)
	}
	return r
}

func hasFinding(r *Report, rule, path, evidence string) bool {
	for _, f := range r.Findings {
		if f.Rule == rule && (path == "" || f.Path == path) && strings.Contains(f.Evidence+" "+f.Detail, evidence) {
			return true
		}
	}
	return false
}

// TestPlantedFindings checks that every finding planted by testdata/recipe.sh
// is reported.
func TestPlantedFindings(t *testing.T) {
	checkPlanted(t, runFixture(t, "testdata/fw", Options{}))
}

// TestRecipe rebuilds the fixtures with the real tools (fresh keys, salts and
// binaries) and checks the same findings, so the tests do not depend on the
// committed bytes.
func TestRecipe(t *testing.T) {
	testutil.NeedTool(t, "gcc", "openssl", "perl", "strip")
	dir := t.TempDir()
	recipe, err := filepath.Abs("testdata/recipe.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", recipe, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("recipe.sh: %v\n%s", err, out)
	}
	checkPlanted(t, runFixture(t, filepath.Join(dir, "fw"), Options{}))
	checkClean(t, runFixture(t, filepath.Join(dir, "clean"), cleanOptions))
}

// checkPlanted checks the report of the planted tree: every planted
// finding, the ELF hardening, the components and how each was found, the
// endpoints and the services.
func checkPlanted(t *testing.T, r *Report) {
	t.Helper()
	checkPlantedFindings(t, r)
	checkPlantedBinaries(t, r)
	checkPlantedComponents(t, r)
	checkPlantedEndpoints(t, r)
}

func checkPlantedFindings(t *testing.T, r *Report) {
	t.Helper()
	for _, want := range []struct{ rule, path, evidence string }{
		{RuleCrackedPassword, "etc/shadow", `user root: password "xmhdipc" (md5)`},
		{RuleCrackedPassword, "etc/shadow", `user admin: password "admin" (sha512)`},
		{RuleCrackedPassword, "etc/shadow", `user user: password "123456" (des)`},
		{RuleCrackedPassword, "etc/shadow", `user support: password "support" (sha256)`},
		{RuleCrackedPassword, "mnt/mtd/Config/passwd", `password "vizxv" (des)`},
		{RuleCrackedPassword, "mnt/mtd/Config/shadow", `user root: password "hiklinux" (md5)`},
		{RuleCloudCredential, "etc/config/cloud.conf", "AWS key pair: access key ID AKIA2E0A…9986 with secret access key Zk3vQ9rT…Wo5R"},
		{RuleEmptyPassword, "etc/shadow", "user guest"},
		{RuleUID0Duplicate, "etc/passwd", "user admin has UID 0"},
		{RuleWeakHash, "etc/shadow", "user root has a MD5-crypt hash"},
		{RuleWeakHash, "etc/shadow", "user user has a DES-crypt hash"},
		{RulePasswdHash, "mnt/mtd/Config/passwd", "des hash in passwd"},
		{RulePrivateKey, "etc/ssl/private/server.key", "RSA 1024-bit private key, unencrypted"},
		{RuleWeakKey, "etc/ssl/private/server.key", "1024 bits"},
		{RuleCertSelfSigned, "etc/ssl/certs/server.crt", "CN=ipcam.local"},
		{RuleCertWeakKey, "etc/ssl/certs/server.crt", "RSA 1024-bit"},
		{RulePrivateKey, "etc/ssl/private/cloud-key.der", "EC 256-bit private key, unencrypted"},
		{RuleCertWeakKey, "etc/ssl/certs/server.der", "RSA 1024-bit"},
		{RuleConfigPassword, "etc/config/cloud.conf", `ftp_password = "Cam3raPass!"`},
		{RuleURLCredential, "etc/config/cloud.conf", "rtsp://admin:12345@192.168.1.10:554"},
		{RuleTelnet, "etc/init.d/rcS", "port 2323"},
		{RuleTelnet, "etc/inittab", "port 23,"},
		{RuleDebugShell, "etc/inittab", "telnetd runs a shell"},
		{RuleDebugShell, "etc/inittab", "-/bin/sh"},
		{RuleNetcat, "etc/init.d/rcS", "port 4444"},
		{RuleFTP, "etc/init.d/rcS", "port 21"},
		{RuleUPnP, "etc/init.d/rcS", "upnpd"},
		{RuleSSH, "etc/init.d/rcS", "dropbear"},
		{RuleVendorCloud, "usr/bin/cloudd", "https://litedev.hik-connect.com/api/device/register (Hikvision)"},
		{RuleVendorCloud, "usr/bin/cloudd", "pub-cfg.secu100.net (XiongMai)"},
		{RuleVendorCloud, "usr/bin/cloudd", "iotaccess.easy4ipcloud.com:10001/ (Dahua)"},
		{RuleVendorCloud, "usr/bin/cloudd", "ip 114.114.114.114 (XiongMai)"},
		{RuleExecStack, "usr/bin/cloudd", "executable"},
		{RuleNoPIE, "usr/bin/cloudd", "ET_EXEC"},
		{RuleNoRELRO, "usr/bin/cloudd", "PT_GNU_RELRO"},
		{RuleNoCanary, "usr/bin/cloudd", "__stack_chk_fail"},
		{RuleSetuid, "bin/busybox", "setuid, mode 4755"},
		{RuleWorldWritable, "etc/config/cloud.conf", "mode 0666"},
	} {
		if !hasFinding(r, want.rule, want.path, want.evidence) {
			t.Errorf("missing %s in %s with %q", want.rule, want.path, want.evidence)
		}
	}
	if hasFinding(r, RuleNoPIE, "bin/busybox", "") || hasFinding(r, RuleExecStack, "bin/busybox", "") {
		t.Error("the hardened bin/busybox was reported as unhardened")
	}
}

func checkPlantedBinaries(t *testing.T, r *Report) {
	t.Helper()
	bins := map[string]Binary{}
	for _, b := range r.Binaries {
		bins[b.Path] = b
	}
	if b := bins["usr/bin/cloudd"]; b.NX || b.PIE || b.RELRO != "none" || b.Canary || !b.Stripped {
		t.Errorf("cloudd hardening = %+v", b)
	}
	if b := bins["bin/busybox"]; !b.NX || !b.PIE || b.RELRO != "full" {
		t.Errorf("busybox hardening = %+v", b)
	}
}

func checkPlantedComponents(t *testing.T, r *Report) {
	t.Helper()
	comps := map[string]string{}
	byKey := map[string]Component{}
	for _, c := range r.Components {
		comps[c.Name] = c.Version
		byKey[c.Name+"@"+c.Version] = c
	}
	for name, v := range map[string]string{"busybox": "1.24.1", "openssl": "1.0.2k", "linux": "4.9.37"} {
		if comps[name] != v {
			t.Errorf("component %s = %q; want %s (all: %v)", name, comps[name], v, comps)
		}
	}
	// Every way of finding a component, with its path, method and confidence.
	for _, want := range []struct{ key, path, foundBy, confidence, purl string }{
		{"dropbear@2019.78-2", "usr/lib/opkg/status", FoundOpkg, ConfidenceHigh, "pkg:generic/dropbear@2019.78-2"},
		{"libopenssl1.1@1.1.1k-1", "usr/lib/opkg/status", FoundOpkg, ConfidenceHigh, ""},
		{"uhttpd@2021-03-21-15346de8-2", "usr/lib/opkg/info/uhttpd.control", FoundOpkg, ConfidenceHigh, ""},
		{"live555@2018.08.28", "usr/share/legal-info/manifest.csv", FoundBuildroot, ConfidenceHigh, ""},
		{"openssl@1.0.2k", "usr/share/legal-info/manifest.csv", FoundBuildroot, ConfidenceHigh, ""},
		{"buildroot@2019.02.4", "etc/buildroot/.config", FoundBuildrootConf, ConfidenceHigh, ""},
		{"linux@4.9.37", "lib/modules/4.9.37/kernel/cam_sensor.ko", FoundVermagic, ConfidenceHigh, ""},
	} {
		c, ok := byKey[want.key]
		if !ok || c.Path != want.path || c.FoundBy != want.foundBy || c.Confidence != want.confidence || want.purl != "" && c.PURL != want.purl {
			t.Errorf("component %s = %+v; want path %s, found by %s, confidence %s %s", want.key, c, want.path, want.foundBy, want.confidence, want.purl)
		}
	}
	if _, ok := byKey["oldpkg@0.1"]; ok {
		t.Errorf("a package opkg marks not-installed is listed")
	}
	if c := byKey["linux@4.9.37"]; !strings.Contains(c.Note, "vermagic 4.9.37 SMP preempt mod_unload ARMv7") {
		t.Errorf("linux note = %q", c.Note)
	}
	if c := byKey["busybox@1.24.1"]; strings.Join(c.Applets, " ") != "ftpd httpd ls sh telnetd" {
		t.Errorf("busybox applets = %v", c.Applets)
	}
	gcc := false
	for _, c := range r.Components {
		gcc = gcc || c.Name == "gcc" && c.FoundBy == FoundComment && strings.HasPrefix(c.Note, "compiled by GCC: (")
	}
	if !gcc {
		t.Errorf("no gcc component from ELF .comment: %v", comps)
	}
}

// checkPlantedEndpoints checks the endpoint filtering and scopes, and the
// services.
func checkPlantedEndpoints(t *testing.T, r *Report) {
	t.Helper()
	for _, e := range r.Endpoints {
		if strings.Contains(e.Value, "w3.org") {
			t.Errorf("schema URL not filtered: %+v", e)
		}
		if e.Value == "203.0.113.9" && e.Scope != ScopePrivate {
			t.Errorf("documentation address classified %s", e.Scope)
		}
	}
	svc := map[string]int{}
	for _, s := range r.Services {
		svc[s.Name] = s.Port
	}
	if svc["telnetd"] == 0 || svc["netcat"] != 4444 || svc["dropbear"] != 22 {
		t.Errorf("services = %v", svc)
	}
}

// TestCleanFixture: the clean tree must not yield a single high or critical
// finding (false positives count as failures).
func TestCleanFixture(t *testing.T) {
	checkClean(t, runFixture(t, "testdata/clean", cleanOptions))
}

// cleanOptions bound the cracking of the clean tree's root hash (SHA-512 of
// a random password: all ~3,100 embedded passwords fail, and would take the
// default 3 s per hash).
var cleanOptions = Options{CrackTime: 200 * time.Millisecond}

func checkClean(t *testing.T, r *Report) {
	t.Helper()
	for _, f := range r.Findings {
		if f.Severity >= SeverityMedium {
			t.Errorf("false positive on the clean tree: %+v", f)
		}
	}
	for _, e := range r.Endpoints {
		t.Errorf("clean tree has endpoint %+v (example.com and schema URLs are noise)", e)
	}
	if len(r.Binaries) != 2 {
		t.Errorf("binaries = %+v", r.Binaries)
	}
	for _, b := range r.Binaries {
		if b.Path == "usr/bin/app" && (!b.NX || !b.PIE || b.RELRO != "full" || !b.Canary || !b.Fortify || !b.Stripped) {
			t.Errorf("hardened app = %+v; want NX, PIE, full RELRO, canary, FORTIFY, stripped", b)
		}
	}
}

func TestWorkersGiveSameReport(t *testing.T) {
	a := runFixture(t, "testdata/fw", Options{Workers: 1})
	b := runFixture(t, "testdata/fw", Options{Workers: 4})
	var ja, jb bytes.Buffer
	a.Stats, b.Stats = Stats{}, Stats{}
	if err := a.WriteJSON(&ja); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteJSON(&jb); err != nil {
		t.Fatal(err)
	}
	if ja.String() != jb.String() {
		t.Errorf("reports differ between 1 and 4 workers:\n%s\n---\n%s", ja.String(), jb.String())
	}
}

func TestJSONContract(t *testing.T) {
	r := runFixture(t, "testdata/fw", Options{})
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"target", "findings", "endpoints", "components", "binaries"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	f := doc["findings"].([]any)[0].(map[string]any)
	for _, k := range []string{"rule", "severity", "path", "evidence", "detail"} {
		if _, ok := f[k]; !ok {
			t.Errorf("finding lacks %q", k)
		}
	}
	if f["severity"] != "critical" {
		t.Errorf("first finding severity = %v; want critical (sorted by severity)", f["severity"])
	}
	e := doc["endpoints"].([]any)[0].(map[string]any)
	for _, k := range []string{"value", "kind", "vendor", "paths"} {
		if _, ok := e[k]; !ok {
			t.Errorf("endpoint lacks %q", k)
		}
	}
	c := doc["components"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "version", "path", "purl", "cpe"} {
		if _, ok := c[k]; !ok {
			t.Errorf("component lacks %q", k)
		}
	}
	b := doc["binaries"].([]any)[0].(map[string]any)
	for _, k := range []string{"path", "arch", "nx", "pie", "relro", "canary", "fortify", "stripped"} {
		if _, ok := b[k]; !ok {
			t.Errorf("binary lacks %q", k)
		}
	}
	// Every rule a finding uses is documented.
	for _, f := range r.Findings {
		if ruleIndex(f.Rule) < 0 {
			t.Errorf("rule %s is not in Rules", f.Rule)
		}
	}
}

func compileSchema(t *testing.T, main string, files map[string]string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for url, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if err := c.AddResource(url, doc); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.Compile(main)
	if err != nil {
		t.Fatalf("compile %s: %v", main, err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, data []byte) {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(inst); err != nil {
		t.Fatalf("output does not validate: %v", err)
	}
}

func TestSARIFValidates(t *testing.T) {
	r := runFixture(t, "testdata/fw", Options{})
	var buf bytes.Buffer
	if err := r.WriteSARIF(&buf, "test"); err != nil {
		t.Fatal(err)
	}
	s := compileSchema(t, "https://sarif.test/sarif-2.1.0.json", map[string]string{
		"https://sarif.test/sarif-2.1.0.json": "testdata/schema/sarif-2.1.0.json",
	})
	validate(t, s, buf.Bytes())
	// The schema catches mistakes: a result without a message fails.
	bad := bytes.Replace(buf.Bytes(), []byte(`"message"`), []byte(`"messages"`), 1)
	inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(bad))
	if s.Validate(inst) == nil {
		t.Error("a SARIF log without message validated")
	}
	var log sarifLog
	if err := json.Unmarshal(buf.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	if n := len(log.Runs[0].Results); n != len(r.Findings) {
		t.Errorf("SARIF has %d results for %d findings", n, len(r.Findings))
	}
	// Evidence with a line gives the result a region (telnetd at line 4 of
	// rcS), so code-scanning UIs jump to it; evidence without one gives none.
	regions := map[string]int{}
	for _, res := range log.Runs[0].Results {
		if len(res.Locations) > 0 && res.Locations[0].PhysicalLocation.Region != nil {
			regions[res.RuleID+" "+res.Locations[0].PhysicalLocation.ArtifactLocation.URI] = res.Locations[0].PhysicalLocation.Region.StartLine
		}
	}
	if regions[RuleTelnet+" etc/init.d/rcS"] != 4 || regions[RuleConfigPassword+" etc/config/cloud.conf"] != 7 {
		t.Errorf("regions = %v", regions)
	}
	if _, ok := regions[RuleNoPIE+" usr/bin/cloudd"]; ok {
		t.Error("a finding without a line has a region")
	}
	for _, res := range log.Runs[0].Results {
		if log.Runs[0].Tool.Driver.Rules[res.RuleIndex].ID != res.RuleID {
			t.Errorf("ruleIndex %d does not point at %s", res.RuleIndex, res.RuleID)
		}
	}
}

func TestCycloneDXValidates(t *testing.T) {
	db, err := ParseVulnDB([]byte(testOSVFeed))
	if err != nil {
		t.Fatal(err)
	}
	r := runFixture(t, "testdata/fw", Options{Vulns: db})
	var buf bytes.Buffer
	if err := r.WriteCycloneDX(&buf, "test", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	const base = "http://cyclonedx.org/schema/"
	s := compileSchema(t, base+"bom-1.6.schema.json", map[string]string{
		base + "bom-1.6.schema.json":  "testdata/schema/bom-1.6.schema.json",
		base + "spdx.schema.json":     "testdata/schema/spdx.schema.json",
		base + "jsf-0.82.schema.json": "testdata/schema/jsf-0.82.schemax.json",
	})
	validate(t, s, buf.Bytes())
	out := buf.String()
	for _, want := range []string{`"specVersion": "1.6"`, `"purl": "pkg:generic/openssl@1.0.2k"`,
		`"cpe": "cpe:2.3:a:openssl:openssl:1.0.2k:*:*:*:*:*:*:*"`, `"id": "CVE-2017-3735"`, `"location": "usr/share/legal-info/manifest.csv"`} {
		if !strings.Contains(out, want) {
			t.Errorf("SBOM lacks %s", want)
		}
	}
	if !hasFinding(r, RuleKnownVuln, "usr/share/legal-info/manifest.csv", "openssl 1.0.2k: CVE-2017-3735") {
		t.Error("no known-vulnerability finding for openssl 1.0.2k")
	}
	if hasFinding(r, RuleKnownVuln, "", "OSV-TEST-FIXED") {
		t.Error("a vulnerability fixed before 1.24.1 matched busybox 1.24.1")
	}
}

func TestWatchlistEntriesRoundTrip(t *testing.T) {
	r := runFixture(t, "testdata/fw", Options{})
	var buf bytes.Buffer
	if err := watchlist.Write(&buf, "from a test", r.WatchlistEntries()); err != nil {
		t.Fatal(err)
	}
	l, err := watchlist.Parse("out.yml", buf.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	for name, vendor := range map[string]string{"litedev.hik-connect.com": "Hikvision", "pub-cfg.secu100.net": "XiongMai"} {
		if e, ok := l.MatchDomain(name); !ok || e.Vendor != vendor {
			t.Errorf("written watch-list: %s -> %+v %v", name, e, ok)
		}
	}
	if strings.Contains(buf.String(), "203.0.113.9") {
		t.Error("a non-public address was written to the watch-list")
	}
}

// TestModesWithoutManifest: a plain directory (no report.json) gets its
// setuid and world-writable findings from the modes on disk.
func TestModesWithoutManifest(t *testing.T) {
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"su": 0o755 | os.ModeSetuid, "shared.conf": 0o666, "ok": 0o644} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x=1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "drop"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "drop"), 0o777); err != nil {
		t.Fatal(err)
	}
	r := runFixture(t, dir, Options{})
	if st, _ := os.Stat(filepath.Join(dir, "su")); st.Mode()&os.ModeSetuid != 0 && !hasFinding(r, RuleSetuid, "su", "mode 4755") {
		t.Error("no setuid finding for su")
	}
	if !hasFinding(r, RuleWorldWritable, "shared.conf", "mode 0666") || !hasFinding(r, RuleWorldWritable, "drop", "world-writable dir") {
		t.Errorf("world-writable findings missing: %+v", r.Findings)
	}
	if hasFinding(r, RuleWorldWritable, "ok", "") {
		t.Error("0644 file reported")
	}
}
