package flash

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

// ubifsNode builds a node of type typ with sequence number sqnum.
func ubifsNode(typ byte, sqnum uint64, body []byte) []byte {
	b := make([]byte, ubifsCommonHdr, ubifsCommonHdr+len(body))
	b = append(b, body...)
	le := binary.LittleEndian
	le.PutUint32(b, ubifsMagic)
	le.PutUint64(b[8:], sqnum)
	le.PutUint32(b[16:], uint32(len(b)))
	b[20] = typ
	fixNodeCRC(b)
	return b
}

// findNode returns the offset of the first node of type typ in img for
// which match holds.
func findNode(t *testing.T, img []byte, typ byte, match func(b []byte) bool) int {
	t.Helper()
	for off := 3 * fsLEB; off+ubifsCommonHdr < len(img); off += 8 {
		if binary.LittleEndian.Uint32(img[off:]) == ubifsMagic && img[off+20] == typ && match(img[off:]) {
			return off
		}
	}
	t.Fatalf("no node of type %d found", typ)
	return 0
}

func dentNamed(name string) func(b []byte) bool {
	return func(b []byte) bool {
		n := int(binary.LittleEndian.Uint16(b[50:]))
		return n == len(name) && string(b[56:56+n]) == name
	}
}

// TestUBIFSJournalReplay: mkfs.ubifs writes no journal, so one is added to
// ubifs.img as the kernel would write it after a mount: a bud LEB holding a
// rewritten file, a deletion, a new file and a truncation, and a reference
// node after the log's commit start node. The extraction shows the state
// after the replay.
func TestUBIFSJournalReplay(t *testing.T) {
	orig := firmwaretest.ReadFixture(t, "ubifs.img")
	base := firmwaretest.MustRun(t, UBIFS, orig, 0)
	le := binary.LittleEndian
	img := slices.Concat(orig, bytes.Repeat([]byte{0xFF}, fsLEB))
	budLnum := uint32(len(orig) / fsLEB)
	le.PutUint32(img[ubifsCommonHdr+16:], budLnum+1) // leb_cnt
	fixNodeCRC(img)
	const sq = 1 << 40

	j := journalNodes{t: t, img: img}

	passwd, ipcam, etc := j.inoOf("passwd-"), j.inoOf("ipcam"), j.inoOf("etc")
	newPasswd := []byte("root:x:0:0:replayed:/root:/bin/sh\n")
	const newIno = 4000
	newFile := []byte("written after the last commit\n")
	trun := make([]byte, 32)
	le.PutUint32(trun, ipcam)
	le.PutUint64(trun[16:], 9000)
	le.PutUint64(trun[24:], 5000)
	pad := make([]byte, 4)
	le.PutUint32(pad, 28) // the padding node (28 bytes) is followed by 28 bytes of padding
	// Out of order on purpose: replay sorts by sequence number, so the older
	// rewrite of passwd- loses to the newer one.
	bud := [][]byte{
		journalDataNode(sq+3, passwd, 0, newPasswd),
		j.withInode(sq+4, passwd, passwd, uint64(len(newPasswd)), 2),
		journalDataNode(sq+2, passwd, 0, []byte("older rewrite, superseded\n")),
		ubifsNode(ubifsPadNode, 0, pad), make([]byte, 20), // 4 + 20 + 4 bytes
		journalDent(sq+5, etc, 0, "shadow"),
		j.withInode(sq+6, j.inoOf("shadow"), j.inoOf("shadow"), 0, 0),
		j.withInode(sq+7, passwd, newIno, uint64(len(newFile)), 1),
		journalDataNode(sq+8, newIno, 0, newFile),
		journalDent(sq+9, etc, newIno, "replayed.txt"),
		ubifsNode(ubifsTrunNode, sq+10, trun),
		j.withInode(sq+11, ipcam, ipcam, 5000, 1),
	}
	off := int(budLnum) * fsLEB
	for _, n := range bud {
		copy(img[off:], n)
		off += (len(n) + 7) &^ 7
	}
	// The reference node, after the commit start node that opens the log.
	logOff := 3*fsLEB + (int(le.Uint32(img[3*fsLEB+16:]))+7)&^7
	refBody := make([]byte, ubifsRefHdr-ubifsCommonHdr)
	le.PutUint32(refBody, budLnum)
	copy(img[logOff:], ubifsNode(ubifsRefNode, sq+1, refBody))

	res := firmwaretest.MustRun(t, UBIFS, img, 0)
	if got, _ := res.Sink.File("etc/passwd-"); !bytes.Equal(got, newPasswd) {
		t.Errorf("etc/passwd- = %q", got)
	}
	if e, ok := res.Sink.Entry("etc/passwd"); !ok || e.Header.Linkname != "etc/passwd-" {
		t.Errorf("etc/passwd = %+v", e.Header)
	}
	if _, ok := res.Sink.Entry("etc/shadow"); ok {
		t.Error("etc/shadow was deleted in the journal")
	}
	if got, _ := res.Sink.File("etc/replayed.txt"); !bytes.Equal(got, newFile) {
		t.Errorf("etc/replayed.txt = %q", got)
	}
	want, _ := base.Sink.File("usr/bin/ipcam")
	if got, _ := res.Sink.File("usr/bin/ipcam"); !bytes.Equal(got, want[:5000]) {
		t.Errorf("usr/bin/ipcam: %d bytes, want the first 5000", len(got))
	}
	if !hasWarning(res, "journal replayed: 10 nodes from 1 buds") {
		t.Errorf("warnings %q", res.Sink.Warnings)
	}
	if len(res.Sink.Entries) != len(base.Sink.Entries) {
		t.Errorf("%d entries, want %d (one deleted, one added)", len(res.Sink.Entries), len(base.Sink.Entries))
	}
}

// journalNodes builds journal nodes for TestUBIFSJournalReplay, some of them
// from the nodes of img.
type journalNodes struct {
	t   *testing.T
	img []byte
}

// inoOf is the inode number of the entry named name.
func (j journalNodes) inoOf(name string) uint32 {
	le := binary.LittleEndian
	return uint32(le.Uint64(j.img[findNode(j.t, j.img, ubifsDentNode, dentNamed(name))+40:]))
}

// inodeNode is a copy of inode inum's node.
func (j journalNodes) inodeNode(inum uint32) []byte {
	le := binary.LittleEndian
	off := findNode(j.t, j.img, ubifsInoNode, func(b []byte) bool { return le.Uint32(b[24:]) == inum })
	return slices.Clone(j.img[off : off+int(le.Uint32(j.img[off+16:]))])
}

// withInode is inode from's node, renumbered to inum, with a new size
// and link count.
func (j journalNodes) withInode(seq uint64, from, inum uint32, size uint64, nlink uint32) []byte {
	le := binary.LittleEndian
	n := j.inodeNode(from)
	le.PutUint32(n[24:], inum)
	le.PutUint64(n[8:], seq)
	le.PutUint64(n[48:], size)
	le.PutUint32(n[92:], nlink)
	fixNodeCRC(n)
	return n
}

// journalKey is a UBIFS key: inode number, then type and low bits.
func journalKey(inum uint32, typ, low uint32) []byte {
	le := binary.LittleEndian
	k := make([]byte, 16)
	le.PutUint32(k, inum)
	le.PutUint32(k[4:], typ<<29|low)
	return k
}

// journalDataNode is an uncompressed data node of block of inode inum.
func journalDataNode(seq uint64, inum, block uint32, data []byte) []byte {
	body := slices.Concat(journalKey(inum, ubifsKeyData, block), make([]byte, 8), data)
	binary.LittleEndian.PutUint32(body[16:], uint32(len(data))) // size; compression none
	return ubifsNode(ubifsDataNode, seq, body)
}

// journalDent is a directory entry node: name in parent, to inode inum (0
// deletes).
func journalDent(seq uint64, parent uint32, inum uint64, name string) []byte {
	le := binary.LittleEndian
	body := slices.Concat(journalKey(parent, ubifsKeyDent, 12345), make([]byte, 16), []byte(name), []byte{0})
	le.PutUint64(body[16:], inum)
	le.PutUint16(body[26:], uint16(len(name)))
	return ubifsNode(ubifsDentNode, seq, body)
}
