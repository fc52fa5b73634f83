package packaging_test

import (
	"bufio"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/internal/testutil"
)

const nfpm = "github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2" // the one scripts/package runs

var conffiles = []string{"/etc/cordon/proxy.yml", "/etc/cordon/egress/default.yml", "/etc/cordon/egress/default.env"}

// builtDeb is the package scripts/package made for this run, shared by the
// tests (building it takes a while); TestMain removes its folder.
var (
	debOnce sync.Once
	debPath string
	debErr  string
	debDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if debDir != "" {
		os.RemoveAll(debDir)
	}
	os.Exit(code)
}

// buildDeb runs scripts/package into a temporary folder (once per run) and
// returns the .deb's path.
func buildDeb(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("building the package takes a while (-short)")
	}
	need(t, "dpkg-deb", "dpkg")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "run", nfpm, "--version").CombinedOutput(); err != nil {
		if !testutil.InCI() {
			t.Skipf("nfpm cannot be built here (no module proxy?): %v\n%s", err, out)
		}
		t.Fatalf("go run %s: %v\n%s", nfpm, err, out)
	}
	debOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cordon-deb")
		if err != nil {
			debErr = err.Error()
			return
		}
		debDir = dir
		cmd := exec.CommandContext(ctx, "../scripts/package", "-o", dir)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		t.Logf("scripts/package:\n%s", stderr.String())
		if err != nil {
			debErr = fmt.Sprintf("scripts/package: %v\n%s", err, stderr.String())
			return
		}
		debs, _ := filepath.Glob(filepath.Join(dir, "cordon_*_"+runtime.GOARCH+".deb"))
		if len(debs) != 1 {
			debErr = fmt.Sprintf("scripts/package made %v (printed %q), want one .deb", debs, out)
			return
		}
		debPath = debs[0]
	})
	if debErr != "" {
		t.Fatal(debErr)
	}
	return debPath
}

// TestDeb builds the package and checks what it holds: the static binary
// that names its version, the conffiles, units, man pages that render and
// completion that bash loads.
func TestDeb(t *testing.T) {
	deb := buildDeb(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	fi, _ := os.Stat(deb)
	t.Logf("%s: %d bytes", filepath.Base(deb), fi.Size())

	if got := strings.TrimSpace(run(t, ctx, "dpkg-deb", "-f", deb, "Package")); got != "cordon" {
		t.Errorf("Package: %q", got)
	}
	if got := strings.TrimSpace(run(t, ctx, "dpkg-deb", "-f", deb, "Architecture")); got != runtime.GOARCH {
		t.Errorf("Architecture: %q, want %q", got, runtime.GOARCH)
	}
	ctl := t.TempDir()
	run(t, ctx, "dpkg-deb", "-e", deb, ctl)
	cf, _ := os.ReadFile(filepath.Join(ctl, "conffiles"))
	got, want := strings.Fields(string(cf)), slices.Clone(conffiles)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("conffiles %q, want %q", got, want)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if _, err := os.Stat(filepath.Join(ctl, s)); err != nil {
			t.Errorf("maintainer script %s: %v", s, err)
		}
	}

	root := t.TempDir()
	run(t, ctx, "dpkg-deb", "-x", deb, root)
	for _, p := range []string{
		"usr/bin/cordon", "usr/lib/systemd/system/cordon-proxy.service", "usr/lib/systemd/system/cordon-egress@.service",
		"usr/share/bash-completion/completions/cordon", "usr/share/zsh/vendor-completions/_cordon",
		"usr/share/fish/vendor_completions.d/cordon.fish", "usr/share/man/man1/cordon.1.gz", "usr/share/man/man1/cordon-proxy.1.gz",
		"usr/share/cordon/grafana/cordon.json", "usr/share/cordon/prometheus/cordon-rules.yml", "usr/share/doc/cordon/copyright",
	} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("package lacks /%s", p)
		}
	}

	bin := filepath.Join(root, "usr/bin/cordon")
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("/usr/bin/cordon has an interpreter: not static")
		}
	}
	ef.Close()
	head := strings.TrimSpace(run(t, ctx, "git", "rev-parse", "HEAD"))
	ver := run(t, ctx, bin, "version")
	if !strings.Contains(ver, head[:12]) || !regexp.MustCompile(` built \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ `).MatchString(ver) {
		t.Errorf("cordon version printed %q: want the revision %s and the build date", ver, head[:12])
	}

	need(t, "bash", "bash")
	out := run(t, ctx, "bash", "--norc", "-c", `source "$1"; complete -p cordon`, "bash", filepath.Join(root, "usr/share/bash-completion/completions/cordon"))
	if strings.TrimSpace(out) != "complete -o default -o filenames -F _cordon cordon" {
		t.Errorf("complete -p cordon: %q", out)
	}
	need(t, "man", "man-db")
	pages, _ := filepath.Glob(filepath.Join(root, "usr/share/man/man1/*.1.gz"))
	if len(pages) < 10 {
		t.Errorf("%d man pages", len(pages))
	}
	for _, p := range pages {
		cmd := exec.CommandContext(ctx, "man", "--warnings", "-l", p)
		cmd.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=100")
		o, err := cmd.Output()
		if err != nil || !strings.Contains(string(o), "NAME") {
			t.Errorf("man -l %s: %v", filepath.Base(p), err)
		}
	}
}

// TestInstallPurge installs the package on this machine, checks the units
// with systemd-analyze verify, starts the proxy (with systemd when it is PID
// 1, else the unit's ExecStart as the cordon user with no capabilities and
// no new privileges), then removes and purges it. CI only (root, CI=true):
// it changes the machine, and leaves it as it was.
func TestInstallPurge(t *testing.T) {
	if !testutil.InCI() || os.Geteuid() != 0 {
		t.Skip("installs the package system-wide: runs in CI only (CI=true, as root)")
	}
	need(t, "dpkg", "dpkg")
	if exec.Command("dpkg-query", "-W", "cordon").Run() == nil {
		t.Skip("a cordon package is already installed here; not touching it")
	}
	deb := buildDeb(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	listing := run(t, ctx, "dpkg-deb", "-c", deb)
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "cordon").Run() })
	run(t, ctx, "dpkg", "-i", deb)

	run(t, ctx, "id", "cordon")
	if fi, err := os.Stat("/etc/cordon/proxy.yml"); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("/etc/cordon/proxy.yml: %v %v, want mode 0640", fi.Mode(), err)
	}
	if out := run(t, ctx, "stat", "-c", "%U:%G", "/etc/cordon/proxy.yml"); strings.TrimSpace(out) != "root:cordon" {
		t.Errorf("/etc/cordon/proxy.yml owned by %s, want root:cordon", out)
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		inst := filepath.Join(t.TempDir(), "cordon-egress@default.service")
		b, _ := os.ReadFile("/usr/lib/systemd/system/cordon-egress@.service")
		os.WriteFile(inst, b, 0o644)
		out, err := exec.CommandContext(ctx, "systemd-analyze", "verify", "/usr/lib/systemd/system/cordon-proxy.service", inst).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("systemd-analyze verify (installed): %v\n%s", err, out)
		}
	}

	// An edited conffile: a camera (unreachable: the proxy starts anyway
	// and retries) and loopback listeners on ports the kernel picks.
	edited := []byte("listen:\n  rtsp: 127.0.0.1:0\n  admin: 127.0.0.1:0\n  udp_rtp: \"off\"\nallow_anonymous: true\ncameras:\n  - name: lobby\n    url: rtsp://127.0.0.1:1/x\n")
	if err := os.WriteFile("/etc/cordon/proxy.yml", edited, 0o640); err != nil {
		t.Fatal(err)
	}
	// An upgrade (here the same package again) keeps the edit.
	run(t, ctx, "dpkg", "-i", deb)
	if b, err := os.ReadFile("/etc/cordon/proxy.yml"); err != nil || string(b) != string(edited) {
		t.Errorf("reinstalling replaced the edited conffile: %v\n%s", err, b)
	}
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		startWithSystemd(t, ctx)
	} else {
		t.Log("systemd is not PID 1 here: running the unit's ExecStart as user cordon (setpriv: no capabilities, no new privileges) instead")
		startAsUnit(t, ctx)
	}

	run(t, ctx, "dpkg", "-r", "cordon")
	for _, p := range []string{"/usr/bin/cordon", "/usr/lib/systemd/system/cordon-proxy.service", "/usr/share/man/man1/cordon.1.gz"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there after dpkg -r", p)
		}
	}
	if b, err := os.ReadFile("/etc/cordon/proxy.yml"); err != nil || string(b) != string(edited) {
		t.Errorf("dpkg -r did not keep the edited conffile: %v", err)
	}
	run(t, ctx, "dpkg", "--purge", "cordon")
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || strings.HasSuffix(f[5], "/") {
			continue
		}
		p := strings.TrimPrefix(f[5], ".")
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there after dpkg --purge", p)
		}
	}
	for _, p := range []string{"/etc/cordon", "/var/lib/cordon", "/var/log/cordon", "/usr/share/cordon", "/usr/share/doc/cordon"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there after dpkg --purge", p)
		}
	}
	if exec.Command("getent", "passwd", "cordon").Run() == nil || exec.Command("getent", "group", "cordon").Run() == nil {
		t.Error("the cordon user or group is still there after dpkg --purge")
	}
}

// statusAdmin finds the admin address in the proxy's STATUS= line.
var statusAdmin = regexp.MustCompile(`admin on (127\.0\.0\.1:\d+)`)

func checkServing(t *testing.T, status string) {
	t.Helper()
	m := statusAdmin.FindStringSubmatch(status)
	if m == nil {
		t.Fatalf("no admin address in the status %q", status)
	}
	for _, tc := range []struct{ path, want string }{{"/healthz", "ok"}, {"/metrics", "cordon_build_info{"}} {
		resp, err := http.Get("http://" + m[1] + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), tc.want) {
			t.Errorf("GET %s: %s, want 200 with %q", tc.path, resp.Status, tc.want)
		}
	}
}

func startWithSystemd(t *testing.T, ctx context.Context) {
	run(t, ctx, "systemctl", "start", "cordon-proxy.service") // Type=notify: returns after READY=1
	defer run(t, ctx, "systemctl", "stop", "cordon-proxy.service")
	status := run(t, ctx, "systemctl", "show", "-p", "StatusText", "--value", "cordon-proxy.service")
	checkServing(t, status)
	run(t, ctx, "systemctl", "reload", "cordon-proxy.service")
	if out := run(t, ctx, "systemctl", "is-active", "cordon-proxy.service"); strings.TrimSpace(out) != "active" {
		t.Errorf("after reload: %s", out)
	}
}

func startAsUnit(t *testing.T, ctx context.Context) {
	need(t, "setpriv", "util-linux")
	dir, err := os.MkdirTemp("", "cordon-notify")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	os.Chmod(sock, 0o777)
	// ExecStart of cordon-proxy.service, with User=cordon, NoNewPrivileges
	// and the empty CapabilityBoundingSet.
	exec := readExecStart(t, "/usr/lib/systemd/system/cordon-proxy.service")
	args := append([]string{"--reuid=cordon", "--regid=cordon", "--init-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"}, exec...)
	cmd := execCommand(ctx, "setpriv", args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stderr = t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no READY=1 from the proxy: %v", err)
	}
	msg := string(buf[:n])
	if !strings.HasPrefix(msg, "READY=1\n") {
		t.Errorf("first notification %q", msg)
	}
	checkServing(t, msg)
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("the proxy exited with %v after SIGINT", err)
	}
}

var execCommand = exec.CommandContext

// readExecStart returns the ExecStart= command of a unit file, split on
// spaces (the units use no quoting).
func readExecStart(t *testing.T, unit string) []string {
	f, err := os.Open(unit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "ExecStart="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("%s has no ExecStart=", unit)
	return nil
}
