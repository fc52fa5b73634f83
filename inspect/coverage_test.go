package inspect

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/fstest"
)

// unpackedWithGaps is an unpacked tree whose report.json lists a filesystem
// identified but not extracted and a gzip cut short inside an extracted file.
func unpackedWithGaps() fstest.MapFS {
	return fstest.MapFS{
		"report.json": {Data: []byte(`{"image": {"path": "cam.bin", "size": 1048576},
 "coverage": {"size": 1048576, "extracted": 262144, "carved": 0, "identified": 524288, "padding": 131072, "unknown": 131072, "examined": 0.375},
 "gaps": [
  {"offset": 524288, "size": 524288, "format": "jffs2", "status": "identified", "reason": "cordon identifies jffs2 but has no extractor for it"},
  {"file": "0x0-tar.extract/www.bin", "offset": 4096, "size": 0, "format": "gzip", "status": "failed", "reason": "gzip: header valid, but the stream does not decode"}
 ],
 "manifest": [{"path": "0x0-tar.extract/etc/motd", "orig_name": "etc/motd", "type": "file", "mode": "0644", "size": 6}]}`)},
		"0x0-tar.extract/etc/motd": {Data: []byte("hello\n"), Mode: 0o644},
		"0x0-tar.extract/www.bin":  {Data: []byte("not much"), Mode: 0o644},
	}
}

// TestUnexaminedFindings: every gap of report.json is a medium
// coverage.unexamined finding naming its offset, format and reason, and the
// text summary says plainly what was not examined.
func TestUnexaminedFindings(t *testing.T) {
	r, err := Run(context.Background(), "cam.bin", unpackedWithGaps(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !hasFinding(r, RuleUnexamined, "", "jffs2 at image offset 0x80000 (524288 bytes): identified but not extracted: cordon identifies jffs2 but has no extractor") {
		t.Errorf("no finding for the jffs2 gap: %+v", r.Findings)
	}
	if !hasFinding(r, RuleUnexamined, "0x0-tar.extract/www.bin", "gzip at 0x0-tar.extract/www.bin offset 0x1000: found but failed to decode or extract: gzip: header valid") {
		t.Errorf("no finding for the gzip gap: %+v", r.Findings)
	}
	if r.MaxSeverity() < SeverityMedium {
		t.Errorf("max severity %v: --fail-on medium would pass an image never looked into", r.MaxSeverity())
	}
	if r.Coverage == nil || r.Coverage.Identified != 524288 || len(r.Unexamined) != 2 {
		t.Errorf("coverage %+v, unexamined %+v", r.Coverage, r.Unexamined)
	}
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"image coverage: 37.5% examined (25.0% extracted, 0.0% carved, 12.5% padding); 50.0% identified but not opened, 12.5% unknown",
		"NOT EXAMINED: 2 part(s) of the image were found but never looked into (1 identified only, 1 failed to decode or extract)",
		"MEDIUM  coverage.unexamined",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text summary lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestNoGapsNoFinding: a report.json without gaps adds no finding and no
// NOT EXAMINED line.
func TestNoGapsNoFinding(t *testing.T) {
	fsys := unpackedWithGaps()
	fsys["report.json"] = &fstest.MapFile{Data: []byte(`{"coverage": {"size": 10, "extracted": 10, "examined": 1}, "gaps": [], "manifest": []}`)}
	r, err := Run(context.Background(), "cam.bin", fsys, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if hasFinding(r, RuleUnexamined, "", "") {
		t.Errorf("unexpected coverage.unexamined: %+v", r.Findings)
	}
	var buf bytes.Buffer
	r.WriteText(&buf)
	if strings.Contains(buf.String(), "NOT EXAMINED") || !strings.Contains(buf.String(), "image coverage: 100.0% examined") {
		t.Errorf("text summary:\n%s", buf.String())
	}
}

// TestCoverageTinyShare: a few bytes not opened in a large image read as
// "<0.1%", never as "0.0%".
func TestCoverageTinyShare(t *testing.T) {
	r := &Report{Coverage: &Coverage{Size: 16 << 20, Extracted: 1 << 20, Identified: 852, Padding: 15<<20 - 852, Examined: 0.9999}}
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if want := "<0.1% identified but not opened, 0.0% unknown"; !strings.Contains(buf.String(), want) {
		t.Errorf("text lacks %q:\n%s", want, buf.String())
	}
}

// TestNothingExamined: an empty tree, or one of empty files, is a medium
// coverage.nothing-examined finding (so --fail-on medium fails), never a
// clean report.
func TestNothingExamined(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"empty":       {},
		"empty files": {"etc/passwd": {Data: nil, Mode: 0o644}, "a": {Data: nil, Mode: 0o644}},
		"empty dirs":  {"etc": {Mode: fs.ModeDir | 0o755}},
	} {
		r, err := Run(context.Background(), name, fsys, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !hasFinding(r, RuleNothingExamined, "", "nothing examined") || r.MaxSeverity() < SeverityMedium {
			t.Errorf("%s: %+v", name, r.Findings)
		}
		if hasFinding(r, RuleMissing, "", "") {
			t.Errorf("%s: coverage.missing beside nothing-examined: %+v", name, r.Findings)
		}
	}
}

// TestMissingKinds: a root filesystem without accounts, init system or ELF
// says so, one low coverage.missing finding per kind; a tree that is not a
// root filesystem, and the fixture that has all three, get none.
func TestMissingKinds(t *testing.T) {
	r, err := Run(context.Background(), "rootfs", fstest.MapFS{
		"etc/hosts":  {Data: []byte("127.0.0.1 localhost\n"), Mode: 0o644},
		"bin/script": {Data: []byte("#!/bin/sh\necho hi\n"), Mode: 0o755},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"no passwd or shadow file", "no init system", "no ELF executable"} {
		if !hasFinding(r, RuleMissing, "", want) {
			t.Errorf("no coverage.missing %q: %+v", want, r.Findings)
		}
	}
	if !r.Examined.SystemTree || r.MaxSeverity() != SeverityLow {
		t.Errorf("examined %+v, max severity %v", r.Examined, r.MaxSeverity())
	}
	web, err := Run(context.Background(), "www", fstest.MapFS{"www/index.html": {Data: []byte("<html></html>"), Mode: 0o644}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(web.Findings) != 0 {
		t.Errorf("a web partition: %+v", web.Findings)
	}
	fw := runFixture(t, "testdata/fw", Options{})
	if hasFinding(fw, RuleMissing, "", "") || fw.Examined.AccountFiles < 2 || fw.Examined.InitFiles < 1 {
		t.Errorf("fw fixture: examined %+v, findings %+v", fw.Examined, fw.Findings)
	}
}

// TestExaminedChunks: the filesystems the unpacker opened and the chunks it
// did not are counted from report.json's chunk tree.
func TestExaminedChunks(t *testing.T) {
	fsys := unpackedWithGaps()
	fsys["report.json"].Data = bytes.Replace(fsys["report.json"].Data, []byte(`"gaps"`), []byte(`"chunks": [
  {"offset": 0, "size": 262144, "format": "tar", "kind": "archive", "outcome": "extracted", "children": [
    {"file": "0x0-tar.extract/www.bin", "offset": 4096, "format": "gzip", "kind": "compression", "outcome": "identified"}]},
  {"offset": 524288, "size": 524288, "format": "jffs2", "kind": "filesystem", "outcome": "identified"}],
 "gaps"`), 1)
	r, err := Run(context.Background(), "cam.bin", fsys, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ex := r.Examined
	if ex.ChunksOpened != 1 || ex.ChunksNotOpened != 2 || len(ex.Filesystems) != 1 || ex.Filesystems[0] != "tar at image offset 0x0" {
		t.Errorf("examined %+v", ex)
	}
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"examined: 0 account file(s), 0 init file(s); 1 chunk(s) opened, 2 not opened", "filesystems opened: tar at image offset 0x0"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestRandomDataNoEndpoints: random bytes yield no finding, endpoint or
// component. 4 MiB of deterministic random data here; the same on 300 MiB
// of /dev/urandom is in docs/inspect.md.
func TestRandomDataNoEndpoints(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{'c', 'o', 'r', 'd', 'o', 'n'}))
	fsys := fstest.MapFS{}
	for i := range 4 {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 8 {
			binary.LittleEndian.PutUint64(b[j:], rng.Uint64())
		}
		fsys[fmt.Sprintf("r%d.bin", i)] = &fstest.MapFile{Data: b, Mode: 0o644}
	}
	r, err := Run(context.Background(), "random", fsys, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Findings)+len(r.Endpoints)+len(r.Components) != 0 {
		t.Errorf("random data: findings %+v\nendpoints %+v\ncomponents %+v", r.Findings, r.Endpoints, r.Components)
	}
}
