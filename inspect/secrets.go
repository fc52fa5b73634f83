package inspect

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
)

const (
	maxPEMBlocks  = 4096 // per file; CA bundles hold a few hundred
	minRSABits    = 2048
	minECBits     = 224
	maxConfigLine = 4096
)

// now is the clock used for certificate expiry (a var for tests).
var now = time.Now

// checkPEM reports private keys and certificates in PEM blocks anywhere in
// the file (text files, and keys embedded in binaries).
func (c *collector) checkPEM(f *fileView) {
	data := f.data
	if !bytes.Contains(data, []byte("-----BEGIN ")) {
		return
	}
	var certs []*cfgCert
	for n := 0; n < maxPEMBlocks; n++ {
		i := bytes.Index(data, []byte("-----BEGIN "))
		if i < 0 {
			break
		}
		block, rest := pem.Decode(data[i:])
		if block == nil {
			data = data[i+len("-----BEGIN "):]
			continue
		}
		data = rest
		switch {
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			c.privateKeyFinding(f.path, block)
		case block.Type == "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				continue
			}
			certs = append(certs, &cfgCert{cert})
		}
	}
	if len(certs) > 2 {
		return // a CA bundle: its roots are self-signed and some expire, by design
	}
	for _, ci := range certs {
		c.certFindings(f.path, ci.Certificate)
	}
}

type cfgCert struct{ *x509.Certificate }

// maxDERBytes bounds the files tried as DER certificates and keys.
const maxDERBytes = 64 << 10

// derLen returns the total length of the ASN.1 SEQUENCE at the start of d
// (short form or one or two length bytes), or -1.
func derLen(d []byte) int {
	switch {
	case d[1] < 0x80:
		return 2 + int(d[1])
	case d[1] == 0x81:
		return 3 + int(d[2])
	case d[1] == 0x82:
		return 4 + int(d[2])<<8 | int(d[3])
	}
	return -1
}

// checkDER reports binary (DER) certificates and private keys: a file that
// is exactly one ASN.1 SEQUENCE parsing as a certificate, a PKCS#8, PKCS#1
// or SEC 1 key.
func (c *collector) checkDER(f *fileView) {
	d := f.data
	if len(d) < 32 || len(d) > maxDERBytes || d[0] != 0x30 || derLen(d) != len(d) {
		return
	}
	if cert, err := x509.ParseCertificate(d); err == nil {
		c.certFindings(f.path, cert)
		return
	}
	var block *pem.Block
	if _, err := x509.ParsePKCS8PrivateKey(d); err == nil {
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: d}
	} else if _, err := x509.ParsePKCS1PrivateKey(d); err == nil {
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: d}
	} else if _, err := x509.ParseECPrivateKey(d); err == nil {
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: d}
	}
	if block != nil {
		c.privateKeyFinding(f.path, block)
	}
}

func (c *collector) privateKeyFinding(p string, block *pem.Block) {
	encrypted := block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED")
	algo, bits := "", 0
	switch block.Type {
	case "RSA PRIVATE KEY":
		algo = "RSA"
		if !encrypted {
			if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
				bits = k.N.BitLen()
			}
		}
	case "EC PRIVATE KEY":
		algo = "EC"
		if !encrypted {
			if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
				bits = k.Curve.Params().BitSize
			}
		}
	case "DSA PRIVATE KEY":
		algo = "DSA"
	case "PRIVATE KEY":
		if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			algo, bits = keyAlgoBits(k)
		}
	case "OPENSSH PRIVATE KEY":
		algo, encrypted = parseOpenSSHKey(block.Bytes)
		if algo == "ssh-ed25519" {
			bits = 256
		}
	}
	if algo == "" {
		switch block.Type {
		case "PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			algo = "PKCS#8"
		default:
			algo = strings.TrimSuffix(block.Type, " PRIVATE KEY")
		}
	}
	desc := algo
	if bits > 0 {
		desc = fmt.Sprintf("%s %d-bit", algo, bits)
	}
	sev, state := SeverityHigh, "unencrypted"
	if encrypted {
		sev, state = SeverityMedium, "encrypted"
	}
	c.add(Finding{Rule: RulePrivateKey, Severity: sev, Path: p,
		Evidence: fmt.Sprintf("%s private key, %s", desc, state),
		Detail:   block.Type})
	if weakKey(algo, bits) {
		c.add(Finding{Rule: RuleWeakKey, Severity: SeverityHigh, Path: p,
			Evidence: fmt.Sprintf("%s private key of %d bits", algo, bits),
			Detail:   fmt.Sprintf("want RSA/DSA ≥ %d bits, EC ≥ %d bits", minRSABits, minECBits)})
	}
}

func weakKey(algo string, bits int) bool {
	switch {
	case bits == 0:
		return false
	case algo == "RSA" || algo == "DSA" || algo == "ssh-rsa":
		return bits < minRSABits
	case algo == "EC":
		return bits < minECBits
	}
	return false
}

func keyAlgoBits(k any) (string, int) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return "RSA", k.N.BitLen()
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen()
	case *ecdsa.PrivateKey:
		return "EC", k.Curve.Params().BitSize
	case *ecdsa.PublicKey:
		return "EC", k.Curve.Params().BitSize
	case ed25519.PrivateKey, ed25519.PublicKey:
		return "Ed25519", 256
	}
	return "", 0
}

// parseOpenSSHKey reads the key type and cipher of an "openssh-key-v1" blob.
func parseOpenSSHKey(b []byte) (algo string, encrypted bool) {
	const magic = "openssh-key-v1\x00"
	if !bytes.HasPrefix(b, []byte(magic)) {
		return "", false
	}
	b = b[len(magic):]
	str := func() (string, bool) {
		if len(b) < 4 {
			return "", false
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) {
			return "", false
		}
		s := string(b[4 : 4+n])
		b = b[4+n:]
		return s, true
	}
	cipher, ok := str()
	if !ok {
		return "", false
	}
	encrypted = cipher != "none"
	if _, ok := str(); !ok { // kdfname
		return "", encrypted
	}
	if _, ok := str(); !ok { // kdfoptions
		return "", encrypted
	}
	if len(b) < 4 {
		return "", encrypted
	}
	b = b[4:] // number of keys
	pub, ok := str()
	if !ok {
		return "", encrypted
	}
	pb := []byte(pub)
	if len(pb) >= 4 {
		n := binary.BigEndian.Uint32(pb)
		if uint64(n) <= uint64(len(pb)-4) {
			algo = string(pb[4 : 4+n])
		}
	}
	return algo, encrypted
}

func (c *collector) certFindings(p string, cert *x509.Certificate) {
	subject := cert.Subject.String()
	if subject == "" {
		subject = "(empty subject)"
	}
	if bytes.Equal(cert.RawIssuer, cert.RawSubject) && cert.CheckSignatureFrom(cert) == nil {
		c.add(Finding{Rule: RuleCertSelfSigned, Severity: SeverityLow, Path: p,
			Evidence: "subject " + subject, Detail: "expires " + cert.NotAfter.UTC().Format(time.DateOnly)})
	}
	if now().After(cert.NotAfter) {
		c.add(Finding{Rule: RuleCertExpired, Severity: SeverityLow, Path: p,
			Evidence: fmt.Sprintf("subject %s, expired %s", subject, cert.NotAfter.UTC().Format(time.DateOnly))})
	}
	if algo, bits := keyAlgoBits(cert.PublicKey); weakKey(algo, bits) {
		c.add(Finding{Rule: RuleCertWeakKey, Severity: SeverityMedium, Path: p,
			Evidence: fmt.Sprintf("subject %s, %s %d-bit key", subject, algo, bits)})
	}
}

const awsKeyID = "AWS access key ID"

// Credential patterns found in any string of any file.
var credentialPatterns = []struct {
	name string
	hint string
	re   *regexp.Regexp
}{
	{awsKeyID, "A", regexp.MustCompile(`\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b`)},
	{"Google API key", "AIza", regexp.MustCompile(`\bAIza[0-9A-Za-z_\-]{35}\b`)},
	{"GitHub token", "_", regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{36}\b`)},
	{"Slack token", "xox", regexp.MustCompile(`\bxox[abposr]-[0-9A-Za-z-]{10,72}\b`)},
	{"Stripe live secret key", "sk_live_", regexp.MustCompile(`\bsk_live_[0-9a-zA-Z]{24,99}\b`)},
}

// awsSecretRE matches a 40-character AWS secret access key standing alone.
var awsSecretRE = regexp.MustCompile(`(?:^|[^A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?:$|[^A-Za-z0-9/+=])`)

// awsPairDistance is how many strings apart an AWS access key ID and a
// secret may be to be taken as a pair (unless the secret's string names
// itself a secret: aws_secret_access_key=...).
const awsPairDistance = 4

// awsSecret is a secret-key candidate seen in a file's strings.
type awsSecret struct {
	value string
	index int  // the number of the string it was found in
	named bool // its string says "secret"
}

// awsSecretCandidate reports whether v has the make-up of a secret access
// key: upper and lower case letters and digits, not hexadecimal (a SHA-1)
// nor a path.
func awsSecretCandidate(v string) bool {
	var upper, lower, digit bool
	for _, r := range v {
		upper = upper || r >= 'A' && r <= 'Z'
		lower = lower || r >= 'a' && r <= 'z'
		digit = digit || r >= '0' && r <= '9'
	}
	return upper && lower && digit && strings.Count(v, "/") < 4
}

func (sc *stringChecks) checkAWSSecret(s []byte) {
	if len(s) < 40 {
		return
	}
	named := bytes.Contains(bytes.ToLower(s), []byte("secret"))
	for _, m := range awsSecretRE.FindAllSubmatch(s, 4) {
		v := string(m[1])
		if !awsSecretCandidate(v) || strings.HasSuffix(v, "EXAMPLEKEY") {
			continue
		}
		if len(sc.awsSecrets) < 64 {
			sc.awsSecrets = append(sc.awsSecrets, awsSecret{value: v, index: sc.index, named: named})
		}
	}
}

// awsPairs turns the file's AWS access key IDs into findings: one "AWS key
// pair" for an ID with a secret beside it, else one "AWS access key ID".
func (sc *stringChecks) awsPairs() {
	for _, id := range sc.awsIDs {
		var pair *awsSecret
		for i := range sc.awsSecrets {
			sec := &sc.awsSecrets[i]
			d := sec.index - id.index
			if d < 0 {
				d = -d
			}
			if d <= awsPairDistance || sec.named {
				if pair == nil || sec.named && !pair.named {
					pair = sec
				}
			}
		}
		if pair == nil {
			sc.addFinding(Finding{Rule: RuleCloudCredential, Severity: SeverityHigh, Path: sc.path,
				Evidence: "AWS access key ID " + maskSecret(id.value)})
			continue
		}
		sc.addFinding(Finding{Rule: RuleCloudCredential, Severity: SeverityHigh, Path: sc.path,
			Evidence: "AWS key pair: access key ID " + maskSecret(id.value) + " with secret access key " + maskSecret(pair.value),
			Detail:   "an access key ID and its 40-character secret in the same file: anyone with the image can call AWS as this device"})
	}
}

func (sc *stringChecks) checkCredentials(s []byte) {
	sc.index++
	sc.checkAWSSecret(s)
	for _, p := range credentialPatterns {
		if !bytes.Contains(s, []byte(p.hint)) {
			continue
		}
		for _, m := range p.re.FindAll(s, 4) {
			v := string(m)
			if strings.HasSuffix(v, "EXAMPLE") {
				continue // the documentation key AKIAIOSFODNN7EXAMPLE and friends
			}
			if p.name == awsKeyID {
				if len(sc.awsIDs) < 16 {
					sc.awsIDs = append(sc.awsIDs, awsSecret{value: v, index: sc.index})
				}
				continue // reported by awsPairs, with its secret when there is one
			}
			sc.addFinding(Finding{Rule: RuleCloudCredential, Severity: SeverityHigh, Path: sc.path,
				Evidence: p.name + " " + maskSecret(v)})
		}
	}
}

// maskSecret keeps enough of a credential to find it again.
func maskSecret(v string) string {
	if len(v) <= 12 {
		return v[:min(4, len(v))] + "…"
	}
	return v[:8] + "…" + v[len(v)-4:]
}

var configPasswordRE = regexp.MustCompile(`(?i)(?:^|[\s"'<{,;])((?:[a-z0-9_.-]*[_.-])?(?:pass(?:word|wd)?|pwd|passphrase|secret))["']?\s*(?:[=:]|>)\s*["']?([^\s"'<>;,#}]{1,128})`)

// configExts are the file kinds checked for passwords in configuration.
var configExts = map[string]bool{".conf": true, ".cfg": true, ".ini": true, ".xml": true, ".json": true,
	".yml": true, ".yaml": true, ".properties": true, ".env": true, ".config": true, ".txt": true, "": true}

// checkConfigPasswords reports literal passwords in configuration files.
func (c *collector) checkConfigPasswords(f *fileView) {
	base := f.base()
	if !configExts[strings.ToLower(path.Ext(base))] || isAccountsName(base) || base == "nsswitch.conf" ||
		len(f.data) > 1<<20 || !isText(f.data) {
		return
	}
	if bytes.HasPrefix(f.data, []byte("#!")) {
		return // scripts: values are mostly variables and prompts
	}
	sc := bufio.NewScanner(bytes.NewReader(f.data))
	sc.Buffer(make([]byte, 0, maxConfigLine), maxConfigLine)
	lineNo := 0
	found := 0
	for sc.Scan() && found < 20 {
		lineNo++
		line := sc.Text()
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";") || strings.HasPrefix(t, "//") {
			continue
		}
		if !mentionsPassword(line) {
			continue
		}
		for _, m := range configPasswordRE.FindAllStringSubmatch(line, 4) {
			key, val := m[1], m[2]
			if placeholder(val) {
				continue
			}
			found++
			c.add(Finding{Rule: RuleConfigPassword, Severity: SeverityMedium, Path: f.path,
				Evidence: fmt.Sprintf("line %d: %s = %q", lineNo, key, val)})
		}
	}
}

// mentionsPassword is a cheap filter before configPasswordRE.
func mentionsPassword(line string) bool {
	for i := 0; i+3 <= len(line); i++ {
		switch line[i] | 0x20 {
		case 'p':
			if l := line[i+1] | 0x20; l == 'a' && line[i+2]|0x20 == 's' || l == 'w' && line[i+2]|0x20 == 'd' {
				return true
			}
		case 's':
			if i+6 <= len(line) && strings.EqualFold(line[i:i+6], "secret") {
				return true
			}
		}
	}
	return false
}

// placeholder reports values that are not literal passwords.
func placeholder(v string) bool {
	lv := strings.ToLower(v)
	switch {
	case strings.ContainsAny(v, "$%{}()[]\\"), strings.Trim(v, "*xX.-_0") == "",
		lv == "none", lv == "null", lv == "nil", lv == "true", lv == "false", lv == "yes", lv == "no",
		lv == "required", lv == "optional", lv == "enable", lv == "disable", lv == "on", lv == "off",
		lv == "file", lv == "string", lv == "text", lv == "password", lv == "passwd":
		return true
	}
	return false
}
