// Package inspect reports what an unpacked firmware tree contains: accounts
// and crackable password hashes, private keys and credentials, services that
// start at boot, phone-home endpoints classified against the vendor-cloud
// watch-list, software components (as a CycloneDX SBOM) and the hardening of
// every ELF binary. It reads an fs.FS and never imports the firmware
// unpacker; the setuid bits and device nodes that an unpacker keeps off the
// disk come from the report.json manifest at the tree's root when present.
package inspect
