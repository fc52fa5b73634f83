package netflow

import (
	"errors"
	"fmt"
	"time"

	gfnetflow "github.com/netsampler/goflow2/v2/decoders/netflow"
)

// Template errors, counted as template rejects.
var (
	ErrTooManyTemplates = errors.New("netflow: too many templates for one exporter")
	ErrEmptyTemplate    = errors.New("netflow: template has no fields or a zero-length field")
)

type storedTemplate struct {
	tmpl  any // gfnetflow.TemplateRecord, NFv9OptionsTemplateRecord or IPFIXOptionsTemplateRecord
	added time.Time
}

// templateStore is one exporter's templates (keyed by version, source id or
// observation domain, and template id, as in goflow2). It implements
// goflow2's NetFlowTemplateSystem with a cap and an expiry; it is used by one
// goroutine at a time (the Decoder's lock covers it).
type templateStore struct {
	d        *Decoder
	m        map[uint64]storedTemplate
	lastSeen time.Time
	// initTime is the IPFIX systemInitTimeMilliseconds per observation
	// domain, from options data, for flowStart/EndSysUpTime fields.
	initTime map[uint32]time.Time
	// sampling is the packet sampling interval (1 in N) per source id /
	// observation domain, from options data.
	sampling map[uint32]uint32
}

var _ gfnetflow.NetFlowTemplateSystem = (*templateStore)(nil)

func templateKey(version uint16, domain uint32, id uint16) uint64 {
	return uint64(version)<<48 | uint64(domain)<<16 | uint64(id)
}

func newTemplateStore(d *Decoder) *templateStore {
	return &templateStore{d: d, m: make(map[uint64]storedTemplate), initTime: make(map[uint32]time.Time), sampling: make(map[uint32]uint32)}
}

// fieldsConsume reports whether every field of a template consumes at
// least one byte of a record (a variable-length field, 0xffff, consumes its
// length byte) and there is a field. goflow2's data-set loop would never end
// on a record of zero bytes, and zero-length fields would let a tiny record
// make it allocate a DataField per field per byte of the datagram; with
// this rule its allocation is bounded by the datagram's size.
func fieldsConsume(fields ...[]gfnetflow.Field) bool {
	n := 0
	for _, fs := range fields {
		for _, f := range fs {
			if f.Length == 0 {
				return false
			}
			n++
		}
	}
	return n > 0
}

func (ts *templateStore) AddTemplate(version uint16, domain uint32, id uint16, tmpl any) error {
	var ok bool
	switch t := tmpl.(type) {
	case gfnetflow.TemplateRecord:
		if version == 10 && len(t.Fields) == 0 {
			// A template withdrawal (RFC 7011 §8.1); id 2 withdraws all
			// templates of the observation domain.
			if id == 2 {
				for k := range ts.m {
					if k>>16 == templateKey(version, domain, 0)>>16 {
						delete(ts.m, k)
					}
				}
			}
			delete(ts.m, templateKey(version, domain, id))
			return nil
		}
		ok = fieldsConsume(t.Fields)
	case gfnetflow.NFv9OptionsTemplateRecord:
		ok = fieldsConsume(t.Scopes, t.Options)
	case gfnetflow.IPFIXOptionsTemplateRecord:
		ok = fieldsConsume(t.Scopes, t.Options)
	default:
		return fmt.Errorf("netflow: template %d: unexpected type %T", id, tmpl)
	}
	if !ok {
		ts.d.stats.templateRejects.Add(1)
		return fmt.Errorf("%w (version %d, domain %d, template %d)", ErrEmptyTemplate, version, domain, id)
	}
	key := templateKey(version, domain, id)
	now := ts.d.now()
	if _, exists := ts.m[key]; !exists && len(ts.m) >= ts.d.maxTemplates() {
		ts.expire(now)
		if len(ts.m) >= ts.d.maxTemplates() {
			ts.d.stats.templateRejects.Add(1)
			return fmt.Errorf("%w (%d; version %d, domain %d, template %d)", ErrTooManyTemplates, len(ts.m), version, domain, id)
		}
	}
	ts.m[key] = storedTemplate{tmpl: tmpl, added: now}
	return nil
}

func (ts *templateStore) expire(now time.Time) {
	for k, st := range ts.m {
		if now.Sub(st.added) > ts.d.templateTimeout() {
			delete(ts.m, k)
		}
	}
}

func (ts *templateStore) GetTemplate(version uint16, domain uint32, id uint16) (any, error) {
	key := templateKey(version, domain, id)
	st, ok := ts.m[key]
	if !ok {
		return nil, gfnetflow.ErrorTemplateNotFound
	}
	if ts.d.now().Sub(st.added) > ts.d.templateTimeout() {
		delete(ts.m, key)
		ts.d.stats.templatesExpired.Add(1)
		return nil, gfnetflow.ErrorTemplateNotFound
	}
	return st.tmpl, nil
}

func (ts *templateStore) RemoveTemplate(version uint16, domain uint32, id uint16) (any, error) {
	key := templateKey(version, domain, id)
	st, ok := ts.m[key]
	if !ok {
		return nil, gfnetflow.ErrorTemplateNotFound
	}
	delete(ts.m, key)
	return st.tmpl, nil
}

func (ts *templateStore) GetTemplates() gfnetflow.FlowBaseTemplateSet {
	out := make(gfnetflow.FlowBaseTemplateSet, len(ts.m))
	for k, st := range ts.m {
		out[k] = st.tmpl
	}
	return out
}
