package proxy

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
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

// ha1Hash is a stored Digest HA1, hex(md5(user:realm:password)): the one
// hash both Basic and Digest can check. It is password-equivalent for this
// realm (whoever has it can log in as the user), and MD5 is fast to guess
// against; argon2id and bcrypt resist guessing but only Basic can use them.
type ha1Hash struct {
	user string // set by newAccounts: HA1 binds the user name
	ha1  string // 32 lower-case hex digits
}

func (h *ha1Hash) verify(pw string) bool {
	return subtle.ConstantTimeCompare([]byte(digestHA1(h.user, pw)), []byte(h.ha1)) == 1
}

// ha1Prefix starts a stored HA1: $digest-md5$realm=<realm>$<32 hex digits>.
// The realm is spelled out so that a hash made for another realm is refused
// when the configuration is read, not at every login.
const ha1Prefix = "$digest-md5$"

// DigestHash returns the password_hash that lets user log in with Digest
// (and Basic): "$digest-md5$realm=ipcam$" followed by
// hex(md5(user ":" "ipcam" ":" password)), RFC 2617's HA1 in the proxy's
// realm. Unlike an argon2id hash it is password-equivalent (it logs in
// without the password) and quick to guess against: keep it as secret as a
// password.
func DigestHash(user, password string) string {
	return ha1Prefix + "realm=" + digestRealm + "$" + digestHA1(user, password)
}

// Argon2idHash returns an argon2id password_hash of password (m=64 MiB,
// t=3, p=4, a random 16-byte salt): the strongest choice for readers that
// log in with Basic.
func Argon2idHash(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, 3, 64<<10, 4, 32)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=3,p=4$%s$%s", 64<<10,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

func parseHA1(s string) (*ha1Hash, error) {
	parts := strings.Split(s, "$")
	// "", "digest-md5", "realm=...", ha1
	if len(parts) != 4 || !strings.HasPrefix(parts[2], "realm=") {
		return nil, errors.New("digest-md5 hash must be $digest-md5$realm=" + digestRealm + "$<32 hex digits>")
	}
	if realm := strings.TrimPrefix(parts[2], "realm="); realm != digestRealm {
		return nil, fmt.Errorf("digest-md5 hash is for realm %q; this proxy's realm is %q (make it again with the password)", realm, digestRealm)
	}
	ha1 := strings.ToLower(parts[3])
	if _, err := hex.DecodeString(ha1); err != nil || len(ha1) != 32 {
		return nil, errors.New("digest-md5 hash must end in 32 hex digits (hex(md5(user:realm:password)))")
	}
	return &ha1Hash{ha1: ha1}, nil
}

// parseHash reads an argon2id PHC string
// ($argon2id$v=19$m=65536,t=3,p=4$<salt>$<key>, base64 without padding), a
// bcrypt hash ($2a$, $2b$, $2y$) or a Digest HA1 ($digest-md5$realm=...$...).
func parseHash(s string) (passwordHash, error) {
	if len(s) > maxHashLen {
		return nil, fmt.Errorf("longer than %d characters", maxHashLen)
	}
	switch {
	case strings.HasPrefix(s, ha1Prefix):
		return parseHA1(s)
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
	return nil, errors.New("unknown format; use argon2id ($argon2id$v=19$m=...,t=...,p=...$salt$hash) or bcrypt ($2b$...) for Basic, or $digest-md5$realm=" + digestRealm + "$<hex> for Digest and Basic")
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
			if d, ok := h.(*ha1Hash); ok {
				d.user = r.User
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

// Reasons a reader login failed. They go to the log (with the user and the
// source) and never to the client, which gets the same 401 for each.
const (
	loginUnknownUser   = "unknown user"
	loginWrongPassword = "wrong password"
	loginDigestParams  = "Digest realm, algorithm, qop or URI does not match the request"
	loginReplay        = "Digest response replayed on its connection"
	loginStaleNonce    = "Digest nonce is not this connection's"
	loginMalformed     = "malformed Digest Authorization header"
	loginBasicOnlyHash = "Digest login to an account whose password_hash only Basic can check " +
		"(argon2id/bcrypt): give it a $digest-md5$ hash (cordon proxy hash) or make the client send Basic"
	loginMethod = "unsupported authentication method"
)

// hashTurn waits for the source's turn to check an argon2id/bcrypt hash
// (loginLimiter.acquire, then a new look at the budgets). It returns a
// throttle scope instead when the password must not be checked.
type hashTurn func() (release func(), scope string)

// checkLogin checks the credentials of req, parsed in hdr, against a, the
// account of hdr.Username (nil when no such reader is configured); d is the
// connection's Digest state. It returns reason "" when the credentials are
// right, else why they are not (one of the login* reasons), or the
// throttle scope when the password was not checked at all.
func checkLogin(req *base.Request, hdr headers.Authorization, a *account, d *digestState, turn hashTurn) (reason, scope string) {
	if a == nil {
		return loginUnknownUser, ""
	}
	switch hdr.Method {
	case headers.AuthMethodDigest:
		creds, err := parseDigest(req.Header["Authorization"][0])
		if err != nil {
			return loginMalformed, ""
		}
		switch h := a.hash.(type) {
		case nil:
			if a.password == "" {
				return loginWrongPassword, ""
			}
			err = d.verify(req, creds, a.user, a.password)
		case *ha1Hash:
			err = d.verifyHA1(req, creds, a.user, h.ha1)
		default:
			return loginBasicOnlyHash, ""
		}
		switch {
		case err == nil:
			return "", ""
		case errors.Is(err, errDigestReplay):
			return loginReplay, ""
		case errors.Is(err, errDigestStale):
			return loginStaleNonce, ""
		case errors.Is(err, errDigestParams):
			return loginDigestParams, ""
		}
		return loginWrongPassword, ""
	case headers.AuthMethodBasic:
		ok := false
		switch h := a.hash.(type) {
		case nil:
			ok = a.password != "" && subtle.ConstantTimeCompare([]byte(hdr.BasicPass), []byte(a.password)) == 1
		case *ha1Hash:
			ok = h.verify(hdr.BasicPass) // MD5: no hash slot needed
		default:
			if a.knownGood(hdr.BasicPass) {
				return "", ""
			}
			release, scope := turn()
			if scope != "" {
				return "", scope
			}
			ok = a.checkHash(hdr.BasicPass)
			release()
		}
		if !ok {
			return loginWrongPassword, ""
		}
		return "", ""
	}
	return loginMethod, ""
}
