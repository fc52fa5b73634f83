package proxy

import "strings"

// notReady says why the proxy should not be sent readers, for /readyz:
// "starting" until Start has bound the listeners and loaded the
// configuration, "stopping" once Close has begun, or the reader listeners'
// problems (what /healthz reports). Empty when ready.
func (p *Proxy) notReady() string {
	p.mu.Lock()
	started, closed := p.started, p.closed
	p.mu.Unlock()
	switch {
	case closed:
		return "stopping"
	case !started:
		return "starting"
	}
	return strings.Join(p.listenerProblems(), "\n")
}
