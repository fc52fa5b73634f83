package pem

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func TestCarve(t *testing.T) {
	for _, tt := range []struct {
		format    *firmware.Format
		file      string
		kind, key string
		encrypted bool
	}{
		{PEM, "pem-rsa-key.pem", "private key", "RSA", false},
		{PEM, "pem-ec-key.pem", "private key", "ECDSA P-256", false},
		{PEM, "pem-cert.pem", "certificate", "ECDSA P-256", false},
		{PEM, "pem-pubkey.pem", "public key", "ECDSA P-256", false},
		{PEM, "pem-encrypted-key.pem", "private key", "", true},
		{PEM, "pem-openssh-key.pem", "private key", "ssh-ed25519", false},
		{DER, "der-cert.der", "certificate", "ECDSA P-256", false},
		{DER, "der-rsa-key.der", "private key", "RSA", false},
	} {
		t.Run(tt.file, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, tt.file)
			img := append(append([]byte("\x00\x01garbage\n"), data...), "\x00trailing-----END junk"...)
			res, err := firmwaretest.Run(tt.format, img, 10)
			if err != nil || res.IdentifyErr != nil {
				t.Fatal(err, res.IdentifyErr)
			}
			c := res.Chunk
			if c.Size != int64(len(data)) || c.Confidence != firmware.ConfidenceHigh || c.Encrypted != tt.encrypted {
				t.Errorf("chunk %+v, want size %d", c, len(data))
			}
			if c.Meta["kind"] != tt.kind || tt.key != "" && c.Meta["key"] != tt.key {
				t.Errorf("meta %v", c.Meta)
			}
			if tt.kind == "certificate" && (c.Meta["subject"] != "CN=192.168.1.64,O=IPCam,C=CN" || c.Meta["self_signed"] != true) {
				t.Errorf("certificate meta %v", c.Meta)
			}
		})
	}
}

func TestOpenSSHKeyFields(t *testing.T) {
	d := openSSHKey([]byte("openssh-key-v1\x00\x00\x00\x00\x0aaes256-ctr\x00\x00\x00\x06bcrypt\x00\x00\x00\x00" +
		"\x00\x00\x00\x01\x00\x00\x00\x0b\x00\x00\x00\x07ssh-rsa"))
	if d == nil || d.meta["key"] != "ssh-rsa" || d.meta["encrypted"] != true {
		t.Errorf("encrypted OpenSSH key: %+v", d)
	}
	for _, b := range []string{"", "openssh-key-v1\x00", "openssh-key-v1\x00\xff\xff\xff\xff"} {
		if d := openSSHKey([]byte(b)); d != nil {
			t.Errorf("%q parsed: %+v", b, d)
		}
	}
}

func TestRejects(t *testing.T) {
	cert := firmwaretest.ReadFixture(t, "der-cert.der")
	noise := make([]byte, 70000)
	_, _ = rand.Read(noise)
	for name, tc := range map[string]struct {
		f    *firmware.Format
		data []byte
	}{
		"der corrupt":    {DER, append(bytes.Clone(cert[:100]), bytes.Repeat([]byte{0}, len(cert)-100)...)},
		"der truncated":  {DER, cert[:len(cert)-1]},
		"der noise":      {DER, append([]byte{0x30, 0x82, 0x10, 0x00, 0x30}, noise...)},
		"der short form": {DER, []byte{0x30, 0x81, 0x10, 0x30, 0, 0, 0, 0}},
		"pem no end":     {PEM, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n")},
		"pem bad base64": {PEM, []byte("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")},
		"pem open label": {PEM, append([]byte("-----BEGIN "), bytes.Repeat([]byte("A"), 200)...)},
		"pem ssh no end": {PEM, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n")},
	} {
		if _, err := tc.f.Identify(bytes.NewReader(tc.data), 0, int64(len(tc.data))); !errors.Is(err, firmware.ErrNotFormat) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzPEM(f *testing.F) { firmwaretest.Fuzz(f, PEM, firmwaretest.Fixtures(f, 0, "pem-*.pem")...) }

func FuzzDER(f *testing.F) { firmwaretest.Fuzz(f, DER, firmwaretest.Fixtures(f, 0, "der-*.der")...) }
