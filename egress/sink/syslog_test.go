package sink

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/internal/config"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// rfc5424 is a parsed syslog message.
type rfc5424 struct {
	pri                            int
	timestamp                      time.Time
	host, app, procID, msgID, sdID string
	params                         map[string]string
	msg                            string
}

// parse5424 parses an RFC 5424 message with one SD element strictly
// enough to catch framing and escaping mistakes.
func parse5424(s string) (m rfc5424, err error) {
	if !strings.HasPrefix(s, "<") {
		return m, errors.New("no PRI")
	}
	end := strings.IndexByte(s, '>')
	if end < 2 || end > 4 {
		return m, errors.New("bad PRI")
	}
	if m.pri, err = strconv.Atoi(s[1:end]); err != nil || m.pri > 191 {
		return m, fmt.Errorf("bad PRI %q", s[1:end])
	}
	s = s[end+1:]
	fields := strings.SplitN(s, " ", 7)
	if len(fields) != 7 || fields[0] != "1" {
		return m, fmt.Errorf("bad header %q", s)
	}
	if m.timestamp, err = time.Parse(time.RFC3339Nano, fields[1]); err != nil {
		return m, err
	}
	m.host, m.app, m.procID, m.msgID = fields[2], fields[3], fields[4], fields[5]
	for _, f := range fields[2:6] {
		if f == "" || strings.ContainsFunc(f, func(r rune) bool { return r < 33 || r > 126 }) {
			return m, fmt.Errorf("header field %q not PRINTUSASCII", f)
		}
	}
	sd := fields[6]
	if !strings.HasPrefix(sd, "[") {
		return m, errors.New("no SD element")
	}
	i := 1
	j := strings.IndexAny(sd[i:], " ]")
	if j < 0 {
		return m, errors.New("unterminated SD-ID")
	}
	m.sdID = sd[i : i+j]
	i += j
	m.params = map[string]string{}
	for sd[i] == ' ' {
		i++
		eq := strings.IndexByte(sd[i:], '=')
		if eq < 0 || sd[i+eq+1] != '"' {
			return m, errors.New("bad SD-PARAM")
		}
		name := sd[i : i+eq]
		i += eq + 2
		var v strings.Builder
		for ; i < len(sd) && sd[i] != '"'; i++ {
			if sd[i] == '\\' && i+1 < len(sd) && strings.IndexByte(`"\]`, sd[i+1]) >= 0 {
				i++
			} else if sd[i] == ']' {
				return m, errors.New("unescaped ] in PARAM-VALUE")
			}
			v.WriteByte(sd[i])
		}
		if i >= len(sd) {
			return m, errors.New("unterminated PARAM-VALUE")
		}
		i++
		m.params[name] = v.String()
	}
	if sd[i] != ']' {
		return m, fmt.Errorf("SD element not closed at %q", sd[i:])
	}
	rest := sd[i+1:]
	if !strings.HasPrefix(rest, " \xef\xbb\xbf") {
		return m, errors.New("MSG does not start with SP BOM")
	}
	m.msg = rest[4:]
	return m, nil
}

func checkSyslogAlert(t *testing.T, raw string, want egress.Alert) {
	t.Helper()
	m, err := parse5424(raw)
	if err != nil {
		t.Fatalf("not RFC 5424: %v\n%q", err, raw)
	}
	if m.pri != 16*8+3 { // local0, high → err
		t.Errorf("PRI %d, want %d", m.pri, 16*8+3)
	}
	if m.app != "cordon" || m.msgID != want.Kind || m.sdID != "cordon@32473" || m.procID != strconv.Itoa(os.Getpid()) {
		t.Errorf("header app=%q msgid=%q sdid=%q procid=%q", m.app, m.msgID, m.sdID, m.procID)
	}
	if d := time.Since(m.timestamp); d < 0 || d > time.Minute {
		t.Errorf("timestamp %v", m.timestamp)
	}
	if m.params["camera"] != want.Camera || m.params["dst"] != want.Dst || m.params["port"] != strconv.Itoa(int(want.Port)) || m.params["count"] != strconv.FormatUint(want.Count, 10) {
		t.Errorf("SD params %v", m.params)
	}
	var a egress.Alert
	if err := json.Unmarshal([]byte(m.msg), &a); err != nil {
		t.Fatalf("MSG is not the alert's JSON: %v", err)
	}
	if a.Detail != want.Detail || a.Dst != want.Dst || !a.LastSeen.Equal(want.LastSeen) {
		t.Errorf("MSG alert %+v, want %+v", a, want)
	}
}

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := openSyslog(t, SyslogConfig{Addr: pc.LocalAddr().String()})
	for i := range 3 {
		send(t, s, testAlert(i))
	}
	buf := make([]byte, 65536)
	for i := range 3 {
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		checkSyslogAlert(t, string(buf[:n]), testAlert(i))
	}
}

// TestSyslogUDPLongDetail: over MaxMessageSize the detail is shortened and
// the message stays valid RFC 5424 with whole JSON.
func TestSyslogUDPLongDetail(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := newSyslog(SyslogConfig{Addr: pc.LocalAddr().String(), MaxMessageSize: 1024}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := testAlert(1)
	a.Detail = strings.Repeat("ü\"", 1000)
	send(t, s, a)
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n > 1024 {
		t.Errorf("message of %d bytes", n)
	}
	m, err := parse5424(string(buf[:n]))
	if err != nil {
		t.Fatal(err)
	}
	var got egress.Alert
	if err := json.Unmarshal([]byte(m.msg), &got); err != nil {
		t.Fatalf("JSON cut: %v", err)
	}
	if !strings.HasSuffix(got.Detail, "…") || !strings.HasPrefix(a.Detail, strings.TrimSuffix(got.Detail, "…")) || got.Dst != a.Dst {
		t.Errorf("detail %q", got.Detail)
	}
}

// readOctetCounted reads one "LEN SP MSG" frame (RFC 6587 §3.4.1).
func readOctetCounted(r *bufio.Reader) (string, error) {
	lenStr, err := r.ReadString(' ')
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
	if err != nil || n <= 0 || n > 1<<20 {
		return "", fmt.Errorf("bad frame length %q", lenStr)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// streamServer accepts connections and sends each frame to frames; with
// closeAfterOne it drops every connection after its first frame.
func streamServer(t *testing.T, l net.Listener, closeAfterOne bool) <-chan string {
	frames := make(chan string, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					f, err := readOctetCounted(r)
					if err != nil {
						if strings.Contains(err.Error(), "bad frame length") {
							t.Errorf("server: %v", err) // framing; handshake refusals are expected
						}
						return
					}
					frames <- f
					if closeAfterOne {
						return
					}
				}
			}()
		}
	}()
	return frames
}

func recvFrame(t *testing.T, frames <-chan string) string {
	t.Helper()
	select {
	case f := <-frames:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no syslog frame")
	}
	return ""
}

// TestSyslogTCP: octet-counted frames; a collector that drops the
// connection gets the next alert on a new one.
func TestSyslogTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	frames := streamServer(t, l, true)
	s := openSyslog(t, SyslogConfig{Network: TCP, Addr: l.Addr().String()})
	for i := range 3 {
		send(t, s, testAlert(i))
		checkSyslogAlert(t, recvFrame(t, frames), testAlert(i))
		time.Sleep(20 * time.Millisecond) // let the server's close arrive
	}
}

// openSyslog is newSyslog with the test's logger; the sink is closed when
// the test ends.
func openSyslog(t *testing.T, cfg SyslogConfig) egress.AlertSink {
	t.Helper()
	s, err := newSyslog(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// send sends a and fails the test if s does not take it.
func send(t *testing.T, s egress.AlertSink, a egress.Alert) {
	t.Helper()
	if err := s.Send(context.Background(), a); err != nil {
		t.Fatal(err)
	}
}

// selfSigned makes a CA-less self-signed certificate for 127.0.0.1 and
// writes its PEM to dir/ca.pem.
func selfSigned(t *testing.T, dir string) (tls.Certificate, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslog test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, ca
}

// writeKey writes cert's private key to dir/key.pem and returns the path.
func writeKey(t *testing.T, dir string, cert tls.Certificate) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSyslogTLS(t *testing.T) {
	cert, ca := selfSigned(t, t.TempDir())
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	frames := streamServer(t, l, false)
	s := openSyslog(t, SyslogConfig{Network: TLS, Addr: l.Addr().String(), CAFile: ca})
	for i := range 3 {
		send(t, s, testAlert(i))
	}
	for i := range 3 {
		checkSyslogAlert(t, recvFrame(t, frames), testAlert(i))
	}

	// Without the CA the server certificate is not trusted.
	s2 := openSyslog(t, SyslogConfig{Network: TLS, Addr: l.Addr().String()})
	if err := s2.Send(context.Background(), testAlert(0)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted server: %v, want a certificate error", err)
	}
}

// TestSyslogDown: a collector that is down fails the alert, and the next
// ones fail fast (no dial) until the backoff has passed; then the sink
// connects again.
func TestSyslogDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s, err := newSyslog(SyslogConfig{Network: TCP, Addr: addr, Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Unix(1e9, 0)
	s.(*syslogSink).timeNow = func() time.Time { return now }
	if err := s.Send(context.Background(), testAlert(0)); err == nil || !strings.Contains(err.Error(), "sink: syslog tcp "+addr) {
		t.Fatalf("collector down: %v", err)
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	frames := streamServer(t, l, false)
	if err := s.Send(context.Background(), testAlert(1)); err == nil || !strings.Contains(err.Error(), "collector down, next attempt in 1s") {
		t.Fatalf("within the backoff: %v", err)
	}
	now = now.Add(1500 * time.Millisecond)
	if err := s.Send(context.Background(), testAlert(2)); err != nil {
		t.Fatalf("after the backoff: %v", err)
	}
	checkSyslogAlert(t, recvFrame(t, frames), testAlert(2))
}

func TestSyslogConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  SyslogConfig
		want string
	}{
		{SyslogConfig{}, "sink: syslog: Addr is required"},
		{SyslogConfig{Addr: "x", Network: "quic"}, `Network "quic" is not one of udp, tcp, tls`},
		{SyslogConfig{Addr: "x", Facility: "nope"}, `Facility "nope" is unknown`},
		{SyslogConfig{Addr: "x", Network: TLS, CAFile: "/nonexistent/ca.pem"}, "CAFile"},
	} {
		if _, err := newSyslog(tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("newSyslog(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	// YAML: enums validate themselves, with the line.
	type alerts struct {
		Syslog SyslogConfig `yaml:"syslog"`
	}
	for _, tc := range []struct{ in, want string }{
		{"syslog:\n  network: quic\n", `p.yml:2: syslog network "quic" is not one of udp, tcp, tls`},
		{"syslog:\n  addr: x\n  facility: lokal0\n", `p.yml:3: syslog facility "lokal0" is not one of`},
		{"syslog:\n  adr: x\n", `p.yml:2: unknown key "adr"`},
	} {
		var a alerts
		err := config.Decode("p.yml", []byte(tc.in), &a)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Decode(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
	var a alerts
	if err := config.Decode("p.yml", []byte("syslog:\n  network: tls\n  addr: siem:6514\n  facility: auth\n  timeout: 3s\n"), &a); err != nil {
		t.Fatal(err)
	}
	if a.Syslog.Network != TLS || a.Syslog.Facility != "auth" || a.Syslog.Timeout != 3*time.Second {
		t.Errorf("decoded %+v", a.Syslog)
	}
}

// FuzzSyslogFormat: whatever the alert's strings hold, the message parses
// as RFC 5424 and the SD parameters round-trip.
func FuzzSyslogFormat(f *testing.F) {
	f.Add("vendor-cloud", "cam \"1\"", `a]b\c`, "p2p.example.com", "high")
	f.Add("", "", "", "", "")
	f.Add("kind with spaces", "ünïcode", "]]]", "\x00\n", "info")
	s, err := newSyslog(SyslogConfig{Addr: "127.0.0.1:1", Hostname: "h"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	ss := s.(*syslogSink)
	f.Fuzz(func(t *testing.T, kind, camera, dst, domain, sev string) {
		a := egress.Alert{Kind: kind, Camera: camera, Dst: dst, Domain: domain, Severity: sev, Count: 1}
		b, err := ss.format(nil, a, time.Unix(1e9, 0))
		if err != nil {
			if strings.ToValidUTF8(camera+dst+domain+kind+sev, "") != camera+dst+domain+kind+sev {
				return // json.Marshal refuses nothing, but be lenient with invalid UTF-8
			}
			t.Fatal(err)
		}
		m, err := parse5424(string(b))
		if err != nil {
			t.Fatalf("%v\n%q", err, b)
		}
		for k, v := range map[string]string{"camera": camera, "dst": dst, "domain": domain} {
			if v != "" && m.params[k] != v {
				t.Errorf("param %s = %q, want %q", k, m.params[k], v)
			}
		}
	})
}

func TestJSONLinesAndFile(t *testing.T) {
	var sb strings.Builder
	j := newJSONLines(&sb)
	path := filepath.Join(t.TempDir(), "alerts.jsonl")
	f, err := openFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		send(t, j, testAlert(i))
		send(t, f, testAlert(i))
	}
	// logrotate moves the file away; Reopen starts a new one.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	f.Send(context.Background(), testAlert(2))
	f.Close()
	if err := f.Send(context.Background(), testAlert(3)); err == nil {
		t.Error("Send after Close succeeded")
	}
	lines := func(s string) []egress.Alert {
		var out []egress.Alert
		for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
			var a egress.Alert
			if err := json.Unmarshal([]byte(l), &a); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			out = append(out, a)
		}
		return out
	}
	checkOrder(t, lines(sb.String()), []int{0, 1})
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	checkOrder(t, lines(string(old)), []int{0, 1})
	checkOrder(t, lines(string(cur)), []int{2})
}

// TestSyslogMutualTLS: the collector demands a client certificate; the
// sink presents CertFile/KeyFile.
func TestSyslogMutualTLS(t *testing.T) {
	dir := t.TempDir()
	cert, ca := selfSigned(t, dir)
	clientDir := t.TempDir()
	clientCert, clientPEM := selfSigned(t, clientDir)
	keyFile := writeKey(t, clientDir, clientCert)
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(clientPEM)
	pool.AppendCertsFromPEM(b)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	frames := streamServer(t, l, false)
	s := openSyslog(t, SyslogConfig{Network: TLS, Addr: l.Addr().String(), CAFile: ca, CertFile: clientPEM, KeyFile: keyFile})
	send(t, s, testAlert(0))
	checkSyslogAlert(t, recvFrame(t, frames), testAlert(0))
	if _, err := newSyslog(SyslogConfig{Network: TLS, Addr: "x", CertFile: clientPEM}, nil); err == nil || !strings.Contains(err.Error(), "CertFile/KeyFile") {
		t.Errorf("certificate without key: %v", err)
	}
}
