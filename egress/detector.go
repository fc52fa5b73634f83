package egress

import "github.com/cordon-vms/cordon/egress/dnsparse"

// Detector declares one alert kind: its name, its default severity, what
// raises it (the docs) and the state it keeps. Detectors is the one ordered
// list of them, like firmware/formats.All: Kinds, the alert metrics, the
// --fail-on choices and the alert table of docs/egress.md all come from it,
// and the engine consults the detectors in this order for every new flow and
// every packet (or flow record) a camera sends.
type Detector struct {
	// Kind is the Alert.Kind it raises.
	Kind string
	// Severity is the default Alert.Severity; SeverityNote says when one
	// alert gets another.
	Severity     string
	SeverityNote string
	// Raised says what raises it, naming the policy keys that tune it.
	Raised string
	// Fields names the alert fields that show what triggered it.
	Fields string
	// Summary says its alert sums up a window (a roll-up): it is sent at
	// the window's end even when high, not at once (see Alert.Repeat).
	Summary bool

	// new returns the detector's state for one engine. It implements
	// flowOpener, sendWatcher or both.
	new func(e *Engine) any
	// index is the detector's position in Detectors.
	index int
}

// flowOpener is a detector that looks at each new flow once it is
// classified (camera, peer, direction, allowed, local, lateral).
type flowOpener interface {
	flowOpened(f *flow, p *packet, ts int64)
}

// sendWatcher is a detector that looks at each packet (or flow record) a
// camera sends on a flow it opened; fresh says the packet opened the flow.
// (What a camera answers on flows others opened, such as RTSP pulled by a
// recorder, is accounted in the flow table but shown to no detector.)
type sendWatcher interface {
	cameraSent(f *flow, p *packet, ts int64, fresh bool)
}

// dnsWatcher is implemented by detectors that read the DNS queries a
// camera sends over TCP (Engine.dnsOverTCP reads them from the stream;
// a query over UDP comes with its packet, packet.dns).
type dnsWatcher interface {
	dnsQuery(f *flow, q *dnsparse.Question, name string, ts int64)
}

// Detectors lists every alert kind, in documentation order.
// scan comes first: it marks the flows it rolls up before the others look.
var Detectors = indexed(
	scanDetector,
	unexpectedDetector,
	vendorDetector,
	dnsTunnelDetector,
	beaconDetector,
	volumeDetector,
	lateralDetector,
	newDestinationDetector,
)

// Kinds lists the alert kinds in documentation order (the Kind of each of
// Detectors).
var Kinds = func() []string {
	var ks []string
	for _, d := range Detectors {
		ks = append(ks, d.Kind)
	}
	return ks
}()

func indexed(ds ...*Detector) []*Detector {
	for i, d := range ds {
		d.index = i
	}
	return ds
}

// watchable reports whether f is a flow the camera opened to a destination
// that no allow rule permits and that does not stay on the camera network:
// the flows every detector but vendor-cloud looks at.
func (f *flow) watchable() bool { return f.outbound && !f.allowed && !f.local }
