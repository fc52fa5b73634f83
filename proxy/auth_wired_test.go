package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/internal/testutil"
)

// TestDigestHashThroughProxy: ffprobe logs in with Digest to a reader whose
// password is stored as a $digest-md5$ hash; failed logins log their reason.
func TestDigestHashThroughProxy(t *testing.T) {
	testutil.NeedTool(t, "ffprobe")
	sim := startCamsim(t, "sim")
	log, logs := newLog(t)
	cfg := testConfig(Camera{Name: "sim", URL: MustParseSecretURL(sim.URL("sim"))})
	cfg.AllowAnonymous = false
	cfg.Readers = []Reader{
		{User: "nvr", PasswordHash: DigestHash("nvr", "s3cret"), Cameras: []string{"*"}},
		{User: "basic", PasswordHash: Argon2idHash("pw"), Cameras: []string{"*"}},
	}
	p := startProxy(t, cfg, log)
	url := func(user, pass string) string { return fmt.Sprintf("rtsp://%s:%s@%s/sim", user, pass, p.RTSPAddr()) }
	out, err := runTool(t, 15*time.Second, "ffprobe", "-v", "error", "-rtsp_transport", "tcp",
		"-show_entries", "stream=codec_name", "-of", "csv=p=0", url("nvr", "s3cret"))
	if err != nil || strings.TrimSpace(out) != "h264" {
		t.Fatalf("ffprobe with Digest and an HA1 hash: %v\n%s", err, out)
	}
	for _, tc := range []struct{ user, pass, reason string }{
		{"nvr", "wrong", loginWrongPassword},
		{"basic", "pw", loginBasicOnlyHash},
		{"nobody", "pw", loginUnknownUser},
	} {
		out, err := runTool(t, 15*time.Second, "ffprobe", "-v", "error", "-rtsp_transport", "tcp", url(tc.user, tc.pass))
		if err == nil || !strings.Contains(out, "401") {
			t.Errorf("%s/%s: ffprobe got in: %v\n%s", tc.user, tc.pass, err, out)
		}
		if strings.Contains(out, tc.reason) {
			t.Errorf("%s: the reason reached the client", tc.user)
		}
		if !strings.Contains(logs.String(), fmt.Sprintf("user=%s", tc.user)) || !strings.Contains(logs.String(), fmt.Sprintf("reason=%q", tc.reason)) {
			t.Errorf("%s: no log line with reason %q", tc.user, tc.reason)
		}
	}
}
