package yaffs2

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/internal/unixmode"
)

var update = flag.Bool("update", false, "rewrite the testdata/yaffs2-*.img fixtures from the test writer")

// fixtures are the committed images and the writers that make them.
var fixtures = map[string]yWriter{
	"yaffs2-le-2k.img": {g: geometry{page: 2048, spare: 64, bo: le}},
	"yaffs2-be-4k.img": {g: geometry{page: 4096, spare: 224, tagOff: 2, bo: be}, extraTags: true},
}

// TestWriterFixtures keeps the committed fixtures equal to the writer's
// output (go test ./firmware/formats/yaffs2 -run WriterFixtures -update).
func TestWriterFixtures(t *testing.T) {
	for name, w := range fixtures {
		img := w.build(yTree(false))
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, img, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, img) {
			t.Errorf("%s is stale (%v): go test ./firmware/formats/yaffs2 -run WriterFixtures -update", path, err)
		}
	}
}

// treeListing is what a reader must give for the nodes, in MemSink.Listing form.
func treeListing(ns []*yNode) []string {
	byID := map[uint32]*yNode{}
	for _, n := range ns {
		byID[n.id] = n
	}
	path := func(n *yNode) string {
		var parts []string
		for ; n != nil; n = byID[n.parent] {
			parts = append([]string{n.name}, parts...)
		}
		return strings.Join(parts, "/")
	}
	s := &firmwaretest.MemSink{}
	for _, n := range ns {
		h := &firmware.Header{Name: path(n), Mode: unixmode.FromUnix(n.mode), UID: int(n.uid), GID: int(n.gid)}
		switch n.typ {
		case typeDir:
			h.Type = firmware.TypeDir
		case typeFile:
			h.Type = firmware.TypeFile
		case typeSymlink:
			h.Type, h.Linkname = firmware.TypeSymlink, n.alias
		case typeLink:
			t := byID[n.equiv]
			h.Type, h.Linkname, h.Mode, h.UID, h.GID = firmware.TypeHardlink, path(t), unixmode.FromUnix(t.mode), int(t.uid), int(t.gid)
		case typeSpecial:
			h.Type = firmware.TypeFIFO
			if n.mode&0o170000 == 0o020000 {
				h.Type, h.Devmajor, h.Devminor = firmware.TypeCharDevice, n.rdev>>8, n.rdev&0xff
			}
		}
		s.Add(h, bytes.NewReader(n.data))
	}
	return s.Listing()
}

// TestVariants extracts every layout the writer makes, embedded in a dump
// between junk and erased flash, and compares it with the tree.
func TestVariants(t *testing.T) {
	tree := yTree(false)
	want := treeListing(tree)
	for _, w := range writerVariants() {
		t.Run(w.String(), func(t *testing.T) {
			img := w.build(tree)
			junk := bytes.Repeat([]byte("\x5a\x01\x00\x00\x00\x01\x00\x00\x00\xff\xff"), 1000)
			dump := slices.Concat(junk, img, bytes.Repeat([]byte{0xff}, 3*int(w.g.chunk())), []byte("tail"))
			res := firmwaretest.MustRun(t, Format, dump, int64(len(junk)))
			c := res.Chunk
			if c.Size != int64(len(img)) || c.Confidence != firmware.ConfidenceHigh || !strings.Contains(c.Desc, w.g.String()) {
				t.Errorf("chunk = %+v, want %d bytes, %s", c, len(img), w.g)
			}
			if len(res.Sink.Warnings) > 0 {
				t.Errorf("warnings %q", res.Sink.Warnings)
			}
			if got := res.Sink.Listing(); !slices.Equal(got, want) {
				t.Errorf("listing differs:\n%s", firmwaretest.ListingDiff(want, got))
			}
			if e, ok := res.Sink.Entry("etc/big.txt"); !ok || !e.Header.ModTime.Equal(time.Unix(1700000001, 0)) {
				t.Errorf("etc/big.txt: %+v", e.Header)
			}
		})
	}
}

// TestAgainstUnyaffs extracts little-endian images with plain tags (what
// unyaffs reads) with unyaffs and compares the files, byte for byte, and
// the symlinks with ours.
func TestAgainstUnyaffs(t *testing.T) {
	tool, err := exec.LookPath("unyaffs")
	if err != nil {
		t.Skip("unyaffs not installed; scripts/deps installs it")
	}
	for _, w := range []yWriter{
		{g: geometry{page: 2048, spare: 64, bo: le}},
		{g: geometry{page: 2048, spare: 64, tagOff: 2, bo: le}},
		{g: geometry{page: 4096, spare: 128, bo: le}},
		// unyaffs reads neither extra header tags (it wants chunk_id 0 in
		// a header's tags) nor inband tags: TestVariants covers those.
	} {
		t.Run(w.String(), func(t *testing.T) {
			img := w.build(yTree(true))
			dir := t.TempDir()
			path := filepath.Join(dir, "img")
			if err := os.WriteFile(path, img, 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "x")
			args := []string{"-c", fmt.Sprint(w.g.page / 1024), "-s", fmt.Sprint(w.g.spare)}
			if w.g.tagOff == 2 {
				args = append(args, "-b")
			}
			if b, err := exec.Command(tool, append(args, path, out)...).CombinedOutput(); err != nil {
				t.Fatalf("unyaffs: %v\n%s", err, b)
			}
			res := firmwaretest.MustRun(t, Format, img, 0)
			var got []string
			for _, e := range res.Sink.Entries {
				switch e.Header.Type {
				case firmware.TypeFile, firmware.TypeHardlink:
					data := e.Data
					if e.Header.Type == firmware.TypeHardlink {
						data, _ = res.Sink.File(e.Header.Linkname)
					}
					got = append(got, fmt.Sprintf("%s size=%d sha256=%x", e.Header.Name, len(data), sha256.Sum256(data)))
				case firmware.TypeSymlink:
					got = append(got, e.Header.Name+" -> "+e.Header.Linkname)
				case firmware.TypeDir:
					got = append(got, e.Header.Name+"/")
				}
			}
			slices.Sort(got)
			want := firmwaretest.DiskListing(t, out)
			if !slices.Equal(got, want) {
				t.Errorf("ours (+) and unyaffs's (-) differ:\n%s", firmwaretest.ListingDiff(want, got))
			}
		})
	}
}

// TestRewrites: a later copy of an object (a higher sequence number)
// replaces the earlier one; deleted objects are counted, not extracted.
func TestRewrites(t *testing.T) {
	w := yWriter{g: geometry{page: 2048, spare: 64, bo: le}, perBlock: 4}
	ns := yTree(true)
	y := w.newImage()
	for _, n := range ns {
		y.object(n)
	}
	v2 := *ns[1] // etc/passwd, rewritten in a later block
	v2.data, v2.seqBump = []byte("root::0:0::/:/bin/sh\n"), 5
	y.object(&v2)
	gone := &yNode{id: 300, parent: idDeleted, typ: typeFile, name: "old.log", mode: 0o100644, data: []byte("secret")}
	y.object(gone)
	res := firmwaretest.MustRun(t, Format, y.buf, 0)
	if got, _ := res.Sink.File("etc/passwd"); string(got) != "root::0:0::/:/bin/sh\n" {
		t.Errorf("etc/passwd = %q, want the rewritten copy", got)
	}
	if !slices.ContainsFunc(res.Sink.Warnings, func(s string) bool { return strings.Contains(s, "1 deleted or unlinked objects") }) {
		t.Errorf("warnings %q", res.Sink.Warnings)
	}
}

// TestHostile: id cycles, orphans, lost chunks, impossible sizes and bad
// hard links extract what they can and say what they dropped.
func TestHostile(t *testing.T) {
	w := yWriter{g: geometry{page: 2048, spare: 64, bo: le}}
	base := yTree(true)
	for _, tc := range []struct {
		name  string
		extra []*yNode
		edit  func(ns []*yNode)
		warn  string
		keep  string
	}{
		{"parent cycle", []*yNode{
			{id: 400, parent: 401, typ: typeDir, name: "a", mode: 0o40755},
			{id: 401, parent: 400, typ: typeDir, name: "b", mode: 0o40755},
			{id: 402, parent: 401, typ: typeFile, name: "f", mode: 0o100644, data: []byte("x")},
		}, nil, "3 objects whose parent ids form a cycle", "etc/passwd"},
		{"self parent", []*yNode{{id: 400, parent: 400, typ: typeDir, name: "self", mode: 0o40755}}, nil, "form a cycle", "etc/passwd"},
		{"orphan", []*yNode{{id: 400, parent: 999, typ: typeFile, name: "lost.txt", mode: 0o100644, data: []byte("found")}}, nil,
			"extracted below lost+found", "lost+found/lost.txt"},
		{"lost chunk", nil, func(ns []*yNode) { ns[2].skipChunk = 2 }, "etc/big.txt: 1 data chunks missing", "etc/big.txt"},
		{"impossible size", nil, func(ns []*yNode) { ns[2].size = 1 << 40 }, "etc/big.txt: size 1099511627776 is more than the image holds", "etc/big.txt"},
		{"hard link to dir", []*yNode{{id: 400, parent: 1, typ: typeLink, name: "l", equiv: 257}}, nil, "is not a file", "etc/passwd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := make([]*yNode, len(base))
			for i, n := range base {
				c := *n
				ns[i] = &c
			}
			if tc.edit != nil {
				tc.edit(ns)
			}
			img := w.build(append(ns, tc.extra...))
			firmwaretest.CheckHostile(t, Format, img, tc.warn, tc.keep)
		})
	}
}

// TestNoFalsePositives: headers without matching tags, a lone header,
// and every other format's fixture are not YAFFS2.
func TestNoFalsePositives(t *testing.T) {
	img := fixtures["yaffs2-le-2k.img"].build(yTree(false))
	lone := slices.Concat(img[:2112], bytes.Repeat([]byte{0x00}, 2112*3))
	noTags := slices.Clone(img)
	for i := 0; i < len(noTags); i += 2112 {
		copy(noTags[i+2048:i+2112], bytes.Repeat([]byte{0x11}, 64))
	}
	magicJunk := slices.Concat([]byte{3, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 'x', 0}, bytes.Repeat([]byte{0xff}, 20000))
	for name, data := range map[string][]byte{"lone header": lone, "spare without tags": noTags, "magic then erased": magicJunk} {
		if _, err := Format.Identify(bytes.NewReader(data), 0, int64(len(data))); !errors.Is(err, firmware.ErrNotFormat) {
			t.Errorf("%s: Identify = %v", name, err)
		}
	}
	others, _ := filepath.Glob("../*/testdata/*")
	hits := 0
	for _, p := range others {
		if strings.Contains(p, "/yaffs2/") || strings.HasSuffix(p, ".manifest") {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil || len(data) > 8<<20 {
			continue
		}
		for off := 0; off+2048 <= len(data); off += 512 {
			if c, err := Format.Identify(bytes.NewReader(data), int64(off), int64(len(data))); err == nil {
				t.Errorf("%s: YAFFS2 identified at %#x: %+v", p, off, c)
			}
		}
		for _, m := range Format.Magics {
			for i := 0; ; {
				j := bytes.Index(data[i:], m.Bytes)
				if j < 0 {
					break
				}
				hits++
				if c, err := Format.Identify(bytes.NewReader(data), int64(i+j), int64(len(data))); err == nil {
					t.Errorf("%s: YAFFS2 identified at %#x: %+v", p, i+j, c)
				}
				i += j + 1
			}
		}
	}
	t.Logf("%d magic hits in other fixtures, none identified", hits)
}

func FuzzYAFFS2(f *testing.F) {
	for name := range fixtures {
		f.Add(firmwaretest.ReadFixture(f, name))
	}
	f.Add(yWriter{g: geometry{page: 2048, inband: true, bo: le}}.build(yTree(false)))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := firmwaretest.Run(Format, data, 0); err != nil {
			t.Fatal(err)
		}
	})
}
