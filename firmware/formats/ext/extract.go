package ext

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
	"github.com/cordon-vms/cordon/internal/unixmode"
)

// maxDepth bounds directory nesting.
const maxDepth = 128

func extract(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	sb, err := readSuper(src, 0, src.Size())
	if err != nil {
		return err
	}
	f, err := newFS(src, sb)
	if err != nil {
		return err
	}
	root, err := f.inode(rootIno)
	if err != nil {
		return err
	}
	if !root.isDir() {
		return formatErr(root.at, "root inode is not a directory", nil)
	}
	w := &walker{ctx: ctx, f: f, out: out, dirs: map[uint32]bool{rootIno: true}, files: map[uint32]string{}}
	return w.dir(root, "", 0)
}

type walker struct {
	ctx   context.Context
	f     *fsys
	out   firmware.Sink
	dirs  map[uint32]bool   // directory inodes entered (cycle guard)
	files map[uint32]string // inode -> first path, for hard links
}

func (w *walker) warn(msg string) { w.out.Warn(msg) }

func (w *walker) dir(in *inode, dir string, depth int) error {
	if depth > maxDepth {
		w.warn(fmt.Sprintf("ext: %s: nesting deeper than %d, not entered", dir, maxDepth))
		return nil
	}
	entries, err := w.f.readDir(in, w.warn)
	if err != nil {
		w.warnErr(fmt.Sprintf("directory %q", "/"+dir), err)
	}
	for _, e := range entries {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if strings.Contains(e.name, "/") {
			w.warn(fmt.Sprintf("ext: directory %q holds a hostile name %q", "/"+dir, e.name))
		}
		// Names go to the Sink raw: it neutralises and reports hostile ones.
		name := e.name
		if dir != "" {
			name = dir + "/" + e.name
		}
		child, err := w.f.inode(e.ino)
		if err != nil {
			w.warnErr(name, err)
			continue
		}
		if err := w.entry(child, name, depth); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) entry(in *inode, name string, depth int) error {
	h := &firmware.Header{
		Name:    name,
		Mode:    unixmode.FromUnix(uint32(in.mode)),
		UID:     in.uid,
		GID:     in.gid,
		ModTime: time.Unix(int64(in.mtime), 0).UTC(),
		Size:    0,
	}
	switch in.mode & fmtutil.IFMT {
	case fmtutil.IFDIR:
		h.Type = firmware.TypeDir
		if err := w.out.Add(h, nil); err != nil {
			return err
		}
		if w.dirs[in.num] {
			w.warn(fmt.Sprintf("ext: %s: directory loop, not entered again", name))
			return nil
		}
		w.dirs[in.num] = true
		return w.dir(in, name, depth+1)
	case fmtutil.IFREG:
		if first, ok := w.files[in.num]; ok {
			h.Type, h.Linkname = firmware.TypeHardlink, first
			return w.out.Add(h, nil)
		}
		w.files[in.num] = name
		h.Type, h.Size = firmware.TypeFile, int64(in.size)
		if in.flags&flagInlineData != 0 {
			data, err := in.inlineData()
			if err != nil {
				w.warnErr(name, err)
				return nil
			}
			return w.out.Add(h, bytes.NewReader(data))
		}
		r, err := w.f.content(in)
		if err != nil {
			w.warnErr(name, err)
			return nil
		}
		err = w.out.Add(h, r)
		var fe *firmware.FormatError
		if err != nil && errors.As(err, &fe) {
			w.warnErr(name, err)
			return nil
		}
		return err
	case fmtutil.IFLNK:
		target, err := w.f.symlink(in)
		if err != nil {
			w.warnErr(name, err)
			return nil
		}
		h.Type, h.Linkname = firmware.TypeSymlink, target
	case fmtutil.IFCHR, fmtutil.IFBLK:
		h.Type = firmware.TypeCharDevice
		if in.mode&fmtutil.IFMT == fmtutil.IFBLK {
			h.Type = firmware.TypeBlockDevice
		}
		h.Devmajor, h.Devminor = decodeDev(in)
	case fmtutil.IFIFO:
		h.Type = firmware.TypeFIFO
	case fmtutil.IFSOCK:
		h.Type = firmware.TypeSocket
	default:
		w.warn(fmt.Sprintf("ext: %s: unknown inode mode %#o", name, in.mode))
		return nil
	}
	return w.out.Add(h, nil)
}

// decodeDev returns a device inode's numbers: the old 16-bit encoding in
// i_block[0], or the new 32-bit one in i_block[1].
func decodeDev(in *inode) (major, minor uint32) {
	old := uint32(in.iblock[0]) | uint32(in.iblock[1])<<8 | uint32(in.iblock[2])<<16 | uint32(in.iblock[3])<<24
	if old != 0 {
		return (old >> 8) & 0xff, old & 0xff
	}
	d := uint32(in.iblock[4]) | uint32(in.iblock[5])<<8 | uint32(in.iblock[6])<<16 | uint32(in.iblock[7])<<24
	return (d >> 8) & 0xfff, (d & 0xff) | ((d >> 12) & 0xfff00)
}

// warnErr records err about subject, without repeating the format prefix
// that FormatError messages already carry.
func (w *walker) warnErr(subject string, err error) {
	w.out.Warn(fmt.Sprintf("%s: %s: %s", Name, subject, strings.TrimPrefix(err.Error(), Name+": ")))
}
