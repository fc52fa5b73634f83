package proxy

import (
	"strings"
	"testing"
)

// Fixtures made by independent tools (not by the library under test):
//
//	echo -n s3cret | argon2 saltsaltsalt -id -t 2 -m 6 -p 1 -e   # Debian package argon2 (reference implementation)
//	/usr/bin/python3 -c "import crypt; print(crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))"  # libxcrypt
const (
	testArgonHash  = "$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHRzYWx0$M2ixdWbEJpyjhdeAgEaqhSW/F2crE0mWnIedK/8v2b0"
	testBcryptHash = "$2b$04$eA9uF8L9E.CZEkpaXHOHSOl534H0/RTZVLcs7Of1XsRZxu47T5KMq"
)

func TestPasswordHashes(t *testing.T) {
	for _, h := range []string{testArgonHash, testBcryptHash} {
		ph, err := parseHash(h)
		if err != nil {
			t.Fatalf("parseHash(%s): %v", h, err)
		}
		if !ph.verify("s3cret") {
			t.Errorf("%s: right password refused", h[:10])
		}
		if ph.verify("s3cret ") || ph.verify("") {
			t.Errorf("%s: wrong password accepted", h[:10])
		}
	}
}

var badHashes = []struct{ in, want string }{
	{"plain", "unknown format"},
	{"$argon2i$v=19$m=64,t=2,p=1$c2FsdHNhbHRzYWx0$M2ixdWbEJpyjhdeAgEaqhSW/F2crE0mWnIedK/8v2b0", "only argon2id"},
	{"$argon2id$v=16$m=64,t=2,p=1$c2FsdHNhbHRzYWx0$M2ixdWbEJpyjhdeAgEaqhSW/F2crE0mWnIedK/8v2b0", "version"},
	{"$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$M2ixdWbEJpyjhdeAgEaqhSW/F2crE0mWnIedK/8v2b0", "above the limit"},
	{"$argon2id$v=19$m=64,t=99,p=1$c2FsdHNhbHRzYWx0$M2ixdWbEJpyjhdeAgEaqhSW/F2crE0mWnIedK/8v2b0", "above the limit"},
	{"$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHRzYWx0$M2ixdWbEJpyjhdeAgEaqhSW/F2crE0mWnIedK/8v2b0", "positive number"},
	{"$argon2id$v=19$m=64,t=2$c2FsdHNhbHRzYWx0$M2ixdWbEJpyjhdeAgEaqhSW/F2crE0mWnIedK/8v2b0", "needs m, t and p"},
	{"$argon2id$v=19$m=64,t=2,p=1,x=1$c2FsdHNhbHRzYWx0$M2ixdWbEJpyjhdeAgEaqhSW/F2crE0mWnIedK/8v2b0", "unknown"},
	{"$argon2id$v=19$m=64,t=2,p=1$c2Fs$M2ixdWbEJpyjhdeAgEaqhSW/F2crE0mWnIedK/8v2b0", "salt"},
	{"$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHRzYWx0$M2ix", "16 to 128 bytes"},
	{"$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHRzYWx0", "5 '$'-separated"},
	{"$2b$04$short", "bcrypt"},
	{"$argon2id$" + strings.Repeat("A", 600), "longer than"},
}

func TestParseHashErrors(t *testing.T) {
	for _, tc := range badHashes {
		_, err := parseHash(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseHash(%.40q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseHash(f *testing.F) {
	f.Add(testArgonHash)
	f.Add(testBcryptHash)
	for _, tc := range badHashes {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseHash(s)
		if err != nil {
			return
		}
		if a, ok := h.(*argon2idHash); ok {
			if a.memory > maxArgonMemoryKiB || a.time > maxArgonTime || a.threads > maxArgonThreads {
				t.Fatalf("limits not enforced: %+v", a)
			}
			// Cheap enough to verify only with small parameters.
			if a.memory <= 256 && a.time <= 2 {
				h.verify("x")
			}
		}
	})
}
