package proxy

import (
	"errors"
	"fmt"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
)

// Lockout-safe retries. Hikvision, Dahua and others lock an account (or
// the client's address) for a while after a few failed logins, so a proxy
// that retries a camera refusing its credentials on the usual backoff locks
// the site out of its own camera — for the recorders that log in directly
// too. A session that ends with 401 Unauthorized or 403 Forbidden is an
// authentication failure: the camera's state is auth_failed, the log says
// to check the credentials, and the next attempt waits
// Timeouts.AuthFailureBackoff (10 minutes by default), one failed login per
// wait. A reload that changes the camera (its url, say) restarts it at once.

// authError is a camera's refusal of the proxy's credentials.
type authError struct {
	code base.StatusCode
	err  error
}

func (e *authError) Error() string {
	return fmt.Sprintf("camera refused the credentials (%d %s); check the user and password in the camera's url",
		int(e.code), base.StatusMessages[e.code])
}

func (e *authError) Unwrap() error { return e.err }

// asAuthError returns err as an *authError when the camera answered a
// request with 401 or 403, and err unchanged otherwise.
func asAuthError(err error) error {
	var bad liberrors.ErrClientBadStatusCode
	if errors.As(err, &bad) && (bad.Code == base.StatusUnauthorized || bad.Code == base.StatusForbidden) {
		return &authError{code: bad.Code, err: err}
	}
	return err
}
