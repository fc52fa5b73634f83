package proxy

import (
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminHandler serves /metrics, /v1/cameras, /healthz (the reader
// listeners accept) and /readyz (also: started, not stopping), the API
// (api.go) and the console (console.go), behind adminGuard (admin_auth.go):
// credentials when admin_users are set, security headers, GET and HEAD only.
func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{}))
	p.registerAPI(mux)
	p.registerActions(mux)
	p.registerConsole(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if probs := p.listenerProblems(); len(probs) > 0 {
			// Readers cannot connect: a supervisor should know (and restart).
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(strings.Join(probs, "\n") + "\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if why := p.notReady(); why != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(why + "\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	return p.adminGuard(mux)
}

// CameraStatus is one camera's state in /v1/cameras. Neither the camera's
// address nor its credentials are in the API or the console: URL is not
// marshalled, and there LastError names the camera "<camera>" (public,
// hideCamera); in Status, LastError only has the password redacted.
type CameraStatus struct {
	Name      string    `json:"name"`
	URL       SecretURL `json:"-"`
	State     string    `json:"state"`
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error,omitempty"`
	// Codec, Width and Height describe the video track of the current
	// plan (from the validated SPS; 0 when unknown). FPS is the rate the
	// SPS declares (FPSSource "sps") or else the one measured from the RTP
	// timestamps over the last second (FPSSource "measured").
	// FPSMeasured is that measurement whatever the SPS says (a camera may
	// declare one rate and send another); 0 while the camera is not up.
	Codec       string         `json:"codec,omitempty"`
	Width       int            `json:"width,omitempty"`
	Height      int            `json:"height,omitempty"`
	FPS         float64        `json:"fps"`
	FPSSource   string         `json:"fps_source,omitempty"`
	FPSMeasured float64        `json:"fps_measured"`
	OnDemand    bool           `json:"on_demand"`
	Transport   Transport      `json:"transport"`
	Readers     []ReaderStatus `json:"readers"`
	BytesIn     uint64         `json:"bytes_in"`
	PacketsIn   uint64         `json:"packets_in"`
	PacketLost  uint64         `json:"packets_lost"`
	Jitter      float64        `json:"rtp_jitter"`
	Reconnects  uint64         `json:"reconnects"`
	// Panics counts internal errors contained in this camera's goroutines
	// (each one refused the camera's stream, or closed one reader).
	Panics  uint64               `json:"panics"`
	Bitrate uint64               `json:"bitrate_bps"`
	Dropped map[string]DropCount `json:"dropped"`
	// History is the camera's last state changes, newest first; only in
	// /v1/cameras/{name}.
	History []StateChange `json:"history,omitempty"`
}

// ReaderStatus is one attached reader.
type ReaderStatus struct {
	User   string `json:"user"`
	Remote string `json:"remote"`
	// Transport is tcp, udp or udp-multicast, with "+tls" for RTSPS.
	Transport  string    `json:"transport"`
	Since      time.Time `json:"since"`
	BytesOut   uint64    `json:"bytes_out"`
	PacketsOut uint64    `json:"packets_out"`
	// DroppedPackets are packets not sent because the reader was too slow
	// (its queue was full: it skipped to the next keyframe).
	DroppedPackets uint64 `json:"dropped_packets"`
	// SkippedPackets are packets a new reader did not get while it waited
	// for its first keyframe (no cached GOP: gop_cache_max_packets -1, or
	// a GOP longer than it).
	SkippedPackets uint64 `json:"skipped_packets"`
	// ReportedLostPackets are packets the reader says, in its RTCP receiver
	// reports, it never received although the proxy sent them (UDP loss on
	// the network or in the reader's socket buffer).
	ReportedLostPackets uint64 `json:"reported_lost_packets"`
	// BatchedWrites is true for TCP readers served one write per frame.
	BatchedWrites bool `json:"batched_writes"`
}

// DropCount is what the cleaner dropped for one reason.
type DropCount struct {
	Units uint64 `json:"units"`
	Bytes uint64 `json:"bytes"`
}

// Status returns every camera's state, sorted by name.
func (p *Proxy) Status() []CameraStatus {
	var out []CameraStatus
	for _, c := range p.cameras() {
		out = append(out, c.status())
	}
	return out
}

func (c *camera) status() CameraStatus {
	c.mu.Lock()
	s := CameraStatus{
		Name: c.cfg.Name, URL: c.cfg.URL, State: c.state, Since: c.since, LastError: c.lastErr,
		OnDemand: c.cfg.OnDemand, Transport: c.cfg.Transport,
	}
	c.mu.Unlock()
	s.Readers = c.stream.readerStatus()
	sort.Slice(s.Readers, func(i, j int) bool { return s.Readers[i].Remote < s.Readers[j].Remote })
	src := c.src
	s.BytesIn, s.PacketsIn, s.PacketLost = src.bytesIn.Load(), src.packetsIn.Load(), src.lost.Load()
	s.Jitter = math.Float64frombits(src.jitterBits.Load())
	s.Reconnects, s.Bitrate, s.Panics = c.reconnects.Load(), src.bitrate.Load(), c.panics.Load()
	c.stream.videoStatus(&s)
	s.Dropped = map[string]DropCount{}
	for reason, v := range c.counters.Snapshot() {
		s.Dropped[reason] = DropCount{Units: v[0], Bytes: v[1]}
	}
	return s
}

// collector exports the proxy's state at scrape time (no per-packet metric
// updates beyond the atomic counters the camera keeps anyway).
type collector struct{ p *Proxy }

var (
	descUp          = prometheus.NewDesc("cordon_camera_up", "1 when the camera session is playing.", []string{"camera"}, nil)
	descState       = prometheus.NewDesc("cordon_camera_state", "The camera's state (1 for the current one).", []string{"camera", "state"}, nil)
	descBytesIn     = prometheus.NewDesc("cordon_camera_received_bytes_total", "RTP bytes received from the camera.", []string{"camera"}, nil)
	descPacketsIn   = prometheus.NewDesc("cordon_camera_received_packets_total", "RTP packets received from the camera.", []string{"camera"}, nil)
	descLost        = prometheus.NewDesc("cordon_camera_rtp_packets_lost_total", "RTP packets lost between camera and proxy.", []string{"camera"}, nil)
	descJitter      = prometheus.NewDesc("cordon_camera_rtp_jitter", "RFC 3550 interarrival jitter of the camera's first track, in RTP clock units (90000 per second for video).", []string{"camera"}, nil)
	descReconnects  = prometheus.NewDesc("cordon_camera_reconnects_total", "Camera sessions that ended and were retried.", []string{"camera"}, nil)
	descPanics      = prometheus.NewDesc("cordon_camera_panics_total", "Internal errors (panics) contained in the camera's goroutines; each refused the camera's stream (retried with backoff) or closed one reader. Other cameras are not affected. Please report them.", []string{"camera"}, nil)
	descReaders     = prometheus.NewDesc("cordon_camera_readers", "Readers attached to the camera.", []string{"camera"}, nil)
	descBitrate     = prometheus.NewDesc("cordon_camera_bitrate_bits_per_second", "Incoming bitrate over the last second.", []string{"camera"}, nil)
	descDropUnits   = prometheus.NewDesc("cordon_camera_dropped_units_total", "Units dropped by the stream cleaner, by reason.", []string{"camera", "reason"}, nil)
	descDropBytes   = prometheus.NewDesc("cordon_camera_dropped_bytes_total", "Bytes dropped by the stream cleaner, by reason.", []string{"camera", "reason"}, nil)
	descReaderBytes = prometheus.NewDesc("cordon_reader_sent_bytes_total", "RTP bytes sent to a reader.", []string{"camera", "user", "remote"}, nil)
	descReaderDrop  = prometheus.NewDesc("cordon_reader_dropped_packets_total", "Packets not sent to a reader because it was too slow (skipped to the next keyframe).", []string{"camera", "user", "remote"}, nil)
	descReaderSkip  = prometheus.NewDesc("cordon_reader_skipped_packets_total", "Packets a new reader did not get while it waited for its first keyframe (no cached GOP).", []string{"camera", "user", "remote"}, nil)
	descReaderLost  = prometheus.NewDesc("cordon_reader_reported_lost_packets", "Packets a reader reports (RTCP receiver reports) it did not receive although they were sent: UDP loss on the network or in its socket buffer.", []string{"camera", "user", "remote"}, nil)
	descAuthFail    = prometheus.NewDesc("cordon_reader_auth_failures_total", "Failed reader logins.", nil, nil)
	descAdminFail   = prometheus.NewDesc("cordon_admin_auth_failures_total", "Failed logins on the admin listener (console, API, metrics).", nil, nil)
	descPreviews    = prometheus.NewDesc("cordon_admin_previews", "Console previews (WebRTC) running; each is also a reader of its camera.", nil, nil)
	descPreviewsRun = prometheus.NewDesc("cordon_admin_previews_started_total", "Console previews started.", nil, nil)
	descPreviewsNo  = prometheus.NewDesc("cordon_admin_previews_refused_total", "Console preview offers refused (codec the browser does not offer, camera down, max_sessions, ...; each logged with its reason).", nil, nil)
	descAdminThrot  = prometheus.NewDesc("cordon_admin_auth_throttled_total", "Admin listener logins answered 401 without checking the password (the source or account is in a failure delay, or too many logins of the source wait).", nil, nil)
	descRefused     = prometheus.NewDesc("cordon_reader_refused_total", "Reader requests refused after login, by reason.", []string{"reason"}, nil)
	descConnRefused = prometheus.NewDesc("cordon_reader_connections_refused_total", "Reader connections closed at once because a connection limit was reached, by limit.", []string{"listener", "limit"}, nil)
	descConnOpen    = prometheus.NewDesc("cordon_reader_connections", "Open reader connections.", []string{"listener"}, nil)
	descAcceptErr   = prometheus.NewDesc("cordon_reader_accept_errors_total", "Failed accepts on a reader listener (each retried after a delay), such as EMFILE when file descriptors run out.", []string{"listener"}, nil)
	descEvicted     = prometheus.NewDesc("cordon_reader_disconnected_total", "Readers the proxy disconnected, by reason (output_budget: the readers' output buffers were full and this reader held the most).", []string{"reason"}, nil)
	descOutBuf      = prometheus.NewDesc("cordon_reader_output_buffer_bytes", "Bytes queued for frame-batched readers, all together (bounded by limits.output_buffer_bytes).", nil, nil)
	descThrottled   = prometheus.NewDesc("cordon_reader_auth_throttled_total", "Reader logins answered without checking the password, by scope (source or account: in a failure delay; busy: too many logins of one source waiting for a hash check).", []string{"scope"}, nil)
	descGOPBytes    = prometheus.NewDesc("cordon_gop_cache_bytes", "RTP bytes (headers as sent) held in the cameras' GOP caches, all together.", nil, nil)
	descGOPMemory   = prometheus.NewDesc("cordon_gop_cache_memory_bytes", "Memory the GOP caches' chunks take: chunks in use and free ones kept for the next GOPs (on Linux mapped outside Go's heap).", nil, nil)
	descListenerUp  = prometheus.NewDesc("cordon_reader_listener_up", "1 while the reader listener accepts connections.", []string{"listener"}, nil)
)

func (col *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descState, descBytesIn, descPacketsIn, descLost, descJitter, descReconnects, descPanics,
		descReaders, descBitrate, descDropUnits, descDropBytes, descReaderBytes, descReaderDrop, descReaderSkip, descReaderLost, descAuthFail, descRefused,
		descConnRefused, descConnOpen, descAcceptErr, descListenerUp, descEvicted, descOutBuf, descThrottled, descAdminFail, descAdminThrot, descPreviews, descPreviewsRun, descPreviewsNo, descGOPBytes, descGOPMemory} {
		ch <- d
	}
	for _, d := range trunkDescs {
		ch <- d
	}
}

func (col *collector) Collect(ch chan<- prometheus.Metric) {
	p := col.p
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	for _, s := range p.Status() {
		up := 0.0
		if s.State == stateUp {
			up = 1
		}
		gauge(descUp, up, s.Name)
		for _, st := range []string{stateIdle, stateConnecting, stateUp, stateDown, stateAuthFailed} {
			v := 0.0
			if s.State == st {
				v = 1
			}
			gauge(descState, v, s.Name, st)
		}
		counter(descBytesIn, s.BytesIn, s.Name)
		counter(descPacketsIn, s.PacketsIn, s.Name)
		counter(descLost, s.PacketLost, s.Name)
		gauge(descJitter, s.Jitter, s.Name)
		counter(descReconnects, s.Reconnects, s.Name)
		counter(descPanics, s.Panics, s.Name)
		gauge(descReaders, float64(len(s.Readers)), s.Name)
		gauge(descBitrate, float64(s.Bitrate), s.Name)
		for reason, d := range s.Dropped {
			counter(descDropUnits, d.Units, s.Name, reason)
			counter(descDropBytes, d.Bytes, s.Name, reason)
		}
		for _, r := range s.Readers {
			counter(descReaderBytes, r.BytesOut, s.Name, r.User, r.Remote)
			counter(descReaderDrop, r.DroppedPackets, s.Name, r.User, r.Remote)
			counter(descReaderSkip, r.SkippedPackets, s.Name, r.User, r.Remote)
			gauge(descReaderLost, float64(r.ReportedLostPackets), s.Name, r.User, r.Remote)
		}
	}
	p.collectTrunks(ch)
	counter(descAuthFail, p.authFailures.Load())
	counter(descAdminFail, p.adminAuthFailures.Load())
	counter(descAdminThrot, p.adminThrottled.Load())
	if pv := p.preview; pv != nil {
		gauge(descPreviews, float64(pv.count()))
		counter(descPreviewsRun, pv.started.Load())
		counter(descPreviewsNo, pv.refused.Load())
	}
	counter(descRefused, p.refusedNetwork.Load(), "network")
	counter(descRefused, p.refusedCamera.Load(), "camera")
	counter(descRefused, p.refusedFull.Load(), "max_readers")
	counter(descRefused, p.refusedPublish.Load(), "publish")
	counter(descRefused, p.refusedSession.Load(), "session")
	for i, s := range throttleScopes {
		counter(descThrottled, p.throttled[i].Load(), s)
	}
	counter(descEvicted, p.outBudget.evicted.Load(), "output_budget")
	gauge(descOutBuf, float64(p.outBudget.used.Load()))
	gauge(descGOPBytes, float64(p.gopBytes.Load()))
	gauge(descGOPMemory, float64(gopArena.memory()))
	for _, l := range p.listeners {
		st := l.stats
		counter(descConnRefused, st.refusedTotal.Load(), l.name, "max_connections")
		counter(descConnRefused, st.refusedPerSource.Load(), l.name, "max_connections_per_source")
		gauge(descConnOpen, float64(st.open.Load()), l.name)
		counter(descAcceptErr, st.acceptErrors.Load(), l.name)
		up := 1.0
		if _, _, failing := st.failingNow(time.Now()); failing || st.stopped.Load() != nil {
			up = 0
		}
		gauge(descListenerUp, up, l.name)
	}
}
