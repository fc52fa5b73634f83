package inspect

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Service is a daemon or shell started by the init system, inetd or cron.
type Service struct {
	// Name is the recognised service: telnetd, dropbear, sshd, ftpd, tftpd,
	// upnpd, netcat, shell, httpd, inetd, or the program's base name.
	Name string `json:"name"`
	// Port is the listening port given or implied (0 when unknown).
	Port int    `json:"port"`
	Path string `json:"path"`
	Line int    `json:"line"`
	// Via is how it starts: inittab, rc (init scripts), systemd, inetd or cron.
	Via     string `json:"via"`
	Command string `json:"command"`
	// Boot is true when it starts at boot (cron jobs run periodically).
	Boot bool `json:"boot"`
	// Shell is true when the service hands out a shell without a login
	// (telnetd -l /bin/sh, nc -e /bin/sh, a getty-less console shell).
	Shell bool `json:"shell,omitempty"`
}

// Service names with their default ports.
var knownDaemons = map[string]struct {
	name string
	port int
}{
	"telnetd": {"telnetd", 23}, "utelnetd": {"telnetd", 23}, "in.telnetd": {"telnetd", 23},
	"dropbear": {"dropbear", 22}, "sshd": {"sshd", 22},
	"ftpd": {"ftpd", 21}, "vsftpd": {"ftpd", 21}, "bftpd": {"ftpd", 21}, "pure-ftpd": {"ftpd", 21},
	"proftpd": {"ftpd", 21}, "stupid-ftpd": {"ftpd", 21}, "in.ftpd": {"ftpd", 21},
	"tftpd": {"tftpd", 69}, "in.tftpd": {"tftpd", 69}, "atftpd": {"tftpd", 69},
	"upnpd": {"upnpd", 1900}, "miniupnpd": {"upnpd", 1900}, "minissdpd": {"upnpd", 1900}, "upnp": {"upnpd", 1900},
	"nc": {"netcat", 0}, "netcat": {"netcat", 0}, "ncat": {"netcat", 0},
	"httpd": {"httpd", 80}, "lighttpd": {"httpd", 80}, "boa": {"httpd", 80}, "goahead": {"httpd", 80},
	"mini_httpd": {"httpd", 80}, "thttpd": {"httpd", 80}, "uhttpd": {"httpd", 80}, "webs": {"httpd", 80},
	"inetd": {"inetd", 0}, "xinetd": {"inetd", 0},
}

var shells = map[string]bool{"sh": true, "ash": true, "bash": true, "hush": true, "msh": true, "-sh": true, "-/bin/sh": true}

// serviceSource says how a file starts programs.
func serviceSource(p string) string {
	lp := strings.ToLower(p)
	base := path.Base(lp)
	switch {
	case base == "inittab":
		return "inittab"
	case base == "inetd.conf":
		return "inetd"
	case strings.HasSuffix(base, ".service") && (strings.Contains(lp, "systemd/") || strings.Contains(lp, "/system/")):
		return "systemd"
	case base == "crontab" || strings.Contains(lp, "cron.d/") || strings.Contains(lp, "crontabs/") ||
		strings.Contains(lp, "cron.daily/") || strings.Contains(lp, "cron.hourly/"):
		return "cron"
	case strings.Contains(lp, "init.d/") || strings.Contains(lp, "rc.d/") || strings.HasPrefix(base, "rcs") ||
		base == "rc.local" || base == "rc.sysinit" || base == "rc" || strings.HasPrefix(base, "s") && strings.Contains(lp, "/rc") ||
		strings.HasPrefix(lp, "etc/init") || strings.Contains(lp, "/etc/init"):
		return "rc"
	}
	return ""
}

// checkServicesFile parses init scripts, inittab, inetd.conf, systemd units
// and crontabs.
func (c *collector) checkServicesFile(f *fileView) {
	via := serviceSource(f.path)
	if via == "" || !isText(f.data) {
		return
	}
	svcs := parseServices(via, f.data)
	for i := range svcs {
		svcs[i].Path = f.path
	}
	c.mu.Lock()
	if via != "cron" {
		c.initFiles[f.path] = true
	}
	c.services = append(c.services, svcs...)
	c.mu.Unlock()
}

const maxServiceLines = 20000

// parseServices returns the services a file of the given kind (inittab, rc,
// systemd, inetd or cron) starts.
func parseServices(via string, data []byte) []Service {
	var out []Service
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	wanted := via == "systemd" && bytes.Contains(data, []byte("WantedBy="))
	for n := 1; sc.Scan() && n <= maxServiceLines; n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		switch via {
		case "inittab":
			out = append(out, inittabServices(line, n)...)
		case "inetd":
			if s, ok := inetdService(line, n); ok {
				out = append(out, s)
			}
		case "systemd":
			if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
				out = appendStarted(out, strings.TrimLeft(v, "-@:+!"), n, "systemd", wanted)
			}
		case "cron":
			out = append(out, cronServices(line, n)...)
		default: // rc scripts
			out = appendStarted(out, line, n, "rc", true)
		}
	}
	return out
}

// appendStarted appends the services command starts, found on line n of a
// file of kind via.
func appendStarted(out []Service, command string, n int, via string, boot bool) []Service {
	for _, s := range commandServices(command) {
		s.Line, s.Via, s.Boot = n, via, boot
		out = append(out, s)
	}
	return out
}

// inittabServices returns the services an inittab line starts, and a
// "shell" service when it runs a shell on a console.
func inittabServices(line string, n int) []Service {
	// id:runlevels:action:process
	f := strings.SplitN(line, ":", 4)
	if len(f) != 4 {
		return nil
	}
	action, proc := f[2], f[3]
	boot := action != "ctrlaltdel" && action != "shutdown" && action != "restart" && action != "powerfail"
	out := appendStarted(nil, proc, n, "inittab", boot)
	if w := strings.Fields(proc); len(w) > 0 && shells[path.Base(strings.TrimPrefix(w[0], "-"))] && (action == "respawn" || action == "askfirst" || action == "once") {
		out = append(out, Service{Name: "shell", Line: n, Via: "inittab", Command: proc, Boot: true, Shell: true})
	}
	return out
}

// inetdService returns the service an inetd.conf line starts.
func inetdService(line string, n int) (Service, bool) {
	// service socket proto wait user server args
	f := strings.Fields(line)
	if len(f) < 6 {
		return Service{}, false
	}
	srv := path.Base(f[5])
	if len(f) > 6 && (srv == "tcpd" || srv == "busybox") {
		srv = path.Base(f[6])
	}
	name := srv
	if d, ok := knownDaemons[srv]; ok {
		name = d.name
	}
	return Service{Name: name, Port: wellKnownPort(f[0]), Line: n, Via: "inetd",
		Command: strings.Join(f[5:], " "), Boot: true, Shell: shells[srv]}, true
}

// cronServices returns the services a crontab line starts.
func cronServices(line string, n int) []Service {
	f := strings.Fields(line)
	if strings.Contains(f[0], "=") {
		return nil // VAR=value
	}
	fields := 5 // minute hour day month weekday
	if strings.HasPrefix(f[0], "@") {
		fields = 1 // @reboot, @daily, ...
	}
	if len(f) <= fields {
		return nil
	}
	cmd := f[fields:]
	if len(cmd) > 1 && !strings.ContainsAny(cmd[0], "/") && validUser(cmd[0]) && knownDaemons[cmd[0]].name == "" {
		cmd = cmd[1:] // system crontab: the user field
	}
	return appendStarted(nil, strings.Join(cmd, " "), n, "cron", f[0] == "@reboot")
}

func wellKnownPort(name string) int {
	switch name {
	case "telnet":
		return 23
	case "ftp":
		return 21
	case "tftp":
		return 69
	case "ssh":
		return 22
	case "http", "www":
		return 80
	}
	p, _ := strconv.Atoi(name)
	return p
}

// commandServices finds the known daemons a shell command line starts.
func commandServices(line string) []Service {
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i]
	}
	var out []Service
	for _, cmd := range splitCommands(line) {
		if s, ok := simpleCommandService(stripPrefixes(strings.Fields(cmd))); ok {
			out = append(out, s)
		}
	}
	return out
}

// simpleCommandService returns the known daemon the words of one simple
// command start, if any.
func simpleCommandService(w []string) (Service, bool) {
	if len(w) == 0 {
		return Service{}, false
	}
	prog := path.Base(w[0])
	args := w[1:]
	if prog == "tcpsvd" || prog == "udpsvd" {
		return superviseService(w, args)
	}
	if prog == "start-stop-daemon" {
		prog, args = startStopDaemonTarget(prog, args)
	}
	d, ok := knownDaemons[prog]
	if !ok {
		return Service{}, false
	}
	s := Service{Name: d.name, Port: d.port, Command: strings.Join(w, " ")}
	if d.name == "netcat" {
		return s, netcatListener(&s, args)
	}
	daemonOptions(&s, args)
	return s, true
}

// superviseService returns the known daemon a tcpsvd or udpsvd command line
// w serves, with the port it listens on.
func superviseService(w, args []string) (Service, bool) {
	// tcpsvd [-opts] IP PORT PROG ARGS
	prog := path.Base(w[0])
	port := 0
	for _, a := range args {
		if port == 0 && isDigits(a) {
			port, _ = strconv.Atoi(a)
			continue
		}
		if port != 0 && !strings.HasPrefix(a, "-") {
			prog = path.Base(a)
			break
		}
	}
	d, ok := knownDaemons[prog]
	if !ok {
		return Service{}, false
	}
	return Service{Name: d.name, Port: port, Command: strings.Join(w, " ")}, true
}

// startStopDaemonTarget returns the program start-stop-daemon runs (-x,
// --exec, -a, --startas) and the arguments after "--" that it is given, or
// prog and args unchanged when none is named.
func startStopDaemonTarget(prog string, args []string) (string, []string) {
	for i, a := range args {
		if (a == "-x" || a == "--exec" || a == "-a" || a == "--startas") && i+1 < len(args) {
			rest := args[i+2:]
			for j, r := range rest {
				if r == "--" {
					rest = rest[j+1:]
					break
				}
			}
			return path.Base(args[i+1]), rest
		}
	}
	return prog, args
}

// netcatListener reads netcat's options into s (port, -e shell) and reports
// whether it listens; a client is not a service.
func netcatListener(s *Service, args []string) bool {
	listen := false
	for i, a := range args {
		if strings.HasPrefix(a, "-") && strings.ContainsAny(a, "l") && !strings.HasPrefix(a, "--") {
			listen = true
		}
		if strings.HasPrefix(a, "-") && strings.Contains(a, "e") && !strings.HasPrefix(a, "--") || a == "--exec" || a == "-c" {
			s.Shell = true
		}
		if (a == "-p" || strings.HasSuffix(a, "p") && strings.HasPrefix(a, "-")) && i+1 < len(args) && isDigits(args[i+1]) {
			s.Port, _ = strconv.Atoi(args[i+1])
		}
	}
	if !listen {
		return false // a client, not a listener
	}
	if s.Port == 0 && len(args) > 0 && isDigits(args[len(args)-1]) {
		s.Port, _ = strconv.Atoi(args[len(args)-1])
	}
	return true
}

// daemonOptions reads a daemon's -p [addr:]port, and telnetd's -l shell,
// into s.
func daemonOptions(s *Service, args []string) {
	for i, a := range args {
		if a == "-p" && i+1 < len(args) {
			v := args[i+1]
			if j := strings.LastIndexByte(v, ':'); j >= 0 {
				v = v[j+1:]
			}
			if p, err := strconv.Atoi(v); err == nil {
				s.Port = p
			}
		}
		if s.Name == "telnetd" && a == "-l" && i+1 < len(args) && shells[path.Base(args[i+1])] {
			s.Shell = true
		}
	}
}

// splitCommands splits a shell line at ; && || | & and drops shell keywords.
func splitCommands(line string) []string {
	var out []string
	cur := strings.Builder{}
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case ';', '&', '|', '(', ')', '`':
			flush()
		default:
			cur.WriteByte(line[i])
		}
	}
	flush()
	return out
}

func stripPrefixes(w []string) []string {
	for len(w) > 0 {
		switch base := path.Base(w[0]); {
		case base == "then" || base == "else" || base == "do" || base == "exec" || base == "nohup" ||
			base == "busybox" || base == "env" || base == "sudo" || base == "nice" || base == "setsid" || base == "!":
			w = w[1:]
		case strings.Contains(w[0], "=") && !strings.HasPrefix(w[0], "-"):
			w = w[1:] // VAR=value prefix
		default:
			return w
		}
	}
	return w
}

// serviceFindings reports the risky services.
func (c *collector) serviceFindings(s Service) {
	ev := fmt.Sprintf("line %d (%s): %s", s.Line, s.Via, truncate(s.Command, 200))
	when := "starts at boot"
	if s.Via == "cron" {
		when = "runs from cron"
	} else if !s.Boot {
		when = "defined, not enabled at boot"
	}
	port := ""
	if s.Port > 0 {
		port = fmt.Sprintf("port %d, ", s.Port)
	}
	add := func(rule string, sev Severity, detail string) {
		c.findings = append(c.findings, Finding{Rule: rule, Severity: sev, Path: s.Path, Evidence: ev,
			Detail: port + when + detail})
	}
	switch s.Name {
	case "telnetd":
		add(RuleTelnet, SeverityHigh, "")
		if s.Shell {
			add(RuleDebugShell, SeverityHigh, "; telnetd runs a shell with no login")
		}
	case "netcat":
		d := ""
		if s.Shell {
			d = "; hands out a shell (-e)"
		}
		add(RuleNetcat, SeverityHigh, d)
	case "shell":
		add(RuleDebugShell, SeverityMedium, "; a console shell without login")
	case "ftpd":
		add(RuleFTP, SeverityMedium, "")
	case "tftpd":
		add(RuleTFTP, SeverityMedium, "")
	case "upnpd":
		add(RuleUPnP, SeverityLow, "")
	case "dropbear", "sshd":
		add(RuleSSH, SeverityInfo, "")
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
