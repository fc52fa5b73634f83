package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrunkKeygen: the key pair loads, the printed fingerprint is the
// certificate's SHA-256 in the camera tls_fingerprint format, and a second
// run does not overwrite the files.
func TestTrunkKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "edge")
	var out, errb bytes.Buffer
	if code := Main([]string{"trunk", "keygen", "-o", dir}, nil, &out, &errb); code != 0 {
		t.Fatalf("trunk keygen: %d %s", code, errb.String())
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "trunk.crt"), filepath.Join(dir, "trunk.key"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	var want strings.Builder
	want.WriteString("fingerprint: sha256:")
	for i, b := range sum {
		if i > 0 {
			want.WriteByte(':')
		}
		fmt.Fprintf(&want, "%02X", b)
	}
	if !strings.Contains(out.String(), want.String()+"\n") {
		t.Errorf("output %q lacks %q", out.String(), want.String())
	}
	errb.Reset()
	if code := Main([]string{"trunk", "keygen", "-o", dir}, nil, &out, &errb); code != exitFailure || !strings.Contains(errb.String(), "exists") {
		t.Errorf("second keygen into the same directory: exit %d, %q; want a refusal to overwrite", code, errb.String())
	}
	if code := Main([]string{"trunk", "keygen"}, nil, &out, &errb); code != exitUsage {
		t.Errorf("keygen without -o: exit %d, want %d", code, exitUsage)
	}
}
