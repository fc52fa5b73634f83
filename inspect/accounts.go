package inspect

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Account is one login account found in a passwd or shadow file.
type Account struct {
	Path  string `json:"path"`           // the file holding the password field
	User  string `json:"user"`           // login name
	UID   int    `json:"uid"`            // -1 when no passwd entry gives it
	Shell string `json:"shell"`          // from passwd, when known
	Hash  string `json:"hash_kind"`      // see HashKind
	Found string `json:"password"`       // the cracked password, or empty
	Note  string `json:"note,omitempty"` // why it was not cracked (limits), ...

	hash string // the password field, for Diff
}

//go:embed passwords.txt
var embeddedDefaults string

//go:embed passwords-common.txt
var embeddedCommon string

// defaultPasswords are the vendor and botnet defaults (passwords.txt) and
// commonPasswords the most common passwords (passwords-common.txt), tried
// against every hash in this order, with Options.Passwords between them.
// Both files: one a line, # comments, the first of duplicates kept.
var defaultPasswords, commonPasswords = func() ([]string, []string) {
	seen := map[string]bool{}
	return passwordList(embeddedDefaults, seen), passwordList(embeddedCommon, seen)
}()

func passwordList(text string, seen map[string]bool) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimRight(l, "\r")
		if strings.HasPrefix(l, "#") || seen[l] {
			continue
		}
		seen[l] = true
		out = append(out, l)
	}
	return out
}

const (
	maxAccountLines = 10000
	maxAccountLine  = 4096
)

type passwdEntry struct {
	path, user, pw, shell string
	uid                   int
	line                  int
}

type shadowEntry struct {
	path, user, pw string
	line           int
}

func isAccountsName(base string) bool {
	b := strings.ToLower(base)
	return strings.Contains(b, "passwd") || strings.Contains(b, "shadow")
}

// checkAccountsFile parses files named like passwd or shadow (anywhere in
// the tree, including backups such as passwd- and vendor copies).
func (c *collector) checkAccountsFile(f *fileView) {
	base := strings.ToLower(f.base())
	if !isAccountsName(base) || !isText(f.data) {
		return
	}
	pw, sh := parseAccounts(f.data)
	if strings.Contains(base, "shadow") {
		// A shadow file's lines have 9 fields but some vendors trim them:
		// treat every parsed line as shadow.
		for _, e := range pw {
			sh = append(sh, shadowEntry{user: e.user, pw: e.pw, line: e.line})
		}
		pw = nil
	}
	for i := range pw {
		pw[i].path = f.path
	}
	for i := range sh {
		sh[i].path = f.path
	}
	c.mu.Lock()
	c.accountFiles[f.path] = true
	c.passwd = append(c.passwd, pw...)
	c.shadow = append(c.shadow, sh...)
	c.mu.Unlock()
}

// parseAccounts parses passwd-style (7 fields, numeric UID) and shadow-style
// (9 fields, or 2 to 8 fields with a numeric or empty third) lines. Lines that
// are neither are skipped.
func parseAccounts(data []byte) ([]passwdEntry, []shadowEntry) {
	var pw []passwdEntry
	var sh []shadowEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, maxAccountLine), maxAccountLine)
	for n := 1; sc.Scan() && n <= maxAccountLines; n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < 2 || !validUser(f[0]) {
			continue
		}
		if len(f) == 7 {
			uid, err := strconv.Atoi(f[2])
			if err == nil && uid >= 0 {
				pw = append(pw, passwdEntry{user: f[0], pw: f[1], uid: uid, shell: f[6], line: n})
				continue
			}
		}
		if len(f) == 9 || len(f) >= 3 && len(f) <= 8 && (f[2] == "" || isDigits(f[2])) {
			sh = append(sh, shadowEntry{user: f[0], pw: f[1], line: n})
		}
	}
	return pw, sh
}

func validUser(u string) bool {
	if u == "" || len(u) > 64 {
		return false
	}
	for _, r := range u {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' || r == '$') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func noLoginShell(sh string) bool {
	b := path.Base(sh)
	return b == "false" || b == "nologin" || b == "sync" || b == "halt" || b == "shutdown"
}

// analyzeAccounts joins passwd and shadow entries of the same directory and
// reports empty, weak and crackable passwords and extra UID-0 accounts.
func (c *collector) analyzeAccounts(ctx context.Context) []Account {
	c.mu.Lock()
	defer c.mu.Unlock()
	type userKey struct{ dir, user string }
	byUser := map[userKey]passwdEntry{}
	for _, e := range c.passwd {
		byUser[userKey{path.Dir(e.path), e.user}] = e
		if e.uid == 0 && e.user != "root" {
			c.findings = append(c.findings, Finding{Rule: RuleUID0Duplicate, Severity: SeverityHigh, Path: e.path,
				Evidence: fmt.Sprintf("line %d: user %s has UID 0", e.line, e.user)})
		}
	}
	var accts []Account
	hashes := map[int]string{} // index in accts -> hash to crack
	for _, e := range c.passwd {
		if e.pw == "x" || e.pw == "*" {
			continue // the hash is in shadow
		}
		a := Account{Path: e.path, User: e.user, UID: e.uid, Shell: e.shell, Hash: string(classifyHash(e.pw)), hash: e.pw}
		if classifyHash(e.pw) != HashLocked && classifyHash(e.pw) != HashNone {
			c.findings = append(c.findings, Finding{Rule: RulePasswdHash, Severity: SeverityMedium, Path: e.path,
				Evidence: fmt.Sprintf("line %d: user %s has a %s hash in passwd", e.line, e.user, classifyHash(e.pw))})
		}
		hashes[len(accts)] = e.pw
		accts = append(accts, a)
	}
	for _, e := range c.shadow {
		a := Account{Path: e.path, User: e.user, UID: -1, Hash: string(classifyHash(e.pw)), hash: e.pw}
		if p, ok := byUser[userKey{path.Dir(e.path), e.user}]; ok {
			a.UID, a.Shell = p.uid, p.shell
		}
		hashes[len(accts)] = e.pw
		accts = append(accts, a)
	}
	c.crack(ctx, accts, hashes)
	lines := map[string]int{}
	for _, e := range c.passwd {
		lines[e.path+"\x00"+e.user] = e.line
	}
	for _, e := range c.shadow {
		lines[e.path+"\x00"+e.user] = e.line
	}
	for _, a := range accts {
		where := fmt.Sprintf("line %d: user %s", lines[a.Path+"\x00"+a.User], a.User)
		sev := SeverityHigh
		if noLoginShell(a.Shell) {
			sev = SeverityMedium
		}
		switch HashKind(a.Hash) {
		case HashNone:
			c.findings = append(c.findings, Finding{Rule: RuleEmptyPassword, Severity: sev, Path: a.Path,
				Evidence: where + " has an empty password field", Detail: shellDetail(a)})
			continue
		case HashDES, HashMD5:
			c.findings = append(c.findings, Finding{Rule: RuleWeakHash, Severity: SeverityMedium, Path: a.Path,
				Evidence: fmt.Sprintf("%s has a %s-crypt hash", where, strings.ToUpper(a.Hash))})
		}
		if a.Found != "" || a.Note == "cracked: empty password" {
			crit := SeverityCritical
			if noLoginShell(a.Shell) {
				crit = SeverityHigh // no interactive login with it, but the password may be reused
			}
			c.findings = append(c.findings, Finding{Rule: RuleCrackedPassword, Severity: crit, Path: a.Path,
				Evidence: fmt.Sprintf("%s: password %q (%s)", where, a.Found, a.Hash), Detail: shellDetail(a)})
		}
	}
	sort.Slice(accts, func(i, j int) bool {
		return accts[i].Path < accts[j].Path || accts[i].Path == accts[j].Path && accts[i].User < accts[j].User
	})
	return accts
}

func shellDetail(a Account) string {
	if a.Shell == "" {
		return ""
	}
	if noLoginShell(a.Shell) {
		return "shell " + a.Shell + " (no interactive login)"
	}
	return "shell " + a.Shell
}

// hashCost ranks a hash by the work of one guess.
func hashCost(h string) int {
	switch classifyHash(h) {
	case HashDES:
		return 0
	case HashMD5:
		return 1
	case HashSHA256:
		return 2
	case HashSHA512:
		return 3
	}
	return 4
}

// crack tries the candidate passwords against every distinct hash, on the
// configured number of workers.
func (c *collector) crack(ctx context.Context, accts []Account, hashes map[int]string) {
	keys, users := crackOrder(accts, hashes)
	results := make(map[string]*crackResult, len(keys))
	// One hash at a time, its candidates split over the workers: a tree
	// usually has one or two hashes, and the slow schemes are per candidate.
	for _, h := range keys {
		results[h] = c.crackHash(ctx, h, users[h])
	}
	for i, h := range hashes {
		r := results[h]
		if r == nil {
			continue
		}
		if r.ok {
			accts[i].Found = r.pw
			if r.pw == "" {
				accts[i].Note = "cracked: empty password"
			}
		} else if r.note != "" {
			accts[i].Note = r.note
		}
	}
}

// crackResult is the outcome for one hash: the password found, or a note
// saying why none was (an error, the time limit).
type crackResult struct {
	pw   string
	ok   bool
	note string
}

// crackOrder returns the distinct crackable hashes in the order to try them,
// and for each the smallest user name having it (the first candidate).
func crackOrder(accts []Account, hashes map[int]string) (keys []string, users map[string]string) {
	users = map[string]string{} // hash -> the smallest user name having it
	for i, h := range hashes {
		switch classifyHash(h) {
		case HashDES, HashMD5, HashSHA256, HashSHA512, HashBcrypt:
			if u, ok := users[h]; !ok || accts[i].User < u {
				users[h] = accts[i].User
			}
		}
	}
	keys = make([]string, 0, len(users))
	for h := range users {
		keys = append(keys, h)
	}
	// Cheapest schemes first (DES, MD5-crypt, SHA-crypt, bcrypt), so a
	// cancelled or time-limited run has tried the hashes most likely to fall.
	sort.Slice(keys, func(i, j int) bool {
		ci, cj := hashCost(keys[i]), hashCost(keys[j])
		return ci < cj || ci == cj && keys[i] < keys[j]
	})
	return keys, users
}

// crackHash tries the candidates (user name, defaults, configured, common)
// against hash h, split over the workers, within Options.CrackTime.
func (c *collector) crackHash(ctx context.Context, h, user string) *crackResult {
	cands := append([]string{user}, defaultPasswords...)
	cands = append(cands, c.o.Passwords...)
	cands = append(cands, commonPasswords...)
	s := &candidateSearch{hash: h, cands: cands, deadline: time.Now().Add(c.o.CrackTime), found: -1}
	var wg sync.WaitGroup
	for range c.o.Workers {
		wg.Go(func() { s.work(ctx) })
	}
	wg.Wait()
	r := &crackResult{note: s.errNote}
	switch {
	case s.found >= 0:
		r.pw, r.ok = cands[s.found], true
	case s.timedOut && s.errNote == "":
		r.note = fmt.Sprintf("tried %d of %d passwords within the %v limit (Options.CrackTime)", s.tried.Load(), len(cands), c.o.CrackTime)
	}
	return r
}

// candidateSearch is the shared state of the workers trying one hash.
type candidateSearch struct {
	hash     string
	cands    []string
	deadline time.Time

	next, tried atomic.Int64

	mu       sync.Mutex
	found    int // index of the first candidate that matched, or -1
	errNote  string
	timedOut bool
}

// work tries candidates in turn until they run out, an earlier one has
// matched, one failed, ctx is done or the deadline passes.
func (s *candidateSearch) work(ctx context.Context) {
	for {
		i := int(s.next.Add(1) - 1)
		s.mu.Lock()
		stop := i >= len(s.cands) || s.found >= 0 && s.found < i || s.errNote != ""
		s.mu.Unlock()
		if stop || ctx.Err() != nil {
			return
		}
		if time.Now().After(s.deadline) {
			s.mu.Lock()
			s.timedOut = true
			s.mu.Unlock()
			return
		}
		ok, err := verifyPassword(s.hash, s.cands[i])
		s.tried.Add(1)
		s.mu.Lock()
		switch {
		case err != nil:
			s.errNote = err.Error()
		case ok && (s.found < 0 || i < s.found):
			s.found = i
		}
		s.mu.Unlock()
	}
}
