//! The SSRF guard: outbound requests may only reach public addresses unless private networks
//! are explicitly allowed (`--allow-private-network`, for local development and tests).
//!
//! The check runs on the addresses a host name *resolves to*, inside a custom reqwest resolver
//! that also pins the connection to the checked addresses, so a DNS answer that changes between
//! check and connect (DNS rebinding) cannot slip through. IP-literal hosts never reach a
//! resolver, so [`check_url_host`] checks them before every hop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::special_purpose;

/// Why an address is not public, or `None` when it is: the most specific block of the IANA
/// Special-Purpose Address Registries holding it, unless that block is globally reachable
/// (see [`super::special_purpose`]).
pub fn non_public_reason(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<String> {
    special_purpose::lookup_v4(ip).filter(|b| !b.globally_reachable).map(ToString::to_string)
}

fn v6_reason(ip: Ipv6Addr) -> Option<String> {
    // Mapped, NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses embed an IPv4 address that
    // decides.
    if let Some(v4) = embedded_v4(ip) {
        let how = if ip.to_ipv4_mapped().is_some() {
            "mapped into IPv6"
        } else if ip.segments()[0] == 0x2002 {
            "inside 6to4"
        } else {
            "behind NAT64"
        };
        return v4_reason(v4).map(|r| format!("{r} {how}"));
    }
    special_purpose::lookup_v6(ip).filter(|b| !b.globally_reachable).map(ToString::to_string)
}

/// Addresses that are never reachable, even when private networks are allowed: unspecified,
/// multicast and broadcast, also when an IPv6 address carries such an IPv4 address (mapped,
/// NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, the same embeddings [`non_public_reason`] reads).
fn never_allowed(ip: IpAddr) -> bool {
    let v4 = |v4: Ipv4Addr| v4.is_unspecified() || v4.is_multicast() || v4 == Ipv4Addr::BROADCAST;
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast() || embedded_v4(a).is_some_and(v4),
    }
}

/// The IPv4 address an IPv6 address carries: mapped (`::ffff:a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let (s, o) = (ip.segments(), ip.octets());
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    (s[0] == 0x2002).then(|| Ipv4Addr::new(o[2], o[3], o[4], o[5]))
}

/// Whether a connection to `ip` is allowed; `Err` says why not.
pub fn check_ip(ip: IpAddr, allow_private: bool) -> Result<(), String> {
    if never_allowed(ip) {
        return Err(format!("{ip} is {}", non_public_reason(ip).unwrap_or_else(|| "not routable".into())));
    }
    match non_public_reason(ip) {
        Some(reason) if !allow_private => Err(format!(
            "{ip} is {reason}; private networks are denied (use --allow-private-network or TERN_ALLOW_PRIVATE_NETWORK=1 for local development)"
        )),
        _ => Ok(()),
    }
}

/// Checks a URL whose host is an IP literal (resolvers never see those). Host names pass here
/// and are checked by [`GuardedResolver`] when the connection is made.
pub fn check_url_host(url: &url::Url, allow_private: bool) -> Result<(), String> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), allow_private),
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), allow_private),
        Some(url::Host::Domain(_)) => Ok(()),
        None => Err("the URL has no host".into()),
    }
}

/// How long [`refusal`] waits for a host name to resolve.
pub const SAVE_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the guard would refuse to call `url`, or `None`, for settings being saved (an
/// integration's endpoints, a channel's webhook URL): a URL Tern would never call is refused
/// when it is written, not at the first call. An IP-literal host is checked as it is; a host
/// name is resolved (at most [`SAVE_LOOKUP_TIMEOUT`]) and its addresses checked, and one that
/// does not resolve is not reported (it may resolve later; the call is checked again then).
pub async fn refusal(url: &url::Url, allow_private: bool) -> Option<String> {
    if let Some(why) = static_refusal(url, allow_private) {
        return Some(why);
    }
    match url.host() {
        Some(url::Host::Domain(host)) => {
            let port = url.port_or_known_default().unwrap_or(443);
            match tokio::time::timeout(SAVE_LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(addrs)) => addrs.filter_map(|a| check_ip(a.ip(), allow_private).err()).next(),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The part of [`refusal`] that needs no name lookup: an IP-literal host, or a loopback name
/// (`localhost`, `*.localhost`: always loopback, RFC 6761 §6.3, whether this machine resolves
/// it or not). Quick enough for every stored setting at start-up.
pub fn static_refusal(url: &url::Url, allow_private: bool) -> Option<String> {
    match url.host() {
        Some(url::Host::Domain(host)) if is_localhost_name(host) => check_ip(IpAddr::V6(Ipv6Addr::LOCALHOST), allow_private)
            .err()
            .map(|_| format!("`{host}` is a loopback name (RFC 6761 §6.3); private networks are denied (use --allow-private-network or TERN_ALLOW_PRIVATE_NETWORK=1 for local development)")),
        Some(url::Host::Domain(_)) => None,
        _ => check_url_host(url, allow_private).err(),
    }
}

/// Whether `host` is `localhost` or a name under it (any case, with or without the final dot).
fn is_localhost_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

/// The error a [`GuardedResolver`] returns; the HTTP client finds it in reqwest's error chain
/// to report a denial instead of a generic connection error.
#[derive(Debug, thiserror::Error)]
#[error("{host}: {reason}")]
pub struct Denied {
    /// The host name that was looked up.
    pub host: String,
    /// Why every address was refused.
    pub reason: String,
}

/// A DNS resolver that drops denied addresses and fails when none is left.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    /// Allow private, loopback and link-local addresses.
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut reasons = Vec::new();
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match check_ip(a.ip(), allow_private) {
                    Ok(()) => true,
                    Err(r) => {
                        reasons.push(r);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let reason = reasons.into_iter().next().unwrap_or_else(|| "no addresses".into());
                return Err(Box::new(Denied { host, reason }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(s: &str) -> bool {
        check_ip(s.parse().unwrap(), false).is_err()
    }

    #[test]
    fn classifies_addresses() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(denied(s), "{s} should be denied");
        }
        for s in ["8.8.8.8", "172.32.0.1", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!denied(s), "{s} should be allowed");
        }
    }

    /// Unspecified, multicast and broadcast addresses stay refused with private networks
    /// allowed, also inside an IPv6 address (mapped, NAT64, 6to4).
    #[test]
    fn never_routable_addresses_are_refused_in_every_form() {
        for s in [
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "ff02::1",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
            "64:ff9b::e000:1",
            "2002:e000:1::",
            "2002:ffff:ffff::",
        ] {
            assert!(
                check_ip(s.parse().unwrap(), true).is_err(),
                "{s} must be refused even with private networks allowed"
            );
        }
        for s in ["127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::"] {
            assert!(check_ip(s.parse().unwrap(), true).is_ok(), "{s} is private, allowed with the flag");
        }
    }

    /// A loopback name is refused when saved, whether it resolves here or not.
    #[tokio::test]
    async fn loopback_names_are_refused_without_a_lookup() {
        for u in ["http://localhost/x", "http://LOCALHOST./x", "http://foo.localhost:8080/"] {
            let url = url::Url::parse(u).unwrap();
            let why = refusal(&url, false).await.unwrap_or_else(|| panic!("{u} is refused"));
            assert!(why.contains("loopback name"), "{u}: {why}");
            assert!(refusal(&url, true).await.is_none(), "{u} with private networks allowed");
        }
    }

    /// One address (or two) in every block of the IANA registries, with the decision the
    /// registry's "Globally Reachable" column asks for; written out by hand, independently of
    /// the table.
    #[test]
    fn every_registry_block_is_decided_as_the_registry_says() {
        let denied_v4 = [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.0",
            "10.255.255.255",
            "100.64.0.0",
            "100.127.255.255",
            "127.0.0.0",
            "127.255.255.255",
            "169.254.0.0",
            "169.254.255.255",
            "169.254.169.254",
            "172.16.0.0",
            "172.31.255.255",
            "192.0.0.0",
            "192.0.0.7",
            "192.0.0.8",
            "192.0.0.11",
            "192.0.0.170",
            "192.0.0.171",
            "192.0.0.255",
            "192.0.2.0",
            "192.0.2.255",
            "192.88.99.0",
            "192.88.99.255",
            "192.168.0.0",
            "192.168.255.255",
            "198.18.0.0",
            "198.19.255.255",
            "198.51.100.0",
            "198.51.100.255",
            "203.0.113.0",
            "203.0.113.255",
            "224.0.0.0",
            "239.255.255.255",
            "240.0.0.0",
            "255.255.255.254",
            "255.255.255.255",
        ];
        let allowed_v4 = [
            "192.0.0.9",
            "192.0.0.10",
            "192.31.196.0",
            "192.31.196.255",
            "192.52.193.0",
            "192.52.193.255",
            "192.175.48.0",
            "192.175.48.255",
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
        ];
        let denied_v6 = [
            "::",
            "::1",
            "::2",
            "::7f00:1",
            "ff::",
            "::ffff:0.0.0.0",
            "::ffff:10.0.0.1",
            "::ffff:192.0.2.1",
            "64:ff9b::7f00:1",
            "64:ff9b::c0a8:1",
            "64:ff9b:1::",
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            "100::",
            "100::ffff:ffff:ffff:ffff",
            "100:0:0:1::",
            "100:0:0:1:ffff:ffff:ffff:ffff",
            "2001::",
            "2001::1",
            "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:1::",
            "2001:1::4",
            "2001:2::",
            "2001:2:0:ffff::",
            "2001:10::",
            "2001:1f:ffff:ffff::",
            "2001:40::",
            "2001:1ff:ffff:ffff::",
            "2001:db8::",
            "2001:db8:ffff:ffff::",
            "2002:a00:1::",
            "2002:c0a8:101::",
            "3fff::",
            "3fff:fff:ffff::",
            "5f00::",
            "5f00:ffff::",
            "fc00::",
            "fdff:ffff::",
            "fe80::",
            "febf:ffff::",
            "fec0::",
            "feff::",
            "ff00::",
            "ff02::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        let allowed_v6 = [
            "2001:1::1",
            "2001:1::2",
            "2001:1::3",
            "2001:3::",
            "2001:3:ffff:ffff::",
            "2001:4:112::",
            "2001:4:112:ffff::",
            "2001:20::",
            "2001:2f:ffff::",
            "2001:30::",
            "2001:3f:ffff::",
            "2620:4f:8000::",
            "2620:4f:8000:ffff::",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
            "2002:808:808::",
            "2001:200::",
            "2606:4700:4700::1111",
            "2001:db9::",
            "3ffe:ffff::",
            "4000::",
            "5eff:ffff::",
            "5f01::",
            "fbff:ffff::",
            "2a00:1450::1",
            "400::",
        ];
        for a in denied_v4.iter().chain(&denied_v6) {
            assert!(denied(a), "{a} should be denied");
        }
        for a in allowed_v4.iter().chain(&allowed_v6) {
            assert!(!denied(a), "{a} should be allowed: {:?}", check_ip(a.parse().unwrap(), false));
        }
    }

    /// Every entry of the table is exercised at its first and last address and named in the
    /// reason, so an entry cannot be shadowed by a broader one by mistake.
    #[test]
    fn every_table_entry_decides_its_own_edges() {
        use super::special_purpose::{IPV4, IPV6};
        for b in IPV4 {
            let first = u32::from(b.addr);
            let last = first | u32::MAX.checked_shr(u32::from(b.len)).unwrap_or(0);
            for ip in [first, last].map(Ipv4Addr::from) {
                let inner = IPV4.iter().filter(|x| x.contains(ip)).max_by_key(|x| x.len).unwrap();
                if inner != b {
                    continue;
                }
                match non_public_reason(IpAddr::V4(ip)) {
                    Some(r) => assert!(!b.globally_reachable && r.contains(b.name), "{ip}: {r}"),
                    None => assert!(b.globally_reachable, "{ip} in {b} should be denied"),
                }
            }
        }
        for b in IPV6 {
            let first = u128::from(b.addr);
            let last = first | u128::MAX.checked_shr(u32::from(b.len)).unwrap_or(0);
            for ip in [first, last].map(Ipv6Addr::from) {
                let inner = IPV6.iter().filter(|x| x.contains(ip)).max_by_key(|x| x.len).unwrap();
                let embeds_v4 = ip.to_ipv4_mapped().is_some() || b.name == "6to4" || b.name == "IPv4-IPv6 translation";
                if inner != b || embeds_v4 {
                    continue;
                }
                match non_public_reason(IpAddr::V6(ip)) {
                    Some(r) => assert!(!b.globally_reachable && r.contains(b.name), "{ip}: {r}"),
                    None => assert!(b.globally_reachable, "{ip} in {b} should be denied"),
                }
            }
        }
    }

    #[test]
    fn allow_private_still_denies_unroutable() {
        assert!(check_ip("127.0.0.1".parse().unwrap(), true).is_ok());
        assert!(check_ip("0.0.0.0".parse().unwrap(), true).is_err());
        assert!(check_ip("ff02::1".parse().unwrap(), true).is_err());
    }

    #[test]
    fn metadata_reason_is_named() {
        let e = check_ip("169.254.169.254".parse().unwrap(), false).unwrap_err();
        assert!(e.contains("metadata"), "{e}");
    }
}
