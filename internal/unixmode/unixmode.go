// Package unixmode converts between Unix permission bits (rwx for owner,
// group and others, setuid 04000, setgid 02000, sticky 01000) and the
// corresponding bits of an fs.FileMode. Firmware extraction reads the Unix
// bits from images and writes them in report.json; inspect reads them back.
package unixmode

import "io/fs"

// FromUnix converts Unix permission bits to an fs.FileMode. The file type
// bits above them are ignored.
func FromUnix(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// ToUnix returns m's permission, setuid, setgid and sticky bits as Unix
// permission bits (at most 07777).
func ToUnix(m fs.FileMode) uint32 {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}
