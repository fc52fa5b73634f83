// Package pcapgen writes the crafted pcaps egress is tested and benchmarked
// on: Ethernet/IPv4 packets serialised with gopacket, carrying planted events
// (one per detection) next to allowed traffic that must stay silent, and a
// large mixed capture for the benchmark. QUIC Initials come from a real QUIC
// client (quic-go) so their keys and encryption are genuine.
package pcapgen
