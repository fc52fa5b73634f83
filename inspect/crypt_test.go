package inspect

import (
	"crypto/des"
	"strings"
	"testing"
)

// Vectors made with the real tools: perl's crypt (libxcrypt) for DES and
// bcrypt, `openssl passwd -1/-5/-6 -salt S PASSWORD` for the others.
var cryptVectors = []struct {
	password, hash string
}{
	{"admin", "abOV.DfJmdnYw"},
	{"12345", "ab80DAu2C3JN6"},
	{"", "abmF1QH4PEr.E"},
	{"password123", "abJnggxhB/yWI"},
	{"averylongpasswordthatexceedssixteenbytes_and_more_than_32_bytes_long_yes", "ab8rPp61EtyKo"},
	{"hunter2", "./sW9tY03ne.g"},
	{"admin", "$1$saltsalt$Y3BMhxQHmg7scgLILa56u1"},
	{"12345", "$1$saltsalt$D3sU70kpF3He9qC7gHU1h0"},
	{"", "$1$saltsalt$5Jhcit4zN9UlGiA0txPkO0"},
	{"password123", "$1$saltsalt$4WS.Uhxmahm1YZiMsUNcc0"},
	{"averylongpasswordthatexceedssixteenbytes_and_more_than_32_bytes_long_yes", "$1$saltsalt$VwcKBPw3c1ydqtso.TjSL."},
	{"admin", "$5$saltsaltsaltsalt$n42WSM0Mek5TSTe1IYBEx8KyzcKC3P30D3JcKsobQK7"},
	{"12345", "$5$saltsaltsaltsalt$c21F8sFzZn6GR8j.FyKrxyMHaXwJ7kh6eD/bCP5KZk6"},
	{"password123", "$5$saltsaltsaltsalt$h10cJWft72b9lzDNFX/2Iaexm/xwKCZRzY9HSX20Gi6"},
	{"averylongpasswordthatexceedssixteenbytes_and_more_than_32_bytes_long_yes", "$5$saltsaltsaltsalt$RsMxotx/PIuG0TlB7tS1cqMbJfZyKeJb0rScRAHY8m6"},
	{"admin", "$6$abc$P6yIxESFrlWU3nxdnlf.KBBBE05eZvSkNklUihdVYMYkLC.WSHUU1FF5d75FZfMUeOtyvM1wnaDtTm4FjaP/K0"},
	{"12345", "$6$abc$/4mgCFFuYLu5rftr/LKWcD2KMg.1hzu4Ov9BR3CdSgf7DiEBnstGHcLmRIueiLukK39XYl944aa425a.x.S6y/"},
	{"password123", "$6$abc$t0PKQdQr8ACWBhsx4QF4oFozYDf5Jur3VD4E7MnqNbGee8rqdTSjVTmRG.khKeo75zH/EnFQJ03ILEiq4Xja70"},
	{"averylongpasswordthatexceedssixteenbytes_and_more_than_32_bytes_long_yes", "$6$abc$GYiAPTaG7zlnl2WseybuOJT7NqaW5Kv2a4TjIZftPNMq/nrUr7NF7fN4JSGbzTDq08lOrL7VtzMhmssXa/mky1"},
	{"hunter2", "$6$rounds=1500$xyz$yHZYhL39tt4V888sTLz4rXNxuoLm3YSAr1RQ67defHBgqTNsRPdwr2xyMZ2aQ8Os8ecyNx5cACeRl9c.YtkI6/"},
	{"x", "$2b$05$abcdefghijklmnopqrstuuhKF09ZYWwH2zP/0fwE1X8e/Q1YNx/hO"},
}

func TestVerifyPassword(t *testing.T) {
	for _, v := range cryptVectors {
		ok, err := verifyPassword(v.hash, v.password)
		if err != nil || !ok {
			t.Errorf("verifyPassword(%q, %q) = %v, %v; want true", v.hash, v.password, ok, err)
		}
		ok, err = verifyPassword(v.hash, "x"+v.password) // DES reads 8 characters only
		if err != nil || ok {
			t.Errorf("verifyPassword(%q, wrong) = %v, %v; want false", v.hash, ok, err)
		}
	}
}

// TestDESCoreMatchesStdlib checks the bit-level DES against crypto/des: with
// salt ".." (no E-box swaps) crypt is 25 encryptions of a zero block.
func TestDESCoreMatchesStdlib(t *testing.T) {
	for _, pw := range []string{"admin", "12345678", "", "Zz9!"} {
		var key [8]byte
		for i := 0; i < len(pw) && i < 8; i++ {
			key[i] = pw[i] << 1
		}
		c, err := des.NewCipher(key[:])
		if err != nil {
			t.Fatal(err)
		}
		var blk [8]byte
		for range 25 {
			c.Encrypt(blk[:], blk[:])
		}
		var want []byte
		var acc, n uint
		for _, b := range append(blk[:], 0) {
			acc = acc<<8 | uint(b)
			n += 8
			for n >= 6 && len(want) < 11 {
				n -= 6
				want = append(want, cryptAlphabet[(acc>>n)&0x3f])
			}
		}
		got, err := desCrypt(pw, "..")
		if err != nil || got != ".."+string(want) {
			t.Errorf("desCrypt(%q, ..) = %q, %v; want ..%s", pw, got, err, want)
		}
	}
}

func TestClassifyHash(t *testing.T) {
	for field, want := range map[string]HashKind{
		"": HashNone, "*": HashLocked, "!": HashLocked, "!!": HashLocked, "x": HashLocked,
		"abOV.DfJmdnYw": HashDES, "!abOV.DfJmdnYw": HashLocked, "$1$a$b": HashMD5, "$5$a$b": HashSHA256,
		"$6$a$b": HashSHA512, "$2y$10$x": HashBcrypt, "$y$j9T$abc": HashUnknown,
		strings.Repeat("a", 300): HashLocked,
	} {
		if got := classifyHash(field); got != want {
			t.Errorf("classifyHash(%q) = %s; want %s", field, got, want)
		}
	}
}

func TestVerifyPasswordLimits(t *testing.T) {
	for _, h := range []string{
		"$6$rounds=999999999$abc$xyz",
		"$2b$31$abcdefghijklmnopqrstuuhKF09ZYWwH2zP/0fwE1X8e/Q1YNx/hO",
		"$y$j9T$abc$def",
		"$6$rounds=abc$x$y",
	} {
		if ok, err := verifyPassword(h, "x"); err == nil || ok {
			t.Errorf("verifyPassword(%q) = %v, %v; want an error", h, ok, err)
		}
	}
}

func FuzzVerifyPassword(f *testing.F) {
	for _, v := range cryptVectors {
		f.Add(v.hash, v.password)
	}
	f.Add("$6$rounds=1000$", "a")
	f.Add("$1$", "")
	f.Add("$5$rounds=", "")
	f.Fuzz(func(t *testing.T, hash, password string) {
		if strings.HasPrefix(hash, "$2") || strings.Contains(hash, "rounds=") && len(hash) > 40 {
			return // bcrypt and large round counts are slow by design
		}
		ok, err := verifyPassword(hash, password)
		if err != nil && ok {
			t.Fatal("error with a match")
		}
	})
}
