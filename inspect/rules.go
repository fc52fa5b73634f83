package inspect

import (
	"fmt"
	"strings"
)

// Severity ranks findings. Its text form is the lower-case name.
type Severity int

// Severities, lowest first.
const (
	SeverityNone Severity = iota
	SeverityInfo
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = [...]string{"none", "info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if s < 0 || int(s) >= len(severityNames) {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// MarshalText implements encoding.TextMarshaler.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSeverity parses a severity name (info, low, medium, high, critical).
func ParseSeverity(name string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(n, name) && i > 0 {
			return Severity(i), nil
		}
	}
	return SeverityNone, fmt.Errorf("inspect: unknown severity %q (want info, low, medium, high or critical)", name)
}

// Stable rule IDs. Each is documented in Rules and docs/inspect.md.
const (
	RuleEmptyPassword   = "account.empty-password"
	RuleWeakHash        = "account.weak-hash"
	RuleCrackedPassword = "account.cracked-password"
	RuleUID0Duplicate   = "account.uid0-duplicate"
	RulePasswdHash      = "account.hash-in-passwd"
	RulePrivateKey      = "secret.private-key"
	RuleWeakKey         = "secret.weak-key"
	RuleCloudCredential = "secret.cloud-credential"
	RuleConfigPassword  = "secret.config-password"
	RuleURLCredential   = "secret.url-credential"
	RuleCertSelfSigned  = "cert.self-signed"
	RuleCertExpired     = "cert.expired"
	RuleCertWeakKey     = "cert.weak-key"
	RuleTelnet          = "service.telnet"
	RuleNetcat          = "service.netcat-listener"
	RuleDebugShell      = "service.debug-shell"
	RuleFTP             = "service.ftp"
	RuleTFTP            = "service.tftp"
	RuleUPnP            = "service.upnp"
	RuleSSH             = "service.ssh"
	RuleVendorCloud     = "endpoint.vendor-cloud"
	RuleHardcodedIP     = "endpoint.hardcoded-ip"
	RuleKnownVuln       = "component.known-vulnerability"
	RuleExecStack       = "binary.exec-stack"
	RuleNoPIE           = "binary.no-pie"
	RuleNoRELRO         = "binary.no-relro"
	RuleNoCanary        = "binary.no-canary"
	RuleRPath           = "binary.rpath"
	RuleSetuid          = "file.setuid"
	RuleWorldWritable   = "file.world-writable"
	RuleUnexamined      = "coverage.unexamined"
	RuleNothingExamined = "coverage.nothing-examined"
	RuleMissing         = "coverage.missing"
)

// Rule documents one rule ID.
type Rule struct {
	ID       string
	Severity Severity // default severity; some findings raise or lower it (see Help)
	Short    string
	Help     string
}

// Rules lists every rule, in the order of docs/inspect.md.
var Rules = []Rule{
	{RuleEmptyPassword, SeverityHigh, "account without a password",
		"A passwd or shadow entry has an empty password field: anyone can log in as this user where a login service runs."},
	{RuleWeakHash, SeverityMedium, "password hash with a weak scheme",
		"The hash is traditional DES crypt (8 characters, 56-bit) or MD5-crypt: both crack quickly on a GPU."},
	{RuleCrackedPassword, SeverityCritical, "password hash cracked with a default or common password",
		"The hash matches a password from cordon's embedded list of vendor defaults and common passwords; the evidence names it."},
	{RuleUID0Duplicate, SeverityHigh, "a second account with UID 0",
		"An account other than root has user ID 0, so it has full root rights under another name."},
	{RulePasswdHash, SeverityMedium, "password hash in world-readable passwd",
		"The hash sits in /etc/passwd (readable by every user) rather than in shadow."},
	{RulePrivateKey, SeverityHigh, "private key in the firmware",
		"A private key ships in the image, so every device shares it (medium when it is encrypted with a passphrase)."},
	{RuleWeakKey, SeverityHigh, "private key too short",
		"RSA or DSA below 2048 bits, or an elliptic curve below 224 bits."},
	{RuleCloudCredential, SeverityHigh, "cloud or API credential",
		"A string matches the pattern of a cloud or API credential (AWS access key ID, Google API key, GitHub or Slack token, Stripe live key)."},
	{RuleConfigPassword, SeverityMedium, "password in a configuration file",
		"A configuration file sets a password-like key to a literal value."},
	{RuleURLCredential, SeverityMedium, "credentials in a URL",
		"A URL carries a user name and password (rtsp://admin:12345@..., ftp://user:pass@...)."},
	{RuleCertSelfSigned, SeverityLow, "self-signed certificate",
		"A certificate (outside a CA bundle) is signed by its own key, so clients cannot authenticate the device."},
	{RuleCertExpired, SeverityLow, "expired certificate",
		"A certificate (outside a CA bundle) is past its notAfter date."},
	{RuleCertWeakKey, SeverityMedium, "certificate with a short key",
		"A certificate's public key is RSA below 2048 bits or an elliptic curve below 224 bits."},
	{RuleTelnet, SeverityHigh, "telnet server started",
		"telnetd (or utelnetd) starts at boot or from inetd; the evidence gives its port. High even without a known password: telnet sends credentials in clear."},
	{RuleNetcat, SeverityHigh, "netcat listener",
		"nc/netcat listens on a port (with -e, it hands out a shell)."},
	{RuleDebugShell, SeverityMedium, "debug shell without login",
		"inittab or a boot script starts a shell directly (no login) on a console, or telnetd is told to run a shell (-l /bin/sh)."},
	{RuleFTP, SeverityMedium, "FTP server started", "An FTP server starts at boot: clear-text credentials and file access."},
	{RuleTFTP, SeverityMedium, "TFTP server started", "A TFTP server starts at boot: unauthenticated file transfer."},
	{RuleUPnP, SeverityLow, "UPnP daemon started", "A UPnP/SSDP daemon starts at boot and may open ports on the router."},
	{RuleSSH, SeverityInfo, "SSH server started", "dropbear or sshd starts at boot; check the accounts that can log in."},
	{RuleVendorCloud, SeverityMedium, "vendor cloud endpoint",
		"The firmware contains an endpoint of a vendor cloud from the watch-list (Hik-Connect, EZVIZ, Dahua/Imou, XMEye, ...): it phones home."},
	{RuleHardcodedIP, SeverityLow, "hard-coded public IP address",
		"A public IPv4 address is compiled into a file (private, loopback and documentation ranges are listed but not reported)."},
	{RuleKnownVuln, SeverityHigh, "component with a known vulnerability",
		"The --vulns OSV feed lists a vulnerability for this component's name and version (severity from the feed when given)."},
	{RuleExecStack, SeverityMedium, "executable stack (no NX)",
		"The ELF has no PT_GNU_STACK header or marks the stack executable."},
	{RuleNoPIE, SeverityLow, "executable not position-independent",
		"The ELF executable is not PIE, so ASLR cannot move its code."},
	{RuleNoRELRO, SeverityLow, "no RELRO", "The ELF has no PT_GNU_RELRO segment: its GOT stays writable."},
	{RuleNoCanary, SeverityLow, "no stack canary",
		"The ELF neither calls __stack_chk_fail nor reads __stack_chk_guard (reported only for binaries that import functions)."},
	{RuleRPath, SeverityLow, "RPATH or RUNPATH set",
		"The ELF searches libraries in a built-in path; medium when the path is relative or world-writable (/tmp, /var, .)."},
	{RuleSetuid, SeverityMedium, "setuid or setgid file", "The file runs with its owner's (or group's) rights, from the unpack manifest."},
	{RuleWorldWritable, SeverityMedium, "world-writable file or directory",
		"Any user can change the file, or add and remove files in the directory (no sticky bit)."},
	{RuleUnexamined, SeverityMedium, "part of the image was never examined",
		"The unpacker identified a chunk but did not extract it (no extractor, encrypted, depth limit), or found a header whose content failed to decode (a stream or filesystem cut short): what it holds was not inspected, so no findings there does not mean clean."},
	{RuleNothingExamined, SeverityMedium, "nothing was examined",
		"No file with content could be read: the directory is empty, every file is empty, or none could be opened. The report's lack of other findings means nothing."},
	{RuleMissing, SeverityLow, "a root filesystem lacks accounts, an init system or binaries",
		"The tree looks like an operating system's root filesystem (it has an etc directory, or a bin or sbin directory and ELF files) but holds no passwd/shadow file, no init configuration (inittab, init.d/rc scripts, systemd units, inetd.conf), or no ELF file: that kind of check had nothing to examine. One finding per missing kind; low, because a firmware may keep them in a partition the tree does not hold (see coverage.unexamined)."},
}

// ruleIndex returns the position of id in Rules, or -1.
func ruleIndex(id string) int {
	for i, r := range Rules {
		if r.ID == id {
			return i
		}
	}
	return -1
}
