// Package formats holds the one ordered list of firmware formats Cordon knows.
// The engine tries candidates at the same offset in this order, so more
// specific formats come first: vendor packages, containers, filesystems,
// archives, compression, then carve-only formats. There is no init()
// registration: a format exists when it is listed here.
package formats

import (
	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/androidboot"
	"github.com/cordon-vms/cordon/firmware/formats/ar"
	"github.com/cordon-vms/cordon/firmware/formats/compress"
	"github.com/cordon-vms/cordon/firmware/formats/cpio"
	"github.com/cordon-vms/cordon/firmware/formats/dahua"
	"github.com/cordon-vms/cordon/firmware/formats/dtb"
	"github.com/cordon-vms/cordon/firmware/formats/elf"
	"github.com/cordon-vms/cordon/firmware/formats/ext"
	"github.com/cordon-vms/cordon/firmware/formats/fit"
	"github.com/cordon-vms/cordon/firmware/formats/flash"
	"github.com/cordon-vms/cordon/firmware/formats/hikvision"
	"github.com/cordon-vms/cordon/firmware/formats/pem"
	"github.com/cordon-vms/cordon/firmware/formats/romfs"
	"github.com/cordon-vms/cordon/firmware/formats/sevenzip"
	"github.com/cordon-vms/cordon/firmware/formats/sparse"
	"github.com/cordon-vms/cordon/firmware/formats/squashfs"
	"github.com/cordon-vms/cordon/firmware/formats/tar"
	"github.com/cordon-vms/cordon/firmware/formats/trx"
	"github.com/cordon-vms/cordon/firmware/formats/uimage"
	"github.com/cordon-vms/cordon/firmware/formats/xiongmai"
	"github.com/cordon-vms/cordon/firmware/formats/yaffs2"
	"github.com/cordon-vms/cordon/firmware/formats/zip"
)

// All lists every format, most specific first.
var All = []*firmware.Format{
	// Vendor packages.
	dahua.Format,
	xiongmai.Format,
	hikvision.Format,

	// Boot and partition containers.
	uimage.Format,
	sparse.Format,
	flash.UBI,
	fit.Format, // before dtb: same magic, needs /images
	dtb.Format,
	trx.Format,
	androidboot.Format,

	// Filesystems.
	squashfs.Format,
	ext.Format,
	flash.JFFS2,
	flash.Cramfs,
	flash.UBIFS,
	romfs.Format,
	yaffs2.Format,

	// Archives.
	cpio.Format,
	zip.Format,
	tar.Format,
	ar.Format,
	sevenzip.Format,

	// Compression.
	compress.GZIP,
	compress.XZ,
	compress.Zstd,
	compress.Bzip2,
	compress.LZ4,
	compress.LZ4Legacy,
	compress.LZOP,
	compress.LZMA,
	compress.Zlib,

	// Carve only (identified and cut out, not extracted).
	elf.Format,
	pem.PEM,
	pem.DER,
}
