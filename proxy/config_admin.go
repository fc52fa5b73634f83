package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// AdminUser is an account of the admin listener (console, API, /metrics),
// checked with HTTP Basic. Only a hash is accepted, in the formats of
// Reader.PasswordHash: argon2id or bcrypt (make one with `cordon proxy
// hash`), or a $digest-md5$ HA1.
type AdminUser struct {
	User         string `yaml:"user"`
	PasswordHash string `yaml:"password_hash"`
	// Cameras limits the cameras this account may preview and act on
	// (reconnect), as readers' cameras do: names, or "*". Empty: every
	// camera. The console and API list every camera to every account.
	Cameras []string `yaml:"cameras"`
}

// adminOffLoopback reports whether listen.admin is an address off
// loopback (every interface included), where the console and API need
// credentials. "off" and addresses that do not parse (reported as such)
// are not.
func adminOffLoopback(addr string) bool {
	if addr == "off" {
		return false
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && !a.Unmap().IsLoopback()
}

// checkAdmin checks admin_users, and refuses an admin listener off
// loopback without them (as readers refuse anonymous reading unless
// allow_anonymous says so): the console and API show every camera.
func (c *Config) checkAdmin(add addFunc, names map[string]int) {
	users := map[string]int{}
	for i, u := range c.AdminUsers {
		key := fmt.Sprintf("admin_users[%d]", i)
		where := key
		if u.User != "" {
			where += " (" + u.User + ")"
		}
		switch {
		case u.User == "":
			add(key, "%s: user is missing", where)
		case strings.ContainsAny(u.User, ":\"") || strings.ContainsFunc(u.User, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			add(key+".user", "%s: user may not contain ':', '\"' or control characters", where)
		default:
			if j, dup := users[u.User]; dup {
				add(key+".user", "%s: user %q is already defined by admin_users[%d]", where, u.User, j)
			}
			users[u.User] = i
		}
		for j, name := range u.Cameras {
			if _, ok := names[name]; !ok && name != "*" && !trunkCovers(names, name) {
				add(fmt.Sprintf("%s.cameras[%d]", key, j), "%s: camera %q is not defined under cameras", where, name)
			}
		}
		if u.PasswordHash == "" {
			add(key+".password_hash", "%s: password_hash is missing; make one with: cordon proxy hash", where)
		} else if _, err := parseHash(u.PasswordHash); err != nil {
			add(key+".password_hash", "%s: password_hash: %v", where, err)
		}
	}
	admin := c.Listen.Admin
	if admin == "" {
		admin = defaultAdmin
	}
	if len(c.AdminUsers) == 0 && adminOffLoopback(admin) {
		add("listen.admin", "listen.admin %q is not a loopback address and admin_users is empty, so anyone who reaches it could read the console and API; "+
			"add admin_users (user and password_hash, from cordon proxy hash), or listen on 127.0.0.1", admin)
	}
}

// Preview configures the console's live preview of a camera (WebRTC,
// negotiated WHEP-style on the admin listener; docs/console.md). Its ICE
// candidates are host candidates on listen.admin's address only; no STUN
// or TURN server is contacted.
type Preview struct {
	// Off disables the preview (the console shows no picture).
	Off bool `yaml:"off"`
	// UDPPort is one UDP port, on listen.admin's address, that carries
	// every preview's media (ICE UDP mux): the one port to open in a
	// firewall. 0 (the default) uses UDPPortMin..UDPPortMax, or else an
	// ephemeral port per preview.
	UDPPort int `yaml:"udp_port"`
	// UDPPortMin and UDPPortMax bound the ports of previews when UDPPort
	// is 0 (both or neither).
	UDPPortMin int `yaml:"udp_port_min"`
	UDPPortMax int `yaml:"udp_port_max"`
	// MaxSessions bounds the previews running at once, all cameras
	// together. It defaults to 8.
	MaxSessions int `yaml:"max_sessions"`
	// IdleTimeout is how long a preview may go without an answer from the
	// browser (ICE consent checks, sent every second) before it is closed,
	// and how long a new preview has to connect. It defaults to 10 s
	// (between 2 s and 5 min).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// checkPreview checks preview and admin_tls.
func (c *Config) checkPreview(add addFunc) {
	pv := c.Preview
	port := func(key string, v int) {
		if v < 0 || v > 65535 {
			add(key, "%s %d is not a port (1-65535)", key, v)
		}
	}
	port("preview.udp_port", pv.UDPPort)
	port("preview.udp_port_min", pv.UDPPortMin)
	port("preview.udp_port_max", pv.UDPPortMax)
	switch {
	case (pv.UDPPortMin == 0) != (pv.UDPPortMax == 0):
		add("preview.udp_port_min", "preview.udp_port_min and udp_port_max go together (a range of UDP ports)")
	case pv.UDPPortMin > pv.UDPPortMax:
		add("preview.udp_port_min", "preview.udp_port_min %d is above udp_port_max %d", pv.UDPPortMin, pv.UDPPortMax)
	case pv.UDPPort != 0 && pv.UDPPortMin != 0:
		add("preview.udp_port", "preview.udp_port (one port for every preview) and udp_port_min/max (a range) exclude each other")
	}
	if pv.MaxSessions < 0 {
		add("preview.max_sessions", "preview.max_sessions %d is negative", pv.MaxSessions)
	}
	if pv.IdleTimeout != 0 && (pv.IdleTimeout < 2*time.Second || pv.IdleTimeout > 5*time.Minute) {
		add("preview.idle_timeout", "preview.idle_timeout %s is out of range (2s to 5m)", pv.IdleTimeout)
	}
	if (c.AdminTLS.Cert == "") != (c.AdminTLS.Key == "") {
		add("admin_tls", "admin_tls needs both cert and key")
	}
	if c.AdminTLS.Cert != "" && c.Listen.Admin == "off" {
		add("admin_tls", "admin_tls is set but listen.admin is off")
	}
}

// checkAdminTLSFiles checks that admin_tls's files load (Check only).
func (c *Config) checkAdminTLSFiles(ps *problems) {
	if c.AdminTLS.Cert == "" || c.AdminTLS.Key == "" {
		return
	}
	if _, err := loadAdminCert(c.AdminTLS); err != nil {
		ps.add("admin_tls.cert", "%v", err)
	}
}

// loadAdminCert loads admin_tls's certificate and key.
func loadAdminCert(t TLS) (tls.Certificate, error) {
	cert, err := os.ReadFile(t.Cert)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("admin_tls.cert %q: %v", t.Cert, pathErr(err))
	}
	key, err := os.ReadFile(t.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("admin_tls.key %q: %v", t.Key, pathErr(err))
	}
	c, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("admin_tls.cert/admin_tls.key: %v", err)
	}
	return c, nil
}
