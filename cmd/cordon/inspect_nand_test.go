package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestInspectNANDDump is the evidence target: a Dahua/Hikvision-style
// raw NAND dump (2048+64-byte pages with the spare bytes interleaved, a boot
// area, UBI with a bad and an erased block, an LZO UBIFS root, a static
// kernel volume), built by firmware/formats/flash/testdata/recipe-ubi.sh and
// stored gzipped. `cordon inspect` on the raw dump unpacks it natively and
// reports what was planted in the UBIFS root: the weak MD5-crypt root hash
// in /etc/passwd (cracked), the RSA private key and the Dahua cloud host.
func TestInspectNANDDump(t *testing.T) {
	zr, err := gzip.NewReader(openFile(t, "../../firmware/formats/flash/testdata/ubi-nand.bin.gz"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dump := filepath.Join(dir, "nand.bin")
	if err := os.WriteFile(dump, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report.json")
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"inspect", dump, "--format", "json", "-o", out}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Findings  []struct{ Rule, Path string }
		Accounts  []struct{ Path, User, Password string }
		Endpoints []struct {
			Value, Vendor, Scope string
			Paths                []string
		}
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	const root = "0x84000-ubi.extract/rootfs.ubifs.extract/0x0-ubifs.extract/"
	finding := func(rule, path string) bool {
		return slices.ContainsFunc(rep.Findings, func(f struct{ Rule, Path string }) bool { return f.Rule == rule && f.Path == path })
	}
	for _, w := range []struct{ rule, path string }{
		{"account.cracked-password", root + "etc/passwd"},
		{"account.hash-in-passwd", root + "etc/passwd"},
		{"secret.private-key", root + "etc/ssl/private/cloud.key"},
		{"file.setuid", root + "usr/bin/upgrade"},
	} {
		if !finding(w.rule, w.path) {
			t.Errorf("no %s finding for %s", w.rule, w.path)
		}
	}
	if !slices.ContainsFunc(rep.Accounts, func(a struct{ Path, User, Password string }) bool {
		return a.Path == root+"etc/passwd" && a.User == "root" && a.Password == "7ujMko0admin"
	}) {
		t.Errorf("root's password not cracked: %+v", rep.Accounts)
	}
	var cloud bool
	for _, e := range rep.Endpoints {
		if e.Value == "p2p.easy4ipcloud.com" && e.Vendor == "Dahua" && e.Scope == "vendor-cloud" && slices.Contains(e.Paths, root+"etc/p2p.conf") {
			cloud = true
		}
	}
	if !cloud || !strings.Contains(string(data), `"rule": "endpoint.vendor-cloud"`) {
		t.Errorf("the Dahua cloud host is not reported: %+v", rep.Endpoints)
	}
}

func openFile(t *testing.T, name string) io.Reader {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}
