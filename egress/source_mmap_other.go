//go:build !unix

package egress

import "os"

// mapFile is not available here: files are read.
func mapFile(*os.File) []byte { return nil }

func unmapFile([]byte) error { return nil }

func releaseMapped([]byte) {}
