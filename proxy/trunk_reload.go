package proxy

import (
	"reflect"
	"slices"
)

// keepTrunkRestartOnly puts old's trunk settings back into cfg when a
// change needs a restart: this end's key pair, trunk.ca and trunk.listen
// (the socket and every connection on it), or a proxy that becomes an
// end of a trunk (or stops being one, or starts or stops serving
// cameras); and the edge's trunk.max_bitrate alone (each connected core's
// cap is set once, at its first camera). Everything else (trunk.peers,
// trunk.dial, trunks[] with their transport, always_on, max_bitrate and
// overrides) is applied by reloadTrunksLocked.
func (p *Proxy) keepTrunkRestartOnly(old Config, cfg *Config) {
	o, n := old.Trunk, cfg.Trunk
	serves := func(t TrunkEnd) bool { return t.Listen != "" || len(t.Dial) > 0 }
	if o.Cert != n.Cert || o.Key != n.Key || o.CA != n.CA || o.Listen != n.Listen ||
		old.trunkUsed() != cfg.trunkUsed() || serves(o) != serves(n) {
		if !reflect.DeepEqual(o, n) || !reflect.DeepEqual(old.Trunks, cfg.Trunks) {
			p.log.Warn("reload: trunk.cert, trunk.key, trunk.ca or trunk.listen changed (or trunks were turned on or off); the trunk settings apply after a restart")
		}
		cfg.Trunk, cfg.Trunks = old.Trunk, old.Trunks
		return
	}
	if o.MaxBitrate != n.MaxBitrate {
		p.log.Warn("reload: trunk.max_bitrate changed; it applies after a restart (the other trunk settings are applied)",
			"max_bitrate", o.MaxBitrate, "configured", n.MaxBitrate)
		cfg.Trunk.MaxBitrate = o.MaxBitrate
	}
}

// reloadTrunksLocked applies trunk.peers, trunk.dial and trunks[]: an
// edge's trust is replaced (a core no longer in trunk.peers is
// disconnected), its dialers follow trunk.dial, and a trunk that was
// removed or changed stops with its cameras while the others, and their
// cameras and readers, are untouched. p.mu must be held; the returned
// function waits for what was stopped and must be called without it.
func (p *Proxy) reloadTrunksLocked(old, cfg Config) (wait func()) {
	var closers []func()
	wait = func() {
		for _, c := range closers {
			c()
		}
	}
	if e := p.trunkEdge; e != nil {
		e.setTrust(cfg, p.trunkNet.roots)
		var keep []*trunkDialer
		for _, d := range e.dialerList() {
			if slices.Contains(cfg.Trunk.Dial, d.addr) {
				keep = append(keep, d)
				continue
			}
			d.log.Info("reload: core removed from trunk.dial")
			d.stop()
			closers = append(closers, d.close)
		}
		for _, a := range cfg.Trunk.Dial {
			if !slices.Contains(old.Trunk.Dial, a) {
				keep = append(keep, e.startDialer(&p.trunkNet, a))
			}
		}
		e.mu.Lock()
		e.dialers = keep
		e.mu.Unlock()
	}
	if reflect.DeepEqual(old.Trunks, cfg.Trunks) {
		return wait
	}
	want := map[string]Trunk{}
	for _, tc := range cfg.Trunks {
		want[tc.Name] = tc
	}
	p.trunkNet.mu.Lock()
	defer p.trunkNet.mu.Unlock()
	var kept []*trunkCore
	have := map[string]bool{}
	removed, changed, added := 0, 0, 0
	for _, t := range p.trunks {
		nc, ok := want[t.cfg.Name]
		if ok && reflect.DeepEqual(nc, t.cfg) {
			kept = append(kept, t)
			have[t.cfg.Name] = true
			continue
		}
		if ok {
			changed++
		} else {
			removed++
		}
		// Cancelled under p.mu: a catalogue that arrives now adds no
		// camera (addTrunkCamera checks).
		t.halt()
		for name, c := range p.cams {
			if c.trunk == t {
				c.stop("trunk removed or changed by a reload")
				delete(p.cams, name)
			}
		}
		closers = append(closers, t.close)
	}
	for _, tc := range cfg.Trunks {
		if have[tc.Name] {
			continue
		}
		if !slices.ContainsFunc(old.Trunks, func(o Trunk) bool { return o.Name == tc.Name }) {
			added++
		}
		t := newTrunkCore(p, tc, p.trunkNet.cert)
		kept = append(kept, t)
		if p.started {
			p.startTrunkLocked(t)
		}
	}
	p.trunks = kept
	p.log.Info("trunks reloaded", "added", added, "removed", removed, "changed", changed, "trunks", len(kept))
	return wait
}

// startTrunkLocked starts trunk t and the cameras it lists by name.
func (p *Proxy) startTrunkLocked(t *trunkCore) {
	for _, name := range t.cfg.Cameras {
		if name == "*" {
			continue
		}
		c := newTrunkCamera(p, t, name)
		p.cams[c.cfg.Name] = c
		c.start()
	}
	t.start()
}
