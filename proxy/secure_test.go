package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/internal/testutil"
)

// writeTestCert writes a self-signed certificate for 127.0.0.1.
func writeTestCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cordon test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// startRTSPSProxy starts a proxy that serves camsim's camera c1 as "s" over
// RTSP and RTSPS. It also returns the SHA-256 of its certificate.
func startRTSPSProxy(t *testing.T) (*Proxy, [sha256.Size]byte) {
	t.Helper()
	sim := startCamsim(t, "c1")
	log, _ := newLog(t)
	cfg := testConfig(Camera{Name: "s", URL: MustParseSecretURL(sim.URL("c1"))})
	cfg.Listen.RTSPS = "127.0.0.1:0"
	cfg.TLS.Cert, cfg.TLS.Key = writeTestCert(t)
	certPEM, err := os.ReadFile(cfg.TLS.Cert)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	return startProxy(t, cfg, log), sha256.Sum256(block.Bytes)
}

// TestRTSPS reads a camera over RTSPS (TLS, SRTP) while a plain RTSP reader
// reads the same camera.
func TestRTSPS(t *testing.T) {
	p, _ := startRTSPSProxy(t)

	plain := waitReader(t, "plain reader", 10*time.Second, readerURL(p, "s"))
	u, _ := base.ParseURL("rtsps://" + p.RTSPSAddr().String() + "/s")
	proto := gortsplib.ProtocolTCP
	cl := &gortsplib.Client{Scheme: "rtsps", Host: u.Host, Protocol: &proto, TLSConfig: &tls.Config{InsecureSkipVerify: true}}
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	desc, _, err := cl.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 1)
	n := 0
	cl.OnPacketRTPAny(func(_ *description.Media, _ format.Format, _ *rtp.Packet) {
		if n++; n == 20 {
			got <- struct{}{}
		}
	})
	if _, err := cl.Play(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no packets over RTSPS")
	}
	if plain.packets.Load() == 0 {
		t.Error("plain reader got nothing")
	}
	if tr := cl.Transport().Session.Profile; tr != headers.TransportProfileSAVP {
		t.Errorf("RTSPS transport profile = %v, want SAVP", tr)
	}
	// ffmpeg as an RTSPS reader (it does not verify certificates by default).
	testutil.NeedTool(t, "ffmpeg")
	out, err := runTool(t, 10*time.Second, "ffmpeg", "-nostdin", "-v", "error", "-i", "rtsps://"+p.RTSPSAddr().String()+"/s",
		"-frames:v", "10", "-f", "null", "-")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("ffmpeg over RTSPS: %v\n%s", err, out)
	}
}

// TestRTSPSBatched reads a camera over RTSPS with plain RTP inside TLS
// (profile AVP, as recorders without SRTP ask for it): the reader gets
// frame-batched output through its TLS connection, the packets arrive
// whole and in order, with sender reports, while an SRTP (SAVP) reader
// of the same camera keeps gortsplib's per-packet path.
func TestRTSPSBatched(t *testing.T) {
	p, _ := startRTSPSProxy(t)
	u, _ := base.ParseURL("rtsps://" + p.RTSPSAddr().String() + "/s")
	start := func(avp bool) (*gortsplib.Client, *atomic.Int64, *atomic.Int64) {
		proto := gortsplib.ProtocolTCP
		cl := &gortsplib.Client{Scheme: "rtsps", Host: u.Host, Protocol: &proto, TLSConfig: &tls.Config{InsecureSkipVerify: true}}
		if err := cl.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		desc, _, err := cl.Describe(u)
		if err != nil {
			t.Fatal(err)
		}
		if avp {
			for _, m := range desc.Medias {
				m.Profile = headers.TransportProfileAVP
			}
		}
		if err := cl.SetupAll(desc.BaseURL, desc.Medias); err != nil {
			t.Fatal(err)
		}
		var n, gaps atomic.Int64
		var last uint16
		cl.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
			if m.Type != description.MediaTypeVideo {
				return
			}
			if n.Add(1) > 1 && pkt.SequenceNumber != last+1 {
				gaps.Add(1)
			}
			last = pkt.SequenceNumber
		})
		if _, err := cl.Play(nil); err != nil {
			t.Fatal(err)
		}
		return cl, &n, &gaps
	}
	avp, avpN, avpGaps := start(true)
	_, savpN, _ := start(false)
	waitFor(t, "packets over RTSPS", 10*time.Second, func() bool { return avpN.Load() > 100 && savpN.Load() > 100 })
	if g := avpGaps.Load(); g != 0 {
		t.Errorf("AVP reader over RTSPS: %d sequence gaps", g)
	}
	if pr := avp.Transport().Session.Profile; pr != headers.TransportProfileAVP {
		t.Fatalf("profile = %v, want AVP", pr)
	}
	st := p.Status()
	if len(st) != 1 || len(st[0].Readers) != 2 {
		t.Fatalf("status = %+v", st)
	}
	batched := 0
	for _, r := range st[0].Readers {
		if r.Transport != "tcp+tls" {
			t.Errorf("reader transport %q, want tcp+tls", r.Transport)
		}
		if r.BatchedWrites {
			batched++
		}
	}
	if batched != 1 {
		t.Errorf("%d RTSPS readers use frame-batched writes, want 1 (the AVP one)", batched)
	}
	// The batched reader gets sender reports: its packets get wall-clock
	// times from them.
	waitFor(t, "a sender report for the AVP reader", 10*time.Second, func() bool {
		for _, m := range avp.Stats().Session.Medias {
			for _, f := range m.Formats {
				if !f.InboundRTPPacketsLastNTP.IsZero() {
					return true
				}
			}
		}
		return false
	})
}

// TestCameraSideBind checks that camera connections leave from camera_side.bind.
func TestCameraSideBind(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	from := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		from <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
	}()
	log, lb := newLog(t)
	cfg := testConfig(Camera{Name: "b", URL: MustParseSecretURL("rtsp://u:p@" + ln.Addr().String() + "/x")})
	cfg.CameraSide.Bind = "127.0.0.2"
	startProxy(t, cfg, log)
	// Both legs on lo: said at start.
	if !strings.Contains(lb.String(), `and camera_side.bind 127.0.0.2 are on the same interface`) {
		t.Errorf("no warning about one leg for both networks in the log:\n%s", lb)
	}
	cfg.CameraSide.Bind = "203.0.113.77"
	if _, err := New(cfg, log); err != nil {
		t.Fatalf("New checks no host address: %v", err)
	}
	p, _ := New(cfg, log)
	if err := p.Start(); err == nil || !strings.HasPrefix(err.Error(), "proxy: camera_side.bind 203.0.113.77 is not an address of this host") {
		t.Errorf("Start with a foreign camera_side.bind: %v", err)
	}
	select {
	case ip := <-from:
		if ip != "127.0.0.2" {
			t.Errorf("camera connection came from %s, want 127.0.0.2", ip)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not connect to the camera")
	}
}

// TestRTSPSCamera pulls a camera over RTSPS (TLS over the read-ahead camera
// connection, SRTP inside): one proxy serves camsim over RTSPS, a second
// proxy pulls that as its camera and a reader plays the second. Without
// tls_fingerprint the certificate seen is logged; with the right one the
// camera plays; with another it is refused.
func TestRTSPSCamera(t *testing.T) {
	a, fp := startRTSPSProxy(t)
	url := MustParseSecretURL("rtsps://" + a.RTSPSAddr().String() + "/s")
	openssl := formatFingerprint(fp) // "sha256:AB:CD:...", as openssl prints it

	t.Run("unpinned", func(t *testing.T) {
		log, lb := newLog(t)
		b := startProxy(t, testConfig(Camera{Name: "tls", URL: url, Transport: TransportTCP}), log)
		r := waitReader(t, "reader of the RTSPS camera", 15*time.Second, readerURL(b, "tls"))
		waitFor(t, "packets through TLS", 10*time.Second, func() bool { return r.packets.Load() > 100 })
		if !strings.Contains(lb.String(), "not verified") || !strings.Contains(lb.String(), openssl) {
			t.Errorf("the log does not name the unverified certificate %s", openssl)
		}
	})
	t.Run("pinned", func(t *testing.T) {
		log, _ := newLog(t)
		b := startProxy(t, testConfig(Camera{Name: "tls", URL: url, Transport: TransportTCP, TLSFingerprint: strings.TrimPrefix(openssl, "sha256:")}), log)
		r := waitReader(t, "reader of the pinned RTSPS camera", 15*time.Second, readerURL(b, "tls"))
		waitFor(t, "packets through TLS", 10*time.Second, func() bool { return r.packets.Load() > 100 })
	})
	t.Run("wrong pin", func(t *testing.T) {
		log, _ := newLog(t)
		other := fp
		other[0] ^= 1
		b := startProxy(t, testConfig(Camera{Name: "tls", URL: url, Transport: TransportTCP, TLSFingerprint: hex.EncodeToString(other[:])}), log)
		waitFor(t, "the camera refused", 10*time.Second, func() bool {
			return strings.Contains(b.Status()[0].LastError, "does not match tls_fingerprint")
		})
		if st := b.Status()[0]; st.State == stateUp || st.PacketsIn != 0 {
			t.Errorf("camera with a wrong pin: state %s, %d packets in", st.State, st.PacketsIn)
		}
	})
}
