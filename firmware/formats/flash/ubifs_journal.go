package flash

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cordon-vms/cordon/firmware"
)

const (
	ubifsTrunNode = 4
	ubifsRefHdr   = 64 // a reference node's size
)

// budNode is a node of a journal bud, for replay in sequence-number order.
type budNode struct {
	sqnum      uint64
	lnum, offs uint32
}

// budRef is a log reference node: a bud starts at LEB:offset.
type budRef struct{ lnum, offs uint32 }

// replayJournal applies the journal, as the kernel does at mount: the log
// (from the master node's log LEB on, circularly) starts with the commit
// start node of the last commit, then reference nodes name the buds
// (LEB:offset) written since. Their nodes, newer than anything in the
// index, are applied in sequence-number order: inodes, entries and data
// nodes replace older ones, unlinked inodes and entries to inode 0 delete,
// truncation nodes drop the data blocks past the new size.
func (u *ubifsFS) replayJournal(ctx context.Context, logLnum uint32, cmtNo uint64) error {
	if u.logLEBs <= 0 || int64(logLnum) < ubifsLogLnum || int64(logLnum) >= ubifsLogLnum+u.logLEBs {
		u.warn(fmt.Sprintf("ubifs: master node's log LEB %d outside the log (%d LEBs at %d); journal not replayed", logLnum, u.logLEBs, ubifsLogLnum))
		return nil
	}
	refs, csSqnum, bad := u.readLog(logLnum, cmtNo)
	if bad != "" {
		u.warn("ubifs: " + bad + "; journal not replayed")
		return nil
	}
	nodes, badRefs, err := u.budNodes(ctx, refs, csSqnum)
	if err != nil {
		return err
	}
	slices.SortStableFunc(nodes, func(a, b budNode) int {
		switch {
		case a.sqnum < b.sqnum:
			return -1
		case a.sqnum > b.sqnum:
			return 1
		}
		return 0
	})
	applied, skipped := 0, 0
	for i, n := range nodes {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if u.replayNode(n) {
			applied++
		} else {
			skipped++
		}
	}
	if len(refs) > 0 {
		u.warn(fmt.Sprintf("ubifs: journal replayed: %d nodes from %d buds written after the last commit (%d skipped, %d bad references)",
			applied, len(refs)-badRefs, skipped, badRefs))
	}
	return nil
}

// readLog reads the log from logLnum on: the last commit's start node
// (whose sequence number it returns), then the references to the buds
// written since, up to an older log LEB or the next commit. bad says why
// the log cannot be used.
func (u *ubifsFS) readLog(logLnum uint32, cmtNo uint64) (refs []budRef, csSqnum uint64, bad string) {
	le := binary.LittleEndian
	lnum := logLnum
	for i := range min(u.logLEBs, u.lebCnt) {
		nodes := 0
		stop := false
		u.scanLEB(lnum, false, func(b []byte, ch ubifsCH) {
			if stop {
				return
			}
			nodes++
			switch {
			case i == 0 && nodes == 1:
				if ch.typ != ubifsCSNode || len(b) < ubifsCommonHdr+8 || le.Uint64(b[24:]) != cmtNo {
					bad = "the log does not start with the last commit's start node"
					stop = true
					return
				}
				csSqnum = ch.sqnum
			case ch.sqnum <= csSqnum || ch.typ == ubifsCSNode:
				stop = true // an older log LEB, or the next commit
			case ch.typ == ubifsRefNode && len(b) >= ubifsRefHdr:
				refs = append(refs, budRef{le.Uint32(b[24:]), le.Uint32(b[28:])})
			}
		})
		if stop || nodes == 0 {
			break
		}
		if lnum++; int64(lnum) >= ubifsLogLnum+u.logLEBs {
			lnum = ubifsLogLnum
		}
	}
	return refs, csSqnum, bad
}

// budNodes collects the nodes of the buds newer than the commit start node
// csSqnum; references outside the volume or named twice are counted in
// badRefs.
func (u *ubifsFS) budNodes(ctx context.Context, refs []budRef, csSqnum uint64) (nodes []budNode, badRefs int, err error) {
	le := binary.LittleEndian
	seenBud := map[uint64]bool{}
	for _, r := range refs {
		if seenBud[uint64(r.lnum)<<32|uint64(r.offs)] || int64(r.lnum) >= u.lebCnt || int64(r.offs) >= u.leb {
			badRefs++
			continue
		}
		seenBud[uint64(r.lnum)<<32|uint64(r.offs)] = true
		b := u.readLEB(r.lnum)
		for offs := int64(r.offs); b != nil && offs+ubifsCommonHdr <= int64(len(b)); {
			nb, ch, err := parseNode(b[offs:], 0, int64(r.lnum)*u.leb+offs)
			if err != nil {
				break
			}
			next := offs + int64(ch.len+7)&^7
			if ch.typ == ubifsPadNode && len(nb) >= ubifsCommonHdr+4 {
				next = offs + int64(ch.len) + int64(le.Uint32(nb[24:]))
			} else if ch.sqnum > csSqnum {
				if len(nodes) >= ubifsMaxNodes {
					return nil, 0, fmt.Errorf("ubifs: journal holds more than %d nodes: %w", ubifsMaxNodes, firmware.ErrLimit)
				}
				nodes = append(nodes, budNode{sqnum: ch.sqnum, lnum: r.lnum, offs: uint32(offs)})
			}
			offs = next
		}
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
	}
	return nodes, badRefs, nil
}

// replayNode applies one bud node; it says whether the node was applied
// (false: unreadable, or a kind that has no place in a bud).
func (u *ubifsFS) replayNode(n budNode) bool {
	le := binary.LittleEndian
	// The node's own length comes from its header.
	hdr := make([]byte, ubifsCommonHdr)
	if m, _ := u.r.ReadAt(hdr, int64(n.lnum)*u.leb+int64(n.offs)); m < len(hdr) {
		return false
	}
	nlen := le.Uint32(hdr[16:])
	if nlen > ubifsMaxNode {
		return false
	}
	b, ch, err := u.node(n.lnum, n.offs, nlen)
	if err != nil {
		return false
	}
	switch ch.typ {
	case ubifsTrunNode:
		if len(b) < 56 {
			return false
		}
		inum, newSize := le.Uint32(b[24:]), le.Uint64(b[48:])
		first := (newSize + ubifsBlockSize - 1) / ubifsBlockSize
		for blk := range u.data[inum] {
			if uint64(blk) >= first {
				delete(u.data[inum], blk)
			}
		}
		return true
	case ubifsInoNode, ubifsDataNode, ubifsDentNode, ubifsXentNode:
		return u.apply(b, ch, n.lnum, n.offs)
	default:
		return false // commit-time and other nodes have no place in a bud
	}
}
