package squashfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/internal/unixmode"
)

// maxDepth bounds directory nesting; real root filesystems stay far below it.
const maxDepth = 128

func extract(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	sb, err := readSuper(src, 0, src.Size())
	if err != nil {
		if old, oerr := identifyOld(src, 0, src.Size(), err); oerr == nil {
			return formatErr(28, old.Desc, err)
		}
		return err
	}
	f, err := newFS(src, sb)
	if err != nil {
		return err
	}
	defer f.close()
	root, err := f.inode(sb.RootInode)
	if err != nil {
		return err
	}
	if !root.isDir() {
		return formatErr(int64(sb.InodeTable), "root inode is not a directory", nil)
	}
	w := &walker{ctx: ctx, f: f, out: out, dirs: map[uint64]bool{sb.RootInode: true}, files: map[uint64]string{}}
	return w.dir(root, "", 0)
}

type walker struct {
	ctx   context.Context
	f     *fsys
	out   firmware.Sink
	dirs  map[uint64]bool   // directory inodes already entered (cycle guard)
	files map[uint64]string // regular file inode reference -> first path (hard links)
}

func (w *walker) dir(in *inode, dir string, depth int) error {
	if depth > maxDepth {
		w.out.Warn(fmt.Sprintf("squashfs: %s: nesting deeper than %d, not entered", dir, maxDepth))
		return nil
	}
	entries, err := w.f.readDir(in)
	if err != nil {
		// Keep what was listed before the damage.
		w.warnErr(fmt.Sprintf("directory %q", "/"+dir), err)
	}
	for _, e := range entries {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if e.name == "" || e.name == "." || e.name == ".." || strings.Contains(e.name, "/") {
			w.out.Warn(fmt.Sprintf("squashfs: directory %q holds a hostile name %q", "/"+dir, e.name))
		}
		// Names go to the Sink raw: it neutralises and reports hostile ones.
		name := e.name
		if dir != "" {
			name = dir + "/" + e.name
		}
		child, err := w.f.inode(e.ref)
		if err != nil {
			w.warnErr(name, err)
			continue
		}
		if err := w.entry(child, e.ref, name, depth); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) entry(in *inode, ref uint64, name string, depth int) error {
	uid, gid, err := w.f.owner(in)
	if err != nil {
		w.warnErr(name+": owner", err)
	}
	h := &firmware.Header{
		Name:    name,
		Mode:    unixmode.FromUnix(uint32(in.mode)),
		UID:     uid,
		GID:     gid,
		ModTime: time.Unix(int64(in.mtime), 0).UTC(),
		Size:    -1,
	}
	switch in.typ {
	case tDir, tLDir:
		h.Type = firmware.TypeDir
		if err := w.out.Add(h, nil); err != nil {
			return err
		}
		if w.dirs[ref] {
			w.out.Warn(fmt.Sprintf("squashfs: %s: directory loop, not entered again", name))
			return nil
		}
		w.dirs[ref] = true
		return w.dir(in, name, depth+1)
	case tFile, tLFile:
		if first, ok := w.files[ref]; ok {
			h.Type, h.Linkname, h.Size = firmware.TypeHardlink, first, 0
			return w.out.Add(h, nil)
		}
		w.files[ref] = name
		h.Type, h.Size = firmware.TypeFile, int64(in.size)
		err := w.out.Add(h, w.f.open(in))
		if err != nil && !isSinkErr(err) {
			w.warnErr(name, err)
			return nil
		}
		return err
	case tSymlink, tLSymlink:
		h.Type, h.Linkname, h.Size = firmware.TypeSymlink, in.target, 0
	case tChar, tLChar, tBlock, tLBlock:
		h.Type = firmware.TypeCharDevice
		if in.typ == tBlock || in.typ == tLBlock {
			h.Type = firmware.TypeBlockDevice
		}
		h.Devmajor = (in.rdev & 0xfff00) >> 8
		h.Devminor = (in.rdev & 0xff) | ((in.rdev >> 12) & 0xfff00)
		h.Size = 0
	case tFIFO, tLFIFO:
		h.Type, h.Size = firmware.TypeFIFO, 0
	case tSocket, tLSocket:
		h.Type, h.Size = firmware.TypeSocket, 0
	}
	return w.out.Add(h, nil)
}

// isSinkErr reports whether err came from the Sink refusing a write (limits,
// I/O) rather than from reading the image: those stop the extraction.
func isSinkErr(err error) bool {
	var fe *firmware.FormatError
	return !errors.As(err, &fe)
}

// warnErr records err about subject, without repeating the format prefix
// that FormatError messages already carry.
func (w *walker) warnErr(subject string, err error) {
	w.out.Warn(fmt.Sprintf("%s: %s: %s", Name, subject, strings.TrimPrefix(err.Error(), Name+": ")))
}
