package inspect

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// HashKind names the crypt(3) scheme of a password hash.
type HashKind string

// Hash kinds recognised in passwd/shadow password fields.
const (
	HashNone         HashKind = "none"    // empty field: no password at all
	HashLocked       HashKind = "locked"  // "*", "!", "!!", "x" or another non-hash: no password login
	HashDES          HashKind = "des"     // traditional 13-character DES crypt
	HashMD5          HashKind = "md5"     // $1$
	HashSHA256       HashKind = "sha256"  // $5$
	HashSHA512       HashKind = "sha512"  // $6$
	HashBcrypt       HashKind = "bcrypt"  // $2a$, $2b$, $2y$
	HashUnknown      HashKind = "unknown" // another $id$ scheme (yescrypt, ...): reported, not cracked
	hashMaxLen                = 256       // longer fields are not hashes
	shaMaxRounds              = 200_000   // larger round counts are not tried (time limit)
	bcryptMaxCost             = 12        // larger costs are not tried (time limit)
	shaDefaultRounds          = 5000      // crypt(3) default for $5$/$6$
	shaMinRounds              = 1000      // crypt(3) clamps smaller counts to this
	shaMaxSaltLen             = 16        // crypt(3) truncates longer salts
	md5MaxSaltLen             = 8         // crypt(3) truncates longer salts
	errCryptPrefix            = "inspect: crypt: "
)

// errCryptFormat reports a password field that does not parse as its scheme.
var errCryptFormat = errors.New(errCryptPrefix + "malformed hash")

// classifyHash returns the scheme of a passwd/shadow password field.
func classifyHash(field string) HashKind {
	switch {
	case field == "":
		return HashNone
	case len(field) > hashMaxLen:
		return HashLocked
	case strings.HasPrefix(field, "$1$"):
		return HashMD5
	case strings.HasPrefix(field, "$5$"):
		return HashSHA256
	case strings.HasPrefix(field, "$6$"):
		return HashSHA512
	case strings.HasPrefix(field, "$2a$"), strings.HasPrefix(field, "$2b$"), strings.HasPrefix(field, "$2y$"):
		return HashBcrypt
	case strings.HasPrefix(field, "$"):
		return HashUnknown
	case len(field) == 13 && allCryptChars(field):
		return HashDES
	}
	return HashLocked
}

// verifyPassword reports whether password hashes to the crypt(3) hash. It
// implements DES, MD5, SHA-256 and SHA-512 crypt natively (no cgo) and bcrypt
// through x/crypto. Hashes whose cost exceeds the time limits, and unknown
// schemes, return an error.
func verifyPassword(hash, password string) (bool, error) {
	var got string
	var err error
	switch classifyHash(hash) {
	case HashDES:
		got, err = desCrypt(password, hash[:2])
	case HashMD5:
		got, err = md5Crypt(password, hash)
	case HashSHA256:
		got, err = shaCrypt(sha256.New, password, hash)
	case HashSHA512:
		got, err = shaCrypt(sha512.New, password, hash)
	case HashBcrypt:
		cost, cerr := bcrypt.Cost([]byte(hash))
		if cerr != nil {
			return false, fmt.Errorf("%s%w: %v", errCryptPrefix, errCryptFormat, cerr)
		}
		if cost > bcryptMaxCost {
			return false, fmt.Errorf("%sbcrypt cost %d exceeds the limit %d", errCryptPrefix, cost, bcryptMaxCost)
		}
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil, nil
	default:
		return false, fmt.Errorf("%sunsupported scheme in %.10q", errCryptPrefix, hash)
	}
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(hash)) == 1, nil
}

const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func allCryptChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(cryptAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// b64From24 appends n characters encoding the 24-bit value b2:b1:b0, least
// significant six bits first (the crypt(3) "b64_from_24bit").
func b64From24(dst []byte, b2, b1, b0 byte, n int) []byte {
	w := uint32(b2)<<16 | uint32(b1)<<8 | uint32(b0)
	for ; n > 0; n-- {
		dst = append(dst, cryptAlphabet[w&0x3f])
		w >>= 6
	}
	return dst
}

// md5Crypt computes the "$1$" MD5-crypt of password with the salt of setting
// (the part between "$1$" and the next "$", at most 8 characters).
func md5Crypt(password, setting string) (string, error) {
	rest, ok := strings.CutPrefix(setting, "$1$")
	if !ok {
		return "", errCryptFormat
	}
	salt, _, _ := strings.Cut(rest, "$")
	if len(salt) > md5MaxSaltLen {
		salt = salt[:md5MaxSaltLen]
	}
	pw := []byte(password)
	a := md5.New()
	a.Write(pw)
	a.Write([]byte("$1$"))
	a.Write([]byte(salt))
	b := md5.New()
	b.Write(pw)
	b.Write([]byte(salt))
	b.Write(pw)
	fin := b.Sum(nil)
	a.Write(repeatTo(fin, len(pw)))
	for i := len(pw); i != 0; i >>= 1 {
		if i&1 != 0 {
			a.Write([]byte{0})
		} else {
			a.Write(pw[:1])
		}
	}
	fin = a.Sum(nil)
	c, sl := md5.New(), []byte(salt)
	for i := range 1000 {
		fin = cryptRound(c, i, fin, pw, sl)
	}
	out := []byte("$1$" + salt + "$")
	for _, g := range [][3]int{{0, 6, 12}, {1, 7, 13}, {2, 8, 14}, {3, 9, 15}, {4, 10, 5}} {
		out = b64From24(out, fin[g[0]], fin[g[1]], fin[g[2]], 4)
	}
	out = b64From24(out, 0, 0, fin[11], 2)
	return string(out), nil
}

// repeatTo returns the first n bytes of sum repeated.
func repeatTo(sum []byte, n int) []byte {
	out := make([]byte, 0, n)
	for ; n > 0; n -= len(sum) {
		out = append(out, sum[:min(n, len(sum))]...)
	}
	return out
}

// cryptRound is round i of the MD5-crypt and SHA-crypt loops: it hashes prev
// and pw (in an order that alternates), with salt unless i is a multiple of
// 3 and pw again unless i is a multiple of 7, and returns the sum in prev's
// storage.
func cryptRound(h hash.Hash, i int, prev, pw, salt []byte) []byte {
	h.Reset()
	if i&1 != 0 {
		h.Write(pw)
	} else {
		h.Write(prev)
	}
	if i%3 != 0 {
		h.Write(salt)
	}
	if i%7 != 0 {
		h.Write(pw)
	}
	if i&1 != 0 {
		h.Write(prev)
	} else {
		h.Write(pw)
	}
	return h.Sum(prev[:0])
}

// Byte orders of the final encoding of SHA-crypt (Drepper's specification).
var (
	sha256Order = [][3]int{{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14},
		{15, 25, 5}, {6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29}}
	sha512Order = [][3]int{{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4},
		{47, 5, 26}, {6, 27, 48}, {28, 49, 7}, {50, 8, 29}, {9, 30, 51}, {31, 52, 10},
		{53, 11, 32}, {12, 33, 54}, {34, 55, 13}, {56, 14, 35}, {15, 36, 57}, {37, 58, 16},
		{59, 17, 38}, {18, 39, 60}, {40, 61, 19}, {62, 20, 41}}
)

// shaCrypt computes the "$5$" (SHA-256) or "$6$" (SHA-512) crypt of password
// with the salt and optional "rounds=N$" of setting.
func shaCrypt(newHash func() hash.Hash, password, setting string) (string, error) {
	prefix, salt, rounds, custom, err := parseSHASetting(setting)
	if err != nil {
		return "", err
	}
	c := shaCryptSum(newHash, []byte(password), []byte(salt), rounds)
	out := []byte(prefix)
	if custom {
		out = append(out, "rounds="+strconv.Itoa(rounds)+"$"...)
	}
	out = append(out, salt...)
	out = append(out, '$')
	if len(c) == sha256.Size {
		for _, g := range sha256Order {
			out = b64From24(out, c[g[0]], c[g[1]], c[g[2]], 4)
		}
		out = b64From24(out, 0, c[31], c[30], 3)
	} else {
		for _, g := range sha512Order {
			out = b64From24(out, c[g[0]], c[g[1]], c[g[2]], 4)
		}
		out = b64From24(out, 0, 0, c[63], 2)
	}
	return string(out), nil
}

// parseSHASetting splits a SHA-crypt setting into its "$N$" prefix, its
// salt (cut to shaMaxSaltLen), and its rounds (custom when "rounds=N$" is
// given, then clamped to shaMinRounds and refused above shaMaxRounds).
func parseSHASetting(setting string) (prefix, salt string, rounds int, custom bool, err error) {
	if len(setting) < 3 {
		return "", "", 0, false, errCryptFormat
	}
	prefix = setting[:3]
	rest := setting[3:]
	rounds = shaDefaultRounds
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		num, after, found := strings.Cut(r, "$")
		if !found {
			return "", "", 0, false, errCryptFormat
		}
		n, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			return "", "", 0, false, fmt.Errorf("%w: rounds %q", errCryptFormat, num)
		}
		if n > shaMaxRounds {
			return "", "", 0, false, fmt.Errorf("%srounds %d exceed the limit %d", errCryptPrefix, n, shaMaxRounds)
		}
		rounds, custom, rest = max(int(n), shaMinRounds), true, after
	}
	salt, _, _ = strings.Cut(rest, "$")
	if len(salt) > shaMaxSaltLen {
		salt = salt[:shaMaxSaltLen]
	}
	return prefix, salt, rounds, custom, nil
}

// shaCryptSum computes the SHA-crypt digest of pw with salt sl over the
// given rounds (the digests B, A, DP and DS, then the rounds), before its
// encoding.
func shaCryptSum(newHash func() hash.Hash, pw, sl []byte, rounds int) []byte {
	b := newHash()
	b.Write(pw)
	b.Write(sl)
	b.Write(pw)
	sumB := b.Sum(nil)

	a := newHash()
	a.Write(pw)
	a.Write(sl)
	a.Write(repeatTo(sumB, len(pw)))
	for i := len(pw); i > 0; i >>= 1 {
		if i&1 != 0 {
			a.Write(sumB)
		} else {
			a.Write(pw)
		}
	}
	sumA := a.Sum(nil)

	dp := newHash()
	for range len(pw) {
		dp.Write(pw)
	}
	p := repeatTo(dp.Sum(nil), len(pw))

	ds := newHash()
	for range 16 + int(sumA[0]) {
		ds.Write(sl)
	}
	s := repeatTo(ds.Sum(nil), len(sl))

	c := sumA
	h := newHash()
	for i := range rounds {
		c = cryptRound(h, i, c, p, s)
	}
	return c
}
