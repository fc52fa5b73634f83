package main

import (
	"context"
	"fmt"
	"os"

	"github.com/cordon-vms/cordon/proxy"
)

const trunkUsage = `usage: cordon trunk keygen -o DIR

A trunk links an edge proxy (on a camera site) to a core proxy over one QUIC
connection with mutual TLS; each end pins the other's certificate by its
SHA-256 fingerprint (or trusts a CA of its own: trunk.ca). By default the
core dials the edge; an edge behind NAT dials the core (trunk.dial). See
docs/trunk.md.

Subcommands:

  keygen   write a key pair for one end and print its fingerprint
`

const trunkKeygenUsage = `usage: cordon trunk keygen -o DIR [--name NAME]

Writes a new ECDSA P-256 key (DIR/trunk.key, mode 0600) and a self-signed
certificate (DIR/trunk.crt) for one end of a trunk, and prints the
certificate's SHA-256 fingerprint: paste it on the other end (under
trunk.peers on an edge, as trunks[].fingerprint on a core). Existing files
are never overwritten.

Example:

  cordon trunk keygen -o /etc/cordon/trunk --name site-a
`

// runTrunk is "cordon trunk".
func runTrunk(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "keygen" {
		return runTrunkKeygen(ctx, e, args[1:])
	}
	fs := newFlagSet(e, "trunk", trunkUsage)
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("trunk: name a subcommand: cordon trunk keygen -o DIR")
	}
	return usagef("trunk: unknown subcommand %q: the subcommand is keygen", fs.Arg(0))
}

// runTrunkKeygen is "cordon trunk keygen".
func runTrunkKeygen(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "trunk keygen", trunkKeygenUsage)
	dir := fs.String("o", "", "the `DIR`ectory to write trunk.key and trunk.crt into (created if missing)")
	name := fs.String("name", "cordon-trunk", "the certificate's common `NAME` (shown in logs, not verified)")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return usagef("trunk keygen: want -o DIR")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("trunk keygen: %w", err)
	}
	fp, err := proxy.GenerateTrunkKey(*dir, *name)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "wrote %s/%s and %s/%s\nfingerprint: %s\n", *dir, proxy.TrunkKeyFile, *dir, proxy.TrunkCertFile, fp)
	return nil
}
