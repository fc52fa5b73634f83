package nfcapd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/egress"
	"github.com/klauspost/compress/zstd"
)

// fixtures are the files make-fixtures.sh writes, by name.
var fixtures = []string{"none", "lzo", "lz4", "bz2"}

func readAll(t testing.TB, r *Reader, path string) ([]egress.FlowRecord, error) {
	t.Helper()
	var recs []egress.FlowRecord
	err := r.Read(context.Background(), path, func(_ context.Context, fr egress.FlowRecord) { recs = append(recs, fr) })
	return recs, err
}

// csvRow is one flow as nfdump -o csv prints it, in the columns compared.
func csvRow(fr egress.FlowRecord) string {
	const letters = "CEUAPRSF"
	flg := []byte("........")
	for i := range 8 {
		if fr.TCPFlags&(0x80>>i) != 0 {
			flg[i] = letters[i]
		}
	}
	proto := map[uint8]string{1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMP6"}[fr.Key.Proto]
	if proto == "" {
		proto = strconv.Itoa(int(fr.Key.Proto))
	}
	const layout = "2006-01-02 15:04:05"
	return strings.Join([]string{
		fr.Start.UTC().Format(layout), fr.End.UTC().Format(layout),
		fr.Key.Src.Addr().String(), fr.Key.Dst.Addr().String(),
		strconv.Itoa(int(fr.Key.Src.Port())), strconv.Itoa(int(fr.Key.Dst.Port())),
		proto, string(flg), strconv.FormatUint(fr.Packets, 10), strconv.FormatUint(fr.Bytes, 10),
		fr.Exporter.String(),
	}, ",")
}

// nfdumpRows returns the flows of an nfdump -o csv output in csvRow's
// columns, and the summary's flow count.
func nfdumpRows(t *testing.T, csv []byte) (rows []string, flows int) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(csv))
	var col map[string]int
	summary := false
	for sc.Scan() {
		f := strings.Split(sc.Text(), ",")
		switch {
		case col == nil && len(f) > 1 && f[0] == "ts":
			col = map[string]int{}
			for i, name := range f {
				col[name] = i
			}
		case f[0] == "Summary":
			summary = true
		case summary && len(f) > 1 && f[0] != "flows":
			flows, _ = strconv.Atoi(f[0])
		case col != nil && !summary && len(f) == len(col):
			get := func(n string) string { return strings.TrimSpace(f[col[n]]) }
			rows = append(rows, strings.Join([]string{get("ts"), get("te"), get("sa"), get("da"), get("sp"), get("dp"),
				get("pr"), get("flg"), get("ipkt"), get("ibyt"), get("ra")}, ","))
			if get("opkt") != "0" || get("obyt") != "0" {
				t.Fatalf("fixture has a bidirectional record (not expected from softflowd): %s", sc.Text())
			}
		}
	}
	if col == nil {
		t.Fatal("no csv header in nfdump output")
	}
	return rows, flows
}

// TestAgainstNfdump reads each fixture and compares every record with what
// nfdump itself printed for it (csv/NAME.csv, made by make-fixtures.sh);
// where nfdump is installed, it also checks that it still prints that.
func TestAgainstNfdump(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "files", "nfcapd."+name)
			want, err := os.ReadFile(filepath.Join("testdata", "csv", name+".csv"))
			if err != nil {
				t.Fatal(err)
			}
			if bin, err := exec.LookPath("nfdump"); err == nil {
				cmd := exec.Command(bin, "-r", path, "-o", "csv")
				cmd.Env = append(os.Environ(), "TZ=UTC")
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("nfdump: %v", err)
				}
				if !bytes.Equal(out, want) {
					t.Errorf("nfdump -r %s -o csv differs from csv/%s.csv (rerun make-fixtures.sh)", path, name)
				}
			} else {
				t.Logf("nfdump not installed: comparing with the committed csv only")
			}
			rows, flows := nfdumpRows(t, want)
			r := &Reader{}
			recs, err := readAll(t, r, path)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != len(rows) || flows != len(rows) {
				t.Fatalf("cordon read %d flows, nfdump printed %d (summary %d)", len(recs), len(rows), flows)
			}
			for i, fr := range recs {
				if got := csvRow(fr); got != rows[i] {
					t.Errorf("record %d:\ncordon %s\nnfdump %s", i, got, rows[i])
				}
			}
			st := r.Stats()
			if st.Flows != uint64(len(rows)) || len(st.NotDecoded) != 0 || st.Files != 1 {
				t.Errorf("stats: %+v", st)
			}
			if st.Metadata["exporter-info"] == 0 || st.Metadata["stat"] == 0 {
				t.Errorf("exporter and stat records not counted as metadata: %v", st.Metadata)
			}
			t.Log(st)
		})
	}
}

// TestDirectory reads a directory: nfcapd.* files in name order, the file
// being written skipped and counted, other names counted.
func TestDirectory(t *testing.T) {
	dir := t.TempDir()
	var want int
	for i, name := range fixtures {
		data, err := os.ReadFile(filepath.Join("testdata", "files", "nfcapd."+name))
		if err != nil {
			t.Fatal(err)
		}
		sub := filepath.Join(dir, "2026", strconv.Itoa(i)) // nfcapd -S subdirectories
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("nfcapd.20260105080%d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		recs, err := readAll(t, &Reader{}, filepath.Join("testdata", "files", "nfcapd."+name))
		if err != nil {
			t.Fatal(err)
		}
		want += len(recs)
	}
	os.WriteFile(filepath.Join(dir, "nfcapd.current.4242"), []byte{0x0c, 0xa5}, 0o644)
	os.WriteFile(filepath.Join(dir, ".nfstat"), []byte("x"), 0o644)
	r := &Reader{}
	recs, err := readAll(t, r, dir)
	if err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if len(recs) != want || st.Files != len(fixtures) || st.SkippedFiles["being-written"] != 1 || st.SkippedFiles["not-nfcapd"] != 1 {
		t.Errorf("read %d flows (want %d), stats %v", len(recs), want, st)
	}
	if _, err := readAll(t, &Reader{}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no nfcapd.* files") {
		t.Errorf("empty directory: %v", err)
	}
}

// recompress rewrites an uncompressed fixture with each block compressed by
// compress, under the header's compression id comp.
func recompress(t *testing.T, data []byte, comp byte, compress func([]byte) []byte) []byte {
	t.Helper()
	le := binary.LittleEndian
	out := append([]byte(nil), data[:fileHeaderSize]...)
	out[16] = comp
	for o := fileHeaderSize; o < len(data); {
		size := int(le.Uint32(data[o+4:]))
		z := compress(data[o+blockHeaderSize : o+blockHeaderSize+size])
		hdr := append([]byte(nil), data[o:o+blockHeaderSize]...)
		le.PutUint32(hdr[4:], uint32(len(z)))
		out = append(append(out, hdr...), z...)
		o += blockHeaderSize + size
	}
	return out
}

// TestZstd: nfdump 1.7.2 and later write zstd blocks (the installed 1.7.1
// cannot), so the uncompressed fixture is recompressed here.
func TestZstd(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "files", "nfcapd.none"))
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil)
	z := recompress(t, data, compZSTD, func(b []byte) []byte { return enc.EncodeAll(b, nil) })
	path := filepath.Join(t.TempDir(), "nfcapd.zstd")
	os.WriteFile(path, z, 0o644)
	got, err := readAll(t, &Reader{}, path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := readAll(t, &Reader{}, filepath.Join("testdata", "files", "nfcapd.none"))
	if len(got) != len(want) || len(got) == 0 {
		t.Fatalf("zstd: %d flows, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("record %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// A block that decompresses to more than MaxBlockSize is refused.
	_, err = readAll(t, &Reader{MaxBlockSize: 4096}, path)
	if err == nil || !strings.Contains(err.Error(), "zstd block") {
		t.Errorf("zstd over the limit: %v", err)
	}
}

// TestTruncated cuts the fixture at every byte: the flows before the cut
// are handed on, and the error names the file, the offset and the cut.
func TestTruncated(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "files", "nfcapd.none"))
	if err != nil {
		t.Fatal(err)
	}
	for cut := fileHeaderSize + 1; cut < len(data); cut += 97 {
		var n int
		err := (&Reader{}).ReadFrom(context.Background(), "cut.nfcapd", bytes.NewReader(data[:cut]), func(context.Context, egress.FlowRecord) { n++ })
		var fe *FormatError
		if !errors.As(err, &fe) || !errors.Is(err, ErrTruncated) || fe.Offset != int64(cut) || !strings.Contains(err.Error(), "cut.nfcapd: byte") {
			t.Fatalf("cut at %d: %v", cut, err)
		}
	}
}

// TestErrors maps broken files to their messages.
func TestErrors(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "files", "nfcapd.none"))
	if err != nil {
		t.Fatal(err)
	}
	patch := func(off int, b ...byte) []byte {
		d := bytes.Clone(good)
		copy(d[off:], b)
		return d
	}
	firstRecord := fileHeaderSize + blockHeaderSize
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"short", good[:10], "x: byte 10: too short for an nfcapd file header (10 of 40 bytes)"},
		{"magic", patch(0, 'P', 'K'), "x: byte 0: not an nfcapd file (magic 0x4b50, want 0xa50c)"},
		{"big-endian", patch(0, 0xa5, 0x0c), "big-endian"},
		{"layout 1", patch(2, 1, 0), "x: byte 2: file layout 1 (nfdump 1.6)"},
		{"layout 3", patch(2, 3, 0), "x: byte 2: file layout 3 is not supported"},
		{"compression", patch(16, 9), "x: byte 16: unknown compression 9"},
		{"encrypted", patch(17, 1), "x: byte 17: encrypted file"},
		{"huge block", patch(fileHeaderSize+4, 0xff, 0xff, 0xff, 0x7f), "x: byte 44: block of 2147483647 bytes is over the 5242880-byte limit"},
		{"record size 0", patch(firstRecord+2, 0, 0), fmt.Sprintf("x: byte %d: record 1 of 91 (type 7): size 0 does not fit", firstRecord)},
		{"record past block", patch(firstRecord+2, 0xff, 0xff), "size 65535 does not fit"},
		{"too many records", patch(fileHeaderSize, 0xff, 0xff), "the block ends (0 bytes left)"},
		{"lzo garbage", patch(16, compLZO), "x: byte 52: LZO block"},
		{"lz4 garbage", patch(16, compLZ4), "x: byte 52: LZ4 block"},
		{"bzip2 garbage", patch(16, compBZ2), "x: byte 52: bzip2 block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (&Reader{}).ReadFrom(context.Background(), "x", bytes.NewReader(tc.data), func(context.Context, egress.FlowRecord) {})
			var fe *FormatError
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if !errors.As(err, &fe) || errors.Is(err, ErrTruncated) {
				t.Errorf("%T is not a FormatError", err)
			}
		})
	}
}

// TestNotDecodedCounted: records that are not flows are counted by reason.
func TestNotDecodedCounted(t *testing.T) {
	le := binary.LittleEndian
	v3 := func(elems ...[]byte) []byte {
		r := make([]byte, v3HeaderSize)
		le.PutUint16(r[0:], typeV3)
		le.PutUint16(r[4:], uint16(len(elems)))
		for _, e := range elems {
			r = append(r, e...)
		}
		le.PutUint16(r[2:], uint16(len(r)))
		return r
	}
	elem := func(typ uint16, n int) []byte {
		e := make([]byte, n)
		le.PutUint16(e[0:], typ)
		le.PutUint16(e[2:], uint16(n))
		return e
	}
	ipv4 := elem(exIPv4Flow, 12)
	copy(ipv4[4:], []byte{1, 50, 168, 192, 2, 50, 168, 192})
	gen := elem(exGenericFlow, 52)
	gen[48] = 17
	cnt := elem(exCntFlow, 28)
	cnt[12] = 3 // 3 packets back
	legacy := []byte{10, 0, 8, 0, 0, 0, 0, 0}
	unknown := []byte{99, 0, 4, 0}
	badLen := v3(ipv4, elem(exGenericFlow, 20))
	recs := [][]byte{v3(ipv4, gen), v3(gen), v3(ipv4), legacy, unknown, badLen, v3(ipv4, gen, cnt)}
	var block []byte
	for _, r := range recs {
		block = append(block, r...)
	}
	file := make([]byte, fileHeaderSize+blockHeaderSize)
	le.PutUint16(file[0:], magic)
	le.PutUint16(file[2:], layoutVersion2)
	le.PutUint32(file[fileHeaderSize:], uint32(len(recs)))
	le.PutUint32(file[fileHeaderSize+4:], uint32(len(block)))
	le.PutUint16(file[fileHeaderSize+8:], blockType3)
	file = append(file, block...)
	// An array block is counted as not decoded, records and all.
	arr := make([]byte, blockHeaderSize+8)
	le.PutUint32(arr[0:], 2)
	le.PutUint32(arr[4:], 8)
	le.PutUint16(arr[8:], blockType4)
	file = append(file, arr...)

	r := &Reader{}
	var got []egress.FlowRecord
	if err := r.ReadFrom(context.Background(), "x", bytes.NewReader(file), func(_ context.Context, fr egress.FlowRecord) { got = append(got, fr) }); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	want := map[string]uint64{"no-address": 1, "no-flow": 1, "legacy-record": 1, "unknown-type": 1, "bad-element": 1, "block-type": 2}
	if fmt.Sprint(st.NotDecoded) != fmt.Sprint(want) || st.Flows != 2 || st.Records != 9 {
		t.Errorf("stats %v, want not decoded %v, 2 flows, 9 records", st, want)
	}
	// The biflow gives its reverse direction as a second record.
	if len(got) != 3 || got[2].Packets != 3 || got[2].Key.Src != got[1].Key.Dst || got[0].Key.Src.Addr().String() != "192.168.50.1" {
		t.Errorf("flows %+v", got)
	}
}

// FuzzRead: any input is read without a panic or an unbounded allocation.
func FuzzRead(f *testing.F) {
	for _, name := range fixtures {
		data, err := os.ReadFile(filepath.Join("testdata", "files", "nfcapd."+name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &Reader{MaxBlockSize: 1 << 16}
		var n uint64
		err := r.ReadFrom(context.Background(), "fuzz", bytes.NewReader(data), func(_ context.Context, fr egress.FlowRecord) {
			if !fr.Key.Src.Addr().IsValid() {
				t.Fatal("flow without a source address")
			}
			n++
		})
		var fe *FormatError
		if err != nil && !errors.As(err, &fe) {
			t.Fatalf("error is not a FormatError: %v", err)
		}
		if st := r.Stats(); n < st.Flows {
			t.Fatalf("%d flows handed, %d counted", n, st.Flows)
		}
	})
}

// TestDirectoryGoesOnAfterABadFile: a file of a directory that cannot be
// read to its end (cut short by a crash, corrupt) does not hide the files
// after it: they are read, and the error names every bad file.
func TestDirectoryGoesOnAfterABadFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "files", "nfcapd.none"))
	if err != nil {
		t.Fatal(err)
	}
	good, err := readAll(t, &Reader{}, filepath.Join("testdata", "files", "nfcapd.none"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := append([]byte(nil), data...)
	binary.LittleEndian.PutUint16(bad[fileHeaderSize+blockHeaderSize+2:], 0) // first record's size
	files := []struct {
		name string
		data []byte
	}{
		{"nfcapd.202601050800", data[:fileHeaderSize+100]}, // cut short
		{"nfcapd.202601050805", bad},
		{"nfcapd.202601050810", data},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := readAll(t, &Reader{}, dir)
	if len(recs) != len(good) {
		t.Errorf("read %d flows, want the %d of the last file", len(recs), len(good))
	}
	if !errors.Is(err, ErrTruncated) || !strings.Contains(fmt.Sprint(err), files[0].name+": byte 140") || !strings.Contains(fmt.Sprint(err), files[1].name+": byte 52") {
		t.Errorf("error %v: want both bad files named, with their offsets", err)
	}
}
