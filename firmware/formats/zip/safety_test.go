package zip_test

import (
	"path/filepath"
	"testing"

	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/firmware/formats"
)

// TestUnpackStaysInside unpacks the hostile fixtures with the engine and
// checks that nothing lands outside the output folder, that symlinks on disk
// resolve inside it, that no device node or setuid bit reaches the disk, and
// that the manifest keeps the original names.
func TestUnpackStaysInside(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hostile []string
	}{
		{"zip-traversal.zip", []string{"../../evil.sh", "/etc/cron.d/evil", "shadow", "tmpdir/cordon-escape-check", "up/cordon-escape-check-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			firmwaretest.CheckUnpackStaysInside(t, filepath.Join("testdata", tc.name), formats.All, tc.hostile)
		})
	}
}
