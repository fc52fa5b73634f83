package egress

import "bytes"

// maxHTTPHead bounds how much of a request is searched for its Host header.
const maxHTTPHead = 4096

var httpMethods = [][]byte{[]byte("GET "), []byte("POST "), []byte("PUT "), []byte("HEAD "), []byte("CONNECT "), []byte("OPTIONS "), []byte("PATCH "), []byte("DELETE ")}

// httpHost returns the Host of a plain-HTTP request at the start of a TCP
// payload (cameras often reach vendor upgrade and log servers over HTTP),
// without the port. It reads at most maxHTTPHead bytes.
func httpHost(b []byte) (string, bool) {
	isReq := false
	for _, m := range httpMethods {
		if bytes.HasPrefix(b, m) {
			isReq = true
			break
		}
	}
	if !isReq {
		return "", false
	}
	b = b[:min(len(b), maxHTTPHead)]
	for {
		i := bytes.Index(b, []byte("\r\n"))
		if i < 0 {
			return "", false
		}
		b = b[i+2:]
		if len(b) >= 2 && b[0] == '\r' && b[1] == '\n' {
			return "", false // end of headers
		}
		if len(b) >= 5 && (b[0]|0x20) == 'h' && (b[1]|0x20) == 'o' && (b[2]|0x20) == 's' && (b[3]|0x20) == 't' && b[4] == ':' {
			v := b[5:]
			if j := bytes.IndexByte(v, '\r'); j >= 0 {
				v = v[:j]
			} else {
				return "", false // header cut by the snap length or segment
			}
			v = bytes.TrimSpace(v)
			if len(v) > 0 && v[0] == '[' { // [v6]:port
				if j := bytes.IndexByte(v, ']'); j > 0 {
					v = v[1:j]
				}
			} else if j := bytes.LastIndexByte(v, ':'); j >= 0 {
				v = v[:j]
			}
			if len(v) == 0 || len(v) > 253 {
				return "", false
			}
			return string(v), true
		}
	}
}

// httpHeadIncomplete reports whether b could be the start of an HTTP
// request whose head (up to maxHTTPHead bytes) has not ended yet: it
// starts with a method, or with the beginning of one.
func httpHeadIncomplete(b []byte) bool {
	if len(b) >= maxHTTPHead || bytes.Contains(b, []byte("\r\n\r\n")) {
		return false
	}
	for _, m := range httpMethods {
		n := min(len(b), len(m))
		if bytes.Equal(b[:n], m[:n]) {
			return true
		}
	}
	return false
}
