// Command cordon keeps untrusted IP cameras off the core network and shows what
// their firmware and traffic really do. See README.md and docs/ for each subcommand.
package main

import "os"

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
