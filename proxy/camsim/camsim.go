// Package camsim serves simulated IP cameras over RTSP. Each camera loops a
// pre-encoded H.264 or H.265 clip of real video (embedded in the binary, or
// from Server.ClipDir; no encoder runs), in real time, with continuous RTP
// timestamps across loops. It backs the default demo, the tests and the
// benchmarks of the proxy, and lets an administrator try a recorder without
// a real camera.
//
// How a Camera's settings are met (the embedded clips are a small ladder,
// see clips/make-clips.sh: 640x360 at 500 kbit/s, 1280x720 at 2 Mbit/s,
// 1920x1080 at 4 Mbit/s, each in H.264 and H.265):
//   - Codec picks the H.264 or H.265 clips.
//   - Width×Height picks the clips with the nearest pixel count; the stream
//     has the clip's exact resolution.
//   - Bitrate, among the clips of that size, picks the one whose rate at
//     FPS is nearest (more than the ladder's with Server.ClipDir, see
//     EncodeClip).
//   - FPS retimes the clip: frames are sent FPS times a second with
//     timestamps 90000/FPS apart (motion runs faster or slower than 25 fps,
//     and the bit rate scales with FPS/25).
//   - Only when Bitrate is more than 5 % above the clip's own rate at that
//     FPS is every frame padded with a filler-data NAL unit (H.264 type 12,
//     H.265 type 38) up to Bitrate/8/FPS bytes on average: filler is never
//     added to a stream whose real video has the rate. Server.Streams reports
//     the filler rate, and Start logs a warning when there is any.
package camsim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/internal/playonly"
)

// Camera is one simulated camera.
type Camera struct {
	// Name is the RTSP path: the camera is served at rtsp://ADDR/Name.
	// Required; letters, digits, '.', '_' and '-'.
	Name string
	// Codec is "h264" or "h265". It defaults to "h264".
	Codec string
	// Width and Height choose the nearest embedded clip. They default to 640x360.
	Width, Height int
	// FPS is the frame rate, 1 to 120. It defaults to 25.
	FPS int
	// Bitrate in bit/s picks the clip encoded at the nearest rate, and is
	// topped up with filler data if the clip's own rate is more than 5 %
	// below it (see the package documentation). It defaults to 0: the
	// clip's own rate (about 0.5, 2 or 4 Mbit/s at 25 fps, by size).
	Bitrate int
	// Leak, when set, makes the camera hide this text in an SEI
	// user_data_unregistered message in every keyframe, the way a camera
	// leaking data would (at most 1000 bytes). It shows what the proxy's
	// rebuild mode removes. It defaults to none.
	Leak string
}

// Server serves simulated cameras over RTSP (TCP and UDP transports).
type Server struct {
	// Addr is the RTSP listen address. It defaults to "127.0.0.1:8554".
	// A port of 0 picks a free port; Start writes the bound address back.
	Addr string
	// Cameras are the cameras to serve. At least one is required.
	Cameras []Camera
	// Logger receives the server's logs. It defaults to discarding them.
	Logger *slog.Logger
	// Aligned starts every camera at the same instant at the start of its
	// clip. By default cameras are free-running, as real ones are: each
	// starts its frame clock at a random point of its frame interval and its
	// clip at a random frame (both drawn from the camera's name, so runs are
	// repeatable), so the frames and keyframes of many cameras do not all
	// fall on the same instant. Aligned is the worst case for bursts: every
	// camera sends a frame, and a keyframe, at once.
	Aligned bool
	// ClipDir, when set, is a directory of more clips (named and made as
	// clips/make-clips.sh does, see EncodeClip) that cameras may pick besides
	// the embedded ones. It defaults to none.
	ClipDir string
	// User and Password, when User is set, are the credentials readers
	// must send, as a camera's (Basic or Digest); a reader without them
	// or with others gets 401. By default no credentials are needed.
	User, Password string
	// WritePerPacket makes each TCP reader's connection write every RTP
	// packet on its own, as gortsplib does. By default the packets of a
	// frame are written together, with one system call, when its last
	// packet is (the same bytes, in fewer TCP segments; see frameConn).
	WritePerPacket bool

	srv     *gortsplib.Server
	mu      sync.RWMutex // guards camStream.stream against Close
	streams map[string]*camStream
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type camStream struct {
	cam    Camera
	prog   *program
	stream *gortsplib.ServerStream
	phase  time.Duration // the frame clock starts this late
	first  int64         // the clip starts at this frame
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// normalize fills defaults and validates one camera.
func (c *Camera) normalize(i int) error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("camsim: Cameras[%d].Name %q: want letters, digits, '.', '_' or '-'", i, c.Name)
	}
	if c.Codec == "" {
		c.Codec = "h264"
	}
	if c.Codec != "h264" && c.Codec != "h265" {
		return fmt.Errorf("camsim: camera %s: Codec %q: want h264 or h265", c.Name, c.Codec)
	}
	if c.Width == 0 && c.Height == 0 {
		c.Width, c.Height = 640, 360
	}
	if c.Width <= 0 || c.Height <= 0 || c.Width > 16384 || c.Height > 16384 {
		return fmt.Errorf("camsim: camera %s: size %dx%d out of range", c.Name, c.Width, c.Height)
	}
	if c.FPS == 0 {
		c.FPS = 25
	}
	if c.FPS < 1 || c.FPS > 120 {
		return fmt.Errorf("camsim: camera %s: FPS %d: want 1 to 120", c.Name, c.FPS)
	}
	if c.Bitrate < 0 || c.Bitrate > 200_000_000 {
		return fmt.Errorf("camsim: camera %s: Bitrate %d: want 0 to 200000000 bit/s", c.Name, c.Bitrate)
	}
	if len(c.Leak) > 1000 {
		return fmt.Errorf("camsim: camera %s: Leak of %d bytes: at most 1000", c.Name, len(c.Leak))
	}
	return nil
}

// Start validates the cameras, binds the RTSP (TCP) and RTP/RTCP (UDP)
// sockets and starts streaming every camera, looping, in real time.
func (s *Server) Start() error {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Addr == "" {
		s.Addr = "127.0.0.1:8554"
	}
	if len(s.Cameras) == 0 {
		return errors.New("camsim: Cameras: no camera to serve")
	}
	if err := s.prepare(); err != nil {
		return err
	}
	if err := s.listen(); err != nil {
		return err
	}
	return s.play()
}

// prepare loads the clips (embedded, and from ClipDir) and builds each
// camera's program.
func (s *Server) prepare() error {
	all, err := clips()
	if err != nil {
		return err
	}
	if s.ClipDir != "" {
		more, err := readClips(os.DirFS(s.ClipDir), ".")
		if err != nil {
			return fmt.Errorf("camsim: ClipDir %s: %w", s.ClipDir, err)
		}
		all = append(slices.Clone(all), more...)
	}
	s.streams = map[string]*camStream{}
	for i := range s.Cameras {
		c := &s.Cameras[i]
		if err := c.normalize(i); err != nil {
			return err
		}
		if _, dup := s.streams[c.Name]; dup {
			return fmt.Errorf("camsim: camera %s: name used twice", c.Name)
		}
		p, err := programFor(all, *c)
		if err != nil {
			return fmt.Errorf("camsim: camera %s: %w", c.Name, err)
		}
		cs := &camStream{cam: *c, prog: p}
		if !s.Aligned {
			// Like cameras switched on at random moments: a phase and a clip
			// position drawn from the name, so that a run is repeatable.
			h := fnv.New64a()
			h.Write([]byte(c.Name))
			r := rand.New(rand.NewPCG(h.Sum64(), 0))
			cs.phase = time.Duration(r.Int64N(int64(time.Second) / int64(c.FPS)))
			cs.first = r.Int64N(int64(len(p.frames)))
		}
		s.streams[c.Name] = cs
	}
	return nil
}

// listen starts the RTSP server (TCP and UDP).
func (s *Server) listen() error {
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return fmt.Errorf("camsim: Addr %q: %w", s.Addr, err)
	}
	rtpConn, rtcpConn, err := listenUDPPair(host)
	if err != nil {
		return fmt.Errorf("camsim: UDP transport: %w", err)
	}
	udp := map[string]net.PacketConn{
		rtpConn.LocalAddr().String():  rtpConn,
		rtcpConn.LocalAddr().String(): rtcpConn,
	}
	var bound net.Addr
	s.srv = &gortsplib.Server{
		Handler: &playonly.Handler{Lookup: s.stream, OnUnknown: func(path string) {
			s.Logger.Debug("camsim: unknown camera", "path", path)
		}, User: s.User, Password: s.Password},
		RTSPAddress:    s.Addr,
		UDPRTPAddress:  rtpConn.LocalAddr().String(),
		UDPRTCPAddress: rtcpConn.LocalAddr().String(),
		WriteQueueSize: 4096,
		Listen: func(network, address string) (net.Listener, error) {
			l, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			bound = l.Addr()
			if s.WritePerPacket {
				return l, nil
			}
			return frameListener{l}, nil
		},
		ListenPacket: func(network, address string) (net.PacketConn, error) {
			if c, ok := udp[address]; ok {
				delete(udp, address)
				return c, nil
			}
			return net.ListenPacket(network, address)
		},
	}
	if err := s.srv.Start(); err != nil {
		rtpConn.Close()
		rtcpConn.Close()
		return fmt.Errorf("camsim: listening on %s: %w", s.Addr, err)
	}
	if bound != nil {
		s.Addr = bound.String()
	}
	return nil
}

// play starts every camera's stream.
func (s *Server) play() error {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, c := range s.Cameras {
		cs := s.streams[c.Name]
		st := &gortsplib.ServerStream{Server: s.srv, Desc: cs.prog.desc()}
		if err := st.Initialize(); err != nil {
			s.Close()
			return fmt.Errorf("camsim: camera %s: %w", c.Name, err)
		}
		s.mu.Lock()
		cs.stream = st
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			cs.run(ctx, st)
		}()
		s.Logger.Info("camsim camera", "url", s.URL(c.Name), "codec", c.Codec,
			"size", fmt.Sprintf("%dx%d", cs.prog.clip.width, cs.prog.clip.height),
			"fps", c.FPS, "bitrate", cs.prog.bitrate, "clip", cs.prog.clip.name)
		if cs.prog.fillerRate > 0 {
			s.Logger.Warn("camsim camera padded with filler data: no clip has the bit rate asked for",
				"camera", c.Name, "clip", cs.prog.clip.name, "clip_bitrate", cs.prog.clip.ownRate(c.FPS),
				"filler_bitrate", cs.prog.fillerRate)
		}
	}
	return nil
}

// URL returns the RTSP URL of the named camera.
func (s *Server) URL(name string) string {
	return "rtsp://" + s.Addr + "/" + name
}

// Close stops streaming and closes every connection. It may be called
// more than once, and after a failed Start.
func (s *Server) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cs := range s.streams {
		if cs.stream != nil {
			cs.stream.Close()
			cs.stream = nil
		}
	}
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

// listenUDPPair binds an even RTP port and the next (RTCP) port on host.
func listenUDPPair(host string) (net.PacketConn, net.PacketConn, error) {
	for range 64 {
		a, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, nil, err
		}
		p := a.LocalAddr().(*net.UDPAddr).Port
		if p%2 != 0 || p == 65534 {
			a.Close()
			continue
		}
		b, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(p+1)))
		if err != nil {
			a.Close()
			continue
		}
		return a, b, nil
	}
	return nil, nil, errors.New("no free even/odd UDP port pair")
}

// run sends the camera's frames in real time until ctx is done.
func (cs *camStream) run(ctx context.Context, st *gortsplib.ServerStream) {
	media := st.Desc.Medias[0]
	fps := cs.cam.FPS
	prog := cs.prog
	base := randUint32()
	seq := uint16(randUint32())
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96}}
	timer := time.NewTimer(0)
	defer timer.Stop()
	start := time.Now().Add(cs.phase)
	n, sinceStart := cs.first, int64(0)
	for {
		due := start.Add(time.Duration(sinceStart) * time.Second / time.Duration(fps))
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if d < -time.Second {
			// Too far behind (an overloaded machine): do not burst, restart the clock.
			start, sinceStart, due = time.Now(), 0, time.Now()
		}
		if ctx.Err() != nil {
			return
		}
		fr := &prog.frames[n%int64(len(prog.frames))]
		pkt.Timestamp = base + uint32(n*90000/int64(fps))
		for i, p := range fr.payloads {
			pkt.SequenceNumber = seq
			seq++
			pkt.Marker = i == len(fr.payloads)-1
			pkt.Payload = p
			if err := st.WritePacketRTPWithNTP(media, pkt, due); err != nil {
				return
			}
		}
		n++
		sinceStart++
	}
}

// stream returns the stream of the named camera, or nil.
func (s *Server) stream(name string) *gortsplib.ServerStream {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if cs, ok := s.streams[name]; ok {
		return cs.stream
	}
	return nil
}

// program is a clip packetized for one (clip, fps, bitrate): the RTP
// payloads of every frame. Cameras with the same settings share it.
type program struct {
	clip       *clip
	bitrate    int   // the resulting average bit/s (RTP payloads)
	fillerRate int   // of which filler data, in bit/s (0 unless padded)
	videoBytes int64 // coded-slice (VCL) NAL bytes in one loop of frames
	frames     []frame
}

type frame struct {
	payloads [][]byte
	random   bool
}

type progKey struct {
	clip         *clip
	fps, bitrate int
	leak         string
}

// StreamInfo describes what one camera sends.
type StreamInfo struct {
	Name          string
	Clip          string // the clip's file name, e.g. "h264-1280x720.h264"
	Width, Height int
	FPS           int
	// Bitrate is the average bit rate of the RTP payloads, filler included.
	Bitrate int
	// FillerBitrate is the part of Bitrate that is filler data: 0 unless the
	// camera asked for more than its clip's own rate.
	FillerBitrate int
	// LoopFrames is the number of frames after which the stream repeats,
	// and LoopVideoBytes the bytes of coded-slice NAL units (H.264 types
	// 1-5, H.265 types 0-31; NAL header included, no start code) in one
	// loop: the video, without parameter sets, SEI, AUD or filler. Any
	// LoopFrames consecutive frames hold exactly LoopVideoBytes.
	LoopFrames     int
	LoopVideoBytes int64
}

// Streams describes every camera, in the order of Cameras (after Start).
func (s *Server) Streams() []StreamInfo {
	var out []StreamInfo
	for _, c := range s.Cameras {
		cs := s.streams[c.Name]
		if cs == nil {
			continue
		}
		p := cs.prog
		out = append(out, StreamInfo{Name: c.Name, Clip: p.clip.name, Width: p.clip.width, Height: p.clip.height,
			FPS: c.FPS, Bitrate: p.bitrate, FillerBitrate: p.fillerRate,
			LoopFrames: len(p.frames), LoopVideoBytes: p.videoBytes})
	}
	return out
}

var (
	progMu    sync.Mutex
	progCache = map[progKey]*program{}
)

// clipFor picks camera c's clip: the clips' rates are at 25 fps, so the
// one whose rate at c.FPS is nearest c.Bitrate.
func clipFor(all []*clip, c Camera) (*clip, error) {
	return pickClip(all, c.Codec, c.Width, c.Height, int(int64(c.Bitrate)*clipFPS/int64(max(c.FPS, 1))))
}

func programFor(all []*clip, c Camera) (*program, error) {
	cl, err := clipFor(all, c)
	if err != nil {
		return nil, err
	}
	key := progKey{cl, c.FPS, c.Bitrate, c.Leak}
	progMu.Lock()
	defer progMu.Unlock()
	if p, ok := progCache[key]; ok {
		return p, nil
	}
	p, err := newProgram(cl, c.FPS, c.Bitrate, c.Leak)
	if err != nil {
		return nil, err
	}
	progCache[key] = p
	return p, nil
}

func newProgram(cl *clip, fps, bitrate int, leak string) (*program, error) {
	ssrc, seq := uint32(0), uint16(0)
	var encode func([][]byte) ([]*rtp.Packet, error)
	if cl.codec == "h264" {
		e := &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1, SSRC: &ssrc, InitialSequenceNumber: &seq}
		if err := e.Init(); err != nil {
			return nil, err
		}
		encode = e.Encode
	} else {
		e := &rtph265.Encoder{PayloadType: 96, SSRC: &ssrc, InitialSequenceNumber: &seq}
		if err := e.Init(); err != nil {
			return nil, err
		}
		encode = e.Encode
	}
	// Pad only what the real video lacks, and only when it lacks more than
	// 5 %: a clip encoded at about the rate asked for is sent as it is.
	avg := cl.bytes / len(cl.aus)
	pad := 0
	if want := bitrate / 8 / fps; int64(want)*100 > int64(avg)*105 {
		pad = want - avg
	}
	p := &program{clip: cl}
	total := 0
	for i, au := range cl.aus {
		for _, n := range au {
			if isVCL(cl.codec, n) {
				p.videoBytes += int64(len(n))
			}
		}
		if leak != "" && cl.random[i] {
			au = insertBeforeSlices(cl.codec, au, leakSEI(cl.codec, leak))
		}
		if pad > 0 {
			au = append(au[:len(au):len(au)], filler(cl.codec, pad))
		}
		pkts, err := encode(au)
		if err != nil {
			return nil, fmt.Errorf("packetizing clip %s frame %d: %w", cl.name, i, err)
		}
		fr := frame{random: cl.random[i]}
		for _, pk := range pkts {
			fr.payloads = append(fr.payloads, pk.Payload)
			total += len(pk.Payload)
		}
		p.frames = append(p.frames, fr)
	}
	p.bitrate = int(int64(total) * 8 * int64(fps) / int64(len(p.frames)))
	p.fillerRate = pad * 8 * fps
	return p, nil
}

// desc is the session description readers get.
func (p *program) desc() *description.Session {
	var f format.Format
	au := p.clip.aus[0]
	if p.clip.codec == "h264" {
		h := &format.H264{PayloadTyp: 96, PacketizationMode: 1}
		for _, n := range au {
			switch nalType("h264", n) {
			case 7:
				h.SPS = n
			case 8:
				h.PPS = n
			}
		}
		f = h
	} else {
		h := &format.H265{PayloadTyp: 96}
		for _, n := range au {
			switch nalType("h265", n) {
			case 32:
				h.VPS = n
			case 33:
				h.SPS = n
			case 34:
				h.PPS = n
			}
		}
		f = h
	}
	return &description.Session{
		Title:  "camsim",
		Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{f}}},
	}
}

func randUint32() uint32 { return rand.Uint32() }
