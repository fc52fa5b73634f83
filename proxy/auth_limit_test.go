package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
)

// gateHash is a password hash whose checks of wrong passwords block until
// the gate opens; it records how many checks run at once.
type gateHash struct {
	good string
	gate chan struct{}

	mu            sync.Mutex
	wrong, active int // checks of wrong passwords: done or running, running now
	maxActive     int
	entered       chan struct{} // one value per wrong-password check started
}

func (h *gateHash) verify(pw string) bool {
	if pw == h.good {
		return true
	}
	h.mu.Lock()
	h.wrong++
	h.active++
	h.maxActive = max(h.maxActive, h.active)
	h.mu.Unlock()
	h.entered <- struct{}{}
	<-h.gate
	h.mu.Lock()
	h.active--
	h.mu.Unlock()
	return false
}

func (h *gateHash) counts() (wrong, maxActive int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.wrong, h.maxActive
}

func describeFrom(t *testing.T, p *Proxy, from string, user, pass string) base.StatusCode {
	t.Helper()
	rc := dialRTSPFrom(t, p.RTSPAddr().String(), &net.TCPAddr{IP: net.ParseIP(from)})
	return rc.status(base.Describe, readerURL(p, "a"), base.Header{"Authorization": basicAuth(user, pass)})
}

// An attacker's guesses against a hashed password are checked one at a
// time (one hash slot at most), then throttled with a doubling delay and
// answered 401 without hashing; another source's valid login is answered
// while the attacker's check is still running, and keeps working while the
// account is throttled for unknown sources.
func TestLoginThrottling(t *testing.T) {
	p, gh, advance := startThrottledProxy(t)

	const attacker, victim, other = "127.0.0.1", "127.0.0.2", "127.0.0.3"
	const guesses = 10
	codes := make(chan base.StatusCode, guesses)
	for i := range guesses {
		go func() { codes <- describeFrom(t, p, attacker, "nvr", fmt.Sprint("guess", i)) }()
	}
	<-gh.entered // the attacker holds a hash slot, its other guesses wait

	// The recorder logs in meanwhile, from its own address: not queued
	// behind the attacker's guesses.
	if got := describeFrom(t, p, victim, "nvr", "s3cret"); got != base.StatusOK {
		t.Fatalf("valid login during the attack: %d", got)
	}
	if wrong, _ := gh.counts(); wrong != 1 {
		t.Fatalf("%d of the attacker's guesses reached the hash while the first one ran, want 1", wrong)
	}
	close(gh.gate)
	for range guesses {
		if c := <-codes; c != base.StatusUnauthorized {
			t.Errorf("guess answered %d, want 401", c)
		}
	}
	wrong, maxActive := gh.counts()
	if wrong != loginFreeFailures || maxActive != 1 {
		t.Fatalf("%d guesses hashed (%d at once), want %d (1 at once): the rest are throttled", wrong, maxActive, loginFreeFailures)
	}

	// The delay starts at 1 s and doubles; during it nothing is hashed.
	hashed := func() int { w, _ := gh.counts(); return w }
	for i, step := range []struct {
		wait time.Duration
		hash bool
	}{
		{500 * time.Millisecond, false}, {600 * time.Millisecond, true}, // 1 s after the 5th failure
		{1900 * time.Millisecond, false}, {200 * time.Millisecond, true}, // 2 s after the 6th
		{3 * time.Second, false}, {time.Second, true}, // 4 s after the 7th
	} {
		advance(step.wait)
		before := hashed()
		if got := describeFrom(t, p, attacker, "nvr", "again"); got != base.StatusUnauthorized {
			t.Fatalf("step %d: %d", i, got)
		}
		if did := hashed() > before; did != step.hash {
			t.Errorf("step %d (+%s): hashed %v, want %v", i, step.wait, did, step.hash)
		}
	}
	// The account has had 8 failures: a new source is throttled for it (no
	// hashing)...
	before := hashed()
	if got := describeFrom(t, p, other, "nvr", "guess"); got != base.StatusUnauthorized || hashed() != before {
		t.Errorf("a new source guessing a throttled account: %d, hashed %v", got, hashed() != before)
	}
	// ...but not the recorder that logged in before.
	if got := describeFrom(t, p, victim, "nvr", "s3cret"); got != base.StatusOK {
		t.Errorf("the recorder's login while its account is throttled: %d", got)
	}
	metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", p.AdminAddr()))
	for _, want := range []string{
		`cordon_reader_auth_throttled_total{scope="source"} 8`, // 5 queued guesses + 3 during delays
		`cordon_reader_auth_throttled_total{scope="account"} 1`,
		"cordon_reader_auth_failures_total 8",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grepLines(metrics, "auth"))
		}
	}
}

// startThrottledProxy starts a proxy with one reader account, "nvr",
// whose password checks wait at gh's gate, a clock that moves only with
// advance, and no real sleeps.
func startThrottledProxy(t *testing.T) (p *Proxy, gh *gateHash, advance func(time.Duration)) {
	t.Helper()
	sim := startCamsim(t, "a")
	log, _ := newLog(t)
	cfg := testConfig(Camera{Name: "a", URL: MustParseSecretURL(sim.URL("a"))})
	cfg.Readers = []Reader{{User: "nvr", PasswordHash: testArgonHash, Cameras: []string{"*"}}}
	cfg.AllowAnonymous = false
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	p.sleep = func(time.Duration) {}
	var clockMu sync.Mutex
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.logins.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	advance = func(d time.Duration) { clockMu.Lock(); clock = clock.Add(d); clockMu.Unlock() }
	gh = &gateHash{good: "s3cret", gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	(*p.accts.Load())["nvr"].hash = gh
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	waitFor(t, "camera up", 10*time.Second, func() bool { return p.Status()[0].State == stateUp })
	return p, gh, advance
}

func TestFailDelay(t *testing.T) {
	want := map[int]time.Duration{1: 0, 4: 0, 5: time.Second, 6: 2 * time.Second, 7: 4 * time.Second, 13: 256 * time.Second, 14: 5 * time.Minute, 100: 5 * time.Minute}
	for n, d := range want {
		if got := failDelay(n); got != d {
			t.Errorf("failDelay(%d) = %s, want %s", n, got, d)
		}
	}
}

func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":               "192.0.2.7",
		"::ffff:192.0.2.7":        "192.0.2.7",
		"2001:db8:1:2:aaaa::1":    "2001:db8:1:2::",
		"2001:db8:1:2:ffff:1:2:3": "2001:db8:1:2::",
	} {
		if got := sourceKey(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("sourceKey(%s) = %s, want %s", in, got, want)
		}
	}
}

// The limiter forgets the stalest sources when full, so a flood of
// addresses cannot grow it without bound.
func TestLoginLimiterBounded(t *testing.T) {
	l := newLoginLimiter()
	now := time.Unix(0, 0)
	l.now = func() time.Time { return now }
	for i := range loginMaxTracked + 100 {
		now = now.Add(time.Millisecond)
		l.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "")
	}
	if n := len(l.sources); n > loginMaxTracked {
		t.Fatalf("%d sources tracked, limit %d", n, loginMaxTracked)
	}
}
