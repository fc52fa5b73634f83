package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/cordon-vms/cordon/proxy"
)

const proxyHashUsage = `usage: cordon proxy hash --user NAME < password

Reads a reader's password from the first line of standard input and prints
the password_hash lines for its entry under readers:, ready to paste:

  argon2id    checked only with Basic authentication; resists guessing.
  digest-md5  RFC 2617's HA1, md5(user:ipcam:password): the only stored form
              Digest can check (ffmpeg, GStreamer, VLC, MediaMTX recorders use
              Digest), and Basic too. It is password-equivalent for this realm
              (whoever reads it can log in as the user) and MD5 is quick to
              guess against: keep it as secret as the password itself.

Example:

	printf '%s\n' 's3cret' | cordon proxy hash --user nvr1
`

// runProxyHash is "cordon proxy hash".
func runProxyHash(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "proxy hash", proxyHashUsage)
	user := fs.String("user", "", "the reader's user `name` (the Digest hash binds it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" || fs.NArg() > 0 {
		return usagef("proxy hash: want --user NAME and the password on standard input")
	}
	line, err := bufio.NewReader(e.Stdin).ReadString('\n')
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		if err != nil {
			return usagef("proxy hash: no password on standard input")
		}
		return usagef("proxy hash: the password is empty")
	}
	fmt.Fprintf(e.Stdout, "# %s, Basic only (argon2id):\npassword_hash: %q\n", *user, proxy.Argon2idHash(pw))
	fmt.Fprintf(e.Stdout, "# %s, Digest and Basic (MD5 HA1 for realm ipcam; password-equivalent, keep it secret):\npassword_hash: %q\n",
		*user, proxy.DigestHash(*user, pw))
	return nil
}
