package zip_test

import (
	"testing"

	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/firmware/formats"
)

// TestUnpackStaysInside unpacks the hostile fixtures with the engine: see
// firmwaretest.CheckUnpackStaysInside for what must hold.
func TestUnpackStaysInside(t *testing.T) {
	firmwaretest.CheckFixturesStayInside(t, formats.All, map[string][]string{
		"zip-traversal.zip": {"../../evil.sh", "/etc/cron.d/evil", "shadow", "tmpdir/cordon-escape-check", "up/cordon-escape-check-2"},
	})
}
