package firmware

import (
	"encoding/json"
	"log/slog"
	"runtime"
	"time"
)

// Limits bound what an unpack may do. A zero field takes its default; a
// negative field (or, for MaxRatio, a negative value) switches the limit off.
type Limits struct {
	// MaxTotalBytes bounds the bytes written below the output folder, over
	// the whole run. It defaults to 8 GiB.
	MaxTotalBytes int64 `json:"max_total_bytes"`
	// MaxRatio bounds the expansion of one chunk: bytes extracted from it
	// divided by its size in the image. It applies once the chunk has produced
	// more than RatioFloor bytes, so small files compressed well do not trip
	// it. It defaults to 200.
	MaxRatio float64 `json:"max_ratio"`
	// RatioFloor is the output size below which MaxRatio does not apply.
	// It defaults to 16 MiB.
	RatioFloor int64 `json:"ratio_floor"`
	// MaxFiles bounds the entries created over the whole run. It defaults to 200000.
	MaxFiles int `json:"max_files"`
	// MaxDepth bounds the nesting of extractions: chunks of the image are
	// extracted at depth 1, chunks found in their files at depth 2, and so on.
	// It defaults to 10.
	MaxDepth int `json:"max_depth"`
	// Timeout bounds the wall time of a Scan or Unpack. It defaults to 30 minutes.
	Timeout time.Duration `json:"-"`
}

// Default limits.
const (
	DefaultMaxTotalBytes = 8 << 30
	DefaultMaxRatio      = 200
	DefaultRatioFloor    = 16 << 20
	DefaultMaxFiles      = 200000
	DefaultMaxDepth      = 10
	DefaultTimeout       = 30 * time.Minute
)

// MarshalJSON writes the timeout as a Go duration string.
func (l Limits) MarshalJSON() ([]byte, error) {
	type plain Limits
	return json.Marshal(struct {
		plain
		Timeout string `json:"timeout"`
	}{plain(l), l.Timeout.String()})
}

// withDefaults fills zero fields.
func (l Limits) withDefaults() Limits {
	if l.MaxTotalBytes == 0 {
		l.MaxTotalBytes = DefaultMaxTotalBytes
	}
	if l.MaxRatio == 0 {
		l.MaxRatio = DefaultMaxRatio
	}
	if l.RatioFloor == 0 {
		l.RatioFloor = DefaultRatioFloor
	}
	if l.MaxFiles == 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxDepth == 0 {
		l.MaxDepth = DefaultMaxDepth
	} else if l.MaxDepth < 0 {
		l.MaxDepth = 1 << 30
	}
	if l.Timeout == 0 {
		l.Timeout = DefaultTimeout
	} else if l.Timeout < 0 {
		l.Timeout = 100 * 365 * 24 * time.Hour
	}
	return l
}

// Options configure Scan and Unpack.
type Options struct {
	// Formats are tried in order. The command passes formats.All; the engine
	// does not import the format packages itself. Required.
	Formats []*Format
	// Limits bound the work; zero fields take their defaults.
	Limits Limits
	// Logger receives debug and warning logs. It defaults to a logger that
	// discards everything.
	Logger *slog.Logger
	// Progress, when set, is called now and then with an estimate of the
	// bytes of the image processed so far (scanning counts for half,
	// extracting the chunks for the other half) and the image size. Calls
	// come from the engine's goroutines one at a time; done never decreases.
	Progress func(done, total int64)
	// Workers is the number of chunks and files processed at the same time.
	// It defaults to runtime.GOMAXPROCS(0).
	Workers int
}

func (o Options) withDefaults() Options {
	o.Limits = o.Limits.withDefaults()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	return o
}
