package proxy

import (
	"errors"
	"net/netip"
	"sync"
	"time"
)

// Login throttling.
//
// Each source address (an IPv6 source by its /64) and each configured
// account has a failure budget: after loginFreeFailures failed logins, the
// next check is allowed only after a delay that starts at loginDelayBase
// and doubles with every further failure, up to loginDelayMax. A login
// attempted during the delay is answered 401 at once, without checking the
// password (no hashing), and counted. Failures are forgotten
// loginFailureWindow after the last one.
//
// The account's budget does not apply to sources that logged in to that
// account successfully before, so someone guessing a recorder's password
// from elsewhere does not lock the recorder out.
//
// Password hashes (argon2id, bcrypt) are checked one at a time per source,
// with at most loginMaxWaiting logins of a source waiting, so one source
// holds at most one of the proxy's hash slots: other sources' logins are
// never queued behind its guesses.
const (
	loginFreeFailures  = 5
	loginDelayBase     = time.Second
	loginDelayMax      = 5 * time.Minute
	loginFailureWindow = 15 * time.Minute
	loginMaxTracked    = 4096 // sources (and accounts) remembered; the stalest go first
	loginMaxWaiting    = 16   // logins of one source waiting for its hash turn
	loginWaitMax       = 10 * time.Second
	loginGoodSources   = 16 // per account
)

// Scopes of a throttled login (metric label).
const (
	throttleSource  = "source"
	throttleAccount = "account"
	throttleBusy    = "busy" // too many logins of one source waiting for a hash check
)

type failState struct {
	failures int
	last     time.Time // last failure
	until    time.Time // no check before this
	good     map[netip.Addr]time.Time
}

// blockedAt reports whether a check must wait at now.
func (f *failState) blockedAt(now time.Time) bool { return f != nil && now.Before(f.until) }

type sourceSlot struct {
	ch   chan struct{} // one hash check at a time
	refs int           // holders and waiters
}

// loginLimiter keeps the failure budgets.
type loginLimiter struct {
	now func() time.Time // a test hook

	mu       sync.Mutex
	sources  map[netip.Addr]*failState
	accounts map[string]*failState
	slots    map[netip.Addr]*sourceSlot
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{
		now:     time.Now,
		sources: map[netip.Addr]*failState{}, accounts: map[string]*failState{},
		slots: map[netip.Addr]*sourceSlot{},
	}
}

// sourceKey is the address a budget is kept for: IPv6 sources by /64 (one
// host usually holds a whole /64).
func sourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// blocked says which budget (throttleSource, throttleAccount) forbids a
// check of account's password from ip now, or "". account is "" for a user
// that is not configured.
func (l *loginLimiter) blocked(ip netip.Addr, account string) string {
	ip = sourceKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.sources[ip].blockedAt(now) {
		return throttleSource
	}
	if a := l.accounts[account]; account != "" && a.blockedAt(now) {
		if _, known := a.good[ip]; !known {
			return throttleAccount
		}
	}
	return ""
}

// failDelay is the delay after the n-th failure.
func failDelay(n int) time.Duration {
	if n < loginFreeFailures {
		return 0
	}
	d := loginDelayBase
	for i := loginFreeFailures; i < n && d < loginDelayMax; i++ {
		d *= 2
	}
	return min(d, loginDelayMax)
}

// entry returns m's failure state for k, made room for when m is full.
func entry[K comparable](m map[K]*failState, k K, now time.Time) *failState {
	f := m[k]
	if f == nil {
		if len(m) >= loginMaxTracked {
			pruneStalest(m, now)
		}
		f = &failState{}
		m[k] = f
	}
	return f
}

// pruneStalest forgets expired entries, or else the one with the oldest
// failure.
func pruneStalest[K comparable](m map[K]*failState, now time.Time) {
	var oldest K
	var oldestAt time.Time
	first := true
	for k, f := range m {
		if now.Sub(f.last) > loginFailureWindow && !f.blockedAt(now) && len(f.good) == 0 {
			delete(m, k)
			continue
		}
		if first || f.last.Before(oldestAt) {
			oldest, oldestAt, first = k, f.last, false
		}
	}
	if len(m) >= loginMaxTracked && !first {
		delete(m, oldest)
	}
}

func (f *failState) fail(now time.Time) time.Duration {
	if now.Sub(f.last) > loginFailureWindow {
		f.failures = 0
	}
	f.failures++
	f.last = now
	d := failDelay(f.failures)
	f.until = now.Add(d)
	return d
}

// fail records a failed login; it returns the delays it imposed on the
// source and the account (0: none).
func (l *loginLimiter) fail(ip netip.Addr, account string) (srcDelay, acctDelay time.Duration) {
	ip = sourceKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	srcDelay = entry(l.sources, ip, now).fail(now)
	if account != "" {
		acctDelay = entry(l.accounts, account, now).fail(now)
	}
	return srcDelay, acctDelay
}

// succeed forgets the source's failures and remembers it as a good source
// of the account.
func (l *loginLimiter) succeed(ip netip.Addr, account string) {
	ip = sourceKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.sources, ip)
	a := entry(l.accounts, account, l.now())
	if a.good == nil {
		a.good = map[netip.Addr]time.Time{}
	}
	if _, ok := a.good[ip]; !ok && len(a.good) >= loginGoodSources {
		var oldest netip.Addr
		var at time.Time
		for k, t := range a.good {
			if at.IsZero() || t.Before(at) {
				oldest, at = k, t
			}
		}
		delete(a.good, oldest)
	}
	a.good[ip] = l.now()
}

var errLoginBusy = errors.New("proxy: too many logins from this source are waiting for a password check")

// acquire waits for the source's turn to check a password hash. It fails
// when too many logins of the source wait already, or after loginWaitMax.
func (l *loginLimiter) acquire(ip netip.Addr) (release func(), err error) {
	ip = sourceKey(ip)
	l.mu.Lock()
	s := l.slots[ip]
	if s == nil {
		s = &sourceSlot{ch: make(chan struct{}, 1)}
		l.slots[ip] = s
	}
	if s.refs > loginMaxWaiting {
		l.mu.Unlock()
		return nil, errLoginBusy
	}
	s.refs++
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		if s.refs--; s.refs == 0 {
			delete(l.slots, ip)
		}
		l.mu.Unlock()
	}
	t := time.NewTimer(loginWaitMax)
	defer t.Stop()
	select {
	case s.ch <- struct{}{}:
		return func() { <-s.ch; done() }, nil
	case <-t.C:
		done()
		return nil, errLoginBusy
	}
}
