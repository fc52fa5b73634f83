package sink

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRsyslog runs rsyslogd in the foreground with a configuration that
// receives on port (TCP, and UDP unless tls), parses the structured data
// with mmpstrucdata and writes one tab-separated line per message to the
// returned file.
func startRsyslog(t *testing.T, port int, tlsDir string) string {
	t.Helper()
	bin := testutil.NeedTool(t, "rsyslogd")[0]
	dir := t.TempDir()
	out := filepath.Join(dir, "out.log")
	var conf strings.Builder
	fmt.Fprintf(&conf, "global(workDirectory=%q", dir)
	if tlsDir != "" {
		fmt.Fprintf(&conf, " defaultNetstreamDriverCAFile=%q defaultNetstreamDriverCertFile=%q defaultNetstreamDriverKeyFile=%q",
			filepath.Join(tlsDir, "ca.pem"), filepath.Join(tlsDir, "ca.pem"), filepath.Join(tlsDir, "key.pem"))
	}
	conf.WriteString(")\n")
	if tlsDir != "" {
		conf.WriteString(`module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")` + "\n")
	} else {
		conf.WriteString("module(load=\"imtcp\")\nmodule(load=\"imudp\")\n")
		fmt.Fprintf(&conf, "input(type=\"imudp\" address=\"127.0.0.1\" port=\"%d\")\n", port)
	}
	fmt.Fprintf(&conf, "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\")\n", port)
	conf.WriteString(`module(load="mmpstrucdata")
template(name="t" type="string" string="%pri%\t%app-name%\t%procid%\t%msgid%\t%$!rfc5424-sd%\t%msg%\n")
action(type="mmpstrucdata")
action(type="omfile" file="` + out + `" template="t")
`)
	cfg := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(cfg, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-n", "-f", cfg, "-i", filepath.Join(dir, "pid"))
	logf, _ := os.Create(filepath.Join(dir, "rsyslogd.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "rsyslogd.log"))
			t.Logf("rsyslogd output:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd does not listen on %d: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out
}

// readRsyslog waits for n lines in out.
func readRsyslog(t *testing.T, out string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var lines []string
		if f, err := os.Open(out); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			f.Close()
		}
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd wrote %d of %d messages: %q", len(lines), n, lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRsyslogInterop sends alerts to a real rsyslogd over UDP, TCP and TLS;
// rsyslog's RFC 5424 parser and mmpstrucdata must recover the header fields,
// every structured-data parameter (escaping included) and the JSON message.
func TestRsyslogInterop(t *testing.T) {
	tricky := testAlert(0)
	tricky.Camera = `yard "north" \ gate]`
	tricky.Domain = "p2p.example.com"
	alerts := []egress.Alert{testAlert(1), tricky, testAlert(2)}
	for _, network := range []Network{UDP, TCP, TLS} {
		t.Run(string(network), func(t *testing.T) {
			port := freePort(t)
			cfg := SyslogConfig{Network: network, Addr: fmt.Sprintf("127.0.0.1:%d", port)}
			tlsDir := ""
			if network == TLS {
				tlsDir = t.TempDir()
				cert, ca := selfSigned(t, tlsDir)
				writeKey(t, tlsDir, cert)
				cfg.CAFile = ca
			}
			out := startRsyslog(t, port, tlsDir)
			s := openSyslog(t, cfg)
			for _, a := range alerts {
				send(t, s, a)
			}
			lines := readRsyslog(t, out, len(alerts))
			for i, line := range lines {
				f := strings.Split(line, "\t")
				if len(f) != 6 {
					t.Fatalf("line %q", line)
				}
				want := alerts[i]
				if f[0] != "131" || f[1] != "cordon" || f[2] != fmt.Sprint(os.Getpid()) || f[3] != want.Kind {
					t.Errorf("header %q", f[:4])
				}
				var sd map[string]map[string]string
				if err := json.Unmarshal([]byte(f[4]), &sd); err != nil {
					t.Fatalf("structured data %q: %v", f[4], err)
				}
				p := sd["cordon@32473"]
				if p["camera"] != want.Camera || p["dst"] != want.Dst || p["domain"] != want.Domain || p["count"] != fmt.Sprint(want.Count) || p["severity"] != "high" {
					t.Errorf("structured data %v, want camera %q dst %q", p, want.Camera, want.Dst)
				}
				var a egress.Alert
				if err := json.Unmarshal([]byte(strings.TrimPrefix(f[5], "\ufeff")), &a); err != nil {
					t.Fatalf("message %q: %v", f[5], err)
				}
				if a.Camera != want.Camera || a.Detail != want.Detail {
					t.Errorf("message alert %+v", a)
				}
			}
		})
	}
}
