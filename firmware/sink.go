package firmware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cordon-vms/cordon/internal/unixmode"
)

// budget is the run-wide count of bytes and entries, shared by every Sink.
type budget struct {
	limits Limits
	bytes  atomic.Int64
	files  atomic.Int64
}

// diskSink writes the entries of one chunk below its extract folder, through
// an os.Root so nothing the image says can reach outside it.
type diskSink struct {
	ctx     context.Context
	root    *os.Root // the chunk's extract folder
	dir     string   // that folder, relative to the output folder
	budget  *budget
	inSize  int64        // chunk size, for the expansion ratio
	out     atomic.Int64 // bytes written for this chunk
	mu      sync.Mutex
	entries []ManifestEntry
	files   []string // regular files written, relative to the output folder
	warns   []string
	limit   error           // set once a limit is reached; every later Add fails with it
	dirs    map[string]bool // parent folders already made
}

// symlinkParent returns the first component of dir that is a symlink, or "".
// Entries are never created through symlinks: the physical folder of every
// entry is then its lexical folder, which is what linkTarget's containment
// check relies on (a link "a -> ." would otherwise let "a/b/l -> ../../x"
// pass the lexical check and point outside).
func (s *diskSink) symlinkParent(dir string) string {
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		if s.madeDir(p) {
			continue
		}
		st, err := s.root.Lstat(p)
		if err != nil {
			return "" // missing: MkdirAll makes real folders from here on
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return p
		}
		if st.IsDir() {
			s.mu.Lock()
			s.dirs[p] = true
			s.mu.Unlock()
		}
	}
	return ""
}

// madeDir reports whether the folder was made by an earlier entry. Folders
// are never removed by later entries, so the answer stays true.
func (s *diskSink) madeDir(dir string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirs == nil {
		s.dirs = map[string]bool{}
	}
	return s.dirs[dir]
}

var _ Sink = (*diskSink)(nil)

// Warn records a problem in the chunk's content.
func (s *diskSink) Warn(msg string) {
	s.mu.Lock()
	s.warns = append(s.warns, msg)
	s.mu.Unlock()
}

func (s *diskSink) record(e ManifestEntry) {
	s.mu.Lock()
	s.entries = append(s.entries, e)
	s.mu.Unlock()
}

// modeString is the octal permission with setuid, setgid and sticky bits.
func modeString(m fs.FileMode) string { return fmt.Sprintf("%04o", unixmode.ToUnix(m)) }

// safeName turns a name from the image into a local slash path. It returns
// "" when nothing usable is left, and a note when it changed the name in a way
// that matters (traversal or absolute names).
func safeName(name string) (string, string) {
	orig := name
	name = strings.ReplaceAll(name, "\\", "/")
	name = strings.ReplaceAll(name, "\x00", "_")
	var parts []string
	escaped := false
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
			continue
		case "..":
			escaped = true
			if len(parts) > 0 {
				parts = parts[:len(parts)-1]
			}
			continue
		}
		if len(p) > 255 {
			p = p[:240] + fmt.Sprintf("~%08x", hash32(p))
		}
		parts = append(parts, p)
	}
	clean := strings.Join(parts, "/")
	if clean == "" || !filepath.IsLocal(filepath.FromSlash(clean)) {
		return "", fmt.Sprintf("name %q is not a usable path; not created", orig)
	}
	note := ""
	if escaped {
		note = fmt.Sprintf("name %q escaped with ..; neutralised to %q", orig, clean)
	} else if strings.HasPrefix(orig, "/") {
		note = fmt.Sprintf("absolute name %q made relative", orig)
	}
	return clean, note
}

func hash32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// addEntry is the manifest entry being built by one Add, with its notes.
type addEntry struct {
	ManifestEntry
	notes []string
}

func (a *addEntry) note(msg string) { a.notes = append(a.notes, msg) }

// Add creates one entry below the chunk's folder.
func (s *diskSink) Add(h *Header, r io.Reader) error {
	if h == nil {
		return errors.New("firmware: sink: nil header")
	}
	if err := s.admit(); err != nil {
		return err
	}
	a := &addEntry{ManifestEntry: manifestEntry(h)}
	name, note := safeName(h.Name)
	if note != "" {
		a.note(note)
	}
	defer func() {
		a.Note = strings.Join(a.notes, "; ")
		s.record(a.ManifestEntry)
	}()
	if name == "" {
		if h.Type == TypeDir && (h.Name == "/" || h.Name == "." || h.Name == "./" || h.Name == "") {
			a.notes = a.notes[:0] // the chunk's own root
			return nil
		}
		return nil
	}
	if m := h.Mode; m&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		a.note("setuid/setgid bit dropped on disk")
	}
	if !s.makeParent(a, path.Dir(name)) {
		return nil
	}
	rel := path.Join(s.dir, name)
	switch h.Type {
	case TypeDir:
		if err := s.root.MkdirAll(name, 0o755); err != nil {
			a.note(fmt.Sprintf("not created: %v", trimPathErr(err)))
			return nil
		}
		a.Path = rel
		return nil
	case TypeFile:
		return s.addFile(a, h, r, name, rel)
	case TypeSymlink:
		s.addSymlink(a, h, name, rel)
		return nil
	case TypeHardlink:
		s.addHardlink(a, h, name, rel)
		return nil
	default:
		a.note(a.Type + " not created on disk")
		return nil
	}
}

// admit checks that one more entry may be added: the context is live, no
// limit was reached, and the file count stays within MaxFiles.
func (s *diskSink) admit() error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	lim := s.limit
	s.mu.Unlock()
	if lim != nil {
		return lim
	}
	if n := s.budget.files.Add(1); s.budget.limits.MaxFiles > 0 && n > int64(s.budget.limits.MaxFiles) {
		err := fmt.Errorf("firmware: %s: more than %d files: %w", s.dir, s.budget.limits.MaxFiles, ErrLimit)
		s.trip(err)
		return err
	}
	return nil
}

// manifestEntry is the entry of h as the image declares it; Add fills in
// what was written.
func manifestEntry(h *Header) ManifestEntry {
	e := ManifestEntry{
		OrigName:   h.Name,
		Type:       h.Type.String(),
		Mode:       modeString(h.Mode),
		UID:        h.UID,
		GID:        h.GID,
		LinkTarget: h.Linkname,
		DevMajor:   h.Devmajor,
		DevMinor:   h.Devminor,
	}
	if h.Type == TypeFile || h.Size > 0 {
		e.Size = max(h.Size, 0)
	}
	return e
}

// makeParent creates the folder dir of an entry, unless it goes through a
// symlink; it says whether the entry can be created.
func (s *diskSink) makeParent(a *addEntry, dir string) bool {
	if dir == "." || s.madeDir(dir) {
		return true
	}
	if through := s.symlinkParent(dir); through != "" {
		a.note(fmt.Sprintf("parent path goes through the symlink %q; not created", through))
		return false
	}
	if err := s.root.MkdirAll(dir, 0o755); err != nil {
		a.note(fmt.Sprintf("parent folder not created: %v", trimPathErr(err)))
		return false
	}
	s.mu.Lock()
	s.dirs[dir] = true
	s.mu.Unlock()
	return true
}

// addFile writes a regular file. A name the output refuses is a note; a
// limit or a read error is returned, with the file kept as far as written.
func (s *diskSink) addFile(a *addEntry, h *Header, r io.Reader, name, rel string) error {
	a.Path = rel
	n, sum, err := s.writeFile(name, h, r)
	a.Size, a.SHA256 = n, sum
	if err != nil {
		if errors.Is(err, ErrLimit) {
			a.note("truncated: " + err.Error())
		} else if pe := (*os.PathError)(nil); errors.As(err, &pe) && !errors.Is(err, context.Canceled) {
			// The output refused the name (a folder of that name exists, ...).
			a.note(fmt.Sprintf("not created: %v", trimPathErr(err)))
			a.Path = ""
			return nil
		} else {
			a.note("content incomplete: " + err.Error())
		}
		return err
	}
	s.mu.Lock()
	s.files = append(s.files, rel)
	s.mu.Unlock()
	return nil
}

// addSymlink creates a symlink that stays inside the chunk's folder, or a
// placeholder file that says why it was not created.
func (s *diskSink) addSymlink(a *addEntry, h *Header, name, rel string) {
	target, tnote := s.linkTarget(name, h.Linkname)
	s.removeExisting(name)
	if target == "" {
		a.note(tnote)
		msg := fmt.Sprintf("cordon: symlink to %q not created: %s\n", h.Linkname, tnote)
		if err := s.root.WriteFile(name, []byte(msg), 0o644); err != nil {
			a.note(fmt.Sprintf("placeholder not created: %v", trimPathErr(err)))
			return
		}
		a.Path = rel
		return
	}
	if tnote != "" {
		a.note(tnote)
	}
	if err := s.root.Symlink(target, name); err != nil {
		a.note(fmt.Sprintf("not created: %v", trimPathErr(err)))
		return
	}
	a.Path = rel
}

// addHardlink links to a regular file already written in this chunk.
func (s *diskSink) addHardlink(a *addEntry, h *Header, name, rel string) {
	target, tnote := safeName(h.Linkname)
	if target == "" {
		a.note("hard link target " + tnote)
		return
	}
	st, err := s.root.Lstat(target)
	if err != nil || !st.Mode().IsRegular() {
		a.note(fmt.Sprintf("hard link target %q is not a file written here; not created", h.Linkname))
		return
	}
	s.removeExisting(name)
	if err := s.root.Link(target, name); err != nil {
		a.note(fmt.Sprintf("not created: %v", trimPathErr(err)))
		return
	}
	a.Path = rel
	a.Size = st.Size()
}

func trimPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

func (s *diskSink) trip(err error) {
	s.mu.Lock()
	if s.limit == nil {
		s.limit = err
	}
	s.mu.Unlock()
}

// removeExisting removes a non-directory entry of that name so a later entry
// replaces an earlier one instead of writing through it.
func (s *diskSink) removeExisting(name string) {
	if st, err := s.root.Lstat(name); err == nil && !st.IsDir() {
		s.root.Remove(name)
	}
}

// linkTarget returns the symlink target to create for a link at name, or ""
// with a note when the link cannot stay inside the chunk's folder. Absolute
// targets are taken relative to the chunk's root, as in a root filesystem.
func (s *diskSink) linkTarget(name, target string) (string, string) {
	if target == "" || strings.ContainsRune(target, 0) {
		return "", "empty or invalid symlink target"
	}
	dir := path.Dir(name)
	var resolved string
	note := ""
	if strings.HasPrefix(target, "/") {
		resolved = path.Clean(strings.TrimLeft(target, "/"))
		if resolved == "" {
			resolved = "."
		}
		rel, err := filepath.Rel(filepath.FromSlash(dir), filepath.FromSlash(resolved))
		if err != nil {
			return "", fmt.Sprintf("absolute symlink target %q cannot be made relative", target)
		}
		note = fmt.Sprintf("absolute symlink target %q rewritten relative to the chunk root", target)
		target = filepath.ToSlash(rel)
	} else {
		resolved = path.Clean(path.Join(dir, target))
	}
	if resolved != "." && !filepath.IsLocal(filepath.FromSlash(resolved)) {
		return "", fmt.Sprintf("symlink target %q escapes the output; replaced by a placeholder file", target)
	}
	return target, note
}

// writeFile writes one regular file, counting bytes against the limits.
func (s *diskSink) writeFile(name string, h *Header, r io.Reader) (int64, string, error) {
	s.removeExisting(name)
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL, 0o600)
	if err != nil {
		return 0, "", err
	}
	sum := sha256.New()
	w := &limitWriter{s: s, name: name, f: f, h: sum}
	var cerr error
	if r != nil {
		buf := make([]byte, 64<<10)
		_, cerr = io.CopyBuffer(w, ctxReader{s.ctx, r}, buf)
	}
	if err := f.Close(); err != nil && cerr == nil {
		cerr = err
	}
	perm := h.Mode.Perm() | 0o600
	s.root.Chmod(name, perm)
	if !h.ModTime.IsZero() {
		s.root.Chtimes(name, h.ModTime, h.ModTime)
	}
	return w.n, hex.EncodeToString(sum.Sum(nil)), cerr
}

// ctxReader stops a copy when the context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// limitWriter writes to f and enforces the byte and ratio limits.
type limitWriter struct {
	s    *diskSink
	name string
	f    *os.File
	h    io.Writer
	n    int64
}

func (w *limitWriter) Write(p []byte) (int, error) {
	s := w.s
	l := s.budget.limits
	want := int64(len(p))
	allowed := want
	var lerr error
	total := s.budget.bytes.Add(want)
	if l.MaxTotalBytes > 0 && total > l.MaxTotalBytes {
		over := total - l.MaxTotalBytes
		allowed = max(want-over, 0)
		lerr = fmt.Errorf("firmware: %s: output passed %d bytes (max total bytes): %w", path.Join(s.dir, w.name), l.MaxTotalBytes, ErrLimit)
	}
	out := s.out.Add(allowed)
	if lerr == nil && l.MaxRatio > 0 && out > l.RatioFloor && s.inSize > 0 && float64(out) > l.MaxRatio*float64(s.inSize) {
		maxOut := int64(l.MaxRatio * float64(s.inSize))
		cut := min(out-max(maxOut, l.RatioFloor), allowed)
		allowed -= cut
		lerr = fmt.Errorf("firmware: %s: chunk of %d bytes expanded more than %g times (max ratio): %w", path.Join(s.dir, w.name), s.inSize, l.MaxRatio, ErrLimit)
	}
	if allowed < want {
		s.budget.bytes.Add(allowed - want)
	}
	n, err := w.f.Write(p[:allowed])
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, err
	}
	if lerr != nil {
		s.trip(lerr)
		return n, lerr
	}
	return n, nil
}
