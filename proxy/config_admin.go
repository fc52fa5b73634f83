package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// AdminUser is an account of the admin listener (console, API, /metrics),
// checked with HTTP Basic. Only a hash is accepted, in the formats of
// Reader.PasswordHash: argon2id or bcrypt (make one with `cordon proxy
// hash`), or a $digest-md5$ HA1.
type AdminUser struct {
	User         string `yaml:"user"`
	PasswordHash string `yaml:"password_hash"`
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
func (c *Config) checkAdmin(add addFunc) {
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
