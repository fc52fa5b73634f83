package inspect

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/cordon-vms/cordon/internal/watchlist"
)

func TestComponentPatterns(t *testing.T) {
	for in, want := range map[string]string{
		"BusyBox v1.24.1 (2019-03-04 10:00:00 CST) multi-call binary.":       "busybox@1.24.1",
		"OpenSSL 1.0.2k-fips  26 Jan 2017":                                   "openssl@1.0.2k",
		"OpenSSL 3.0.19 27 Jan 2026":                                         "openssl@3.0.19",
		"Linux version 4.9.37 (builder@host) (gcc version 6.3.0) #1":         "linux@4.9.37",
		"SSH-2.0-dropbear_2019.78":                                           "dropbear@2019.78",
		"OpenSSH_7.4p1, OpenSSL 1.0.2k-fips":                                 "openssh@7.4p1",
		"Server: lighttpd/1.4.35":                                            "lighttpd@1.4.35",
		"Boa/0.94.14rc21":                                                    "boa@0.94.14rc21",
		"GoAhead-Webs/2.5.0":                                                 "goahead@2.5.0",
		"uClibc 0.9.33.2":                                                    "uclibc@0.9.33.2",
		"GNU C Library (Debian GLIBC 2.36-9) stable release version 2.36.":   "glibc@2.36",
		"libcurl/7.88.1":                                                     "curl@7.88.1",
		"deflate 1.2.11 Copyright 1995-2017 Jean-loup Gailly and Mark Adler": "zlib@1.2.11",
		"U-Boot 2016.11 (Jan 01 2020 - 00:00:00 +0800)":                      "u-boot@2016.11",
		"dnsmasq-2.80":                                                       "dnsmasq@2.80",
		"LIVE555 Streaming Media v2018.08.28":                                "live555@2018.08.28",
		"mbed TLS 2.16.0":                                                    "mbedtls@2.16.0",
		"Linux/3.10, UPnP/1.0, Portable SDK for UPnP devices/1.6.19":         "libupnp@1.6.19",
		"ntpd 4.2.8p15@1.3728-o":                                             "ntp@4.2.8p15",
	} {
		c := newCollector(&Options{Watchlist: watchlist.Default()})
		sc := newStringChecks(c, "x")
		sc.checkComponents([]byte(in))
		if _, ok := sc.components[want]; !ok || len(sc.components) != 1 {
			t.Errorf("components of %q = %v; want %s", in, sc.components, want)
		}
	}
	for _, in := range []string{"OpenSSL version mismatch", "BusyBox is a multi-call binary", "using curl/ for downloads"} {
		c := newCollector(&Options{Watchlist: watchlist.Default()})
		sc := newStringChecks(c, "x")
		sc.checkComponents([]byte(in))
		if len(sc.components) != 0 {
			t.Errorf("components of %q = %v; want none", in, sc.components)
		}
	}
}

// TestPackageSources: dpkg status, and the kernel version in a uImage name
// of report.json, each with its method and confidence.
func TestPackageSources(t *testing.T) {
	r, err := Run(context.Background(), "x", fstest.MapFS{
		"var/lib/dpkg/status": {Data: []byte("Package: openssl\nStatus: install ok installed\nVersion: 3.0.19-1~deb12u1\n\nPackage: gone\nStatus: purge ok not-installed\nVersion: 1\n")},
		"report.json": {Data: []byte(`{"manifest": [], "chunks": [{"offset": 64, "format": "uimage", "kind": "container", "outcome": "extracted",
			"description": "U-Boot legacy image \"Linux-4.14.221\", linux arm Kernel"}]}`)},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range r.Components {
		got[c.Name+"@"+c.Version] = c.FoundBy + "/" + c.Confidence + "/" + c.PURL
	}
	want := map[string]string{
		"openssl@3.0.19-1~deb12u1": FoundDpkg + "/high/pkg:deb/debian/openssl@3.0.19-1~deb12u1",
		"linux@4.14.221":           FoundUImage + "/medium/pkg:generic/linux@4.14.221",
	}
	if len(got) != len(want) {
		t.Errorf("components %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
