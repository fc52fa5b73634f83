package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Limits on argon2id parameters read from a password_hash, so a hostile or
// mistaken configuration cannot make every login allocate gigabytes.
const (
	maxArgonMemoryKiB = 1 << 20 // 1 GiB
	maxArgonTime      = 16
	maxArgonThreads   = 64
	maxHashLen        = 512
)

// passwordHash checks a password against a stored hash.
type passwordHash interface {
	verify(password string) bool
}

type argon2idHash struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

func (h *argon2idHash) verify(pw string) bool {
	k := argon2.IDKey([]byte(pw), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(k, h.key) == 1
}

type bcryptHash []byte

func (h bcryptHash) verify(pw string) bool {
	return bcrypt.CompareHashAndPassword(h, []byte(pw)) == nil
}

// parseHash reads an argon2id PHC string
// ($argon2id$v=19$m=65536,t=3,p=4$<salt>$<key>, base64 without padding) or a
// bcrypt hash ($2a$, $2b$, $2y$).
func parseHash(s string) (passwordHash, error) {
	if len(s) > maxHashLen {
		return nil, fmt.Errorf("longer than %d characters", maxHashLen)
	}
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return nil, fmt.Errorf("not a valid bcrypt hash: %v", err)
		}
		return bcryptHash(s), nil
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$argon2i$"), strings.HasPrefix(s, "$argon2d$"):
		return nil, errors.New("only argon2id is accepted (not argon2i or argon2d)")
	}
	return nil, errors.New("unknown format; use argon2id ($argon2id$v=19$m=...,t=...,p=...$salt$hash) or bcrypt ($2b$...)")
}

func parseArgon2id(s string) (*argon2idHash, error) {
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 {
		return nil, errors.New("argon2id hash must have 5 '$'-separated fields")
	}
	if parts[2] != "v=19" {
		return nil, fmt.Errorf("argon2id version %q is not supported (want v=19)", parts[2])
	}
	h := &argon2idHash{}
	seen := 0
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("argon2id parameter %q is not key=value", kv)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("argon2id parameter %s=%q is not a positive number", k, v)
		}
		switch k {
		case "m":
			if n > maxArgonMemoryKiB {
				return nil, fmt.Errorf("argon2id memory m=%d KiB is above the limit of %d", n, maxArgonMemoryKiB)
			}
			h.memory = uint32(n)
			seen |= 1
		case "t":
			if n > maxArgonTime {
				return nil, fmt.Errorf("argon2id time t=%d is above the limit of %d", n, maxArgonTime)
			}
			h.time = uint32(n)
			seen |= 2
		case "p":
			if n > maxArgonThreads {
				return nil, fmt.Errorf("argon2id parallelism p=%d is above the limit of %d", n, maxArgonThreads)
			}
			h.threads = uint8(n)
			seen |= 4
		default:
			return nil, fmt.Errorf("argon2id parameter %q is unknown", k)
		}
	}
	if seen != 7 {
		return nil, errors.New("argon2id hash needs m, t and p parameters")
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return nil, errors.New("argon2id salt must be unpadded base64 of at least 8 bytes")
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 128 {
		return nil, errors.New("argon2id hash must be unpadded base64 of 16 to 128 bytes")
	}
	return h, nil
}

// account is one configured reader, ready for checks.
type account struct {
	user     string
	password string       // clear-text password, or ""
	hash     passwordHash // when password is ""
	all      bool         // cameras: ["*"]
	cameras  map[string]bool
	networks []netip.Prefix

	// verified caches sha256(password) of passwords that matched the hash, so
	// that each RTSP request of a session does not pay for argon2/bcrypt again.
	verified sync.Map
}

// hashSlots bounds concurrent argon2id/bcrypt checks (each may take tens of
// MiB and milliseconds), so a flood of wrong passwords cannot exhaust memory.
var hashSlots = make(chan struct{}, 2)

// knownGood reports whether pw matched the hash before (no hashing).
func (a *account) knownGood(pw string) bool {
	_, ok := a.verified.Load(sha256.Sum256([]byte(pw)))
	return ok
}

// checkHash checks pw against the hash, in one of the hash slots. Callers
// take their source's turn first (loginLimiter.acquire), so that one source
// never holds more than one slot.
func (a *account) checkHash(pw string) bool {
	sum := sha256.Sum256([]byte(pw))
	if _, ok := a.verified.Load(sum); ok {
		return true
	}
	hashSlots <- struct{}{}
	ok := a.hash.verify(pw)
	<-hashSlots
	if !ok {
		return false
	}
	a.verified.Store(sum, struct{}{})
	return true
}

func (a *account) allowsCamera(name string) bool { return a.all || a.cameras[name] }

func (a *account) allowsAddr(ip netip.Addr) bool {
	if len(a.networks) == 0 {
		return true
	}
	ip = ip.Unmap()
	for _, p := range a.networks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// accounts is the reader table of one configuration; nil or empty means
// reading needs no credentials.
type accounts map[string]*account

func newAccounts(rs []Reader) (accounts, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	out := accounts{}
	for _, r := range rs {
		a := &account{user: r.User, password: r.Password, cameras: map[string]bool{}}
		if r.PasswordHash != "" {
			h, err := parseHash(r.PasswordHash)
			if err != nil {
				return nil, fmt.Errorf("reader %s: password_hash: %w", r.User, err)
			}
			a.hash = h
		}
		for _, c := range r.Cameras {
			if c == "*" {
				a.all = true
			}
			a.cameras[c] = true
		}
		for _, n := range r.Networks {
			p, err := parseNetwork(n)
			if err != nil {
				return nil, fmt.Errorf("reader %s: network %q: %w", r.User, n, err)
			}
			a.networks = append(a.networks, p)
		}
		out[r.User] = a
	}
	return out, nil
}
