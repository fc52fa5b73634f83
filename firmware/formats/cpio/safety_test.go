package cpio_test

import (
	"testing"

	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/firmware/formats"
)

// TestUnpackStaysInside unpacks the hostile fixtures with the engine: see
// firmwaretest.CheckUnpackStaysInside for what must hold.
func TestUnpackStaysInside(t *testing.T) {
	firmwaretest.CheckFixturesStayInside(t, formats.All, map[string][]string{
		"cpio-traversal.cpio": {"../evil", "link", "/tmp/xxxxxxxxxxxxxx/abs/evil"},
		"cpio-newc.cpio":      {"bin/busybox", "dev/console", "dev/mtdblock0", "dev/initctl"},
	})
}
