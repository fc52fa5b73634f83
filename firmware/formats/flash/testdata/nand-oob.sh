#!/bin/sh
# nand-oob.sh PAGE OOB <in >out — write a flash image as a raw NAND dump
# reads it: every PAGE-byte page followed by OOB spare bytes. The spare area
# starts with the 0xFF 0xFF good-block marker; the rest is ECC-like bytes
# that change with the page number (modulo 8, so that gzip keeps the
# fixtures small; not a real ECC: readers must skip it).
# An erased page (all 0xFF) has an erased spare area, as NAND controllers
# leave it. A page that starts with the 8 bytes "BADBLOCK" gets the bad-block
# marker 0x00 0x00 instead. Used by recipe-ubi.sh.
set -eu
exec perl -e '
	binmode STDIN; binmode STDOUT;
	my ($page, $oob) = @ARGV;
	my $i = 0;
	while ((my $n = read(STDIN, my $buf, $page)) > 0) {
		$buf .= "\xff" x ($page - $n);
		my $bbm = substr($buf, 0, 8) eq "BADBLOCK" ? "\0\0" : "\xff\xff";
		my $ecc = join "", map { chr((($i % 8) * 7 + $_ * 13 + 1) & 255) } 1 .. $oob - 2;
		$ecc = "\xff" x ($oob - 2) if $buf eq "\xff" x $page; # an erased page
		print $buf, $bbm, $ecc;
		$i++;
	}' "${1:?usage: nand-oob.sh PAGE OOB}" "${2:?usage: nand-oob.sh PAGE OOB}"
