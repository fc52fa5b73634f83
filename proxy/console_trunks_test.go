package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestConsoleTrunks: the cameras page of a core lists its trunks (state,
// cameras up), rendered on the server and refreshed by console.js; a
// proxy without trunks hides the section.
func TestConsoleTrunks(t *testing.T) {
	sim := startCamsim(t, "cam1")
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	elog, _ := newLog(t)
	edge := startProxy(t, edgeConfig(sim.URL("cam1"), "127.0.0.1:0", edgeK, coreK.fp), elog)
	clog, _ := newLog(t)
	ccfg := coreConfig(edge.TrunkAddr().String(), coreK, edgeK.fp, "*")
	ccfg.Trunks[0].AlwaysOn = true // (on demand, the camera would be idle without a reader)
	core := startProxy(t, ccfg, clog)
	waitFor(t, "site-a/cam1 up at the core", 15*time.Second, func() bool { return cameraState(core, "site-a/cam1") == stateUp })

	page := httpGet(t, "http://"+core.AdminAddr().String()+"/")
	if !strings.Contains(page, `<section id="trunks-section">`) || !strings.Contains(page, "<td>site-a</td>") {
		t.Errorf("the core's cameras page does not show its trunk:\n%s", page)
	}
	if page := httpGet(t, "http://"+edge.AdminAddr().String()+"/"); !strings.Contains(page, "This proxy is an edge on") {
		t.Errorf("the edge's cameras page does not say it is an edge:\n%s", page)
	}
	plog, _ := newLog(t)
	plain := startProxy(t, testConfig(Camera{Name: "door", URL: MustParseSecretURL(sim.URL("cam1"))}), plog)
	if page := httpGet(t, "http://"+plain.AdminAddr().String()+"/"); !strings.Contains(page, `<section id="trunks-section" hidden>`) {
		t.Error("a proxy without trunks shows a trunks section")
	}

	ctx := browser(t)
	errs := pageErrors(ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+core.AdminAddr().String()+"/"), chromedp.WaitVisible(`#cameras tbody tr[data-camera]`),
		chromedp.Sleep(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	row, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#trunks tbody tr td")).map(td => td.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(row) < 5 || row[0] != "site-a" || row[2] != "up" || row[4] != "1" {
		t.Errorf("trunk row after console.js's refresh: %q, want site-a up with 1 camera up", row)
	}
	shoot(t, ctx, "console-trunks.png")
	if e := errs(); len(e) > 0 {
		t.Errorf("page errors: %q", e)
	}
}
