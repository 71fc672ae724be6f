//! The IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890), as tables.
//!
//! Derived from the registries' entries as last revised: IPv4 Special-Purpose Address Registry
//! of 2022-12 (the 192.0.0.170/31 NAT64 discovery entries of RFC 8880 being the latest), IPv6
//! Special-Purpose Address Registry of 2025 (3fff::/20 of RFC 9637 and 5f00::/16 of RFC 9602,
//! 2001:1::3/128 of RFC 9665, 100:0:0:1::/64 of RFC 9780). Every block is listed with its
//! "Globally Reachable" column; blocks marked "N/A" there (deprecated or special relays) are
//! treated as not globally reachable. The guard takes the *most specific* block containing an
//! address, so the globally reachable anycast entries inside 192.0.0.0/24 and 2001::/23 stay
//! reachable.
//!
//! Not in these registries but never a public unicast destination, and listed here as well:
//! IPv4 multicast 224.0.0.0/4 (IANA IPv4 Multicast Address Space Registry), IPv6 multicast
//! ff00::/8, the deprecated site-local fec0::/10 (RFC 3879) and the rest of ::/8, reserved by
//! the IETF (RFC 4291), whose ::/96 once held IPv4-compatible addresses.
//!
//! IPv4-mapped (::ffff:0:0/96), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses embed an
//! IPv4 address, which decides (see [`super::guard`]).

use std::net::{Ipv4Addr, Ipv6Addr};

/// One registry entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block<A> {
    /// The first address.
    pub addr: A,
    /// The prefix length in bits.
    pub len: u8,
    /// The registry's name for it.
    pub name: &'static str,
    /// Where it is defined.
    pub rfc: &'static str,
    /// The registry's "Globally Reachable" (`N/A` counted as `false`).
    pub globally_reachable: bool,
}

#[allow(clippy::too_many_arguments)]
const fn v4(
    a: u8,
    b: u8,
    c: u8,
    d: u8,
    len: u8,
    name: &'static str,
    rfc: &'static str,
    global: bool,
) -> Block<Ipv4Addr> {
    Block { addr: Ipv4Addr::new(a, b, c, d), len, name, rfc, globally_reachable: global }
}

const fn v6(s: [u16; 8], len: u8, name: &'static str, rfc: &'static str, global: bool) -> Block<Ipv6Addr> {
    Block {
        addr: Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
        name,
        rfc,
        globally_reachable: global,
    }
}

/// The IPv4 table.
pub const IPV4: &[Block<Ipv4Addr>] = &[
    v4(0, 0, 0, 0, 8, "\"this network\"", "RFC 791", false),
    v4(0, 0, 0, 0, 32, "\"this host on this network\"", "RFC 1122", false),
    v4(10, 0, 0, 0, 8, "private-use", "RFC 1918", false),
    v4(100, 64, 0, 0, 10, "shared (carrier-grade NAT)", "RFC 6598", false),
    v4(127, 0, 0, 0, 8, "loopback", "RFC 1122", false),
    v4(169, 254, 0, 0, 16, "link-local", "RFC 3927", false),
    v4(169, 254, 169, 254, 32, "link-local (the cloud metadata service)", "RFC 3927", false),
    v4(172, 16, 0, 0, 12, "private-use", "RFC 1918", false),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments", "RFC 6890", false),
    v4(192, 0, 0, 0, 29, "IPv4 service continuity prefix", "RFC 7335", false),
    v4(192, 0, 0, 8, 32, "IPv4 dummy address", "RFC 7600", false),
    v4(192, 0, 0, 9, 32, "Port Control Protocol anycast", "RFC 7723", true),
    v4(192, 0, 0, 10, 32, "TURN anycast", "RFC 8155", true),
    v4(192, 0, 0, 170, 32, "NAT64/DNS64 discovery", "RFC 8880", false),
    v4(192, 0, 0, 171, 32, "NAT64/DNS64 discovery", "RFC 8880", false),
    v4(192, 0, 2, 0, 24, "documentation (TEST-NET-1)", "RFC 5737", false),
    v4(192, 31, 196, 0, 24, "AS112-v4", "RFC 7535", true),
    v4(192, 52, 193, 0, 24, "AMT", "RFC 7450", true),
    v4(192, 88, 99, 0, 24, "deprecated 6to4 relay anycast", "RFC 7526", false),
    v4(192, 168, 0, 0, 16, "private-use", "RFC 1918", false),
    v4(192, 175, 48, 0, 24, "direct delegation AS112 service", "RFC 7534", true),
    v4(198, 18, 0, 0, 15, "benchmarking", "RFC 2544", false),
    v4(198, 51, 100, 0, 24, "documentation (TEST-NET-2)", "RFC 5737", false),
    v4(203, 0, 113, 0, 24, "documentation (TEST-NET-3)", "RFC 5737", false),
    v4(224, 0, 0, 0, 4, "multicast", "RFC 5771", false),
    v4(240, 0, 0, 0, 4, "reserved", "RFC 1112", false),
    v4(255, 255, 255, 255, 32, "limited broadcast", "RFC 919", false),
];

/// The IPv6 table (IPv4-mapped, NAT64 and 6to4 are decided by their embedded address first).
pub const IPV6: &[Block<Ipv6Addr>] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 8, "reserved by the IETF, once IPv4-compatible", "RFC 4291", false),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified", "RFC 4291", false),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", "RFC 4291", false),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped", "RFC 4291", false),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "IPv4-IPv6 translation", "RFC 6052", true),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use IPv4/IPv6 translation", "RFC 8215", false),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", "RFC 6666", false),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "dummy IPv6 prefix", "RFC 9780", false),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF protocol assignments", "RFC 2928", false),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo", "RFC 4380", false),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128, "Port Control Protocol anycast", "RFC 7723", true),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128, "TURN anycast", "RFC 8155", true),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 3], 128, "DNS-SD service registration protocol anycast", "RFC 9665", true),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking", "RFC 5180", false),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT", "RFC 7450", true),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, "AS112-v6", "RFC 7535", true),
    v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, "deprecated ORCHID", "RFC 4843", false),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2", "RFC 7343", true),
    v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28, "drone remote ID entity tags", "RFC 9374", true),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation", "RFC 3849", false),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4", "RFC 3056", true),
    v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48, "direct delegation AS112 service", "RFC 7534", true),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation", "RFC 9637", false),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing (SRv6) SIDs", "RFC 9602", false),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local", "RFC 4193", false),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local", "RFC 4291", false),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "deprecated site-local", "RFC 3879", false),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", "RFC 4291", false),
];

fn prefix_match(a: u128, b: u128, len: u8, bits: u32) -> bool {
    let shift = bits.saturating_sub(u32::from(len));
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

impl Block<Ipv4Addr> {
    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        prefix_match(u128::from(u32::from(ip)), u128::from(u32::from(self.addr)), self.len, 32)
    }
}

impl Block<Ipv6Addr> {
    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        prefix_match(u128::from(ip), u128::from(self.addr), self.len, 128)
    }
}

/// The most specific IPv4 block holding `ip`, if any.
pub fn lookup_v4(ip: Ipv4Addr) -> Option<&'static Block<Ipv4Addr>> {
    IPV4.iter().filter(|b| b.contains(ip)).max_by_key(|b| b.len)
}

/// The most specific IPv6 block holding `ip`, if any.
pub fn lookup_v6(ip: Ipv6Addr) -> Option<&'static Block<Ipv6Addr>> {
    IPV6.iter().filter(|b| b.contains(ip)).max_by_key(|b| b.len)
}

impl<A: std::fmt::Display> std::fmt::Display for Block<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an address in {}/{} ({}, {})", self.addr, self.len, self.name, self.rfc)
    }
}
