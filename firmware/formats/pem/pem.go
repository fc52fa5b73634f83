// Package pem carves keys and certificates out of images: PEM blocks
// ("-----BEGIN ...-----" to the matching END line) and DER structures found by
// their ASN.1 SEQUENCE header and accepted only when they parse as an X.509
// certificate, a PKCS#8, PKCS#1 or SEC 1 private key, or a PKIX public key.
// Nothing is extracted; the kind, algorithm and certificate names go in
// Chunk.Meta (a private key shipped in firmware is a finding for inspect).
package pem

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cordon-vms/cordon/firmware"
)

const (
	// maxPEM bounds the bytes searched for a block's END line.
	maxPEM = 256 << 10
	// maxLabel bounds the label of a BEGIN line.
	maxLabel = 64
)

// PEM declares PEM-encoded keys and certificates.
var PEM = &firmware.Format{
	Name: "pem",
	Kind: firmware.KindCarve,
	Doc: "PEM block (-----BEGIN ...-----): certificates, private and public keys, carved from BEGIN to the " +
		"matching END line and decoded. Reports the kind, key algorithm and size, certificate subject, issuer " +
		"and validity, and whether a private key is encrypted.",
	Magics:   []firmware.Magic{{Bytes: []byte("-----BEGIN ")}},
	Identify: identifyPEM,
	Opaque:   true,
}

// DER declares DER-encoded keys and certificates.
var DER = &firmware.Format{
	Name: "der",
	Kind: firmware.KindCarve,
	Doc: "DER certificate or key: an ASN.1 SEQUENCE (30 81 / 30 82) whose length fits and whose content " +
		"parses as an X.509 certificate, a PKCS#8, PKCS#1 or SEC 1 private key or a PKIX public key. " +
		"Reported like PEM blocks.",
	Magics:   []firmware.Magic{{Bytes: []byte{0x30, 0x82}}, {Bytes: []byte{0x30, 0x81}}},
	Identify: identifyDER,
	Opaque:   true,
}

func identifyPEM(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	n := min(int64(maxPEM), size-off)
	if n < int64(len("-----BEGIN ")) {
		return nil, fmt.Errorf("pem: %d bytes left: %w", size-off, firmware.ErrNotFormat)
	}
	buf := make([]byte, n)
	m, err := r.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("pem: %w", err)
	}
	buf = buf[:m]
	const begin = "-----BEGIN "
	if !bytes.HasPrefix(buf, []byte(begin)) {
		return nil, fmt.Errorf("pem: no BEGIN line: %w", firmware.ErrNotFormat)
	}
	rest := buf[len(begin):]
	i := bytes.Index(rest[:min(len(rest), maxLabel+5)], []byte("-----"))
	if i < 0 {
		return nil, fmt.Errorf("pem: BEGIN line not closed: %w", firmware.ErrNotFormat)
	}
	label := string(rest[:i])
	endLine := []byte("-----END " + label + "-----")
	j := bytes.Index(buf, endLine)
	if j < 0 {
		return nil, fmt.Errorf("pem: no END line for %q within %d bytes: %w", label, len(buf), firmware.ErrNotFormat)
	}
	end := j + len(endLine)
	if end < len(buf) && buf[end] == '\r' {
		end++
	}
	if end < len(buf) && buf[end] == '\n' {
		end++
	}
	block, _ := pem.Decode(buf[:end])
	if block == nil {
		return nil, fmt.Errorf("pem: %q block does not decode: %w", label, firmware.ErrNotFormat)
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       int64(end),
		Format:     "pem",
		Confidence: firmware.ConfidenceHigh,
		Meta:       map[string]any{"label": block.Type},
	}
	if block.Headers["Proc-Type"] == "4,ENCRYPTED" || block.Type == "ENCRYPTED PRIVATE KEY" {
		c.Encrypted = true
		c.Meta["kind"] = "private key"
		c.Meta["encrypted"] = true
		c.Desc = fmt.Sprintf("PEM %s (encrypted)", block.Type)
		return c, nil
	}
	d := describe(block.Bytes, block.Type)
	if d == nil && block.Type == "OPENSSH PRIVATE KEY" {
		d = openSSHKey(block.Bytes)
	}
	if d != nil {
		for k, v := range d.meta {
			c.Meta[k] = v
		}
		c.Desc = "PEM " + d.desc
		if d.meta["encrypted"] == true {
			c.Encrypted = true
		}
	} else if strings.Contains(block.Type, "PRIVATE KEY") {
		// DSA, OpenSSH variants and others: still a private key.
		c.Confidence = firmware.ConfidenceMedium
		c.Meta["kind"] = "private key"
		c.Desc = fmt.Sprintf("PEM %s (%d bytes, content not parsed)", block.Type, len(block.Bytes))
	} else {
		c.Confidence = firmware.ConfidenceMedium
		c.Desc = fmt.Sprintf("PEM %s (%d bytes, content not parsed)", block.Type, len(block.Bytes))
	}
	return c, nil
}

func identifyDER(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	var h [7]byte
	if size-off < int64(len(h)) {
		return nil, fmt.Errorf("der: %w", firmware.ErrNotFormat)
	}
	if _, err := r.ReadAt(h[:], off); err != nil {
		return nil, fmt.Errorf("der: %w", err)
	}
	var total, hl int64
	switch {
	case h[0] == 0x30 && h[1] == 0x82:
		total, hl = int64(h[2])<<8|int64(h[3]), 4
		if total < 0x100 {
			return nil, fmt.Errorf("der: non-minimal length: %w", firmware.ErrNotFormat)
		}
	case h[0] == 0x30 && h[1] == 0x81:
		total, hl = int64(h[2]), 3
		if total < 0x80 {
			return nil, fmt.Errorf("der: non-minimal length: %w", firmware.ErrNotFormat)
		}
	default:
		return nil, fmt.Errorf("der: not a SEQUENCE: %w", firmware.ErrNotFormat)
	}
	// Cheap filter before parsing: the content starts with a SEQUENCE
	// (certificate, public key) or a small INTEGER version (private keys).
	in := h[hl:]
	if in[0] != 0x30 && !(in[0] == 0x02 && in[1] == 0x01 && in[2] <= 1) {
		return nil, fmt.Errorf("der: content is not a key or certificate: %w", firmware.ErrNotFormat)
	}
	total += hl
	if total > size-off {
		return nil, fmt.Errorf("der: %d bytes, %d present: %w", total, size-off, firmware.ErrNotFormat)
	}
	b := make([]byte, total)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("der: %w", err)
	}
	d := describe(b, "")
	if d == nil {
		return nil, fmt.Errorf("der: does not parse as a key or certificate: %w", firmware.ErrNotFormat)
	}
	return &firmware.Chunk{
		Offset:     off,
		Size:       total,
		Format:     "der",
		Desc:       "DER " + d.desc,
		Confidence: firmware.ConfidenceHigh,
		Meta:       d.meta,
	}, nil
}

type description struct {
	desc string
	meta map[string]any
}

// describe parses der as what label says, or as anything it can be when
// label is empty or unknown.
func describe(der []byte, label string) *description {
	try := map[string]func() *description{
		"CERTIFICATE": func() *description {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil
			}
			alg, bits := keyInfo(cert.PublicKey)
			return &description{
				desc: fmt.Sprintf("certificate %q issued by %q, %s", cert.Subject.String(), cert.Issuer.String(), alg),
				meta: map[string]any{
					"kind":        "certificate",
					"subject":     cert.Subject.String(),
					"issuer":      cert.Issuer.String(),
					"serial":      cert.SerialNumber.String(),
					"not_before":  cert.NotBefore.UTC().Format(time.RFC3339),
					"not_after":   cert.NotAfter.UTC().Format(time.RFC3339),
					"key":         alg,
					"key_bits":    bits,
					"self_signed": bytes.Equal(cert.RawSubject, cert.RawIssuer),
					"is_ca":       cert.IsCA,
				},
			}
		},
		"PRIVATE KEY": func() *description {
			k, err := x509.ParsePKCS8PrivateKey(der)
			if err != nil {
				return nil
			}
			return privateKey(k, "PKCS#8")
		},
		"RSA PRIVATE KEY": func() *description {
			k, err := x509.ParsePKCS1PrivateKey(der)
			if err != nil {
				return nil
			}
			return privateKey(k, "PKCS#1")
		},
		"EC PRIVATE KEY": func() *description {
			k, err := x509.ParseECPrivateKey(der)
			if err != nil {
				return nil
			}
			return privateKey(k, "SEC 1")
		},
		"PUBLIC KEY": func() *description {
			k, err := x509.ParsePKIXPublicKey(der)
			if err != nil {
				return nil
			}
			alg, bits := keyInfo(k)
			return &description{desc: fmt.Sprintf("%s public key", alg), meta: map[string]any{"kind": "public key", "key": alg, "key_bits": bits}}
		},
		"RSA PUBLIC KEY": func() *description {
			k, err := x509.ParsePKCS1PublicKey(der)
			if err != nil {
				return nil
			}
			alg, bits := keyInfo(k)
			return &description{desc: fmt.Sprintf("%s public key", alg), meta: map[string]any{"kind": "public key", "key": alg, "key_bits": bits}}
		},
	}
	if f, ok := try[label]; ok {
		return f()
	}
	for _, l := range []string{"CERTIFICATE", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "PUBLIC KEY", "RSA PUBLIC KEY"} {
		if d := try[l](); d != nil {
			return d
		}
	}
	return nil
}

func privateKey(k any, encoding string) *description {
	var pub any
	switch k := k.(type) {
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	case ed25519.PrivateKey:
		pub = k.Public()
	}
	alg, bits := keyInfo(pub)
	return &description{
		desc: fmt.Sprintf("%s private key (%s)", alg, encoding),
		meta: map[string]any{"kind": "private key", "key": alg, "key_bits": bits, "encoding": encoding},
	}
}

func keyInfo(pub any) (string, int) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen()
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name, k.Curve.Params().BitSize
	case ed25519.PublicKey:
		return "Ed25519", 256
	}
	return fmt.Sprintf("%T", pub), 0
}

// openSSHKey reads the public header of an "openssh-key-v1" private key: the
// cipher (none when unencrypted) and the key type of the first public key.
func openSSHKey(b []byte) *description {
	const magic = "openssh-key-v1\x00"
	if !bytes.HasPrefix(b, []byte(magic)) {
		return nil
	}
	b = b[len(magic):]
	str := func() ([]byte, bool) {
		if len(b) < 4 {
			return nil, false
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) {
			return nil, false
		}
		s := b[4 : 4+n]
		b = b[4+n:]
		return s, true
	}
	cipher, ok1 := str()
	_, ok2 := str() // kdf name
	_, ok3 := str() // kdf options
	if !ok1 || !ok2 || !ok3 || len(b) < 4 {
		return nil
	}
	b = b[4:] // number of keys
	pub, ok := str()
	if !ok {
		return nil
	}
	b = pub
	alg, ok := str()
	if !ok {
		return nil
	}
	meta := map[string]any{"kind": "private key", "key": string(alg), "encoding": "OpenSSH"}
	desc := fmt.Sprintf("OpenSSH %s private key", alg)
	if string(cipher) != "none" {
		meta["encrypted"] = true
		desc += fmt.Sprintf(" (encrypted, %s)", cipher)
	}
	return &description{desc: desc, meta: meta}
}
