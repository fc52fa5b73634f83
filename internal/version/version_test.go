package version

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestFrom(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "3f2a1b9c0d1e5566778899"}, {Key: "vcs.modified", Value: "false"}}
	dirty := []debug.BuildSetting{{Key: "vcs.revision", Value: "3f2a1b9c0d1e5566778899"}, {Key: "vcs.modified", Value: "true"}}
	for _, tc := range []struct {
		name   string
		linked string
		bi     *debug.BuildInfo
		want   string
	}{
		{"linked", "v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs}, "v1.2.3"},
		{"no build info", "", nil, "devel"},
		{"module version", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}}, "v0.4.0"},
		{"checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs}, "devel+3f2a1b9c0d1e"},
		{"dirty checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: dirty}, "devel+3f2a1b9c0d1e-dirty"},
		{"pseudo-version of a dirty tree", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201-3f2a1b9c0d1e+dirty"}, Settings: dirty}, "devel+3f2a1b9c0d1e-dirty"},
	} {
		if got := from(tc.linked, "", tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFromLinkedCommit(t *testing.T) {
	// A release script's ldflags: the commit of an untagged build, from a
	// worktree where the go command could not stamp it.
	if got, want := from("", "3f2a1b9c0d1e5566778899-dirty", nil), "devel+3f2a1b9c0d1e-dirty"; got != want {
		t.Errorf("linked commit: %q, want %q", got, want)
	}
	if got, want := from("v1.2.3", "3f2a1b9c0d1e5566778899", nil), "v1.2.3"; got != want {
		t.Errorf("linked version and commit: %q, want %q", got, want)
	}
}

func TestRevisionAndDate(t *testing.T) {
	stamped := &debug.BuildInfo{Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "3f2a1b9c0d1e5566778899"}, {Key: "vcs.time", Value: "2026-11-30T22:15:04+01:00"}, {Key: "vcs.modified", Value: "true"},
	}}
	if got, want := revision(stamped), "3f2a1b9c0d1e5566778899-dirty"; got != want {
		t.Errorf("revision: %q, want %q", got, want)
	}
	if got := revision(&debug.BuildInfo{}); got != "" {
		t.Errorf("revision without VCS: %q", got)
	}
	for _, tc := range []struct {
		name, linked string
		bi           *debug.BuildInfo
		want         string
	}{
		{"vcs time in UTC", "", stamped, "2026-11-30T21:15:04Z"},
		{"linked wins", "2026-12-01T00:00:00Z", stamped, "2026-12-01T00:00:00Z"},
		{"nothing", "", &debug.BuildInfo{}, ""},
		{"no build info", "", nil, ""},
		{"bad vcs time", "", &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.time", Value: "yesterday"}}}, ""},
	} {
		if got := date(tc.linked, tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "cordon_build_info" || mfs[0].Metric[0].GetGauge().GetValue() != 1 {
		t.Fatalf("gathered %v, want cordon_build_info 1", mfs)
	}
	labels := map[string]string{}
	for _, l := range mfs[0].Metric[0].Label {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["version"] != String() || labels["goversion"] != runtime.Version() {
		t.Errorf("labels %v, want version %q and goversion %q", labels, String(), runtime.Version())
	}
	for _, k := range []string{"revision", "build_date"} {
		if _, ok := labels[k]; !ok {
			t.Errorf("label %s missing (%v)", k, labels)
		}
	}
}
