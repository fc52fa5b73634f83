// Package logging builds the structured loggers (log/slog) that cordon's
// services are given. Nothing in cordon logs through a global logger.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Options select the log level and format. The zero value logs at info level as text.
type Options struct {
	// Level is debug, info, warn or error. It defaults to info.
	Level string
	// Format is text or json. It defaults to text.
	Format string
}

// New returns a logger writing to w.
func New(w io.Writer, o Options) (*slog.Logger, error) {
	var lvl slog.Level
	switch strings.ToLower(o.Level) {
	case "", "info":
		lvl = slog.LevelInfo
	case "debug":
		lvl = slog.LevelDebug
	case "warn", "warning":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", o.Level)
	}
	ho := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(o.Format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", o.Format)
	}
}

// Discard returns a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
