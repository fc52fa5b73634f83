package inspect

import (
	"fmt"
	"strings"
)

// Examined says what an inspection actually looked at, so that "no
// findings" can be told apart from "nothing looked into".
type Examined struct {
	// AccountFiles are the passwd/shadow files parsed.
	AccountFiles int `json:"account_files"`
	// InitFiles are the files that start programs (inittab, init.d and rc
	// scripts, systemd units, inetd.conf, crontabs) parsed.
	InitFiles int `json:"init_files"`
	// Filesystems lists the filesystems and archives the unpacker opened,
	// from report.json ("squashfs at image offset 0x40000").
	Filesystems []string `json:"filesystems"`
	// ChunksOpened and ChunksNotOpened count report.json's chunks that were
	// extracted or carved, and those only identified.
	ChunksOpened    int `json:"chunks_opened"`
	ChunksNotOpened int `json:"chunks_not_opened"`
	// SystemTree is true when the tree looks like an operating system's
	// root filesystem (an etc directory, or a bin or sbin directory and ELF
	// files): then accounts, an
	// init system and binaries are expected, and their absence is reported.
	SystemTree bool `json:"system_tree"`
}

// chunkInfo is what inspect reads of report.json's chunk tree.
type chunkInfo struct {
	File       string       `json:"file"`
	Offset     int64        `json:"offset"`
	Size       int64        `json:"size"`
	Format     string       `json:"format"`
	Desc       string       `json:"description"`
	Kind       string       `json:"kind"`
	Outcome    string       `json:"outcome"`
	ExtractDir string       `json:"extract_dir"`
	Children   []*chunkInfo `json:"children"`
}

// maxChunksWalked bounds the walk of report.json's chunk tree.
const maxChunksWalked = 100_000

// walkChunks calls fn for every chunk of the tree, depth first, at most
// maxChunksWalked of them.
func walkChunks(cs []*chunkInfo, fn func(*chunkInfo)) {
	n := 0
	var walk func([]*chunkInfo)
	walk = func(cs []*chunkInfo) {
		for _, c := range cs {
			if c == nil || n >= maxChunksWalked {
				return
			}
			n++
			fn(c)
			walk(c.Children)
		}
	}
	walk(cs)
}

func (c *chunkInfo) where() string {
	w := "image"
	if c.File != "" {
		w = c.File
	}
	return fmt.Sprintf("%s at %s offset %#x", c.Format, w, c.Offset)
}

// examineChunks fills the chunk counts and opened filesystems of e.
func (e *Examined) examineChunks(cs []*chunkInfo) {
	walkChunks(cs, func(c *chunkInfo) {
		switch c.Outcome {
		case "extracted":
			e.ChunksOpened++
			if c.Kind == "filesystem" || c.Kind == "archive" || c.Kind == "vendor" {
				e.Filesystems = append(e.Filesystems, c.where())
			}
		case "carved":
			e.ChunksOpened++
		case "identified":
			e.ChunksNotOpened++
		}
	})
}

// The kinds of content a system tree is expected to hold.
const (
	missingAccounts = "accounts"
	missingInit     = "init"
	missingELF      = "binaries"
)

// coverageFindings raises coverage.nothing-examined when no file with
// content was read, and coverage.missing for every kind of content a system
// tree lacks.
func (c *collector) coverageFindings(r *Report) {
	if r.Stats.Files == 0 || r.Stats.Bytes == 0 {
		what := "the tree is empty"
		switch {
		case r.Stats.Errors > 0:
			what = fmt.Sprintf("no file could be read (%d read errors)", r.Stats.Errors)
		case r.Stats.Files > 0:
			what = fmt.Sprintf("its %d file(s) are all empty", r.Stats.Files)
		}
		c.findings = append(c.findings, Finding{Rule: RuleNothingExamined, Severity: SeverityMedium,
			Evidence: "nothing examined: " + what,
			Detail:   "no finding here means nothing was looked at, not that the firmware is clean"})
		return
	}
	ex := &r.Examined
	if !ex.SystemTree {
		return
	}
	missing := func(kind, ev string) {
		c.findings = append(c.findings, Finding{Rule: RuleMissing, Severity: SeverityLow,
			Evidence: ev, Detail: "the tree looks like a root filesystem; this part may sit in a partition that was not unpacked"})
	}
	if ex.AccountFiles == 0 {
		missing(missingAccounts, "no passwd or shadow file: login accounts and their passwords were not examined")
	}
	if ex.InitFiles == 0 {
		missing(missingInit, "no init system (inittab, init.d or rc scripts, systemd units, inetd.conf): services started at boot were not examined")
	}
	if r.Stats.ELF == 0 {
		missing(missingELF, "no ELF executable or library: binary hardening was not examined")
	}
}

// writeExamined is the text summary's account of what was looked at.
func (r *Report) writeExamined(ew *errWriter) {
	ex := r.Examined
	ew.printf("examined: %d account file(s), %d init file(s)", ex.AccountFiles, ex.InitFiles)
	if r.Coverage != nil || ex.ChunksOpened+ex.ChunksNotOpened > 0 {
		ew.printf("; %d chunk(s) opened, %d not opened", ex.ChunksOpened, ex.ChunksNotOpened)
	}
	ew.printf("\n")
	if len(ex.Filesystems) > 0 {
		ew.printf("filesystems opened: %s\n", strings.Join(ex.Filesystems, ", "))
	}
}
