package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// trunkALPN is the protocol a trunk's QUIC connection negotiates; a peer
// that speaks anything else is refused in the handshake.
const trunkALPN = "cordon-trunk/1"

// Trunk key files written by GenerateTrunkKey, in its directory.
const (
	TrunkCertFile = "trunk.crt"
	TrunkKeyFile  = "trunk.key"
)

// GenerateTrunkKey writes a new ECDSA P-256 key (TrunkKeyFile, mode 0600)
// and a self-signed certificate for it (TrunkCertFile) into dir, which
// must exist, and returns the certificate's SHA-256 fingerprint, the value
// the other end pins (trunk.peers on an edge, trunks[].fingerprint on a
// core). Existing files are not overwritten.
func GenerateTrunkKey(dir, commonName string) (fingerprint string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("trunk keygen: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", fmt.Errorf("trunk keygen: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(20, 0, 0), // pinned, not chained: expiry would only cut the link
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", fmt.Errorf("trunk keygen: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("trunk keygen: %w", err)
	}
	keyPath, certPath := filepath.Join(dir, TrunkKeyFile), filepath.Join(dir, TrunkCertFile)
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", err
	}
	if err := writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		os.Remove(keyPath)
		return "", err
	}
	return formatFingerprint(sha256.Sum256(der)), nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("trunk keygen: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("trunk keygen: %w", err)
	}
	return f.Close()
}

// errTrunkNoCert is a peer that sent no certificate.
var errTrunkNoCert = errors.New("trunk: peer sent no certificate")
