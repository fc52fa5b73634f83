package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// trunkALPNEdge is the protocol an edge offers when it dials a core
// (trunk.dial, for edges behind NAT). The roles stay those of trunkALPN:
// the core opens the streams and asks, the edge answers; only the QUIC
// client and server are swapped. A listener tells the two apart by the
// protocol the client offers, and checks each against its own list of
// peers.
const trunkALPNEdge = "cordon-trunk-edge/1"

// errTrunkUntrusted is a peer certificate that is neither pinned nor
// issued by trunk.ca for an allowed name.
var errTrunkUntrusted = errors.New("trunk: peer certificate not trusted")

// trunkTrust is whom one end of a trunk accepts: certificates pinned by
// their SHA-256 fingerprint, and, with a CA (trunk.ca), certificates that
// chain to it and hold one of names (a DNS name of the certificate).
type trunkTrust struct {
	pins  [][sha256.Size]byte
	roots *x509.CertPool // nil: pins only
	names []string
}

// check verifies a peer's certificate chain (leaf first) and says why it
// is refused.
func (tr *trunkTrust) check(certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return errTrunkNoCert
	}
	if tr == nil {
		return fmt.Errorf("%w: no peer is configured for this role", errTrunkUntrusted)
	}
	leaf := certs[0]
	seen := sha256.Sum256(leaf.Raw)
	for _, p := range tr.pins {
		if subtle.ConstantTimeCompare(seen[:], p[:]) == 1 {
			return nil
		}
	}
	if tr.roots == nil || len(tr.names) == 0 {
		return fmt.Errorf("%w: certificate not pinned", errTrunkUntrusted)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: tr.roots, Intermediates: inter, CurrentTime: time.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("%w: certificate not pinned, and not issued by trunk.ca: %v", errTrunkUntrusted, err)
	}
	for _, n := range tr.names {
		if leaf.VerifyHostname(n) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: certificate issued by trunk.ca for %q, not for an allowed name %q", errTrunkUntrusted, leaf.DNSNames, tr.names)
}

// verify returns a tls.Config.VerifyConnection function that checks the
// peer with trust (read at each handshake, so that a reload applies to
// the next one) and logs a refusal at error level with the fingerprint
// seen. VerifyConnection, unlike VerifyPeerCertificate, also runs on a
// resumed (0-RTT) session, whose certificates come from the ticket.
func trunkVerifier(trust func(cs tls.ConnectionState) *trunkTrust, log *slog.Logger, who string, refused *atomic.Uint64) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		err := trust(cs).check(cs.PeerCertificates)
		if err == nil {
			return nil
		}
		if refused != nil {
			refused.Add(1)
		}
		fp := "none"
		if len(cs.PeerCertificates) > 0 {
			fp = formatFingerprint(sha256.Sum256(cs.PeerCertificates[0].Raw))
		}
		msg := "trunk peer refused: certificate not pinned"
		switch {
		case errors.Is(err, errTrunkNoCert):
			msg = "trunk peer refused: no certificate"
		case trust(cs) != nil && trust(cs).roots != nil:
			msg = "trunk peer refused: certificate not trusted"
		}
		log.Error(msg, "peer", who, "fingerprint", fp, "protocol", cs.NegotiatedProtocol, "reason", err)
		return err
	}
}

// trunkClientTLS is the TLS configuration of the end that dials: its own
// certificate, the protocol of its role, and the peer checked by trust.
// Sessions are cached (cache) for resumption and 0-RTT on the next dial.
func trunkClientTLS(cert tls.Certificate, proto string, trust *trunkTrust, cache tls.ClientSessionCache, log *slog.Logger, who string) *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{cert},
		NextProtos:         []string{proto},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection (pins or trunk.ca and a name)
		VerifyConnection:   trunkVerifier(func(tls.ConnectionState) *trunkTrust { return trust }, log, who, nil),
		ClientSessionCache: cache,
	}
}

// loadTrunkCA reads trunk.ca (PEM certificates); nil when path is empty.
func loadTrunkCA(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trunk.ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("trunk.ca %s: no PEM certificate in the file", path)
	}
	return pool, nil
}

// peersTrust is whom an edge accepts as a core: trunk.peers, whose
// entries are fingerprints or, with trunk.ca, certificate names.
func peersTrust(t TrunkEnd, roots *x509.CertPool) *trunkTrust {
	tr := &trunkTrust{roots: roots}
	for _, p := range t.Peers {
		if fp, err := parseFingerprint(p); err == nil {
			if !slices.Contains(tr.pins, fp) {
				tr.pins = append(tr.pins, fp)
			}
		} else if roots != nil {
			tr.names = append(tr.names, p)
		}
	}
	return tr
}

// trunkTrustOf is whom a core accepts as trunk tr's edge: its
// fingerprint, or with trunk.ca its peer_name (the trunk's name by
// default).
func trunkTrustOf(tr Trunk, roots *x509.CertPool) *trunkTrust {
	if tr.Fingerprint != "" {
		return &trunkTrust{pins: trunkPins(tr.Fingerprint)}
	}
	return &trunkTrust{roots: roots, names: []string{tr.peerName()}}
}

// peerName is the name trunk.ca must have issued the edge's certificate
// for when the trunk has no fingerprint.
func (tr Trunk) peerName() string {
	if tr.PeerName != "" {
		return tr.PeerName
	}
	return tr.Name
}

// edgesTrust is whom a core's trunk.listen accepts as a dialing edge: the
// edges of its trunks with dialer "edge".
func edgesTrust(trunks []Trunk, roots *x509.CertPool) *trunkTrust {
	out := &trunkTrust{roots: roots}
	for _, tr := range trunks {
		if tr.Dialer != TrunkDialerEdge {
			continue
		}
		t := trunkTrustOf(tr, roots)
		out.pins = append(out.pins, t.pins...)
		out.names = append(out.names, t.names...)
	}
	return out
}

// sameIdentity reports whether two trunks' edges would present the same
// certificate (same pin or same name).
func (tr *trunkTrust) sameIdentity(o *trunkTrust) bool {
	for _, p := range tr.pins {
		if slices.Contains(o.pins, p) {
			return true
		}
	}
	for _, n := range tr.names {
		if slices.Contains(o.names, n) {
			return true
		}
	}
	return false
}
