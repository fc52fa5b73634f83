package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// adminAccounts are the admin_users, parsed. A successful check is
// remembered as the SHA-256 of the password so that the console's
// refresh every 2 s does not run argon2id each time; a wrong password
// always runs the full check, at most maxAdminChecks at once.
type adminAccounts struct {
	hashes map[string]passwordHash
	// cameras are the accounts' camera lists (admin_users[].cameras);
	// an account without one may act on every camera.
	cameras map[string]map[string]bool
	mu      sync.Mutex
	ok      map[string][sha256.Size]byte // user → sha256(password) last accepted
	busy    chan struct{}
}

// maxAdminChecks bounds concurrent password hash checks on the admin
// listener (argon2id costs 64 MiB each by default).
const maxAdminChecks = 2

func newAdminAccounts(us []AdminUser) (*adminAccounts, error) {
	a := &adminAccounts{hashes: map[string]passwordHash{}, cameras: map[string]map[string]bool{},
		ok: map[string][sha256.Size]byte{}, busy: make(chan struct{}, maxAdminChecks)}
	for _, u := range us {
		if len(u.Cameras) > 0 && !slices.Contains(u.Cameras, "*") {
			a.cameras[u.User] = map[string]bool{}
			for _, c := range u.Cameras {
				a.cameras[u.User][c] = true
			}
		}
		h, err := parseHash(u.PasswordHash)
		if err != nil {
			return nil, fmt.Errorf("admin user %s: password_hash: %w", u.User, err)
		}
		if d, ok := h.(*ha1Hash); ok {
			d.user = u.User
		}
		a.hashes[u.User] = h
	}
	return a, nil
}

// check reports whether user and password are an admin account.
func (a *adminAccounts) check(user, pw string) bool {
	h, known := a.hashes[user]
	if !known {
		return false
	}
	sum := sha256.Sum256([]byte(pw))
	a.mu.Lock()
	prev, seen := a.ok[user]
	a.mu.Unlock()
	if seen && subtle.ConstantTimeCompare(prev[:], sum[:]) == 1 {
		return true
	}
	a.busy <- struct{}{}
	good := h.verify(pw)
	<-a.busy
	if good {
		a.mu.Lock()
		a.ok[user] = sum
		a.mu.Unlock()
	}
	return good
}

// adminAllows reports whether the admin account of r may preview and act
// on the camera called name (admin_users[].cameras; without admin_users,
// on loopback, every camera).
func (p *Proxy) adminAllows(r *http.Request, name string) bool {
	a := p.adminAccts.Load()
	if a == nil {
		return true
	}
	cams, limited := a.cameras[adminUser(r)]
	return !limited || cams[name]
}

// setAdminUsers replaces the admin accounts (at start and on reload); the
// configuration was validated, so the hashes parse.
func (p *Proxy) setAdminUsers(us []AdminUser) error {
	if len(us) == 0 {
		p.adminAccts.Store(nil)
		return nil
	}
	a, err := newAdminAccounts(us)
	if err != nil {
		return err
	}
	p.adminAccts.Store(a)
	return nil
}

// adminGuard wraps the admin handler: security headers on every answer,
// HTTP Basic when admin_users are set (failed logins throttled per source
// and per account, as readers' are: auth_limit.go), and for the few
// actions (POST, DELETE) a CSRF token (admin_csrf.go); other methods get
// 405. Without admin_users the listener is on loopback (Validate refuses
// otherwise); a request that reached it through another local address is
// refused all the same. /healthz and /readyz answer without credentials,
// for supervisors.
func (p *Proxy) adminGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		action := false
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodPost, http.MethodDelete:
			action = true
		default:
			h.Set("Allow", "GET, HEAD, POST, DELETE")
			http.Error(w, "GET and HEAD, and POST or DELETE with a CSRF token for actions", http.StatusMethodNotAllowed)
			return
		}
		if !action && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz") {
			next.ServeHTTP(w, r)
			return
		}
		user, ok := p.adminLogin(w, r)
		if !ok {
			return
		}
		if action {
			if p.csrf == nil {
				http.Error(w, "admin: actions are not enabled", http.StatusForbidden)
				return
			}
			if err := p.csrf.check(r, user); err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, withAdminUser(r, user))
	})
}

// adminLogin checks r's credentials and returns its admin account
// ("anonymous" on a loopback listener without admin_users); when it
// fails it has answered 401.
func (p *Proxy) adminLogin(w http.ResponseWriter, r *http.Request) (string, bool) {
	accts := p.adminAccts.Load()
	if accts == nil {
		if !localIsLoopback(r) {
			http.Error(w, "admin_users are needed off loopback", http.StatusUnauthorized)
			return "", false
		}
		return "anonymous", true
	}
	deny := func() (string, bool) {
		w.Header().Set("WWW-Authenticate", `Basic realm="cordon", charset="UTF-8"`)
		http.Error(w, "credentials needed (admin_users)", http.StatusUnauthorized)
		return "", false
	}
	user, pw, ok := r.BasicAuth()
	if !ok {
		return deny()
	}
	ip := remoteIP(r)
	account := ""
	if _, known := accts.hashes[user]; known {
		account = user
	}
	lim := p.adminLogins
	if lim != nil {
		if scope := lim.blocked(ip, account); scope != "" {
			// Answered at once, without checking the password.
			p.adminThrottled.Add(1)
			return deny()
		}
		release, err := lim.acquire(ip)
		if err != nil {
			p.adminThrottled.Add(1)
			return deny()
		}
		defer release()
	}
	if !accts.check(user, pw) {
		p.adminAuthFailures.Add(1)
		var srcDelay, acctDelay time.Duration
		if lim != nil {
			srcDelay, acctDelay = lim.fail(ip, account)
		}
		p.log.Warn("admin login failed", "user", user, "remote", r.RemoteAddr,
			"source_delay", srcDelay, "account_delay", acctDelay)
		return deny()
	}
	if lim != nil {
		lim.succeed(ip, account)
	}
	return user, true
}

// remoteIP is r's source address (the zero Addr when it does not parse).
func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// localIsLoopback reports whether the request came in on a loopback
// address of this host.
func localIsLoopback(r *http.Request) bool {
	if p, ok := r.Context().Value(adminLocalAddrKey{}).(netip.Addr); ok {
		return p.IsLoopback() // test hook: the address the test says it arrived on
	}
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	ap, err := netip.ParseAddrPort(la.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// adminLocalAddrKey is a test hook: a netip.Addr in the request context
// stands for the local address the request arrived on.
type adminLocalAddrKey struct{}
