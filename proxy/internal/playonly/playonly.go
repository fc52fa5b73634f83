// Package playonly is a gortsplib server handler that serves existing
// streams, by path, to readers: DESCRIBE, SETUP and PLAY. It implements no
// ANNOUNCE or RECORD handler, so gortsplib refuses publishing. camsim and
// the benchmark's plain pass-through baseline serve their streams with it.
package playonly

import (
	"strings"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
)

// Handler answers readers with the stream Lookup returns for the request
// path, without its leading and trailing slashes; a nil stream is 404.
type Handler struct {
	Lookup func(path string) *gortsplib.ServerStream
	// OnUnknown, if set, is told of a DESCRIBE for a path with no stream.
	OnUnknown func(path string)
	// User and Password, when User is set, are the credentials readers
	// must send (Basic or Digest) with DESCRIBE and SETUP; others get 401.
	User, Password string
}

// authorized reports whether the request carries the credentials, if any
// are required; otherwise gortsplib answers 401 (with a challenge when the
// request had no credentials).
func (h *Handler) authorized(sc *gortsplib.ServerConn, req *base.Request) bool {
	return h.User == "" || sc.VerifyCredentials(req, h.User, h.Password)
}

func (h *Handler) stream(path string) *gortsplib.ServerStream {
	return h.Lookup(strings.Trim(path, "/"))
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (h *Handler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if !h.authorized(ctx.Conn, ctx.Request) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, nil, liberrors.ErrServerAuth{}
	}
	st := h.stream(ctx.Path)
	if st == nil {
		if h.OnUnknown != nil {
			h.OnUnknown(ctx.Path)
		}
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, st, nil
}

// OnSetup implements gortsplib.ServerHandlerOnSetup.
func (h *Handler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if !h.authorized(ctx.Conn, ctx.Request) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, nil, liberrors.ErrServerAuth{}
	}
	st := h.stream(ctx.Path)
	if st == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, st, nil
}

// OnPlay implements gortsplib.ServerHandlerOnPlay.
func (h *Handler) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

var (
	_ gortsplib.ServerHandlerOnDescribe = (*Handler)(nil)
	_ gortsplib.ServerHandlerOnSetup    = (*Handler)(nil)
	_ gortsplib.ServerHandlerOnPlay     = (*Handler)(nil)
)
